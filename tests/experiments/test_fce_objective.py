"""The ``fce`` objective through the registry: NCE's network, data and batch; the config's
checks; both networks and both optimizer states in one TrainState; a tiny run that trains,
draws the flow beside the EBM and resumes bit-exactly."""
import os

import jax
import numpy as np
import pytest

from ebm_jax.experiments import ConfigError, build, initial_state, make_config, train
from tests.experiments.tiny import assert_resumes_bit_exactly, run_records, tiny

pytestmark = pytest.mark.fast_compile


@pytest.mark.parametrize("toy", ["8gaussians", "rings", "checkerboard", "two_spirals"])
def test_the_toy_presets_have_nce_s_network_data_and_batch(toy):
    config, base = make_config(f"fce_2d_{toy}"), make_config(f"nce_2d_{toy}")
    assert (config.model, config.optimizer, config.data) == \
        (base.model, base.optimizer, base.data)
    assert config.run.num_steps == base.run.num_steps                # NCE's budget
    assert config.objective.flow == "realnvp" and config.objective.threshold == 0.6


@pytest.mark.parametrize("overrides, message", [
    (["objective.threshold=1"], "objective.threshold=1.0: expected an accuracy in [0, 1)"),
    (["objective.flow=maf"], "objective.flow='maf'"),
    (["objective.flow_bins=1"], "objective.flow_bins=1"),
    (["objective.flow_likelihood_weight=-1"], "objective.flow_likelihood_weight=-1.0"),
])
def test_a_bad_setting_names_the_field(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("fce_2d_rings", overrides)
    assert message in str(error.value)


def test_one_train_state_holds_both_networks_and_both_optimizer_states():
    exp = build(tiny("fce_2d_rings", "objective.flow_layers=1", "objective.flow_hidden=8"))
    state = initial_state(exp)
    assert sorted(state.params) == ["energy", "flow", "log_z"]
    inner = state.opt_state
    while not hasattr(inner, "inner_states"):      # through the rollback's lr multiplier
        inner = inner.inner_state if hasattr(inner, "inner_state") else inner[0]
    assert sorted(inner.inner_states) == ["ebm", "flow"]
    flow_adam = inner.inner_states["flow"].inner_state.inner_opt_state
    # the flow's Adam moments: one per flow parameter (the EBM's entries masked out)
    assert jax.tree.structure(flow_adam[0].mu["flow"]) == \
        jax.tree.structure(state.params["flow"])
    assert len(jax.tree.leaves(flow_adam[0].mu)) == len(jax.tree.leaves(state.params["flow"]))


@pytest.mark.slow
def test_a_tiny_run_trains_draws_the_flow_and_resumes_bit_exactly(tmp_path, capsys):
    workdir = tmp_path / "run"
    config = tiny("fce_2d_8gaussians", "run.num_steps=20", "objective.flow_layers=1",
                  "objective.flow_hidden=8", "objective.threshold=0")
    summary = train(config, str(workdir), progress=False, devices=1)
    for key in ("kl_nats", "flow_kl_nats", "log_z_quadrature"):
        assert np.isfinite(summary[key]), key
    assert os.path.getsize(workdir / "predictions.png") > 1000   # true | flow | EBM
    records = run_records(workdir)
    assert not [r for r in records if r.get("event") == "rollback"]
    moved = [r["flow_updated"] for r in records if "flow_updated" in r]
    assert moved and min(moved) == 1.0                           # threshold 0: every step
    assert all(np.isfinite(r["minus_value"]) for r in records if "minus_value" in r)
    assert_resumes_bit_exactly(workdir, summary, capsys)
