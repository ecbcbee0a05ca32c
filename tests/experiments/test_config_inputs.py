"""The CLI and the config loader, tried with malformed files and values on purpose.

Every case must end with exit status 2 and exactly one line on stderr that names the
problem (the field, or the file and what is wrong with it), before any compute.
"""
import dataclasses
import json
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebm_jax import cli
from ebm_jax.config import Config, ConfigError, load_config_file

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
HINTS = typing.get_type_hints(Config)
TRIED = {"cases": 0}


def _run(argv, tmp_path, capsys):
    TRIED["cases"] += 1
    code = cli.main(argv + ["--workdir", str(tmp_path / "never_written")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("ebm-jax: error: "), lines
    assert not (tmp_path / "never_written").exists()  # refused before anything was written
    return lines[0]


MALFORMED_FILES = {
    "truncated": ('{"num_steps": 10, "hidden": [32', "is not valid JSON (line 1, column"),
    "trailing comma": ('{"num_steps": 10,}', "is not valid JSON"),
    "a list": ("[1, 2, 3]", "holds a list: expected a JSON object"),
    "a string": ('"jem_digits"', "holds a str: expected a JSON object"),
    "empty": ("", "is not valid JSON (line 1, column 1"),
    "binary": (b"\xff\xfe\x00garbage", "cannot be read"),
    "unknown key": ('{"colour": "blue"}', "unknown config keys ['colour']"),
    "wrong type": ('{"num_steps": "ten"}', "num_steps='ten': expected an int"),
    "null for an int": ('{"batch_size": null}', "batch_size=None: expected an int"),
    "nested object": ('{"hidden": {"a": 1}}', "hidden={'a': 1}: expected a comma-separated list"),
    "out of range": ('{"reinit_prob": 1.5}', "reinit_prob=1.5: expected a probability"),
    "not finite": ('{"learning_rate": Infinity}', "learning_rate=inf: expected a finite number"),
    "NaN": ('{"sgld_step_size": NaN}', "sgld_step_size=nan: expected"),
    "bool for an int": ('{"num_steps": true}', "num_steps=True: expected an int"),
    "inconsistent": ('{"dataset": "rings", "objective": "jem"}', "objective='jem' with dataset='rings'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_FILES))
def test_malformed_config_file_is_one_clear_line(tmp_path, capsys, case):
    content, message = MALFORMED_FILES[case]
    path = tmp_path / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    line = _run(["train", "--config", str(path)], tmp_path, capsys)
    assert message in line, line


def test_missing_config_file(tmp_path, capsys):
    line = _run(["train", "--config", str(tmp_path / "nope.json")], tmp_path, capsys)
    assert "config file" in line and "does not exist" in line


def test_a_runs_config_json_loads_back(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(Config(num_steps=7).to_dict()))
    assert load_config_file(str(path)) == Config(num_steps=7)


def _wrong_values(name):
    """Values of the wrong type, or out of range, for field ``name``."""
    hint = HINTS[name]
    optional = typing.get_origin(hint) is typing.Union
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    wrong = [{"a": 1}, [[1]]]
    if base in (int, float):
        wrong += ["12", True]
    if base is int:
        wrong += [1.5]
    if base is str:
        wrong += [3, 2.5, False]
    if base is bool:
        wrong += ["yes", 1]
    if typing.get_origin(base) is tuple:
        wrong += [5, ["a"]]
    if not optional:
        wrong += [None]
    return wrong


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_field_with_a_wrong_value_names_that_field(tmp_path, capsys, data):
    name = data.draw(st.sampled_from(sorted(FIELDS)))
    value = data.draw(st.sampled_from(_wrong_values(name)))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({name: value}))
    line = _run(["train", "--config", str(path)], tmp_path, capsys)
    assert f"{name}=" in line, (name, value, line)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(FIELDS)),
       text=st.sampled_from(["", "nan", "-inf", "1e400", "abc", "1,2,x", "-1", "0", "--", " "]))
def test_set_overrides_with_bad_text_name_the_field(tmp_path, capsys, name, text):
    try:
        from ebm_jax.config import make_config

        make_config("jem_digits", [f"{name}={text}"])
    except ConfigError:
        line = _run(["train", "--set", f"{name}={text}"], tmp_path, capsys)
        assert name in line, line
    # Some texts are valid for some fields (name="" for a string, seed=0): those must load.


@pytest.mark.totals
def test_count_of_cases_tried():
    """Runs last in this file (pytest keeps file order): the figure the README quotes."""
    assert TRIED["cases"] >= 150, TRIED
    print(f"\nconfig inputs tried: {TRIED['cases']} cases")
