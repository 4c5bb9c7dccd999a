"""The tuned parameters: the shipped file loads, a missing or bad one is a one-line error."""

from __future__ import annotations

import json

import pytest

from offload_rl.cell_heuristics import make_cell_heuristic
from offload_rl.cell_heuristics.tuned import default_tuned_path, load_tuned_params
from offload_rl.errors import DataFileError
from offload_rl.scenario import load_scenario


def test_the_shipped_parameters_load_and_say_where_they_came_from():
    params = load_tuned_params()
    assert "tune_cell_heuristics.py" in params.command
    assert params.date and params.training["episodes"]
    assert params.training["episode_seed"] != 0  # never the evaluation's episodes
    assert all(0.0 <= p <= 1.0 for p in params.return_model.p_return)
    policy = make_cell_heuristic("greedy-externality", load_scenario("cell"))
    assert policy.price == params.externality.price  # type: ignore[attr-defined]


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(DataFileError) as err:
        make_cell_heuristic("greedy", load_scenario("cell"), missing)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["externality"].update(price=-1.0), "externality.price"),
        (lambda d: d.pop("lyapunov"), "lyapunov"),
        (lambda d: d["predictor"].update(estimator="median"), "predictor.estimator"),
        (lambda d: d["gdsf"].update(speed=3), "gdsf.speed: unknown key"),
    ],
)
def test_an_invalid_file_names_the_file_and_the_key(tmp_path, edit, expected):
    data = json.loads(default_tuned_path().read_text(encoding="utf-8"))
    edit(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataFileError) as err:
        load_tuned_params(bad)
    message = str(err.value)
    assert message.startswith(str(bad)) and expected in message and "\n" not in message


def test_a_file_that_is_not_json_names_the_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "command": "x",\n  oops\n}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match=r"bad\.json:3: not valid JSON"):
        load_tuned_params(bad)
