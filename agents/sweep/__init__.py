"""Sweeps: many train + evaluate trials (seeds, configs, hyper-parameters) on Ray Tune.

A sweep file (:mod:`agents.sweep.config`) names base training configs, a grid and/or a random
search space, the evaluation run after each trial and the resources per trial.
:mod:`agents.sweep.plan` expands it into a fixed list of trials (written to disk before any
runs, so ``--resume`` finds the same ones); :mod:`agents.sweep.trial` runs one trial with the
project's own ``train`` and ``evaluate`` (resuming from the run's checkpoint after a crash);
:mod:`agents.sweep.ray_runner` schedules the trials on an embedded or an existing Ray cluster;
:mod:`agents.sweep.summary` writes ``results.json`` and ``results.md``;
:mod:`agents.sweep.driver` does all of it in order (``offload-rl sweep``, the results table).

Ray (the ``sweep`` extra) is imported by :mod:`agents.sweep.ray_runner` and, for a random
search, inside :func:`agents.sweep.plan.plan_trials`; nothing outside this package imports it
(``serving`` and the core stay free of it: ``tests/serving/test_no_heavy_imports.py``).
"""
