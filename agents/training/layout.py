"""The names of the files and folders in a training run's folder.

::

    OUT/config.yaml                 the resolved config (``--resume OUT`` reads it back)
    OUT/trace_split.json            train / validation (/ test) trace files (config names traces)
    OUT/tb/ppo/                     SB3's train/ rollout/ time/ tags, env/* (training steps),
                                    eval/* family/* (validation), perf/*, hparams, config text
    OUT/tb/<heuristic>/             eval/* family/* of a heuristic at the same steps
    OUT/checkpoints/step_<N>/       model.zip, vecnormalize.pkl, meta.json
    OUT/best/                       the same three files for the best validation reward so far
    OUT/final/                      the same three files at the end
    OUT/summary.json

The checkpoint folders' names and files are :mod:`agents.checkpoints`'s.
"""

from __future__ import annotations

CONFIG_FILE = "config.yaml"
SPLIT_FILE = "trace_split.json"
SUMMARY_FILE = "summary.json"
TB_DIR = "tb"
AGENT_RUN = "ppo"  # the agent's TensorBoard run, and its key in summary.json's "final"
