"""Divergence guards: a blown-up step is not applied; fit rolls back and recovers, or stops."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.losses import LossTransform
from ebm_jax.train import (CAUSE_ADVICE, CAUSE_REMEDIES, Checkpointer, DivergenceGuard,
                           RollbackPolicy, TrainingDiverged, divergence_advice, fit,
                           init_train_state, make_train_step, with_lr_scale)
from ebm_jax.train.guard import GENERIC_ADVICE


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
    unguarded, _ = jax.jit(make_train_step(loss, optimizer, guard=None))(state, {"x": 0})
    assert not np.all(np.isfinite(unguarded.params["theta"]))


@pytest.mark.slow
def test_fit_rolls_back_lowers_the_rate_and_recovers(tmp_path):
    optimizer = with_lr_scale(optax.sgd(2.5))
    step = jax.jit(make_train_step(_quadratic(), optimizer,
                                   guard=DivergenceGuard(max_grad_norm=50.0)))
    ckpt = Checkpointer(str(tmp_path / "ckpt"), save_every=4)
    metrics_path = str(tmp_path / "metrics.jsonl")
    state, _ = fit(step, _state(optimizer), _batches(), 40, log_every=2, checkpointer=ckpt,
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


def test_rollback_without_a_checkpointer_returns_to_the_last_good_state_in_memory():
    # A plain optimizer (no with_lr_scale): the rollback keeps the rate and says so. With the
    # same rate the run diverges again after each rollback, then stops naming the cause.
    optimizer = optax.sgd(2.5)
    step = jax.jit(make_train_step(_quadratic(), optimizer,
                                   guard=DivergenceGuard(max_grad_norm=50.0)),
                   donate_argnums=0)
    with pytest.raises(TrainingDiverged, match=r"\(grad_norm\) after 1 rollbacks.*last good "
                                               r"state was at step 8.*gradient clipping") as err:
        fit(step, _state(optimizer), _batches(), 40, log_every=4, progress=False,
            rollback=RollbackPolicy(max_retries=1))
    assert err.value.causes == ("grad_norm",)


def _slow_blow_up(rate=-0.01):
    """θ grows 1% a step under SGD with a negative rate: the energy θ² (4 at the start) grows
    2% a step, far below any absolute limit for hundreds of steps."""
    optimizer = optax.sgd(rate)
    return optimizer, _state(optimizer, theta=2.0)


def test_relative_guard_catches_a_slow_blow_up_at_its_onset_and_the_absolute_one_does_not():
    guard = DivergenceGuard(warmup_steps=20)
    optimizer, state = _slow_blow_up()
    step = jax.jit(make_train_step(_quadratic(), optimizer, guard=guard))
    absolute = jax.jit(make_train_step(_quadratic(), optimizer, guard=guard._replace(
        energy_factor=None, gap_factor=None, loss_margin=None, grad_factor=None)))
    energies, flags, quiet = [], [], state
    for _ in range(200):
        energies.append(float(jnp.sum(state.params["theta"] ** 2)))
        state, metrics = step(state, {"x": 0})
        flags.append(float(metrics["diverged/energy_scale"]))
        quiet, quiet_metrics = absolute(quiet, {"x": 0})
        assert float(quiet_metrics["diverged"]) == 0.0
    # Onset, measured here: the first step whose energy passes 10x the warm-up mean (floored
    # at 5 nats). The guard flags exactly that step and every one after (none is applied).
    scale = max(np.mean(energies[:20]), guard.energy_floor)
    onset = next(i for i, e in enumerate(energies) if e > 10 * scale)
    assert 100 < onset < 150 and flags.index(1.0) == onset and all(flags[onset:])
    # The flagged steps are not applied: the params stay where the onset found them.
    assert float(jnp.sum(state.params["theta"] ** 2)) == pytest.approx(energies[onset])


def test_slow_blow_up_rolls_back_to_a_checkpoint_before_the_onset_and_stops_naming_the_cause(
        tmp_path):
    optimizer, state = _slow_blow_up()
    step = jax.jit(make_train_step(_quadratic(), optimizer, guard=DivergenceGuard(warmup_steps=20)))
    ckpt = Checkpointer(str(tmp_path / "ckpt"), save_every=25)
    metrics_path = str(tmp_path / "metrics.jsonl")
    with pytest.raises(TrainingDiverged, match=r"energy_scale.*objective.energy_l2=0.1"):
        fit(step, state, _batches(), 400, log_every=5, checkpointer=ckpt,
            metrics_path=metrics_path, progress=False, rollback=RollbackPolicy(max_retries=1))
    with open(metrics_path) as f:
        events = [r for r in map(json.loads, f) if "event" in r]
    assert [e["event"] for e in events] == ["rollback", "stopped"]
    rollback = events[0]
    assert rollback["causes"] == ["energy_scale"]
    # θ² = 4 * 1.0201^s passes 10 x 5.x at s = 130..132: detected there, rolled back to the
    # checkpoint of step 125, saved before the onset.
    assert 125 < rollback["diverged_step"] <= 135 and rollback["to_step"] == 125
    good = ckpt.restore_latest(state)
    assert int(good.step) == 125 and int(good.guard_stats.count) == 125
    ckpt.close()


def _feed(guard, infos, grad=1.0):
    from ebm_jax.train.guard import init_guard_stats, relative_flags

    stats, flags = init_guard_stats(), None
    for info in infos:
        flags, stats = relative_flags(jnp.float32(grad), info, stats, guard)
    return {k: bool(v) for k, v in flags.items()}, stats


def test_each_relative_criterion_fires_on_its_own_signal_and_not_during_warm_up():
    guard = DivergenceGuard(warmup_steps=5)
    calm = {"energy_data": jnp.float32(-3.0), "energy_sample": jnp.float32(-2.5),
            "classification/loss": jnp.float32(0.3)}
    flags, stats = _feed(guard, [calm] * 6)
    assert not any(flags.values()) and float(stats.energy_scale) == pytest.approx(3.0)
    # Energies 60 > 10 x max(3, 5 floor): energy_scale (and the gap stays small).
    flags, _ = _feed(guard, [calm] * 5 + [{**calm, "energy_data": jnp.float32(-60.0),
                                           "energy_sample": jnp.float32(-59.0)}])
    assert flags == {"energy_scale": True, "energy_gap": False, "loss_rise": False,
                     "grad_spike": False}
    # Data at -30, samples at +30: each within 10 x 5, the gap 60 is not.
    flags, _ = _feed(guard, [calm] * 5 + [{**calm, "energy_data": jnp.float32(-30.0),
                                           "energy_sample": jnp.float32(30.0)}])
    assert flags["energy_gap"] and not flags["energy_scale"]
    # The loss is smoothed (decay 0.99): one bad batch at 150 nats moves it by 1.5 < 2 nats,
    # a loss held at 5 nats for 100 steps moves it by 0.63 x 4.7 ≈ 3 > 2 nats over its best.
    flags, _ = _feed(guard, [calm] * 6 + [{**calm, "classification/loss": jnp.float32(150.0)}])
    assert not flags["loss_rise"]
    flags, _ = _feed(guard, [calm] * 6 + [{**calm, "classification/loss": jnp.float32(5.0)}] * 100)
    assert flags["loss_rise"] and not flags["energy_scale"]
    # The same blow-ups inside warm-up: nothing fires.
    flags, _ = _feed(guard, [calm] * 2 + [{**calm, "energy_data": jnp.float32(-600.0),
                                           "classification/loss": jnp.float32(3e4)}])
    assert not any(flags.values())
    # Gradient norm 150 against a moving average of 1.
    from ebm_jax.train.guard import relative_flags

    _, stats = _feed(guard, [calm] * 6)
    flags, _ = relative_flags(jnp.float32(150.0), calm, stats, guard)
    assert bool(flags["grad_spike"])
    flags, _ = relative_flags(jnp.float32(50.0), calm, stats, guard)
    assert not bool(flags["grad_spike"])


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
    assert "training diverged at step" in err and "last good state was at step 0" in err
    with open(workdir / "metrics.jsonl") as f:
        assert any('"event": "rollback"' in line for line in f)
    # Nothing diverged was saved: the run stopped before its first checkpoint (step 10).
    assert not [p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]


def _nan_model_step(optimizer):
    """An unguarded step whose loss is NaN: after the first step the parameters are NaN."""
    def nan_loss(params, state, batch, rng_key):
        return jnp.sum(params["theta"]) * jnp.nan, (state, {})

    return jax.jit(make_train_step(LossTransform(lambda key, params, batch: (), nan_loss),
                                   optimizer, guard=None))


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
    state, _ = fit(_nan_model_step(optimizer), _state(optimizer), _batches(), 10, log_every=5,
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
    state, _ = fit(jax.jit(make_train_step(_quadratic(), optimizer)), _state(optimizer), _batches(),
                3, eval_fn=nan_message, eval_every=1, progress=False)
    assert int(state.step) == 3
    # ... and a user eval_fn's own wording while the parameters are NaN.
    state, _ = fit(_nan_model_step(optimizer), _state(optimizer), _batches(), 3,
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


def test_a_gradient_norm_of_the_energy_is_no_energy():
    """EBT logs ``energy_grad_norm`` (|∇_y E|, which grows as its learned step shrinks): the
    guard's energy criteria read energies only."""
    from ebm_jax.train.guard import _energy_magnitude, divergence_flags, is_energy_key

    info = {"energy_data": jnp.float32(-4.0), "energy_grad_norm": jnp.float32(3e8),
            "nonfinite_steps": jnp.float32(0.0)}
    flags = divergence_flags(jnp.float32(1.0), jnp.float32(2.0), info, DivergenceGuard())
    assert not bool(flags["energy"])
    assert float(_energy_magnitude(info)) == 4.0
    assert is_energy_key("generative/energy_sample") and not is_energy_key("energy_grad_norm")


