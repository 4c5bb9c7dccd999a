"""``offload-rl scenario``: list, validate and summarise scenarios."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from offload_rl.profiles import load_profile
from offload_rl.scenario import Scenario, load_scenario, shipped_scenarios
from offload_rl.scenario_facts import resolve_scenario


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("scenario", help="list, validate and summarise scenarios")
    sub = parser.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="embedded scenarios")
    lst.set_defaults(func=_list)
    show = sub.add_parser("show", help="validate a scenario, load what it names, summarise it")
    show.add_argument("scenario", help="embedded name (e.g. default) or YAML path")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    for name in shipped_scenarios():
        print(name)
    return 0


def summarise(name_or_path: str) -> dict[str, Any]:
    """What a scenario resolves to: layers, action count, traces per family, profiles."""
    scenario = load_scenario(name_or_path)
    resolved = resolve_scenario(scenario)
    families = Counter(t.family for t in resolved.uplinks)
    out: dict[str, Any] = {
        "name": scenario.name,
        "description": scenario.description,
        "n_layers": resolved.n_layers,
        "n_actions": resolved.spec.layout.n_actions,
        "obs_dim": resolved.spec.obs_dim,
        "profiles": {
            "device": resolved.tiers.device.name,
            "edge": resolved.tiers.edge.name,
            "cloud": resolved.tiers.cloud.name,
        },
        "resolved_profiles": {
            tier: resolved_profile(scenario, tier) for tier in ("device", "edge", "cloud")
        },
        "traces": dict(sorted(families.items())),
        "workload": scenario.workload.source,
        "episode_requests": scenario.episode.requests,
    }
    if scenario.lite is not None:  # only scenarios with a device-lite model say anything
        out["lite"] = {
            **scenario.lite.model_dump(),
            "memory_layers": resolved.spec.lite_memory_layers,
        }
    return out


def resolved_profile(scenario: Scenario, tier: str) -> dict[str, Any]:
    """What the ``profiles.<tier>`` entry loaded: the file, its model, hardware and origin."""
    ref = getattr(scenario.profiles, tier)
    path = scenario.resolve_path(ref)
    where = str(path.resolve()) if path.suffix == ".json" else f"shipped profile {ref}"
    profile = load_profile(path if path.suffix == ".json" else ref)
    prov = profile.provenance
    return {
        "file": where,
        "model": profile.model.name,
        "layers": profile.n_layers,
        "hardware": profile.hardware,
        "kind": prov.kind,
        "shape": prov.shape_source
        or "not recorded (profile made before shapes were read from configs)",
        "made": prov.date,
    }


def _show(args: argparse.Namespace) -> int:
    summary = summarise(args.scenario)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    table = Table(title=f"scenario {summary['name']}", show_header=False)
    for key, value in summary.items():
        if key == "resolved_profiles":
            continue
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console = Console()
    console.print(table)
    console.print("[bold]profiles resolved to[/]")
    for tier, f in summary["resolved_profiles"].items():
        console.print(
            f"  {tier}: {f['file']} -> {f['model']} ({f['layers']} layers) on {f['hardware']}, "
            f"{f['kind']}, made {f['made']}; shape from {f['shape']}",
            highlight=False,
        )
    return 0
