"""The evaluation harness: every policy on exactly the same episodes, side by side.

An *episode set* is drawn once from ``seed``: per trace family, ``episodes`` episodes, each a
pinned ``(trace, offset_s, workload_seed)``. Every policy runs every episode with the
environment's reset options pinned, so differences between policies are differences between
decisions, not between draws. Results are independent of ``workers``: each (policy, episode)
pair is a self-contained task (the environment is re-seeded and the policy reset at its start)
and results are assembled in a fixed order.

Outputs under ``out`` (see :func:`agents.evaluation.outputs.write_outputs`): ``metrics.json`` /
``metrics.csv`` (deterministic: no timestamps), ``run.json`` (wall time, workers: what may
differ between two runs), ``tb/<policy>/`` TensorBoard runs with identical tags, ``report.md``
and PNG plots.

Modules, one concern each: ``episodes`` (the pinned episode set), ``rollout`` (one policy over
one episode), ``runner`` (every policy over the set, in a process pool), ``scenario_options``
(command-line overrides), ``confidence`` (95% CIs), ``metrics`` (``metrics.json``), ``tags``
(TensorBoard tag names, shared with training), ``tensorboard_runs``, ``plots``, ``report``
(``report.md``), ``outputs`` (writing them all). :mod:`agents.evaluate` re-exports the public
names; this package imports nothing itself, so that training can take ``tags`` alone.
"""
