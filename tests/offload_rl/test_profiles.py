"""Profile schema: round trip, validation errors that name file and field, shipped profiles."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.errors import ConfigError, DataFileError
from offload_rl.model_shapes import get_shape
from offload_rl.profiles import (
    SCHEMA_VERSION,
    DecodeFit,
    PrefillFit,
    Profile,
    activation_bytes_per_token,
    kv_bytes_per_token,
    load_profile,
    shipped_profiles,
)
from offload_rl.roofline import HARDWARE, analytical_profile

MODELS = ("gpt2", "qwen2.5-0.5b", "llama-3.2-1b")
TIERS = ("cpu-2core", "sd8gen3-phone", "jetson-orin-nano", "l4", "h100")


def _profile(model: str = "qwen2.5-0.5b", hw: str = "l4") -> Profile:
    return analytical_profile(get_shape(model), HARDWARE[hw], date="2026-01-01")


def _write_modified(tmp_path, mutate) -> str:
    raw = json.loads(_profile().to_json())
    mutate(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    return str(path)


def test_round_trip(tmp_path):
    profile = _profile()
    path = tmp_path / "p.json"
    profile.save(path)
    again = Profile.load(path)
    assert again == profile
    assert again.n_layers == 24
    assert load_profile(path) == profile
    assert load_profile(str(path)) == profile


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(min_value=0, max_value=10, allow_nan=False, allow_infinity=False),
        min_size=5,
        max_size=5,
    )
)
def test_round_trip_keeps_every_coefficient_exactly(coefs):
    base = _profile("gpt2")
    layer = base.layers[0].model_copy(
        update={
            "prefill": PrefillFit(c0=coefs[0], c1=coefs[1], c2=coefs[2]),
            "decode": DecodeFit(c0=coefs[3], c1=coefs[4]),
        }
    )
    profile = base.model_copy(update={"layers": [layer] * base.n_layers})
    again = Profile.from_json(profile.to_json(), "memory")
    assert again.layers[5].prefill == layer.prefill
    assert again.layers[5].decode == layer.decode


def test_negative_coefficient_names_file_and_field(tmp_path):
    def mutate(raw):
        raw["layers"][3]["prefill"]["c1"] = -1.0

    path = _write_modified(tmp_path, mutate)
    with pytest.raises(DataFileError) as err:
        Profile.load(path)
    message = str(err.value)
    assert path in message
    assert "layers.3.prefill.c1" in message
    assert "\n" not in message


def test_nan_coefficient_is_refused(tmp_path):
    raw = json.loads(_profile().to_json())
    raw["head"]["prefill"]["c2"] = float("nan")
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(raw))  # json.dumps writes NaN, as a careless tool would
    with pytest.raises(DataFileError, match=r"head\.prefill\.c2"):
        Profile.load(path)


def test_wrong_layer_count_and_activation_length(tmp_path):
    path = _write_modified(tmp_path, lambda raw: raw["layers"].pop())
    with pytest.raises(DataFileError, match="layers has 23 entries"):
        Profile.load(path)
    path = _write_modified(tmp_path, lambda raw: raw["activation_bytes_per_token"].pop())
    with pytest.raises(DataFileError, match="activation_bytes_per_token"):
        Profile.load(path)


def test_unknown_key_missing_field_and_schema_version(tmp_path):
    path = _write_modified(tmp_path, lambda raw: raw["provenance"].update(typo=1))
    with pytest.raises(DataFileError, match=r"provenance\.typo"):
        Profile.load(path)
    path = _write_modified(tmp_path, lambda raw: raw["model"].pop("d_model"))
    with pytest.raises(DataFileError, match=r"model\.d_model"):
        Profile.load(path)
    path = _write_modified(tmp_path, lambda raw: raw.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(DataFileError, match="schema_version"):
        Profile.load(path)


def test_kv_only_in_decoder_layers(tmp_path):
    path = _write_modified(tmp_path, lambda raw: raw["head"].update(kv_bytes_per_token=8))
    with pytest.raises(DataFileError, match="kv_bytes_per_token must be 0"):
        Profile.load(path)


def test_matmul_params_only_in_decoder_layers(tmp_path):
    path = _write_modified(tmp_path, lambda raw: raw["embedding"].update(matmul_params=8))
    with pytest.raises(DataFileError, match="matmul_params is counted for decoder layers"):
        Profile.load(path)


def test_a_file_without_matmul_params_loads_and_is_written_back_without_it(tmp_path):
    """Files from before the field (every measured one, users' old ones) keep their text."""
    path = _write_modified(
        tmp_path, lambda raw: [layer.pop("matmul_params") for layer in raw["layers"]]
    )
    old = Profile.load(path)
    assert all(layer.matmul_params is None for layer in old.layers)
    assert "matmul_params" not in old.to_json()
    assert _profile().layers[0].matmul_params == 14909440  # q, k, v, o + SwiGLU MLP of 0.5B


def test_bad_json_and_missing_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n "schema_version": 1,\n oops\n}')
    with pytest.raises(DataFileError) as err:
        Profile.load(path)
    assert err.value.line == 3
    assert f"{path}:3" in str(err.value)
    with pytest.raises(DataFileError, match="no such profile file"):
        load_profile(tmp_path / "absent.json")


