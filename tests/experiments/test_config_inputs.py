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
from ebm_jax.experiments import Config, ConfigError, load_config_file, make_config
from ebm_jax.experiments.config import RunConfig, field_names, field_types


def _leaf_hints(cls, prefix=""):
    """``{dotted field: type}`` of every leaf field of a config section class."""
    hints = {}
    for name, hint in field_types(cls).items():
        if dataclasses.is_dataclass(hint):
            hints.update(_leaf_hints(hint, prefix + name + "."))
        else:
            hints[prefix + name] = hint
    return hints


def _objective_classes():
    from ebm_jax.experiments.objectives import get_objective, objective_kinds

    return {kind: get_objective(kind).config for kind in objective_kinds()}


# Every leaf field of every objective (as "objective.<field>" with its kind) and section.
HINTS = {name: (None, hint) for name, hint in _leaf_hints(Config).items()
         if not name.startswith("objective")}
for _kind, _cls in _objective_classes().items():
    HINTS.update({f"objective.{name}@{_kind}": (_kind, hint)
                  for name, hint in _leaf_hints(_cls).items()})
FIELDS = sorted(HINTS)
TRIED = {"cases": 0}


def _nested(dotted: str, value):
    """``{"a": {"b": value}}`` for ``"a.b"``; an objective field brings its kind."""
    name, _, kind = dotted.partition("@")
    parts = name.split(".")
    out = node = {}
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    if kind:
        out["objective"]["kind"] = kind
    return out


def _run(argv, tmp_path, capsys):
    TRIED["cases"] += 1
    code = cli.main(argv + ["--workdir", str(tmp_path / "never_written")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("ebm-jax: error: "), lines
    assert not (tmp_path / "never_written").exists()  # refused before anything was written
    return lines[0]


MALFORMED_FILES = {
    "truncated": ('{"run": {"num_steps": 10, "hidden": [32', "is not valid JSON (line 1, column"),
    "trailing comma": ('{"run": {"num_steps": 10,}}', "is not valid JSON"),
    "a list": ("[1, 2, 3]", "holds a list: expected a JSON object"),
    "a string": ('"jem_digits"', "holds a str: expected a JSON object"),
    "empty": ("", "is not valid JSON (line 1, column 1"),
    "binary": (b"\xff\xfe\x00garbage", "cannot be read"),
    "unknown key": ('{"colour": "blue"}', "unknown config keys ['colour']"),
    "unknown nested key": ('{"run": {"colour": "blue"}}', "unknown config keys ['run.colour']"),
    "a section that is not an object": ('{"run": 3}', "run=3: expected an object of RunConfig"),
    "unknown objective": ('{"objective": {"kind": "gan"}}', "objective='gan': expected one of"),
    "wrong type": ('{"run": {"num_steps": "ten"}}', "run.num_steps='ten': expected an int"),
    "null for an int": ('{"data": {"batch_size": null}}',
                        "data.batch_size=None: expected an int"),
    "nested object": ('{"model": {"hidden": {"a": 1}}}',
                      "model.hidden={'a': 1}: expected a comma-separated list"),
    "out of range": ('{"objective": {"kind": "cd", "chain_start": {"reinit_prob": 1.5}}}',
                     "objective.chain_start.reinit_prob=1.5: expected a probability"),
    "not finite": ('{"optimizer": {"learning_rate": Infinity}}',
                   "optimizer.learning_rate=inf: expected a finite number"),
    "NaN": ('{"objective": {"sampler": {"step_size": NaN}}}',
            "objective.sampler.step_size=nan: expected"),
    "bool for an int": ('{"run": {"num_steps": true}}', "run.num_steps=True: expected an int"),
    "inconsistent": ('{"data": {"dataset": "rings"}, "objective": {"kind": "jem"}}',
                     "objective='jem' with data.dataset='rings'"),
    "flat 0.1, wrong type": ('{"num_steps": "ten"}', "run.num_steps='ten': expected an int"),
    "flat 0.1, out of range": ('{"reinit_prob": 1.5}',
                               "objective.chain_start.reinit_prob=1.5: expected a probability"),
    "flat 0.1, unknown key": ('{"num_steps": 3, "colour": "blue"}',
                              "unknown config keys ['colour']"),
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
    config = Config(run=RunConfig(num_steps=7))
    path.write_text(json.dumps(config.to_dict()))
    assert load_config_file(str(path)) == config


def test_every_leaf_field_is_tried():
    names = {n.partition("@")[0] for n in FIELDS}
    for cls in _objective_classes().values():
        config = dataclasses.replace(Config(), objective=cls())
        assert set(field_names(config)) - {"objective"} <= names


def _wrong_values(name):
    """Values of the wrong type, or out of range, for field ``name``."""
    hint = HINTS[name][1]
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


@pytest.mark.slow
@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_field_with_a_wrong_value_names_that_field(tmp_path, capsys, data):
    name = data.draw(st.sampled_from(FIELDS))
    value = data.draw(st.sampled_from(_wrong_values(name)))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_nested(name, value)))
    line = _run(["train", "--config", str(path)], tmp_path, capsys)
    dotted = name.partition("@")[0]
    assert f"{dotted}=" in line or (dotted == "name" and "name=" in line), (name, value, line)


def _start_for(kind: str) -> tuple[str, list[str]]:
    """``(preset, overrides)`` that select objective ``kind``: ``jem_digits`` switched to it,
    or, for an objective that needs data of its own (the world model's frames, the policy's
    demonstrations), the objective's first preset."""
    if not kind:
        return "jem_digits", []
    try:
        make_config("jem_digits", [f"objective={kind}"])
        return "jem_digits", [f"objective={kind}"]
    except ConfigError:
        from ebm_jax.experiments.objectives import get_objective

        return next(iter(get_objective(kind).presets)), []


@pytest.mark.slow
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(FIELDS),
       text=st.sampled_from(["", "nan", "-inf", "1e400", "abc", "1,2,x", "-1", "0", "--", " "]))
def test_set_overrides_with_bad_text_name_the_field(tmp_path, capsys, name, text):
    dotted, _, kind = name.partition("@")
    preset, switch = _start_for(kind)
    try:
        make_config(preset, switch + [f"{dotted}={text}"])
    except ConfigError:
        argv = ["train", "--config", preset] + [a for s in switch for a in ("--set", s)]
        line = _run(argv + ["--set", f"{dotted}={text}"], tmp_path, capsys)
        assert dotted in line, line
    # Some texts are valid for some fields (name="" for a string, seed=0): those must load.


@pytest.mark.totals
def test_count_of_cases_tried():
    """Runs last in this file (pytest keeps file order): the figure the README quotes."""
    assert TRIED["cases"] >= 150, TRIED
    print(f"\nconfig inputs tried: {TRIED['cases']} cases")
