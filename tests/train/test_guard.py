"""Divergence guards: a blown-up step is not applied; fit rolls back and recovers, or stops."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.losses import LossTransform
from ebm_jax.train import (Checkpointer, DivergenceGuard, RollbackPolicy, TrainingDiverged,
                           fit, init_train_state, make_train_step, with_lr_scale)


def _quadratic():
    """L(θ) = θ²/2 with an "energy" θ²: plain SGD with rate η multiplies θ by (1 - η) per
    step, so η = 2.5 grows it by 1.5x a step (divergence) and η = 1.25 shrinks it by 4x."""
    def loss(params, state, batch, rng_key):
        theta = params["theta"]
        return 0.5 * jnp.sum(theta**2), (state, {"energy_data": jnp.sum(theta**2)})

    return LossTransform(lambda key, params, batch: (), loss)


def _state(optimizer, theta=1.0):
    params = {"theta": jnp.full((1,), theta, jnp.float32)}
    return init_train_state(jax.random.PRNGKey(0), params, optimizer, _quadratic(), {"x": 0})


def _batches():
    while True:
        yield {"x": jnp.zeros(())}


def test_guard_skips_a_step_that_blows_up():
    optimizer = optax.sgd(1.0)
    guard = DivergenceGuard(max_abs_energy=10.0, max_grad_norm=1e8)
    step = jax.jit(make_train_step(_quadratic(), optimizer, guard=guard))
    state = _state(optimizer, theta=4.0)  # energy 16 > 10: the step must not be applied
    new, metrics = step(state, {"x": 0})
    assert float(metrics["diverged"]) == 1.0 and float(metrics["diverged/energy"]) == 1.0
    np.testing.assert_array_equal(new.params["theta"], state.params["theta"])
    assert int(new.step) == 1 and not np.array_equal(new.rng_key, state.rng_key)
    fine, metrics = step(_state(optimizer, theta=0.5), {"x": 0})
    assert float(metrics["diverged"]) == 0.0
    np.testing.assert_allclose(fine.params["theta"], 0.0, atol=1e-7)  # 0.5 - 1.0 * 0.5


def test_guard_catches_nan_and_unguarded_step_does_not():
    def nan_loss(params, state, batch, rng_key):
        return jnp.sum(params["theta"]) * jnp.nan, (state, {})

    loss = LossTransform(lambda key, params, batch: (), nan_loss)
    optimizer = optax.sgd(0.1)
    state = _state(optimizer)
    guarded, metrics = jax.jit(make_train_step(loss, optimizer, guard=DivergenceGuard()))(
        state, {"x": 0})
    assert float(metrics["diverged/nonfinite"]) == 1.0
    assert np.all(np.isfinite(guarded.params["theta"]))
    unguarded, _ = jax.jit(make_train_step(loss, optimizer))(state, {"x": 0})
    assert not np.all(np.isfinite(unguarded.params["theta"]))


@pytest.mark.slow
def test_fit_rolls_back_lowers_the_rate_and_recovers(tmp_path):
    optimizer = with_lr_scale(optax.sgd(2.5))
    step = jax.jit(make_train_step(_quadratic(), optimizer,
                                   guard=DivergenceGuard(max_grad_norm=50.0)))
    ckpt = Checkpointer(str(tmp_path / "ckpt"), save_every=4)
    metrics_path = str(tmp_path / "metrics.jsonl")
    state = fit(step, _state(optimizer), _batches(), 40, log_every=2, checkpointer=ckpt,
                metrics_path=metrics_path, progress=False,
                rollback=RollbackPolicy(max_retries=3, lr_factor=0.5))
    ckpt.close()
    # |θ| grows 1.5x a step: past 50 after ~10 steps. One rollback halves the rate to 1.25,
    # which contracts θ by 4x a step: the run ends near 0 instead of blowing up.
    assert abs(float(state.params["theta"][0])) < 1e-6
    with open(metrics_path) as f:
        events = [json.loads(line) for line in f if '"event"' in line]
    assert len(events) == 1 and events[0]["event"] == "rollback"
    assert events[0]["lr_scale"] == 0.5 and events[0]["to_step"] % 4 == 0
    assert int(state.step) == 40


def test_fit_stops_with_the_last_good_checkpoint_intact(tmp_path):
    optimizer = with_lr_scale(optax.sgd(2.5))
    step = jax.jit(make_train_step(_quadratic(), optimizer,
                                   guard=DivergenceGuard(max_grad_norm=50.0)))
    ckpt = Checkpointer(str(tmp_path / "ckpt"), save_every=4)
    with pytest.raises(TrainingDiverged, match=r"after 2 rollbacks.*last good checkpoint "
                                               r"\(step 8\) is intact"):
        # lr_factor 1: the same rate diverges again after every rollback.
        fit(step, _state(optimizer), _batches(), 40, log_every=2, checkpointer=ckpt,
            progress=False, rollback=RollbackPolicy(max_retries=2, lr_factor=1.0))
    good = ckpt.restore_latest(_state(optimizer))
    assert int(good.step) == 8 and abs(float(good.params["theta"][0])) < 50.0
    ckpt.close()


def test_rollback_needs_a_checkpointer_and_a_scalable_rate():
    optimizer = optax.sgd(2.5)
    step = jax.jit(make_train_step(_quadratic(), optimizer, guard=DivergenceGuard()))
    with pytest.raises(ValueError, match="rollback needs a checkpointer"):
        fit(step, _state(optimizer), _batches(), 4, progress=False, rollback=RollbackPolicy())


@pytest.mark.slow
@pytest.mark.fast_compile  # a few steps before it stops: mostly compilation
def test_cli_run_that_keeps_diverging_stops_with_exit_1(tmp_path, capsys):
    from ebm_jax import cli

    workdir = tmp_path / "run"
    argv = ["train", "--workdir", str(workdir), "--no-progress", "--devices", "1"]
    for item in ("run.num_steps=60", "optimizer.learning_rate=1000", "guard.rollback_retries=1",
                 "guard.rollback_lr_factor=1.0", "run.log_every=5", "run.checkpoint_every=10",
                 "model.hidden=32", "objective.chain_start.capacity=200",
                 "objective.num_steps=5", "guard.max_energy=1000"):
        argv += ["--set", item]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "training diverged at step" in err and "last good checkpoint (step 0) is intact" in err
    with open(workdir / "metrics.jsonl") as f:
        assert any('"event": "rollback"' in line for line in f)
    assert (workdir / "checkpoints" / "0").is_dir()


def _nan_model_step(optimizer):
    """An unguarded step whose loss is NaN: after the first step the parameters are NaN."""
    def nan_loss(params, state, batch, rng_key):
        return jnp.sum(params["theta"]) * jnp.nan, (state, {})

    return jax.jit(make_train_step(LossTransform(lambda key, params, batch: (), nan_loss),
                                   optimizer))


def _nan_model_eval(calls):
    """A periodic evaluation through the real metrics, which refuse NaN logits."""
    from ebm_jax import metrics

    def eval_fn(state):
        calls.append(int(state.step))
        theta = state.params["theta"]
        logits = jnp.stack([theta, -theta], axis=-1)  # [1, 2]
        return {"accuracy": float(metrics.accuracy(logits, jnp.zeros((1,), jnp.int32)))}

    return eval_fn


def test_eval_on_a_nan_model_is_logged_and_training_goes_on(tmp_path, capsys):
    optimizer = optax.sgd(0.1)
    metrics_path = str(tmp_path / "metrics.jsonl")
    calls = []
    state = fit(_nan_model_step(optimizer), _state(optimizer), _batches(), 10, log_every=5,
                eval_fn=_nan_model_eval(calls), eval_every=4, metrics_path=metrics_path,
                progress=False)
    assert int(state.step) == 10 and calls == [4, 8, 10]  # every eval ran, to the end
    with open(metrics_path) as f:
        errors = [r for r in map(json.loads, f) if "eval/error" in r]
    assert [r["step"] for r in errors] == [4, 8, 10]
    assert all(r["eval/error"].startswith("ValueError: logits has 2 non-finite values")
               for r in errors)
    assert "evaluation at step 4 failed on non-finite values" in capsys.readouterr().out


def test_eval_error_on_a_nan_model_is_caught_by_its_message_or_by_the_params():
    optimizer = optax.sgd(0.1)

    def nan_message(state):
        raise ValueError("energies have 3 NaN values: expected real scores")

    def own_wording(state):
        raise ValueError("cannot score this model")

    # A message about NaN values (parameters finite) ...
    state = fit(jax.jit(make_train_step(_quadratic(), optimizer)), _state(optimizer), _batches(),
                3, eval_fn=nan_message, eval_every=1, progress=False)
    assert int(state.step) == 3
    # ... and a user eval_fn's own wording while the parameters are NaN.
    state = fit(_nan_model_step(optimizer), _state(optimizer), _batches(), 3,
                eval_fn=own_wording, eval_every=1, progress=False)
    assert int(state.step) == 3


@pytest.mark.parametrize("error", [TypeError("eval_fn has a bug"),
                                   ValueError("labels have shape (3,): expected (1,)"),
                                   KeyError("accuracy")])
def test_eval_errors_that_are_not_about_nan_still_end_the_run(error):
    optimizer = optax.sgd(0.1)
    step = jax.jit(make_train_step(_quadratic(), optimizer))  # finite parameters throughout

    def eval_fn(state):
        raise error

    with pytest.raises(type(error), match=str(error.args[0]).replace("(", r"\(")
                       .replace(")", r"\)")):
        fit(step, _state(optimizer), _batches(), 10, eval_fn=eval_fn, eval_every=4,
            progress=False)


def test_quick_eval_of_a_nan_model_gives_nan_metrics():
    from types import SimpleNamespace

    from ebm_jax.energies import energy_from_logits
    from ebm_jax.experiments import Data, Experiment
    from ebm_jax.experiments.evaluation import quick_eval_fn

    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.2], [-0.3, 0.8]], np.float32)
    data = Data(x, np.array([0, 1, 0, 1]), x, np.array([0, 1, 0, 1]), (-1.0, 1.0), None, 2,
                None)

    def logits_fn(params, x):
        return params["w"] @ x

    exp = Experiment(config=None, data=data, params=None, energy_fn=energy_from_logits(logits_fn),
                     logits_fn=logits_fn, sampler=None, make_sampler=None, loss=None,
                     optimizer=None, generate=None, generator_name=None)
    # The metric functions refuse NaN logits and energies; the quick evaluation reports NaN.
    blown = quick_eval_fn(exp)(SimpleNamespace(ema_params={"w": jnp.full((2, 2), jnp.nan)}))
    assert set(blown) == {"test_accuracy", "ece", "auroc_uniform_noise"}
    assert all(np.isnan(v) for v in blown.values())
