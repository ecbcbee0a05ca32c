"""Several train steps per call of the compiled program (``run.steps_per_call``): the same
steps, batches, logs, checkpoints and rollbacks as one step per call, to float rounding."""
import numpy as np
import pytest

import jax

from ebm_jax.experiments import ConfigError, build, initial_state
from ebm_jax.experiments.run import device_mesh, experiment_train_step, global_batches
from ebm_jax.train import fit, shard_state, sharded_train_step
from tests.experiments.tiny import tiny

STEPS = 20


def _fit(per_call: int):
    config = tiny("jem_digits", f"run.num_steps={STEPS}", f"run.steps_per_call={per_call}")
    mesh = device_mesh(config, 1)
    exp = build(config, num_devices=1)
    state = shard_state(initial_state(exp), mesh)
    step = sharded_train_step(experiment_train_step(exp), mesh, state, steps_per_call=per_call)
    state, history = fit(step, state, global_batches(exp, mesh, 0, per_call), STEPS,
                         log_every=config.run.log_every, progress=False,
                         restart_batches=lambda s: global_batches(exp, mesh, s, per_call))
    return jax.device_get(state), history


@pytest.mark.slow
def test_five_steps_per_call_take_the_same_twenty_steps():
    """Same step count, log records at the same steps with the same means, same parameters
    (to rounding: the scanned program is compiled as a loop). A loop that counted calls as
    steps, or a scan that ran fewer steps, moves all three."""
    one, one_history = _fit(1)
    five, five_history = _fit(5)
    assert int(one.step) == int(five.step) == STEPS
    assert [r["step"] for r in five_history] == [r["step"] for r in one_history] == [5, 10, 15, 20]
    for a, b in zip(one_history, five_history):
        assert a.keys() == b.keys()
        for key in a:
            if key not in ("step", "steps_per_s"):
                assert np.isclose(a[key], b[key], rtol=1e-4, atol=1e-5), key
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(five.params)):
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))


@pytest.mark.parametrize("setting, message", [
    (["run.steps_per_call=7"], "run.num_steps=6000 with run.steps_per_call=7"),
    (["run.steps_per_call=4", "run.num_steps=400", "run.log_every=10"],
     "run.log_every=10 with run.steps_per_call=4: expected a multiple"),
    (["run.steps_per_call=0"], "run.steps_per_call=0"),
])
def test_step_counts_that_do_not_divide_are_refused(setting, message):
    from ebm_jax.experiments import make_config

    with pytest.raises(ConfigError, match=message):
        make_config("jem_digits", setting)


def test_fit_refuses_a_start_between_calls():
    class Step:
        steps_per_call = 4

    with pytest.raises(ValueError, match="the start step=2 with a train step of steps_per_call=4"):
        fit(Step(), type("S", (), {"step": 2})(), iter(()), 8, log_every=4, progress=False)


@pytest.mark.slow
def test_a_run_of_five_steps_per_call_resumes_bit_exactly(tmp_path, capsys):
    """``ebm-jax train`` with ``run.steps_per_call=5``: checkpoints at 10 and 20, and a resume
    from 10 ends on the uninterrupted parameters to the bit (the same calls from step 10)."""
    from ebm_jax.experiments import train
    from tests.experiments.tiny import assert_resumes_bit_exactly

    workdir = tmp_path / "run"
    summary = train(tiny("jem_digits", f"run.num_steps={STEPS}", "run.steps_per_call=5"),
                    str(workdir), progress=False, devices=1)
    assert summary["steps"] == STEPS
    assert_resumes_bit_exactly(workdir, summary, capsys)
