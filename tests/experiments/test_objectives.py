"""The objective registry: one module per method, found by name; no objective name compared
anywhere else; a new method is one new module (the guide's example, trained here)."""
import ast
import dataclasses
import pathlib
import re
import sys

import jax
import numpy as np
import pytest

from ebm_jax.experiments import objectives
from ebm_jax.experiments.config import ConfigError, ObjectiveConfig
from ebm_jax.experiments.objectives import Objective, get_objective, objective_kinds
from ebm_jax.experiments.presets import PRESETS, make_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
OBJECTIVE_DIR = ROOT / "ebm_jax" / "experiments" / "objectives"


def test_every_module_of_the_package_is_one_registered_objective():
    modules = sorted(p.stem for p in OBJECTIVE_DIR.glob("*.py") if not p.stem.startswith("_"))
    kinds = objective_kinds()
    # one module, one kind (a new method's module registers itself: nothing here names it)
    assert modules == list(kinds)
    assert {"jem", "softmax", "cd", "nce", "dsm", "ssm", "rl", "ebt", "ebt_policy",
            "world_model", "pgd_at", "trades", "weat", "dat", "meco", "hdge"} <= set(kinds)
    classifiers = ("jem", "softmax", "pgd_at", "trades", "weat", "dat", "hdge", "ecbm", "cbm")
    conditional = ("ebt", "ebt_policy", "world_model")
    for kind in kinds:
        objective = get_objective(kind)
        assert isinstance(objective, Objective) and objective.config.kind == kind
        assert issubclass(objective.config, ObjectiveConfig)
        assert objective.config.__dataclass_params__.frozen
        assert objective.classifier == (kind in classifiers)
        # EBT, EBT-Policy and the world model (EBTs of an action chunk and of the next
        # frame) learn a conditional energy E(x, y) from (input, target) pairs: neither a
        # density of x (unsupervised) nor a user of class labels.
        assert objective.density == (kind not in conditional)
        assert objective.regression == (kind in conditional)
        if objective.density:
            assert objective.unsupervised == (not objective.needs_labels)
        else:
            assert not objective.unsupervised and not objective.needs_labels


def test_presets_of_an_objective_hold_that_objective():
    for kind in objective_kinds():
        for name, config in get_objective(kind).presets.items():
            assert PRESETS[name] is config and config.objective.kind == kind


def test_an_unknown_kind_names_the_registered_ones():
    with pytest.raises(ConfigError) as error:
        get_objective("gan")
    assert f"objective='gan': expected one of {sorted(objective_kinds())}" in str(error.value)


def _compared_strings(tree: ast.AST):
    """(line, string) of every string constant compared with ==, !=, in, not in, or matched
    in a ``case``."""
    def strings(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            for element in node.elts:
                yield from strings(element)

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            for side in [node.left, *node.comparators]:
                for value in strings(side):
                    yield node.lineno, value
        elif isinstance(node, ast.MatchValue):
            for value in strings(node.value):
                yield node.lineno, value


def _python_files():
    for folder in ("ebm_jax", "benchmarks", "notebooks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if OBJECTIVE_DIR not in path.parents:
                yield path


def test_objective_names_are_compared_only_inside_the_registry():
    kinds = set(objective_kinds())
    found = []
    for path in _python_files():
        for line, value in _compared_strings(ast.parse(path.read_text())):
            if value in kinds:
                found.append(f"{path.relative_to(ROOT)}:{line} compares {value!r}")
    assert not found, "\n".join(found)


def test_the_scan_finds_a_comparison_when_there_is_one():
    tree = ast.parse("if config.objective.kind == 'cd' or kind in ('rl', 'x'):\n    pass\n"
                     "match kind:\n    case 'nce':\n        pass\n")
    assert sorted(v for _, v in _compared_strings(tree)) == ["cd", "nce", "rl", "x"]


def _guide_example() -> str:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    block = re.search(r"<!-- objective-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "CONTRIBUTING.md lost its objective example"
    return block.group(1)


@pytest.fixture
def guide_objective(tmp_path, monkeypatch):
    """The guide's example module, installed as one more file of the objectives package."""
    folder = tmp_path / "more_objectives"
    folder.mkdir()
    (folder / "msdsm.py").write_text(_guide_example())
    monkeypatch.setattr(objectives, "__path__", [*objectives.__path__, str(folder)])
    monkeypatch.setattr(objectives, "_REGISTRY", {})
    yield
    sys.modules.pop("ebm_jax.experiments.objectives.msdsm", None)


@pytest.mark.slow
@pytest.mark.fast_compile
@pytest.mark.usefixtures("guide_objective")
def test_the_guides_new_objective_needs_no_other_file(tmp_path):
    from ebm_jax.experiments import build, initial_state
    from ebm_jax.train import make_train_step

    assert "msdsm" in objective_kinds()
    config = make_config("cd_2d_8gaussians", ["objective=msdsm", "objective.sigmas=0.1,0.3",
                                              "model.hidden=16", "data.batch_size=32"])
    assert config.objective.sigmas == (0.1, 0.3)
    with pytest.raises(ConfigError, match=r"objective.sigmas=\(\): expected a non-empty list"):
        make_config("cd_2d_8gaussians", ["objective=msdsm", "objective.sigmas="])
    preset = get_objective("msdsm").presets["msdsm_2d_rings"]
    assert preset.objective.kind == "msdsm" and preset.data.dataset == "rings"
    exp = build(config)
    state = initial_state(exp)
    step = jax.jit(make_train_step(exp.loss, exp.optimizer))
    batch = {"x": exp.data.x_train[:32]}
    state, metrics = step(state, batch)
    state, metrics = step(state, batch)
    assert int(state.step) == 2 and np.isfinite(float(metrics["loss"]))
    assert exp.generate(jax.random.key(0), state.params, 3).shape == (3, 2)


def test_objective_configs_mirror_their_sections():
    """Every objective that samples x (a density: its energy_fn(params, x) models the data)
    nests the sampler settings; the section types are shared. An objective that is not a
    density (EBT) draws no samples of x: its descent on y is part of its loss, set by the
    loss's own fields (num_steps, mode, step_size, ...), so it has no sampler section, and
    none of the pieces that sample."""
    from ebm_jax.experiments.sampling import LangevinConfig

    densities = [k for k in objective_kinds() if get_objective(k).density]
    assert {"jem", "cd", "nce", "meco", "hdge"} <= set(densities)
    for kind in objective_kinds():
        fields = {f.name: f.type for f in dataclasses.fields(get_objective(kind).config)}
        if kind in densities:
            assert "sampler" in fields, kind
            assert get_objective(kind).config().sampler.__class__ is LangevinConfig
        else:
            assert "sampler" not in fields and "num_steps" in fields, kind
