"""The docstring examples of the modules listed here run as doctests.

A module is listed once its examples are self-contained: they import what they use
(beyond ``jax``, ``jnp`` and ``np``, which every example may take as given, and the
module's own names), build their own small inputs, use typed keys
(``jax.random.key(0)``), and print only what is deterministic. An example that needs
something a test cannot have (a prepared tensorflow-datasets directory) says
``# doctest: +SKIP`` on its lines. Add a module to ``MODULES`` when its examples are
made so, or to ``SLOW_MODULES`` when they take over a second or so on a CPU (they build
networks, run chains, draw figures, or compile many small ops eagerly): those run with the
``slow`` marker.

Examples run in a temporary working directory (the plotting examples write PNGs) with
temporary files under it, and compile with fewer XLA optimisations (``fast_compile``):
their printed numbers are rounded.
"""
import doctest
import importlib
import pathlib
import re
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.fast_compile  # the examples are mostly compilation

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ebm_jax"

MODULES = [
    "ebm_jax._checks",
    "ebm_jax.applications.tabular.encoding",
    "ebm_jax.applications.tabular.evaluation",
    "ebm_jax.applications.tabular.negatives",
    "ebm_jax.data.augment",
    "ebm_jax.data.cluster_toys",
    "ebm_jax.data.concepts",
    "ebm_jax.data.digits",
    "ebm_jax.data.files",
    "ebm_jax.data.procedural",
    "ebm_jax.data.regression",
    "ebm_jax.data.tfds_source",
    "ebm_jax.energies._base",
    "ebm_jax.environments.ball_fork",
    "ebm_jax.experiments.config",
    "ebm_jax.experiments.doctor",
    "ebm_jax.experiments.migration",
    "ebm_jax.experiments.objectives",
    "ebm_jax.experiments.objectives.cd",
    "ebm_jax.experiments.objectives.dsm",
    "ebm_jax.experiments.objectives.ebt",
    "ebm_jax.experiments.objectives.jem",
    "ebm_jax.experiments.objectives.nce",
    "ebm_jax.experiments.objectives.pgd_at",
    "ebm_jax.experiments.objectives.rl",
    "ebm_jax.experiments.objectives.softmax",
    "ebm_jax.experiments.objectives.ssm",
    "ebm_jax.experiments.objectives.trades",
    "ebm_jax.experiments.objectives.weat",
    "ebm_jax.experiments.objectives.world_model",
    "ebm_jax.experiments.presets",
    "ebm_jax.energies.analytic",
    "ebm_jax.inference.best_of_n",
    "ebm_jax.inference.density",
    "ebm_jax.inference.latent",
    "ebm_jax.inference.minimize",
    "ebm_jax.inference.prediction",
    "ebm_jax.inference.rank",
    "ebm_jax.losses.base",
    "ebm_jax.losses.classification",
    "ebm_jax.losses.concept_bottleneck",
    "ebm_jax.losses.ebt",
    "ebm_jax.losses.nce",
    "ebm_jax.losses.score_matching",
    "ebm_jax.losses.two_stage",
    "ebm_jax.metrics.classification",
    "ebm_jax.metrics.clustering",
    "ebm_jax.metrics.digit_classifier",
    "ebm_jax.metrics.digit_yardstick",
    "ebm_jax.metrics.ood",
    "ebm_jax.metrics.sample_quality",
    "ebm_jax.metrics.samples",
    "ebm_jax.nets.patch_conv",
    "ebm_jax.parallel.mesh",
    "ebm_jax.parallel.sharding",
    "ebm_jax.samplers.langevin",
    "ebm_jax.samplers.replay_buffer",
    "ebm_jax.samplers.schedules",
    "ebm_jax.train.checkpoint",
    "ebm_jax.train.compile_options",
    "ebm_jax.train.fit",
    "ebm_jax.train.guard",
    "ebm_jax.train.sharded",
    "ebm_jax.train.state",
    "ebm_jax.train.step",
]
# over a second each on 2 CPU cores: networks, chains, plots, or many eagerly compiled ops
SLOW_MODULES = [
    "ebm_jax.applications.concepts.bottleneck",
    "ebm_jax.applications.concepts.conditionals",
    "ebm_jax.applications.concepts.inference",
    "ebm_jax.applications.concepts.model",
    "ebm_jax.applications.conditional",
    "ebm_jax.applications.inpainting",
    "ebm_jax.applications.tabular.backends",
    "ebm_jax.applications.tabular.estimator",
    "ebm_jax.applications.tabular.generation",
    "ebm_jax.data.batching",
    "ebm_jax.data.ood",
    "ebm_jax.data.ood_pool",
    "ebm_jax.data.toy2d",
    "ebm_jax.energies.composition",
    "ebm_jax.energies.distributions",
    "ebm_jax.environments.reach",
    "ebm_jax.experiments",
    "ebm_jax.experiments.build",
    "ebm_jax.experiments.data",
    "ebm_jax.experiments.networks",
    "ebm_jax.experiments.objectives.ebt_policy",
    "ebm_jax.experiments.objectives._side_by_side",
    "ebm_jax.losses.adversarial",
    "ebm_jax.losses.contrastive_divergence",
    "ebm_jax.losses.ecbm",
    "ebm_jax.losses.gedi",
    "ebm_jax.losses.jem",
    "ebm_jax.losses.recovery_likelihood",
    "ebm_jax.metrics.ais",
    "ebm_jax.metrics.mmd",
    "ebm_jax.metrics.ood_scores",
    "ebm_jax.metrics.robustness",
    "ebm_jax.nets.adapters",
    "ebm_jax.nets.batch_norm",
    "ebm_jax.losses.batch_statistics",
    "ebm_jax.losses.dat",
    "ebm_jax.nets.conditioned",
    "ebm_jax.nets.conv",
    "ebm_jax.nets.flows",
    "ebm_jax.nets.mlp",
    "ebm_jax.nets.resnet",
    "ebm_jax.plots.clustering",
    "ebm_jax.plots.concepts",
    "ebm_jax.plots.diagnostics",
    "ebm_jax.plots.evaluation",
    "ebm_jax.plots.inference",
    "ebm_jax.plots.landscape",
    "ebm_jax.plots.sequences",
    "ebm_jax.plots.tabular",
    "ebm_jax.plots.trajectories",
    "ebm_jax.samplers.adaptation",
    "ebm_jax.samplers.annealed",
    "ebm_jax.samplers.base",
    "ebm_jax.samplers.blackjax_adapter",
    "ebm_jax.samplers.chain_starts",
    "ebm_jax.samplers.descent",
    "ebm_jax.samplers.diagnostics",
    "ebm_jax.samplers.hmc",
    "ebm_jax.samplers.mala",
    "ebm_jax.samplers.mass_matrix",
    "ebm_jax.samplers.recovery",
]
# A learning method's own modules (its loss, its objective) run without being listed: adding a
# method touches only its loss, its objective module, its tests and the README. Their examples
# must be self-contained like the listed ones; a slow one goes in SLOW_MODULES.
METHOD_PACKAGES = ("losses", "experiments/objectives")


