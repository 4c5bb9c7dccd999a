"""Measure per-layer costs of a transformer on this machine, with real ``transformers`` layers.

One layer of each kind (embedding, one decoder layer, LM head) is built from the published shape
with random weights (timing does not depend on weight values; nothing is downloaded), timed at
several prefill lengths and decode contexts, and fitted to the profile's polynomials. Identical
decoder layers cost the same, so the one measured layer is reused for all of them.

torch and transformers are imported inside the functions that need them: the core package stays
numpy-only and a missing extra is one clear error, not an ImportError at import time.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from offload_rl import __version__
from offload_rl.errors import ConfigError, OffloadRLError
from offload_rl.model_shapes import (
    ArchSpec,
    decoder_params,
    decoder_prefill_flops,
    embedding_params,
    get_arch,
    head_params,
)
from offload_rl.profiles import (
    SCHEMA_VERSION,
    DecodeFit,
    LayerCost,
    PrefillFit,
    Profile,
    Provenance,
    activation_bytes_per_token,
    kv_bytes_per_token,
)

DEFAULT_LENGTHS: tuple[int, ...] = (16, 64, 256, 1024)
DEFAULT_CONTEXTS: tuple[int, ...] = (16, 128, 512, 2048)
DTYPES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}

# Other processes keeping more CPUs than this busy while a point is timed make it "contended":
# with 2 threads on 2 cores, even a fraction of a core taken away stalls every parallel region.
CONTENTION_THRESHOLD = 0.1

# (description, steps done, steps in total): called before each step and once at the end.
ProgressFn = Callable[[str, int, int], None]

MISSING_EXTRA = (
    "profiling needs torch and transformers, which are not installed: "
    "install the 'profile' extra (pip install 'offload-rl[profile]')"
)


def require_torch() -> tuple[Any, Any]:
    """Import torch and transformers, or raise the one-line 'install the extra' error."""
    try:
        import torch
        import transformers
    except ImportError as err:
        raise OffloadRLError(f"{MISSING_EXTRA} ({err})") from err
    return torch, transformers


# --- fitting ---------------------------------------------------------------------------------


def nnls(A: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Non-negative least squares, ``min ||A x - b|| s.t. x >= 0`` (Lawson-Hanson active set)."""
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    m, n = A.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 10.0 * np.finfo(float).eps * np.abs(A).sum(axis=0).max(initial=0.0) * max(m, n)
    for _ in range(max_iter or 3 * n + 10):
        w = A.T @ (b - A @ x)
        if passive.all() or np.max(np.where(passive, -np.inf, w)) <= tol:
            break
        passive[int(np.argmax(np.where(passive, -np.inf, w)))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if np.all(z[passive] > 0):
                x = z
                break
            shrinking = passive & (z <= 0)
            alpha = np.min(x[shrinking] / (x[shrinking] - z[shrinking]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
    return x


def _relative_nnls(features: np.ndarray, times: np.ndarray) -> np.ndarray:
    """NNLS that minimises *relative* error: each row is divided by its measured time.

    Columns are scaled to unit norm first, so T^2 (up to ~1e6) and 1 are on the same footing.
    """
    if np.any(~np.isfinite(times)) or np.any(times <= 0):
        raise ValueError("measured times must be finite and > 0")
    A = features / times[:, None]
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    coef = nnls(A / scale, np.ones_like(times)) / scale
    return np.asarray(np.maximum(coef, 0.0))


def fit_prefill(points: Sequence[tuple[float, float]]) -> PrefillFit:
    """Fit ``c0 + c1*T + c2*T^2 >= 0`` to (tokens, seconds) points, relative-error weighted."""
    T = np.array([p[0] for p in points], dtype=float)
    t = np.array([p[1] for p in points], dtype=float)
    c = _relative_nnls(np.stack([np.ones_like(T), T, T * T], axis=1), t)
    return PrefillFit(c0=float(c[0]), c1=float(c[1]), c2=float(c[2]))


def fit_decode(points: Sequence[tuple[float, float]]) -> DecodeFit:
    """Fit ``c0 + c1*ctx >= 0`` to (context, seconds) points, relative-error weighted."""
    ctx = np.array([p[0] for p in points], dtype=float)
    t = np.array([p[1] for p in points], dtype=float)
    c = _relative_nnls(np.stack([np.ones_like(ctx), ctx], axis=1), t)
    return DecodeFit(c0=float(c[0]), c1=float(c[1]))


def max_relative_error(
    fit: Callable[[float], float], points: Sequence[tuple[float, float]]
) -> float:
    return max(abs(fit(x) - t) / t for x, t in points)


# --- timing ----------------------------------------------------------------------------------


def time_call(
    fn: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    after: Callable[[], object] | None = None,
    min_total_s: float = 0.0,
    max_runs: int = 200,
) -> float:
    """Median wall time of ``fn`` over at least ``repeats`` runs after ``warmup`` runs.

    Cheap calls are repeated until ``min_total_s`` of timed work (at most ``max_runs`` runs), so
    that their median is not one lucky or unlucky run. ``after`` runs after every call, outside
    the timed region (e.g. to trim a KV cache back).
    """
    for _ in range(warmup):
        fn()
        if after is not None:
            after()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_total_s and len(times) < max_runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if after is not None:
            after()
    return statistics.median(times)


class BackgroundLoad:
    """How much CPU *other* processes (and the hypervisor, as steal time) used while we timed.

    Reads ``/proc/stat`` and ``/proc/self/stat`` (Linux); elsewhere it reports nothing. Timings
    taken while another process competes for the cores are inflated (with 2 threads, every
    parallel region waits for a preempted thread), so the profiler re-measures such points and
    records the load it saw.
    """

    def __init__(self) -> None:
        self._ticks_per_s = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = stat.readline().split()[1:]
            with open("/proc/self/stat", encoding="ascii") as own:
                parts = own.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        values = [int(v) for v in fields]
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
        busy = sum(values) - values[3] - values[4] - sum(values[8:])
        own_ticks = int(parts[11]) + int(parts[12])  # utime + stime of all our threads
        return time.monotonic(), busy, own_ticks

    def restart(self) -> None:
        self._start = self._sample()

    def cpus_used_by_others(self) -> float | None:
        """Average number of CPUs busy with other work since the last (re)start, or None."""
        end = self._sample()
        if end is None or self._start is None:
            return None
        elapsed = end[0] - self._start[0]
        if elapsed <= 0:
            return None
        others = (end[1] - self._start[1]) - (end[2] - self._start[2])
        return max(0.0, others / self._ticks_per_s / elapsed)


@dataclass
class LoadReport:
    """Background CPU load seen while timing each point (see :class:`BackgroundLoad`)."""

    threshold: float
    loads: list[float] = field(default_factory=list)
    retried: int = 0
    retry_s: float = 0.0  # seconds spent waiting for and re-timing contended points

    @property
    def contended(self) -> int:
        """Points whose best attempt still saw more than ``threshold`` CPUs of other work."""
        return sum(load > self.threshold for load in self.loads)

    def summary(self) -> str:
        if not self.loads:
            return "background load not measured"
        text = (
            f"other processes used {statistics.mean(self.loads):.2f} CPUs on average "
            f"(max {max(self.loads):.2f}) while timing; {self.retried} re-measurements"
        )
        if self.contended:
            text += (
                f"; WARNING: {self.contended} of {len(self.loads)} points were timed under "
                f"contention (> {self.threshold:.1f} CPUs busy elsewhere), so they are inflated"
            )
        return text


@dataclass
class HostPeaks:
    """Effective peaks of this machine, measured (best of several runs)."""

    flops: float  # a large dense matmul in the profile's dtype
    mem_bw_bytes_s: float  # a large tensor copy, counted as bytes read + bytes written
    method: str


def measure_host_peaks(
    threads: int,
    dtype: str = "float32",
    matmul_n: int = 3072,
    copy_mib: int = 1024,
    runs: int = 7,
    retries: int = 3,
    retry_wait_s: float = 2.0,
    contention_threshold: float = CONTENTION_THRESHOLD,
) -> HostPeaks:
    """Measure the effective matmul FLOP/s and copy bandwidth with ``threads`` threads.

    Each is the best of ``runs``; an attempt during which other processes kept more than
    ``contention_threshold`` CPUs busy is repeated (up to ``retries`` times), keeping the best.
    """
    torch, _ = require_torch()
    torch_dtype = _torch_dtype(torch, dtype)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    monitor = BackgroundLoad()
    flops = bandwidth = 0.0
    worst_load = 0.0
    try:
        with torch.inference_mode():
            for attempt in range(retries + 1):
                if attempt:
                    time.sleep(retry_wait_s)
                monitor.restart()
                flops = max(flops, _best_matmul_flops(torch, torch_dtype, matmul_n, runs))
                bandwidth = max(bandwidth, _best_copy_bandwidth(torch, copy_mib, runs))
                load = monitor.cpus_used_by_others()
                worst_load = load or 0.0
                if load is None or load <= contention_threshold:
                    break
    finally:
        torch.set_num_threads(previous)
    method = (
        f"best of {runs}: {matmul_n}x{matmul_n} {dtype} matmul; {copy_mib} MiB tensor copy counted "
        f"as read + write; {threads} threads"
    )
    if worst_load > contention_threshold:
        method += f"; WARNING: measured while {worst_load:.2f} CPUs were busy elsewhere"
    return HostPeaks(flops=flops, mem_bw_bytes_s=bandwidth, method=method)


def _best_matmul_flops(torch: Any, dtype: Any, n: int, runs: int) -> float:
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    return 2.0 * n**3 / min(_once(lambda: a @ b) for _ in range(runs))


def _best_copy_bandwidth(torch: Any, copy_mib: int, runs: int) -> float:
    elements = copy_mib * 2**20 // 4
    src = torch.full((elements,), 1.0, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up, and every page touched
    return 2.0 * elements * 4 / min(_once(lambda: dst.copy_(src)) for _ in range(runs))


def _once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- building layers -------------------------------------------------------------------------


def _torch_dtype(torch: Any, dtype: str) -> Any:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def hf_config(arch: ArchSpec, transformers: Any) -> Any:
    """A transformers config of the published shape, with sdpa attention."""
    s = arch.shape
    if arch.family == "gpt2":
        return transformers.GPT2Config(
            n_embd=s.d_model,
            n_layer=s.n_layers,
            n_head=s.n_heads,
            n_inner=s.ffn_dim,
            vocab_size=s.vocab_size,
            n_positions=arch.max_positions,
            layer_norm_epsilon=arch.norm_eps,
            tie_word_embeddings=s.tied_embeddings,
            attn_implementation="sdpa",
        )
    config_class = transformers.Qwen2Config if arch.family == "qwen2" else transformers.LlamaConfig
    return config_class(
        hidden_size=s.d_model,
        intermediate_size=s.ffn_dim,
        num_hidden_layers=s.n_layers,
        num_attention_heads=s.n_heads,
        num_key_value_heads=s.n_kv_heads,
        head_dim=s.head_dim,
        vocab_size=s.vocab_size,
        max_position_embeddings=arch.max_positions,
        rms_norm_eps=arch.norm_eps,
        tie_word_embeddings=s.tied_embeddings,
        rope_parameters=dict(arch.rope or {"rope_type": "default", "rope_theta": 10000.0}),
        attn_implementation="sdpa",
    )


@dataclass
class _Parts:
    """The modules one profile run times."""

    decoder: Any
    rotary: Any | None  # computes (cos, sin) once per forward pass; counted with the embedding
    embed: Any
    positions: Any | None  # learned position table (GPT-2)
    final_norm: Any
    lm_head: Any
    class_names: str


def build_parts(arch: ArchSpec, dtype: str = "float32") -> _Parts:
    """Build one decoder layer, the embedding(s) and the head of ``arch``, random weights, eval."""
    torch, transformers = require_torch()
    torch_dtype = _torch_dtype(torch, dtype)
    config = hf_config(arch, transformers)
    s = arch.shape
    nn = torch.nn
    decoder: Any
    rotary: Any = None
    if arch.family == "gpt2":
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block

        decoder = GPT2Block(config, layer_idx=0)
        final_norm = nn.LayerNorm(s.d_model, eps=arch.norm_eps)
        names = "GPT2Block"
    elif arch.family == "qwen2":
        from transformers.models.qwen2.modeling_qwen2 import (
            Qwen2DecoderLayer,
            Qwen2RMSNorm,
            Qwen2RotaryEmbedding,
        )

        decoder = Qwen2DecoderLayer(config, layer_idx=0)
        rotary = Qwen2RotaryEmbedding(config)
        final_norm = Qwen2RMSNorm(s.d_model, eps=arch.norm_eps)
        names = "Qwen2DecoderLayer, Qwen2RotaryEmbedding, Qwen2RMSNorm"
    else:
        from transformers.models.llama.modeling_llama import (
            LlamaDecoderLayer,
            LlamaRMSNorm,
            LlamaRotaryEmbedding,
        )

        decoder = LlamaDecoderLayer(config, layer_idx=0)
        rotary = LlamaRotaryEmbedding(config)
        final_norm = LlamaRMSNorm(s.d_model, eps=arch.norm_eps)
        names = "LlamaDecoderLayer, LlamaRotaryEmbedding, LlamaRMSNorm"
    embed = nn.Embedding(s.vocab_size, s.d_model)
    positions = nn.Embedding(arch.max_positions, s.d_model) if arch.learned_positions else None
    lm_head = nn.Linear(s.d_model, s.vocab_size, bias=False, device="meta")
    if s.tied_embeddings:
        lm_head.weight = embed.weight
    else:
        lm_head = nn.Linear(s.d_model, s.vocab_size, bias=False)
    modules = [decoder, embed, final_norm, lm_head, *(m for m in (rotary, positions) if m)]
    for module in modules:
        module.to(torch_dtype)
        module.eval()
    return _Parts(decoder, rotary, embed, positions, final_norm, lm_head, names)


# --- measuring -------------------------------------------------------------------------------


def _check_lengths(arch: ArchSpec, lengths: Sequence[int], contexts: Sequence[int]) -> None:
    if not lengths or not contexts:
        raise ConfigError("need at least one prefill length and one decode context")
    for t in lengths:
        if t < 1 or t > arch.max_positions:
            raise ConfigError(
                f"prefill length {t} is outside 1..{arch.max_positions} (the positions of "
                f"{arch.name})"
            )
    for c in contexts:
        if c < 1 or c + 1 > arch.max_positions:
            raise ConfigError(
                f"decode context {c} is outside 1..{arch.max_positions - 1} (the positions of "
                f"{arch.name})"
            )


def default_contexts(arch: ArchSpec) -> list[int]:
    """DEFAULT_CONTEXTS clipped to what the model's positions allow."""
    return sorted({min(c, arch.max_positions - 1) for c in DEFAULT_CONTEXTS})


def wait_for_quiet(
    max_wait_s: float = 120.0,
    threshold: float = CONTENTION_THRESHOLD,
    window_s: float = 1.0,
    quiet_windows: int = 3,
) -> float | None:
    """Wait until other processes leave the CPUs alone for ``quiet_windows`` windows in a row.

    Returns the load of the last window (None where it cannot be measured); gives up after
    ``max_wait_s`` and returns the load it last saw, so a caller can say it measured anyway.
    """
    monitor = BackgroundLoad()
    deadline = time.monotonic() + max_wait_s
    streak = 0
    load: float | None = None
    while time.monotonic() < deadline:
        monitor.restart()
        time.sleep(window_s)
        load = monitor.cpus_used_by_others()
        if load is None:
            return None
        streak = streak + 1 if load <= threshold else 0
        if streak >= quiet_windows:
            break
    return load


def host_description(threads: int) -> str:
    """CPU model, core count and OS of this machine, for the provenance."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}; "
        f"measured with {threads} torch threads"
    )


def library_versions() -> dict[str, str]:
    torch, transformers = require_torch()
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "numpy": np.__version__,
        "offload-rl": __version__,
    }


def measure_profile(
    model: str | ArchSpec,
    *,
    threads: int = 2,
    dtype: str = "float32",
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    contexts: Sequence[int] | None = None,
    repeats: int = 5,
    warmup: int = 3,
    hardware: str | None = None,
    measure_peaks: bool = True,
    on_progress: ProgressFn | None = None,
    retries: int = 3,
    retry_wait_s: float = 2.0,
    contention_threshold: float = CONTENTION_THRESHOLD,
    load_report: LoadReport | None = None,
    min_point_s: float = 0.3,
    peaks: HostPeaks | None = None,
    retry_budget_s: float = 60.0,
) -> Profile:
    """Measure ``model`` here and return its profile (see the module docstring).

    ``hardware`` names the machine in the profile (default ``cpu-<threads>core``). With
    ``measure_peaks`` the host's matmul FLOP/s and copy bandwidth are measured too (or taken
    from ``peaks``, measured once for several models), and the efficiency the decoder layer
    reached against them goes into the provenance.

    A point timed while other processes kept more than ``contention_threshold`` CPUs busy is
    re-measured up to ``retries`` times (each after waiting up to ``retry_wait_s`` for a quiet
    second), as long as the re-measurements of the whole run stay within ``retry_budget_s`` (a
    busy machine must not make the command run for ever). The background load that was seen is
    written into the provenance, so an inflated profile says so; pass ``load_report`` to
    receive it as an object too. Cheap points are repeated until ``min_point_s`` of timed work,
    so their median rests on more than ``repeats`` runs.
    """
    arch = get_arch(model) if isinstance(model, str) else model
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    dtype_bytes = DTYPES.get(dtype)
    if dtype_bytes is None:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    lengths = sorted(set(lengths))
    contexts = sorted(set(contexts)) if contexts is not None else default_contexts(arch)
    _check_lengths(arch, lengths, contexts)
    torch, _ = require_torch()
    from transformers.cache_utils import DynamicCache

    per_kind = len(lengths) + len(contexts)
    total = 1 + 3 * per_kind + (1 if measure_peaks and peaks is None else 0)
    done = 0

    def step(description: str) -> None:
        nonlocal done
        if on_progress is not None:
            on_progress(description, done, total)
        done += 1

    torch_dtype = _torch_dtype(torch, dtype)
    s = arch.shape
    monitor = BackgroundLoad()
    report = load_report if load_report is not None else LoadReport(contention_threshold)
    report.threshold = contention_threshold
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    try:
        step(f"{arch.name}: building layers")
        parts = build_parts(arch, dtype)
        with torch.inference_mode():

            def hidden(tokens: int) -> Any:
                return torch.randn(1, tokens, s.d_model, generator=generator).to(torch_dtype)

            def rope_kwargs(x: Any, start: int) -> dict[str, Any]:
                pos = torch.arange(start, start + x.shape[1]).unsqueeze(0)
                if parts.rotary is None:
                    return {}
                return {"position_ids": pos, "position_embeddings": parts.rotary(x, pos)}

            timed: dict[str, dict[str, list[tuple[float, float]]]] = {
                kind: {"prefill": [], "decode": []} for kind in ("embedding", "decoder", "head")
            }

            def record(kind: str, phase: str, x: int, fn: Callable[[], object], **kw: Any) -> None:
                step(f"{arch.name}: {kind} {phase} {'T' if phase == 'prefill' else 'ctx'}={x}")
                # Contention only ever adds time: keep the fastest attempt, and the load it saw.
                best: tuple[float, float] | None = None  # (seconds, load seen)
                for attempt in range(retries + 1):
                    if attempt:
                        if report.retry_s >= retry_budget_s:
                            break
                        report.retried += 1
                        waited_from = time.monotonic()
                        wait_for_quiet(
                            max_wait_s=retry_wait_s,
                            threshold=contention_threshold,
                            window_s=0.5,
                            quiet_windows=2,
                        )
                        report.retry_s += time.monotonic() - waited_from
                    attempt_started = time.monotonic()
                    monitor.restart()
                    seconds = time_call(
                        fn, warmup=warmup, repeats=repeats, min_total_s=min_point_s, **kw
                    )
                    others = monitor.cpus_used_by_others()
                    if attempt:
                        report.retry_s += time.monotonic() - attempt_started
                    seen = others if others is not None else 0.0
                    quiet = seen <= contention_threshold
                    if best is None or (quiet, -seconds) > (
                        best[1] <= contention_threshold,
                        -best[0],
                    ):
                        best = (seconds, seen)
                    if quiet:
                        break
                assert best is not None
                report.loads.append(best[1])
                timed[kind][phase].append((float(x), best[0]))

            def embed_fn(tokens: int, start: int) -> Callable[[], object]:
                ids = torch.randint(0, s.vocab_size, (1, tokens), generator=generator)
                pos = torch.arange(start, start + tokens).unsqueeze(0)

                def run() -> object:
                    h = parts.embed(ids)
                    if parts.positions is not None:
                        h = h + parts.positions(pos)
                    if parts.rotary is not None:
                        parts.rotary(h, pos)
                    return h

                return run

            def head_fn(tokens: int) -> Callable[[], object]:
                x = hidden(tokens)
                return lambda: parts.lm_head(parts.final_norm(x)[:, -1:, :])

            def prefill_fn(tokens: int) -> Callable[[], object]:
                x = hidden(tokens)
                kw = rope_kwargs(x, 0)
                return lambda: parts.decoder(x, cache=DynamicCache(), use_cache=True, **kw)

            for tokens in lengths:
                record("embedding", "prefill", tokens, embed_fn(tokens, 0))
            for ctx in contexts:
                record("embedding", "decode", ctx, embed_fn(1, ctx))
            for tokens in lengths:
                record("decoder", "prefill", tokens, prefill_fn(tokens))
            for ctx in contexts:
                cache = DynamicCache()
                shape = (1, s.n_kv_heads, ctx, s.head_dim)
                cache.update(
                    torch.randn(*shape, generator=generator).to(torch_dtype),
                    torch.randn(*shape, generator=generator).to(torch_dtype),
                    0,
                )
                x = hidden(1)
                kw = rope_kwargs(x, ctx)

                def decode_once(x: Any = x, kw: dict[str, Any] = kw, cache: Any = cache) -> object:
                    return parts.decoder(x, cache=cache, use_cache=True, **kw)

                record(
                    "decoder", "decode", ctx, decode_once, after=lambda cache=cache: cache.crop(-1)
                )
            for tokens in lengths:
                record("head", "prefill", tokens, head_fn(tokens))
            for ctx in contexts:
                record("head", "decode", ctx, head_fn(1))
            if not measure_peaks:
                peaks = None
            elif peaks is None:
                step("host peaks: matmul FLOP/s and copy bandwidth")
                budget_left = retry_budget_s > report.retry_s
                peaks = measure_host_peaks(threads, dtype, retries=retries if budget_left else 0)
    finally:
        torch.set_num_threads(previous_threads)
    if on_progress is not None:
        on_progress(f"{arch.name}: done", total, total)
    return _assemble(
        arch,
        parts.class_names,
        timed,
        threads=threads,
        dtype=dtype,
        dtype_bytes=dtype_bytes,
        repeats=repeats,
        warmup=warmup,
        min_point_s=min_point_s,
        hardware=hardware or f"cpu-{threads}core",
        peaks=peaks,
        versions=library_versions(),
        load=report,
    )


def _assemble(
    arch: ArchSpec,
    class_names: str,
    timed: dict[str, dict[str, list[tuple[float, float]]]],
    *,
    threads: int,
    dtype: str,
    dtype_bytes: int,
    repeats: int,
    warmup: int,
    min_point_s: float,
    hardware: str,
    peaks: HostPeaks | None,
    versions: dict[str, str],
    load: LoadReport | None = None,
) -> Profile:
    """Fit the timed points and put the profile together."""
    s = arch.shape
    costs: dict[str, LayerCost] = {}
    worst = {"prefill": 0.0, "decode": 0.0}
    for kind, weights, kv in (
        ("embedding", embedding_params(arch) * dtype_bytes, 0),
        ("decoder", decoder_params(arch) * dtype_bytes, kv_bytes_per_token(s, dtype_bytes)),
        ("head", head_params(arch) * dtype_bytes, 0),
    ):
        prefill = fit_prefill(timed[kind]["prefill"])
        decode = fit_decode(timed[kind]["decode"])
        worst["prefill"] = max(
            worst["prefill"], max_relative_error(prefill, timed[kind]["prefill"])
        )
        worst["decode"] = max(worst["decode"], max_relative_error(decode, timed[kind]["decode"]))
        costs[kind] = LayerCost(
            name=kind,
            kind=kind,
            prefill=prefill,
            decode=decode,
            weight_bytes=weights,
            kv_bytes_per_token=kv,
            samples={phase: list(points) for phase, points in timed[kind].items()},
        )
    lengths = [int(x) for x, _ in timed["decoder"]["prefill"]]
    contexts = [int(x) for x, _ in timed["decoder"]["decode"]]
    method = (
        f"one layer of each kind timed ({class_names}; embedding with position encoding; head = "
        f"final norm over T tokens + LM head on the last token, as generation does), built with "
        f"transformers {versions.get('transformers', '?')} from the published shape, random "
        f"weights, eval + inference_mode, sdpa attention, batch 1; prefill at T={lengths} with a "
        f"fresh DynamicCache (causal), decode of 1 token with a DynamicCache pre-filled to "
        f"ctx={contexts}; median of >= {repeats} runs (cheap points repeated to >= "
        f"{min_point_s:g} s) after {warmup} warm-up; fitted by NNLS "
        f"weighted for relative error (worst point off by {worst['prefill']:.0%} prefill, "
        f"{worst['decode']:.0%} decode); the decoder layer's costs are reused for all "
        f"{s.n_layers} identical layers"
    )
    description = host_description(threads)
    if load is not None and load.loads:
        description += "; " + load.summary()
    eff_prefill = eff_decode = None
    calibration = None
    if peaks is not None:
        eff_prefill, eff_decode = _achieved(arch, costs["decoder"], dtype_bytes, peaks)
        calibration = (
            f"peak_flops and mem_bw_bytes_s measured on this host ({peaks.method}); eff_prefill "
            f"= FLOPs/(peak*t) the decoder layer reached at T={max(lengths)}, eff_decode = "
            f"(weights + KV read)/(bw*t) it reached (median over contexts)"
        )
    provenance = Provenance(
        kind="measured",
        hardware=hardware,
        description=description,
        date=datetime.now(UTC).replace(microsecond=0).isoformat(),
        dtype=dtype,
        threads=threads,
        library_versions=versions,
        method=method,
        peak_flops=peaks.flops if peaks else None,
        mem_bw_bytes_s=peaks.mem_bw_bytes_s if peaks else None,
        eff_prefill=eff_prefill,
        eff_decode=eff_decode,
        calibration=calibration,
    )
    decoder = costs["decoder"]
    return Profile(
        schema_version=SCHEMA_VERSION,
        model=s,
        hardware=hardware,
        dtype_bytes=dtype_bytes,
        provenance=provenance,
        embedding=costs["embedding"],
        layers=[decoder.model_copy(update={"name": f"decoder.{i}"}) for i in range(s.n_layers)],
        head=costs["head"],
        activation_bytes_per_token=activation_bytes_per_token(s, dtype_bytes),
    )


def _achieved(
    arch: ArchSpec, decoder: LayerCost, dtype_bytes: int, peaks: HostPeaks
) -> tuple[float, float]:
    samples = decoder.samples or {}
    tokens, t_prefill = max(samples["prefill"])
    eff_prefill = decoder_prefill_flops(arch, int(tokens)) / peaks.flops / t_prefill
    weights = decoder_params(arch) * dtype_bytes
    kv = kv_bytes_per_token(arch.shape, dtype_bytes)
    eff_decode = statistics.median(
        (weights + kv * (ctx + 1)) / peaks.mem_bw_bytes_s / t for ctx, t in samples["decode"]
    )
    return eff_prefill, eff_decode
