"""``offload-rl profile``: measure a model here, build an analytical profile, list, or show one.

offload-rl profile --model MODEL --out p.json [--threads 2] [--dtype float32]
                   [--lengths 16,64,256,1024] [--contexts 16,128,512,2048] [--repeats 5]
                   [--batch-sizes 1,2,4,8 | none] [--batch-contexts 128,512,2048]
                   [--batch-chunk 256] [--in-stack [--stack-contexts 64,256,768]]
offload-rl profile --model MODEL --hardware l4 --out p-l4.json       # roofline

MODEL is a config.json (or a folder holding one, as a downloaded model has), a shipped model
(gpt2, qwen2.5-0.5b, ...) or a transformers model type (llama, mistral, phi3, gemma2, ...).
offload-rl profile --list
offload-rl profile show gpt2@l4          # or a path to a profile file
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from offload_rl.errors import ConfigError
from offload_rl.model_config import load_arch
from offload_rl.model_shapes import ARCHITECTURES, ArchSpec, active_params, total_params
from offload_rl.profiles import (
    BatchedProfile,
    BatchedSteps,
    Profile,
    load_profile,
    shipped_profiles,
)
from offload_rl.roofline import HARDWARE, analytical_profile, get_hardware

SHOW_LENGTHS = (64, 256, 1024)
SHOW_CONTEXTS = (512, 2048)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="measure or model per-layer costs of a transformer (writes a profile JSON)",
        description=(
            "Measure per-layer prefill/decode costs of a transformer on this machine with real "
            "transformers layers (random weights, nothing downloaded), or build an analytical "
            "(roofline) profile for named hardware with --hardware."
        ),
    )
    parser.add_argument(
        "--model",
        help=(
            "a config.json, a folder holding one, a shipped model (see --list) or a transformers "
            "model type (llama, mistral, phi3, gemma2, mixtral, qwen2, ...); nothing is downloaded"
        ),
    )
    parser.add_argument("--name", help="model name written in the profile (default: the config's)")
    parser.add_argument("--out", type=Path, help="profile JSON to write")
    parser.add_argument(
        "--hardware",
        help="build an analytical profile for this hardware instead of measuring (see --list)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="dtype"
    )
    parser.add_argument(
        "--lengths", default="16,64,256,1024", help="prefill token counts, comma-separated"
    )
    parser.add_argument(
        "--contexts",
        default=None,
        help="decode contexts, comma-separated (default 16,128,512,2048, clipped to the model)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per point (median)")
    parser.add_argument(
        "--batch-sizes",
        default="1,2,4,8",
        help=(
            "batch sizes to time batched decoder layers at (decodes, prefill chunks, mixed), "
            "fitted to the batched roofline the cell uses; 'none' to skip (default 1,2,4,8)"
        ),
    )
    parser.add_argument(
        "--batch-contexts",
        default=None,
        help="contexts of the batched sequences, comma-separated (default 128,512,2048, clipped)",
    )
    parser.add_argument(
        "--batch-chunk",
        type=int,
        default=256,
        help="tokens of the batched prefill chunks (default 256, clipped to the model)",
    )
    parser.add_argument(
        "--in-stack",
        action="store_true",
        help=(
            "also time whole iterations through all the model's distinct decoder layers (decode "
            "rows 1..max batch size, prefill chunks, mixed) and table them: the batched cost "
            "that can express a CPU's small-matmul steps (batched.steps)"
        ),
    )
    parser.add_argument(
        "--stack-contexts",
        default=None,
        help="contexts of the in-stack decode rows, comma-separated (default 64,256,768, clipped)",
    )
    parser.add_argument(
        "--label", default=None, help="hardware name written in a measured profile (cpu-<N>core)"
    )
    parser.add_argument(
        "--list", action="store_true", help="list models, hardware and shipped profiles"
    )
    actions = parser.add_subparsers(dest="profile_action", metavar="ACTION")
    show = actions.add_parser("show", help="summarise a profile file or shipped profile")
    show.add_argument("profile", help="a profile JSON path or a shipped name like gpt2@l4")
    show.set_defaults(func=_show)
    parser.set_defaults(func=_run)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{option} needs positive integers, got {text!r}")
    return values


def _run(args: argparse.Namespace) -> int:
    console = Console()
    if args.list:
        _print_list(console)
        return 0
    if not args.model:
        raise ConfigError("profile: give --model MODEL and --out FILE (or --list, or show NAME)")
    if args.out is None:
        raise ConfigError("profile: --out FILE is required")
    if args.out.parent and not args.out.parent.is_dir():
        raise ConfigError(f"profile: --out directory {args.out.parent} does not exist")
    batch_sizes = (
        None
        if args.batch_sizes.strip().lower() == "none"
        else _int_list(args.batch_sizes, "--batch-sizes")
    )
    batch_contexts = (
        _int_list(args.batch_contexts, "--batch-contexts") if args.batch_contexts else None
    )
    if args.batch_chunk < 1:
        raise ConfigError(f"profile: --batch-chunk must be >= 1, got {args.batch_chunk}")
    if args.in_stack and batch_sizes is None:
        raise ConfigError("profile: --in-stack needs --batch-sizes (its largest is the most rows)")
    stack_contexts = (
        _int_list(args.stack_contexts, "--stack-contexts") if args.stack_contexts else None
    )
    hw = get_hardware(args.hardware) if args.hardware else None
    arch = load_arch(args.model, name=args.name)
    if hw is not None:
        profile = analytical_profile(arch, hw)
        profile.save(args.out)
        console.print(f"wrote analytical profile {arch.name}@{hw.name} to {args.out}")
        _print_summary(console, profile)
        return 0
    if args.threads < 1:
        raise ConfigError(f"profile: --threads must be >= 1, got {args.threads}")
    if args.repeats < 1:
        raise ConfigError(f"profile: --repeats must be >= 1, got {args.repeats}")
    lengths = _int_list(args.lengths, "--lengths")
    contexts = _int_list(args.contexts, "--contexts") if args.contexts else None

    from offload_rl.profiler import CONTENTION_THRESHOLD, LoadReport, measure_profile

    report = LoadReport(threshold=CONTENTION_THRESHOLD)
    started = time.perf_counter()
    stderr = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        task = progress.add_task(f"profiling {arch.name}", total=None)

        def on_progress(description: str, done: int, total: int) -> None:
            progress.update(task, description=description, completed=done, total=total)

        profile = measure_profile(
            arch,
            threads=args.threads,
            dtype=args.dtype,
            lengths=lengths,
            contexts=contexts,
            repeats=args.repeats,
            hardware=args.label,
            on_progress=on_progress,
            load_report=report,
            batch_sizes=batch_sizes,
            batch_contexts=batch_contexts,
            batch_chunk=args.batch_chunk,
            in_stack=args.in_stack,
            stack_contexts=stack_contexts,
        )
    profile.save(args.out)
    elapsed = time.perf_counter() - started
    console.print(
        f"wrote measured profile {arch.name}@{profile.hardware} to {args.out} ({elapsed:.0f} s)"
    )
    if report.contended:
        stderr.print(f"[yellow]warning:[/] {report.summary()}; rerun on a quiet machine")
    _print_summary(console, profile)
    return 0


def _show(args: argparse.Namespace) -> int:
    _print_summary(Console(), load_profile(args.profile))
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}"


def _print_summary(console: Console, profile: Profile) -> None:
    """Who made the profile, per-kind costs, and whole-model totals."""
    prov = profile.provenance
    shape = profile.model
    console.print(
        f"[bold]{shape.name}[/] on [bold]{profile.hardware}[/] - {prov.kind}, {prov.dtype}"
        + (f", {prov.threads} threads" if prov.threads else "")
        + f", {prov.date}"
    )
    console.print(f"  {prov.description}")
    if prov.peak_flops and prov.mem_bw_bytes_s:
        console.print(
            f"  peak {prov.peak_flops / 1e12:.3g} TFLOP/s, bandwidth "
            f"{prov.mem_bw_bytes_s / 1e9:.3g} GB/s, eff prefill {prov.eff_prefill or 0:.2f} "
            f"/ decode {prov.eff_decode or 0:.2f}"
        )
    table = Table(title="ms per layer: prefill of T tokens, decode of 1 token at context c")
    table.add_column("layer", no_wrap=True)
    for t in SHOW_LENGTHS:
        table.add_column(f"T={t}", justify="right")
    for c in SHOW_CONTEXTS:
        table.add_column(f"c={c}", justify="right")
    table.add_column("MB", justify="right")
    rows = [
        ("embedding", profile.embedding),
        (f"decoder x{profile.n_layers}", profile.layers[0]),
        ("head", profile.head),
    ]
    for label, layer in rows:
        table.add_row(
            label,
            *(_ms(layer.prefill_s(t)) for t in SHOW_LENGTHS),
            *(_ms(layer.decode_s(c)) for c in SHOW_CONTEXTS),
            f"{layer.weight_bytes / 1e6:.1f}",
        )
    n = profile.n_layers
    weights = (
        profile.embedding.weight_bytes + profile.weight_bytes(0, n) + profile.head.weight_bytes
    )
    if shape.tied_embeddings:  # one shared matrix when the whole model runs in one place
        weights -= shape.vocab_size * shape.d_model * profile.dtype_bytes
    table.add_row(
        "[bold]whole model[/]",
        *(
            _ms(
                profile.embedding.prefill_s(t)
                + profile.prefill_s(0, n, t)
                + profile.head.prefill_s(t)
            )
            for t in SHOW_LENGTHS
        ),
        *(
            _ms(
                profile.embedding.decode_s(c) + profile.decode_s(0, n, c) + profile.head.decode_s(c)
            )
            for c in SHOW_CONTEXTS
        ),
        f"{weights / 1e6:.1f}",
    )
    console.print(table)
    console.print(
        f"  KV cache {profile.kv_bytes_per_token(0, n) / 1024:.1f} KiB/token (all layers); "
        f"split activations {profile.activation_bytes_per_token[1]} B/token"
    )
    if profile.batched is not None:
        _print_batched(console, profile.batched)


def _print_batched(console: Console, batched: BatchedProfile) -> None:
    """The measured batched roofline: coefficients, fit error per part, points."""
    counts = {
        source: sum(p.source == source for p in batched.points) for source in ("batched", "single")
    }
    console.print(
        f"[bold]batched[/] (measured): {len(batched.points)} points ({counts['batched']} "
        f"batches timed, {counts['single']} single-request samples as batch 1)"
    )
    table = Table(title="batched roofline coefficients (per decoder layer unless head/embed)")
    table.add_column("coefficient", no_wrap=True)
    table.add_column("value", justify="right")
    for name, value in batched.coefficients.model_dump().items():
        table.add_row(name, f"{value:.4g}")
    console.print(table)
    errors = Table(title="fit error, absolute % over the points")
    for column in ("part", "points", "median %", "p90 %", "max %"):
        errors.add_column(column, justify="left" if column == "part" else "right")
    for part, e in batched.fit_error.items():
        errors.add_row(
            part,
            str(e.points),
            f"{e.median_abs_pct:.1f}",
            f"{e.p90_abs_pct:.1f}",
            f"{e.max_abs_pct:.1f}",
        )
    console.print(errors)
    if batched.steps is not None:
        _print_steps(console, batched.steps)


def _print_steps(console: Console, steps: BatchedSteps) -> None:
    """The in-stack step table: per-layer seconds by packed tokens, head by rows, the fit."""
    table = Table(title="in-stack steps: one decoder layer by packed tokens, head by rows")
    for column in ("tokens / rows", "layer (context 0)", "head"):
        table.add_column(column, justify="right")
    head = dict(zip(steps.head.x, steps.head.seconds, strict=True))
    for x in sorted(set(steps.layer.x) | set(head)):
        layer = dict(zip(steps.layer.x, steps.layer.seconds, strict=True)).get(x)
        table.add_row(
            str(x),
            "" if layer is None else _ms(layer),
            "" if x not in head else _ms(head[x]),
        )
    console.print(table)
    e = steps.fit_error
    console.print(
        f"  per layer and sequence: {steps.kv_s_per_token:.3g} s per KV token, "
        f"{steps.attn_s_unit:.3g} s per attention unit; fit over {e.points} stack points: "
        f"median {e.median_abs_pct:.1f}% / p90 {e.p90_abs_pct:.1f}% / max {e.max_abs_pct:.1f}% off"
    )


def _print_list(console: Console) -> None:
    models = Table(
        title="shipped models (published config.json files; any other config.json or "
        "transformers model type works too)"
    )
    for column in ("name", "layers", "d_model", "heads q/kv", "head_dim", "ffn", "vocab", "params"):
        models.add_column(column, no_wrap=column == "name")
    for arch in ARCHITECTURES.values():
        s = arch.shape
        models.add_row(
            s.name,
            str(s.n_layers),
            str(s.d_model),
            f"{s.n_heads}/{s.n_kv_heads}",
            str(s.head_dim),
            str(s.ffn_dim),
            str(s.vocab_size),
            _params(arch),
        )
    console.print(models)
    hardware = Table(title="hardware (analytical)")
    for column in ("name", "peak TFLOP/s", "GB/s", "eff prefill", "eff decode", "dtype"):
        hardware.add_column(column, no_wrap=column == "name")
    for hw in HARDWARE.values():
        hardware.add_row(
            hw.name,
            f"{hw.peak_flops / 1e12:g}",
            f"{hw.mem_bw_bytes_s / 1e9:g}",
            f"{hw.eff_prefill:.2f}",
            f"{hw.eff_decode:.2f}",
            f"{hw.dtype_bytes} B"
            + (f", weights {hw.weight_bits:g} bit" if hw.weight_bits is not None else ""),
        )
    console.print(hardware)
    shipped = Table(title="shipped profiles")
    shipped.add_column("name")
    shipped.add_column("kind")
    for name in shipped_profiles():
        shipped.add_row(name, load_profile(name).provenance.kind)
    console.print(shipped)


def _params(arch: ArchSpec) -> str:
    """Total parameters, and the active ones where experts make them differ."""
    total, active = total_params(arch), active_params(arch)
    return f"{total / 1e6:.0f}M" + (f" ({active / 1e6:.0f}M active)" if active != total else "")