def test_save_refuses_to_write_into_missing_directory(tmp_path):
    with pytest.raises(DataFileError, match="cannot write"):
        _profile().save(tmp_path / "no" / "such" / "dir.json")


def test_kv_bytes_formula():
    qwen = get_shape("qwen2.5-0.5b")
    llama = get_shape("llama-3.2-1b")
    gpt2 = get_shape("gpt2")
    assert kv_bytes_per_token(qwen, 2) == 2 * 2 * 64 * 2
    assert kv_bytes_per_token(llama, 2) == 2 * 8 * 64 * 2
    assert kv_bytes_per_token(gpt2, 4) == 2 * 12 * 64 * 4
    profile = _profile("llama-3.2-1b", "h100")
    assert all(layer.kv_bytes_per_token == 2048 for layer in profile.layers)
    assert profile.embedding.kv_bytes_per_token == profile.head.kv_bytes_per_token == 0
    assert profile.kv_bytes_per_token(0, 16) == 16 * 2048


def test_activation_bytes():
    shape = get_shape("qwen2.5-0.5b")
    sizes = activation_bytes_per_token(shape, 2)
    assert len(sizes) == shape.n_layers + 1
    assert sizes[0] == 4
    assert set(sizes[1:]) == {896 * 2}


def test_prefill_and_decode_sums():
    profile = _profile()
    layer = profile.layers[0]
    assert profile.prefill_s(0, 24, 100) == pytest.approx(24 * layer.prefill_s(100))
    assert profile.prefill_s(3, 10, 100) == pytest.approx(7 * layer.prefill_s(100))
    assert profile.decode_s(0, 24, 512) == pytest.approx(24 * layer.decode_s(512))
    assert profile.prefill_s(5, 5, 100) == 0.0
    p = layer.prefill
    assert layer.prefill_s(10) == pytest.approx(p.c0 + p.c1 * 10 + p.c2 * 100)
    assert profile.weight_bytes(0, 24) == 24 * layer.weight_bytes
    with pytest.raises(ValueError):
        profile.prefill_s(0, 25, 10)
    with pytest.raises(ValueError):
        profile.decode_s(4, 3, 10)


def test_shipped_profiles_cover_models_and_tiers():
    names = set(shipped_profiles())
    for model in MODELS:
        for tier in TIERS:
            assert f"{model}@{tier}" in names


@pytest.mark.parametrize("name", shipped_profiles())
def test_every_shipped_profile_loads(name):
    profile = load_profile(name)
    model, hardware = name.split("@")
    assert profile.model.name == model
    assert profile.hardware == hardware
    assert profile.provenance.kind == ("measured" if hardware == "cpu-2core" else "analytical")
    assert len(profile.layers) == profile.model.n_layers
    for layer in (profile.embedding, *profile.layers, profile.head):
        for c in (*layer.prefill.model_dump().values(), *layer.decode.model_dump().values()):
            assert math.isfinite(c) and c >= 0
    # prefill of the whole model grows with tokens
    n = profile.n_layers
    assert profile.prefill_s(0, n, 1024) > profile.prefill_s(0, n, 16) > 0
    if profile.provenance.kind == "analytical":
        assert profile.provenance.calibration
        assert profile.provenance.eff_prefill is not None


def test_unknown_shipped_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError) as err:
        load_profile("gpt2@toaster")
    message = str(err.value)
    assert "gpt2@toaster" in message
    for name in shipped_profiles()[:3]:
        assert name in message
