"""Measure per-layer costs of a transformer on this machine, with real ``transformers`` layers.

One layer of each kind (embedding, one decoder layer, LM head) is built from the published shape
with random weights (timing does not depend on weight values; nothing is downloaded), timed at
several prefill lengths and decode contexts, and fitted to the profile's polynomials. Identical
decoder layers cost the same, so the one measured layer is reused for all of them.

torch and transformers are imported inside the functions that need them: the core package stays
numpy-only and a missing extra is one clear error, not an ImportError at import time.

Modules, in the order a measurement uses them:

- ``torch_extra``: importing the optional extra (:func:`require_torch`), the dtypes.
- ``layers``: the transformers config and modules of an architecture (:func:`build_parts`).
- ``layer_calls``: the call to time for each layer kind, length and context.
- ``timing``: median wall time, the background load of other processes, re-timing under it.
- ``host``: this machine's description, library versions and matmul/copy peaks.
- ``fitting``: non-negative, relative-error fits of the timed points (numpy only).
- ``assemble``: fits, provenance and the :class:`~offload_rl.profiles.Profile`.
- ``batch_calls``: packed batches through the decoder layer, head and embedding.
- ``batch_fitting``: the batched roofline's coefficients fitted to timed batches (numpy only).
- ``batch_measure``: the batch plan and the ``batched`` section (:func:`measure_batched`).
- ``stack_calls``: packed iterations through all the model's distinct decoder layers in a row.
- ``stack_fitting``: the in-stack step table fitted to them (numpy only).
- ``stack_measure``: the in-stack plan and ``batched.steps`` (:func:`measure_stack`).
- ``measure``: the driver, :func:`measure_profile`.

Every public name is importable from ``offload_rl.profiler`` itself.
"""

from __future__ import annotations

from offload_rl.profiler.batch_fitting import fit_batched
from offload_rl.profiler.batch_measure import (
    DEFAULT_BATCH_CHUNK,
    DEFAULT_BATCH_CONTEXTS,
    DEFAULT_BATCH_SIZES,
    measure_batched,
    plan_batches,
)
from offload_rl.profiler.fitting import fit_decode, fit_prefill, max_relative_error, nnls
from offload_rl.profiler.host import (
    HostPeaks,
    host_description,
    library_versions,
    measure_host_peaks,
)
from offload_rl.profiler.layers import LayerParts, build_parts, hf_config
from offload_rl.profiler.measure import (
    DEFAULT_CONTEXTS,
    DEFAULT_LENGTHS,
    ProgressFn,
    default_contexts,
    measure_profile,
)
from offload_rl.profiler.stack_fitting import fit_steps
from offload_rl.profiler.stack_measure import (
    DEFAULT_STACK_CONTEXTS,
    measure_stack,
    plan_stack,
)
from offload_rl.profiler.timing import (
    CONTENTION_THRESHOLD,
    BackgroundLoad,
    LoadReport,
    time_call,
    wait_for_quiet,
)
from offload_rl.profiler.torch_extra import DTYPES, MISSING_EXTRA, require_torch

__all__ = [
    "CONTENTION_THRESHOLD",
    "DEFAULT_BATCH_CHUNK",
    "DEFAULT_BATCH_CONTEXTS",
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_CONTEXTS",
    "DEFAULT_LENGTHS",
    "DEFAULT_STACK_CONTEXTS",
    "DTYPES",
    "MISSING_EXTRA",
    "BackgroundLoad",
    "HostPeaks",
    "LayerParts",
    "LoadReport",
    "ProgressFn",
    "build_parts",
    "default_contexts",
    "fit_batched",
    "fit_decode",
    "fit_prefill",
    "fit_steps",
    "hf_config",
    "host_description",
    "library_versions",
    "max_relative_error",
    "measure_batched",
    "measure_host_peaks",
    "measure_profile",
    "measure_stack",
    "nnls",
    "plan_batches",
    "plan_stack",
    "require_torch",
    "time_call",
    "wait_for_quiet",
]