def test_the_advice_keeps_to_the_settings_a_run_has():
    """Each cause names its alternatives with their settings; a filter drops the ones a run
    cannot set (CDRL has no ``objective.energy_l2``), and a cause left with none says nothing
    rather than advise an unknown key."""
    every = divergence_advice(["energy_scale", "grad_spike"])
    assert every == ("energy_scale: energy_l2 > 0 (objective.energy_l2=0.1) or MALA steps "
                     "adapted to an acceptance rate (objective.step_adaptation=0.05) or a "
                     "smaller learning rate (optimizer.learning_rate): energies left 10x their "
                     "early scale; grad_spike: gradient clipping (optimizer.clip_grad_norm=1.0) or a "
                     "smaller learning rate (optimizer.learning_rate): the gradient norm jumped "
                     "100x its moving average")
    no_l2 = divergence_advice(["energy_scale"], lambda key: key != "objective.energy_l2")
    assert "energy_l2" not in no_l2 and "optimizer.learning_rate" in no_l2
    assert divergence_advice(["energy"], lambda key: False) == GENERIC_ADVICE
    assert divergence_advice(["unknown"]) == GENERIC_ADVICE
    for cause, (remedies, _) in CAUSE_REMEDIES.items():
        assert CAUSE_ADVICE[cause] == divergence_advice([cause]).split(": ", 1)[1]
    stop = TrainingDiverged("x; expected y", causes=("energy_scale",), step=9, situation="x")
    filtered = stop.with_advice(lambda key: key != "objective.energy_l2")
    assert str(filtered) == f"x; expected {no_l2}" and filtered.causes == ("energy_scale",)
    assert filtered.step == 9
    assert TrainingDiverged("plain").with_advice(lambda key: False).args == ("plain",)
