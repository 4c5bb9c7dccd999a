"""Agents: heuristics wrappers, PPO training, evaluation harness and ONNX export."""
