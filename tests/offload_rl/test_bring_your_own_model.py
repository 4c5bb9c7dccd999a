"""From a config.json to an evaluation: the README's path, the shipped profiles, measured vs model.

The config is a tiny Mistral (sliding window 32 on every layer) so that every step is fast.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from offload_rl.cli import main
from offload_rl.compiled_profile import CompiledProfile
from offload_rl.model_config import load_arch
from offload_rl.model_shapes import get_arch
from offload_rl.profiles import Profile, load_profile
from offload_rl.roofline import HARDWARE, analytical_profile

SHIPPED = Path(__file__).resolve().parents[2] / "offload_rl" / "data" / "profiles"
TINY = {
    "model_type": "mistral",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_hidden_layers": 3,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "sliding_window": 32,
}


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in SHIPPED.glob("*.json") if not p.stem.endswith("cpu-2core"))
)
def test_shipped_analytical_profiles_regenerate_byte_for_byte(name: str) -> None:
    """Today's file vs one rebuilt from the shipped config: identical text once the rebuilt
    profile is given the file's date, its calibration note (the CPU check that
    make_default_profiles.py measured) and its library_versions."""
    text = (SHIPPED / f"{name}.json").read_text(encoding="utf-8")
    shipped = Profile.from_json(text, name)
    model, hardware = name.split("@")
    prov = shipped.provenance
    rebuilt = analytical_profile(
        get_arch(model), HARDWARE[hardware], calibration=prov.calibration, date=prov.date
    )
    assert rebuilt.provenance.library_versions["transformers"]  # recorded, not compared
    pinned = rebuilt.model_copy(
        update={
            "provenance": rebuilt.provenance.model_copy(
                update={"library_versions": prov.library_versions}
            )
        }
    )
    assert pinned.to_json() == text


def test_shipped_measured_profiles_load_with_the_config_shapes() -> None:
    for path in SHIPPED.glob("*@cpu-2core.json"):
        profile = Profile.load(path)
        assert profile.model == get_arch(profile.model.name).shape


def test_windowed_compiled_profile_agrees_with_the_profile(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY))
    profile = analytical_profile(load_arch(str(config)), HARDWARE["l4"])
    compiled = CompiledProfile.from_profile(profile)
    rng = random.Random(0)
    for _ in range(200):
        k0 = rng.randint(0, 3)
        k1 = rng.randint(k0, 3)
        tokens, cached, ctx, n = (rng.randint(1, 90) for _ in range(4))
        layers = profile.layers[k0:k1]
        want = sum(
            x.prefill_s(cached + tokens) - x.prefill_s(cached) + x.prefill.c0 for x in layers
        )
        assert compiled.layers_prefill_s(k0, k1, tokens, cached) == pytest.approx(want)
        want = sum(x.decode_s(ctx + i) for x in layers for i in range(n))
        assert compiled.layers_decode_s(k0, k1, n, ctx) == pytest.approx(want)
        assert compiled.edge_kv_bytes(k0, ctx) == profile.kv_bytes(k0, 3, ctx)


def test_measured_and_analytical_profiles_agree_in_shape(tmp_path: Path) -> None:
    from offload_rl.profiler import measure_profile

    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                **TINY,
                "layer_types": ["sliding_attention", "full_attention"] * 1 + ["sliding_attention"],
            }
        )
    )
    arch = load_arch(str(config))
    measured = measure_profile(
        arch,
        threads=1,
        lengths=(8, 40),
        contexts=(8, 64),
        repeats=1,
        warmup=0,
        measure_peaks=False,
        min_point_s=0.0,
    )
    model = analytical_profile(arch, HARDWARE["l4"])
    assert measured.n_layers == model.n_layers == 3
    assert measured.activation_bytes_per_token[1:] == [256] * 3  # fp32 hidden states
    assert model.activation_bytes_per_token[1:] == [128] * 3  # fp16 hidden states
    for m, a in zip(measured.layers, model.layers, strict=True):
        assert m.kv_bytes_per_token == 2 * a.kv_bytes_per_token  # same heads, 4 vs 2 bytes
        assert m.weight_bytes == 2 * a.weight_bytes
        assert m.window == a.window
    assert [x.window for x in measured.layers] == [32, None, 32]
    # the windowed decode was timed at the context it attends to (31), not at 64
    assert max(x for x, _ in measured.layers[0].samples["decode"]) == 31


def test_readme_path_config_to_evaluation(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    for hardware, out in (("sd8gen3-phone", "phone"), ("l4", "edge"), ("h100", "cloud")):
        assert (
            main(
                [
                    "profile",
                    "--model",
                    str(folder),
                    "--hardware",
                    hardware,
                    "--out",
                    str(tmp_path / f"{out}.json"),
                ]
            )
            == 0
        )
    (tmp_path / "my.yaml").write_text(
        "name: my-model\n"
        "profiles: {device: phone.json, edge: edge.json, cloud: cloud.json}\n"
        "network: {traces: ['synthetic:wifi'], synthetic_traces: 1, synthetic_duration_s: 120}\n"
    )
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "--scenario",
        str(tmp_path / "my.yaml"),
        "--policies",
        "local,edge,greedy",
        "--episodes",
        "1",
        "--requests",
        "8",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "greedy" in json.dumps(metrics)
    assert load_profile(tmp_path / "edge.json").model.name == "my-model"


def test_scenario_show_prints_what_profiles_resolved_to(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY))
    assert (
        main(
            [
                "profile",
                "--model",
                str(config),
                "--hardware",
                "l4",
                "--out",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    (tmp_path / "s.yaml").write_text(
        "name: s\nprofiles: {device: p.json, edge: p.json, cloud: p.json}\n"
        "network: {traces: ['synthetic:wifi'], synthetic_traces: 1, synthetic_duration_s: 60}\n"
    )
    capsys.readouterr()
    assert main(["scenario", "show", str(tmp_path / "s.yaml"), "--json"]) == 0
    resolved = json.loads(capsys.readouterr().out)["resolved_profiles"]
    assert resolved["edge"]["file"] == str((tmp_path / "p.json").resolve())
    assert resolved["edge"]["model"] == tmp_path.name
    assert resolved["edge"]["shape"].startswith(f"config.json {config.resolve()} (sha256 ")
    assert "sliding window 32 tokens on all layers" in resolved["edge"]["shape"]
