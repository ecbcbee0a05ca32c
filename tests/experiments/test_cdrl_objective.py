"""The ``cdrl`` objective through the registry: the config's checks; both networks and both
optimizer states in one TrainState; the initializer starting as the identity of the rescaled
sample; a tiny run that trains, draws proposals beside refinements and resumes bit-exactly."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.experiments import ConfigError, build, initial_state, make_config, train
from tests.experiments.tiny import assert_resumes_bit_exactly, run_records, tiny

pytestmark = pytest.mark.fast_compile


def tiny_cdrl(*extra):
    return tiny("cdrl_2d_rings", "data.batch_size=48", "objective.initializer_hidden=16",
                *extra)


@pytest.mark.parametrize("overrides, message", [
    (["data.batch_size=100"], "data.batch_size=100: expected a multiple of objective.num_levels"),
    (["objective.num_langevin_steps=0"], "objective.num_langevin_steps=0"),
    (["objective.step_scale=0"], "objective.step_scale=0"),
    (["objective.sample_langevin_steps=-2"], "objective.sample_langevin_steps=-2"),
])
def test_a_bad_setting_names_the_field(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("cdrl_2d_rings", overrides)
    assert message in str(error.value)


def test_one_train_state_holds_both_networks_and_both_optimizer_states():
    exp = build(tiny_cdrl())
    state = initial_state(exp)
    assert sorted(state.params) == ["energy", "initializer"]
    inner = state.opt_state
    while not hasattr(inner, "inner_states"):      # through the rollback's lr multiplier
        inner = inner.inner_state if hasattr(inner, "inner_state") else inner[0]
    assert sorted(inner.inner_states) == ["energy", "initializer"]
    # the initializer's head starts at zero: its proposal mean is x_next / a_t
    head = state.params["initializer"]["head"]["linear"]["kernel"]
    assert float(jnp.abs(head).max()) == 0.0


@pytest.mark.slow
def test_a_tiny_run_trains_draws_levels_and_resumes_bit_exactly(tmp_path, capsys):
    workdir = tmp_path / "run"
    config = tiny_cdrl("run.num_steps=20")
    summary = train(config, str(workdir), progress=False)
    for key in ("kl_nats", "mmd"):
        assert np.isfinite(summary[key]), key
    assert os.path.getsize(workdir / "predictions.png") > 1000   # proposals | refinements
    records = run_records(workdir)
    assert not [r for r in records if r.get("event") == "rollback"]
    assert all(np.isfinite(r["initializer_loss"]) for r in records if "initializer_loss" in r)
    assert_resumes_bit_exactly(workdir, summary, capsys)


def test_generation_with_no_refinement_is_the_initializer_alone():
    exp = build(tiny_cdrl("objective.sample_langevin_steps=0", "objective.tweedie=false"))
    state = initial_state(exp)
    samples = jax.jit(exp.generate, static_argnums=2)(jax.random.key(0), state.params, 16)
    assert samples.shape == (16, 2) and bool(jnp.all(jnp.isfinite(samples)))
