"""The profiles a validation predicts with, measured on this machine and cached in ``--out``.

``profiler`` is :mod:`offload_rl.profiler`'s profile measured with the runtime's thread count;
``stack`` (the default) is the same with the decoder layer re-timed inside the whole stack of
distinct layers (:mod:`validation.runtime.stack_profile`: one layer timed alone keeps its
weights in the CPU caches and reads decode too fast). Both are reported; no factor is fitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from offload_rl.errors import OffloadRLError
from offload_rl.model_shapes import ArchSpec
from offload_rl.profiles import Profile
from validation.config import ValidationConfig, say


def _cached(path: Path) -> Profile | None:
    """The profile saved at ``path``, or None where there is none or it does not load."""
    if not path.is_file():
        return None
    try:
        return Profile.load(path)
    except OffloadRLError:
        return None


def measured_profile(
    cfg: ValidationConfig,
    arch: ArchSpec,
    batch_sizes: Sequence[int] | None = None,
    batch_chunk: int | None = None,
) -> tuple[Profile, Path, bool]:
    """The profile measured here with ``cfg.threads`` threads (cached in ``DIR``).

    With ``batch_sizes`` it has the ``batched`` section too (what ``offload-rl profile
    --batch-sizes ... --in-stack`` measures: batches of those sizes timed, the batched roofline
    fitted to them, prefill chunks of ``batch_chunk`` tokens, and iterations of 1..max(batch
    sizes) rows timed through the whole stack of layers: ``batched.steps``), cached under its
    own name.
    """
    from offload_rl.profiler import (
        DEFAULT_BATCH_CHUNK,
        DEFAULT_LENGTHS,
        default_contexts,
        measure_profile,
    )

    suffix = "-batched" if batch_sizes else ""
    path = cfg.out / f"profile-{arch.name}-t{cfg.threads}{suffix}.json"
    cached = None if cfg.reprofile else _cached(path)
    if (
        cached is not None
        and cached.model == arch.shape
        and cached.provenance.threads == cfg.threads
        and (not batch_sizes or (cached.batched is not None and cached.batched.steps is not None))
    ):
        return cached, path, True
    lengths = cfg.profile_lengths or sorted(
        {t for t in DEFAULT_LENGTHS if t <= arch.max_positions} | {min(1024, arch.max_positions)}
    )
    contexts = cfg.profile_contexts or default_contexts(arch)
    what = f", batch sizes {list(batch_sizes)}, in-stack steps" if batch_sizes else ""
    say(cfg, f"measuring the profile of {arch.name} with {cfg.threads} thread(s) (profiler{what})")
    profile = measure_profile(
        arch,
        threads=cfg.threads,
        lengths=lengths,
        contexts=contexts,
        repeats=cfg.profile_repeats,
        hardware=f"cpu-{cfg.threads}thread-validation",
        measure_peaks=False,
        retries=cfg.profile_retries,
        min_point_s=cfg.profile_min_point_s,
        batch_sizes=list(batch_sizes) if batch_sizes else None,
        batch_chunk=batch_chunk or DEFAULT_BATCH_CHUNK,
        in_stack=bool(batch_sizes),
        on_progress=_progress(cfg) if batch_sizes else None,
    )
    cfg.out.mkdir(parents=True, exist_ok=True)
    profile.save(path)
    return profile, path, False


PROGRESS_EVERY_S = 10.0


def _progress(cfg: ValidationConfig) -> Callable[[str, int, int], None]:
    """The profiler's steps as progress lines, at most one per :data:`PROGRESS_EVERY_S`."""
    last = [-PROGRESS_EVERY_S]

    def show(description: str, done: int, total: int) -> None:
        t = time.monotonic()
        if t - last[0] >= PROGRESS_EVERY_S or done == total:
            last[0] = t
            say(cfg, f"  profile step {done}/{total}: {description}")

    return show


def stack_profile(
    cfg: ValidationConfig, base: Profile, base_reused: bool, model: Any
) -> tuple[Profile, Path, bool]:
    """``base`` with the decoder re-timed in-stack (:mod:`validation.runtime.stack_profile`),
    cached in ``DIR`` beside it (re-measured whenever ``base`` was)."""
    from validation.runtime.stack_profile import with_stack_decoder_costs

    path = cfg.out / f"profile-{base.model.name}-t{cfg.threads}-stack.json"
    cached = _cached(path) if base_reused and not cfg.reprofile else None
    if cached is not None and cached.model == base.model:
        return cached, path, True
    say(cfg, f"re-timing the decoder of {base.model.name} in-stack")
    profile = with_stack_decoder_costs(
        base,
        model,
        threads=cfg.threads,
        repeats=max(1, cfg.profile_repeats - 2),
        retries=cfg.profile_retries,
    )
    profile.save(path)
    return profile, path, False
