"""The ``gedi`` objective through the registry (presets ``gedi_moons``, ``gedi_circles``,
``gedi_digits``): the labelled 2-D sets, the config's checks, the loss it builds, and a tiny
run that trains, scores its clusters and resumes bit-exactly."""
import jax
import numpy as np
import pytest

from ebm_jax.experiments import ConfigError, build, initial_state, make_config, train
from ebm_jax.experiments.data import example_batch
from tests.experiments.tiny import assert_resumes_bit_exactly, tiny

pytestmark = pytest.mark.fast_compile


def test_presets_are_the_benchmarks_settings():
    circles = make_config("gedi_circles")
    assert circles.data.dataset == "circles" and circles.objective.warmup_steps == 1500
    assert circles.run.num_steps == 3000 and circles.model.hidden == (128, 128)
    digits = make_config("gedi_digits")
    assert digits.objective.generative_weight == 0.03 and digits.objective.max_shift == 1
    assert digits.run.num_steps == 6000


@pytest.mark.parametrize("preset,overrides,message", [
    ("gedi_moons", ["objective.num_clusters=1"], "objective.num_clusters=1"),
    ("gedi_moons", ["objective.divergence=js"], "objective.divergence='js'"),
    ("gedi_moons", ["model.kind=conv"], "model.kind='conv' with data.dataset='moons': "
                                        "expected 'mlp'"),
])
def test_a_bad_setting_names_the_field(preset, overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config(preset, overrides)
    assert message in str(error.value)


def test_a_dataset_without_classes_needs_num_clusters():
    with pytest.raises(ConfigError, match="objective.num_clusters=None with data.dataset="
                                          "'rings'"):
        build(make_config("gedi_moons", ["data.dataset=rings"]))
    exp = build(make_config("gedi_moons", ["data.dataset=rings", "objective.num_clusters=4",
                                           "model.hidden=8"]))
    assert jax.tree.leaves(exp.params)[-1].shape[-1] == 4


def test_the_config_builds_the_weights_and_the_warmup():
    exp = build(tiny("gedi_moons", "objective.warmup_steps=1", "objective.prior_weight=0.5",
                     "objective.num_steps=2"))
    batch = example_batch(exp.config, exp.data)
    state = initial_state(exp).loss_state
    step = jax.jit(exp.loss.loss)
    first, (state, info) = step(exp.params, state, batch, jax.random.key(0))
    assert float(info["prior/active"]) == 0.0      # warm-up: the generative term alone
    np.testing.assert_allclose(first, info["generative/loss"], rtol=1e-5)
    second, (_, info) = step(exp.params, state, batch, jax.random.key(1))
    assert float(info["prior/active"]) == 1.0
    np.testing.assert_allclose(second, info["generative/loss"] + info["invariance/loss"]
                               + 0.5 * info["prior/loss"], rtol=1e-5)


@pytest.mark.slow
def test_a_tiny_run_trains_scores_clusters_and_resumes_bit_exactly(tmp_path, capsys):
    workdir = tmp_path / "run"
    summary = train(tiny("gedi_circles", "run.num_steps=20", "objective.warmup_steps=10"),
                    str(workdir), progress=False, devices=1)
    assert summary["steps"] == 20
    assert 0.0 <= summary["nmi"] <= 1.0 and 0.0 <= summary["cluster_accuracy"] <= 1.0
    assert 0.5 <= summary["largest_cluster_share"] <= 1.0
    assert_resumes_bit_exactly(workdir, summary, capsys)