def _method_modules() -> list[str]:
    found = []
    for folder in METHOD_PACKAGES:
        for path in sorted((PACKAGE / folder).glob("[!_]*.py")):
            name = "ebm_jax." + folder.replace("/", ".") + "." + path.stem
            if name not in SLOW_MODULES:
                found.append(name)
    return found


MODULES = sorted(set(MODULES) | set(_method_modules()))
GLOBS = {"jax": jax, "jnp": jnp, "np": np}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _doctests(module_name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(module_name)
    tests = doctest.DocTestFinder().find(module, module_name, extraglobs=GLOBS)
    return [t for t in tests if t.examples]


def _run(module_name: str) -> None:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for test in _doctests(module_name):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name, scratch):
    _run(module_name)


@pytest.mark.slow
@pytest.mark.parametrize("module_name", SLOW_MODULES)
def test_slower_docstring_examples_run(module_name, scratch):
    _run(module_name)


@pytest.mark.parametrize("module_name", MODULES + SLOW_MODULES)
def test_listed_modules_have_examples_with_typed_keys(module_name):
    """Every listed module shows at least one example, none with a raw ``PRNGKey``."""
    tests = _doctests(module_name)
    assert tests, f"{module_name} has no docstring examples: take it off the list"
    raw = [f"{t.name}: {e.source.strip()}" for t in tests for e in t.examples
           if re.search(r"\bPRNGKey\(", e.source)]
    assert raw == [], "use jax.random.key(...) in examples"


def test_the_lists_name_modules_of_the_package_once():
    names = MODULES + SLOW_MODULES
    assert len(set(names)) == len(names)
    for name in names:
        path = PACKAGE.parent / name.replace(".", "/")
        assert path.with_suffix(".py").exists() or (path / "__init__.py").exists(), \
            f"{name}: no such module"
