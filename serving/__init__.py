"""Decision service (FastAPI + onnxruntime) and its client. Never imports torch/SB3/gymnasium."""
