"""setup_training: one call sets up the guard, checkpoints, rollback and resume of a run, as
the command line does."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.train import TrainingDiverged, params_fingerprint, setup_training
from tests.train.test_guard import _quadratic


def _batches(step):
    """Batch ``s`` holds ``s``: a restarted stream is visibly positioned."""
    while True:
        yield {"x": jnp.float32(step)}
        step += 1


def _params(theta):
    return {"theta": jnp.full((1,), theta, jnp.float32)}


@pytest.mark.slow
def test_a_slow_blow_up_rolls_back_halves_the_rate_and_stops_naming_the_cause(tmp_path):
    # SGD with rate -0.01 grows θ 1% a step (energy θ² 2% a step): a slow blow-up that the
    # absolute limits miss. The plain optimizer is wrapped so the rollback can halve the
    # rate, which slows the growth but does not stop it: after the retries the run stops.
    run = setup_training(_quadratic(), optax.sgd(-0.01), _params(2.0), {"x": 0},
                         rng_key=jax.random.key(0), workdir=str(tmp_path), save_every=50)
    with pytest.raises(TrainingDiverged, match="energy_scale") as err:
        run.fit(_batches, 2000, log_every=10, progress=False)
    assert "energy_scale" in err.value.causes
    with open(tmp_path / "metrics.jsonl") as f:
        events = [r for r in map(json.loads, f) if "event" in r]
    rollbacks = [e for e in events if e["event"] == "rollback"]
    assert len(rollbacks) == 3 and events[-1]["event"] == "stopped"
    assert [e["lr_scale"] for e in rollbacks] == [0.5, 0.25, 0.125]
    # Every rollback returns to a checkpoint saved before the step it caught.
    assert all(e["to_step"] < e["diverged_step"] for e in rollbacks)


def test_a_run_resumes_from_its_workdir_and_ends_where_an_uninterrupted_one_does(tmp_path):
    def setup(workdir):
        return setup_training(_quadratic(), optax.sgd(0.01), _params(2.0), {"x": 0},
                              rng_key=jax.random.key(1), workdir=workdir, save_every=10)

    whole, _ = setup(str(tmp_path / "whole")).fit(_batches, 30, progress=False)
    first = setup(str(tmp_path / "split"))
    first.fit(_batches, 20, progress=False)
    first.checkpointer.close()
    again = setup(str(tmp_path / "split"))
    assert int(again.state.step) == 20
    state, history = again.fit(_batches, 30, log_every=5, progress=False)
    assert [r["step"] for r in history] == [25, 30]
    assert params_fingerprint(state.params) == params_fingerprint(whole.params)
    np.testing.assert_allclose(state.params["theta"], 2.0 * 0.99 ** 30, rtol=1e-5)
