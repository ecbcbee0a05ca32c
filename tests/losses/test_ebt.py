"""ebm_jax/losses/ebt.py: the unrolled descent against closed forms (and broken variants that
fail them), gradients through the steps, System 1 and 2, masking without retracing, the
replay buffer, the extra terms, and the refusals before any compute.

The known answers use ``E(x, y) = ½ a |y - x|²``: from ``y0`` a step of size ``h`` gives
``y - x <- (1 - h a)(y - x)``, so after ``k`` steps ``y_k = x + (1 - h a)^k (y0 - x)``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.inference import best_of_n, minimize, rank
from ebm_jax.losses import (EBTState, denoising_pairs, ebt, ebt_descent, ebt_energy,
                            ebt_params, ebt_step_size)
from ebm_jax.train import init_train_state, make_train_step

pytestmark = pytest.mark.fast_compile


def quadratic(a, x, y):
    return 0.5 * a * jnp.sum((y - x) ** 2)


def scaled(a, x, y):
    """Minimal at ``y = a x``: from ``y0 = x`` the descent moves unless ``a = 1``."""
    return 0.5 * jnp.sum((y - a * x) ** 2)


X, Y0 = jnp.array([1.0, -2.0, 0.5]), jnp.zeros(3)


def closed_form(a, h, k, x=X, y0=Y0):
    return x + (1.0 - h * a) ** k * (y0 - x)


def batch_of(n=4, dim=3, seed=0):
    y = jax.random.normal(jax.random.key(seed), (n, dim))
    return {"x": y + 0.3 * jax.random.normal(jax.random.key(seed + 1), (n, dim)), "y": y}


# -- the descent ------------------------------------------------------------------------------
def test_descent_matches_the_closed_form_at_every_step():
    out = ebt_descent(quadratic, 2.0, X, Y0, num_steps=4, step_size=0.1)
    for k in range(4):
        np.testing.assert_allclose(out.ys[k], closed_form(2.0, 0.1, k + 1), rtol=1e-5)
    np.testing.assert_allclose(out.y, closed_form(2.0, 0.1, 4), rtol=1e-5)
    assert out.energies.shape == (5,) and out.grad_norms.shape == (4,)
    assert np.all(np.diff(np.asarray(out.energies)) < 0) and int(out.nonfinite) == 0


def _descent_ok(descend) -> bool:
    """The check the broken variants below must fail: the closed form after 3 steps and
    its derivative in the step size, ``d y_3 / dh = -3 a (1 - h a)^2 (y0 - x)``."""
    a, h = 2.0, 0.1
    y = descend(h)
    dy_dh = jax.jacfwd(descend)(jnp.float32(h))
    want = -3 * a * (1 - h * a) ** 2 * (Y0 - X)
    return bool(np.allclose(y, closed_form(a, h, 3), rtol=1e-4)
                and np.allclose(dy_dh, want, rtol=1e-4))


@pytest.mark.slow
def test_the_descent_passes_and_broken_descents_fail_the_known_answer():
    def good(h):
        return ebt_descent(quadratic, 2.0, X, Y0, num_steps=3, step_size=h).y

    def flipped(h):  # ascent instead of descent
        return ebt_descent(lambda a, x, y: -quadratic(a, x, y), 2.0, X, Y0, num_steps=3,
                           step_size=h).y

    def skipped(h):  # one step masked off
        return ebt_descent(quadratic, 2.0, X, Y0, num_steps=3, step_size=h,
                           step_mask=jnp.array([True, False, True])).y

    def detached(h):  # the step size cut from the graph: it would never be learned
        return ebt_descent(quadratic, 2.0, X, Y0, num_steps=3,
                           step_size=jax.lax.stop_gradient(h)).y

    assert _descent_ok(good)
    for broken in (flipped, skipped, detached):
        assert not _descent_ok(broken), broken.__name__


def test_masked_steps_are_no_ops_and_scales_multiply_the_step():
    mask = jnp.array([True, True, False, False])
    out = ebt_descent(quadratic, 1.0, X, Y0, num_steps=4, step_size=0.2, step_mask=mask)
    np.testing.assert_allclose(out.y, closed_form(1.0, 0.2, 2), rtol=1e-5)
    np.testing.assert_allclose(out.ys[3], out.ys[1])
    scaled = ebt_descent(quadratic, 1.0, X, Y0, num_steps=2, step_size=0.2,
                         step_scales=jnp.array([0.5, 2.0]))
    want = X + (1 - 0.1) * (1 - 0.4) * (Y0 - X)
    np.testing.assert_allclose(scaled.y, want, rtol=1e-5)


def test_descent_agrees_with_the_inference_api():
    params = ebt_params(jnp.float32(1.5), step_size=0.2)
    energy = ebt_energy(quadratic)
    ours = ebt_descent(quadratic, params["energy"], X, Y0, num_steps=5,
                       step_size=ebt_step_size(params))
    theirs = minimize(energy, params, X, Y0, num_steps=5, step_size=ebt_step_size(params))
    np.testing.assert_allclose(ours.y, theirs.y, rtol=1e-5)
    np.testing.assert_allclose(ours.energies, theirs.energies, rtol=1e-5)


def test_gradients_flow_through_the_gradients_second_order():
    # y_1 = y0 - h a (y0 - x): d y_1 / d a = -h (y0 - x), only through ∇_y E itself.
    def y1(a):
        return jnp.sum(ebt_descent(quadratic, a, X, Y0, num_steps=1, step_size=0.1).y)

    np.testing.assert_allclose(jax.grad(y1)(2.0), jnp.sum(-0.1 * (Y0 - X)), rtol=1e-5)


def test_detach_between_steps_keeps_only_the_last_steps_gradient():
    a, h = 2.0, 0.1

    def y2(step, detach):
        return ebt_descent(quadratic, a, X, Y0, num_steps=2, step_size=step,
                           detach_between_steps=detach).y

    full = jax.jacfwd(lambda s: y2(s, False))(jnp.float32(h))
    cut = jax.jacfwd(lambda s: y2(s, True))(jnp.float32(h))
    y1 = closed_form(a, h, 1)
    np.testing.assert_allclose(cut, -a * (y1 - X), rtol=1e-5)      # y_1 held constant
    np.testing.assert_allclose(full, -2 * a * (1 - h * a) * (Y0 - X), rtol=1e-5)
    np.testing.assert_allclose(y2(h, True), y2(h, False))           # same values


def test_noise_and_clamp():
    noisy = ebt_descent(quadratic, 1.0, X, Y0, num_steps=3, step_size=0.1, noise_scale=0.5,
                        rng_key=jax.random.key(0))
    again = ebt_descent(quadratic, 1.0, X, Y0, num_steps=3, step_size=0.1, noise_scale=0.5,
                        rng_key=jax.random.key(0))
    np.testing.assert_allclose(noisy.y, again.y)
    assert not np.allclose(noisy.y, closed_form(1.0, 0.1, 3))
    clamped = ebt_descent(quadratic, 1.0, X, Y0, num_steps=20, step_size=0.5,
                          clip_range=(-1.0, 1.0))
    np.testing.assert_allclose(clamped.y, jnp.clip(X, -1.0, 1.0), atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(y0=jnp.zeros(4)), r"y0 has shape \(4,\)"),
    (dict(num_steps=0), "num_steps=0"),
    (dict(step_size=0.0), "step_size=0.0"),
    (dict(step_size=-0.1), "step_size=-0.1"),
    (dict(step_mask=jnp.ones(2, bool)), r"step_mask has shape \(2,\)"),
    (dict(step_scales=jnp.ones(5)), r"step_scales has shape \(5,\)"),
    (dict(noise_scale=0.1), "rng_key=None"),
    (dict(y0=jnp.zeros(3, jnp.int32)), "dtype int32"),
])
def test_descent_refuses_bad_input_before_any_compute(kwargs, match):
    calls = []

    def energy(a, x, y):
        calls.append(1)  # traced by the shape check at most, never run on values
        return quadratic(a, x, y)

    options = {"y0": Y0, "num_steps": 3, "step_size": 0.1, **kwargs}
    y0 = options.pop("y0")
    with pytest.raises(ValueError, match=match):
        ebt_descent(energy, 1.0, X, y0, **options)
    assert len(calls) <= 1


# -- params and data --------------------------------------------------------------------------
def test_params_step_size_and_energy():
    params = ebt_params({"w": jnp.ones(2)}, step_size=0.25)
    assert float(ebt_step_size(params)) == pytest.approx(0.25)
    assert float(ebt_energy(lambda p, x, y: jnp.sum(p["w"] * x * y))(params, X[:2], X[:2])) \
        == pytest.approx(5.0)
    with pytest.raises(ValueError, match="step_size=0"):
        ebt_params(jnp.ones(2), step_size=0)
    with pytest.raises(ValueError, match="build it with ebt_params"):
        ebt_step_size({"w": jnp.ones(2)})


def test_denoising_pairs():
    x = jnp.linspace(-1, 1, 40).reshape(5, 8)
    pairs = denoising_pairs(jax.random.key(0), x, 0.3, clip_range=(-1.0, 1.0))
    assert pairs["x"].shape == x.shape and np.all(np.abs(pairs["x"]) <= 1.0)
    np.testing.assert_allclose(pairs["y"], x)
    assert 0.1 < float(jnp.std(pairs["x"] - x)) < 0.5
    with pytest.raises(ValueError, match="noise_std=0"):
        denoising_pairs(jax.random.key(0), x, 0.0)


# -- the loss transform ----------------------------------------------------------------------
def _value(loss, params, batch, key=1):
    state = loss.init(jax.random.key(0), params, batch)
    return loss.loss(params, state, batch, jax.random.key(key))


def test_system1_averages_the_steps_and_system2_takes_the_final_step():
    a, h = 1.0, 0.3
    params, batch = ebt_params(jnp.float32(a), h), batch_of()
    x, y = batch["x"], batch["y"]
    per_step = [jnp.mean((closed_form(a, h, k, x, x) - y) ** 2) for k in (1, 2, 3)]
    value, (_, info) = _value(ebt(quadratic, num_steps=3), params, batch)
    np.testing.assert_allclose(value, np.mean(per_step), rtol=1e-5)
    np.testing.assert_allclose(info["reconstruction"], per_step[-1], rtol=1e-5)
    value2, (_, info2) = _value(ebt(quadratic, num_steps=3, mode="system2", min_steps=3),
                                params, batch)
    np.testing.assert_allclose(value2, per_step[-1], rtol=1e-5)
    assert float(info2["mean_steps"]) == 3.0


@pytest.mark.slow
def test_the_learned_step_size_and_the_energy_receive_gradient_in_both_modes():
    params, batch = ebt_params(jnp.float32(0.5), 0.3), batch_of()
    for loss in (ebt(scaled, num_steps=2),
                 ebt(scaled, num_steps=2, mode="system2", step_jitter=0.1)):
        grads = jax.grad(lambda p: _value(loss, p, batch)[0])(params)
        assert float(jnp.abs(grads["log_step_size"])) > 1e-4
        assert float(jnp.abs(grads["energy"])) > 1e-4


def test_system2_draws_steps_by_masking_and_compiles_once():
    traces = []

    def energy(a, x, y):
        traces.append(1)
        return quadratic(a, x, y)

    loss = ebt(energy, num_steps=2, mode="system2", min_steps=1, max_steps=6,
               step_jitter=0.2, langevin_noise=0.01)
    params, batch = ebt_params(jnp.float32(1.0), 0.2), batch_of(n=16)
    state = loss.init(jax.random.key(0), params, batch)
    step = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))
    (_, (_, info)), _ = step(params, state, batch, jax.random.key(1))
    after_first = len(traces)
    means = [float(info["mean_steps"])]
    for key in (2, 3, 4):
        (_, (_, info)), _ = step(params, state, batch, jax.random.key(key))
        means.append(float(info["mean_steps"]))
    assert len(traces) == after_first                    # no retrace
    assert len(set(means)) > 1 and all(1.0 <= m <= 6.0 for m in means)


def test_system2_with_one_step_count_matches_the_descent_of_that_many_steps():
    params, batch = ebt_params(jnp.float32(1.0), 0.2), batch_of()
    value, _ = _value(ebt(quadratic, num_steps=2, mode="system2", min_steps=4, max_steps=4),
                      params, batch)
    want = jnp.mean((closed_form(1.0, 0.2, 4, batch["x"], batch["x"]) - batch["y"]) ** 2)
    np.testing.assert_allclose(value, want, rtol=1e-5)


def test_starts_noise_target_batch_and_callable():
    params, batch = ebt_params(jnp.float32(1.0), 0.2), batch_of()
    zeros = {**batch, "y0": jnp.zeros_like(batch["y"])}
    _, (_, info) = _value(ebt(quadratic, y0="batch"), params, zeros)
    np.testing.assert_allclose(info["reconstruction_start"], jnp.mean(batch["y"] ** 2),
                               rtol=1e-5)
    _, (_, info) = _value(ebt(quadratic, y0=lambda key, x: 2.0 * x), params, batch)
    np.testing.assert_allclose(info["reconstruction_start"],
                               jnp.mean((2 * batch["x"] - batch["y"]) ** 2), rtol=1e-5)
    _, (_, info) = _value(ebt(quadratic, y0="target", start_noise=0.1), params, batch)
    assert 0.0 < float(info["reconstruction_start"]) < 0.01
    _, (_, info) = _value(ebt(quadratic, y0="noise"), params, batch)
    assert float(info["reconstruction_start"]) > 0.5


def test_replay_buffer_stores_predictions_and_feeds_them_back_as_starts():
    # Four copies of one example, starts at 0, E minimal at x = y: after 2 steps of 0.2 the
    # error is 0.8² of the start's; a replayed start carries that error into the next call.
    loss = ebt(quadratic, num_steps=2, mode="system2", min_steps=2, y0="batch",
               replay_capacity=8, replay_fraction=0.5)
    x = jnp.tile(X, (4, 1))
    batch = {"x": x, "y": x, "y0": jnp.zeros_like(x)}
    params = ebt_params(jnp.float32(1.0), 0.2)
    start_error = float(jnp.mean(X ** 2))
    state = loss.init(jax.random.key(0), params, batch)
    assert isinstance(state, EBTState) and int(state.replay.size) == 0
    _, (state, info) = loss.loss(params, state, batch, jax.random.key(1))
    np.testing.assert_allclose(info["reconstruction_start"], start_error, rtol=1e-5)
    assert int(state.replay.size) == 4 and int(state.replay.pointer) == 4
    np.testing.assert_allclose(state.replay.y_pred[:4], x * (1 - 0.8 ** 2), rtol=1e-5)
    _, (state, info) = loss.loss(params, state, batch, jax.random.key(2))
    # Half of the batch (its first two examples) started from stored predictions.
    np.testing.assert_allclose(info["reconstruction_start"],
                               start_error * (1 + 0.8 ** 4) / 2, rtol=1e-5)
    assert int(state.replay.size) == 8 and int(state.replay.pointer) == 0   # wrapped
    np.testing.assert_allclose(state.replay.y_pred[4:6], x[:2] * (1 - 0.8 ** 4), rtol=1e-5)


def test_calibration_and_stationarity_vanish_for_the_ideal_energy():
    # E(x, y) = ½|y - x|² with x = y: the energy *is* half the squared error to the target.
    batch = batch_of()
    batch = {"x": batch["y"], "y": batch["y"]}
    params = ebt_params(jnp.float32(1.0), 0.2)
    loss = ebt(quadratic, y0="noise", calibration_weight=1.0, num_perturbed=3,
               stationarity_weight=1.0)
    _, (_, info) = _value(loss, params, batch)
    assert float(info["calibration"]) < 1e-8 and float(info["stationarity"]) < 1e-8
    off = ebt_params(jnp.float32(2.0), 0.2)   # twice the error: calibration > 0
    _, (_, info) = _value(loss, off, batch)
    assert float(info["calibration"]) > 1e-3


@pytest.mark.slow
def test_contrastive_term_prefers_an_energy_whose_minimum_is_the_target():
    batch = batch_of(n=8)
    right = {"x": batch["y"], "y": batch["y"]}       # E(x, y) minimal at the target
    wrong = {"x": -batch["y"], "y": batch["y"]}      # minimal elsewhere
    params = ebt_params(jnp.float32(4.0), 0.1)
    loss = ebt(quadratic, y0="noise", contrastive_weight=1.0, batch_negatives=3,
               num_perturbed=2)
    _, (_, good) = _value(loss, params, right)
    _, (_, bad) = _value(loss, params, wrong)
    assert 0.0 <= float(good["contrastive"]) < float(bad["contrastive"])


@pytest.mark.parametrize("step_size, expected", [(0.5, np.log(2.0 + 3.0)), (0.0, None)])
def test_noise_negatives_are_where_a_descent_from_noise_ends(step_size, expected):
    # E(x, y) = ½ a |y - x|² with x = y, a h = 1: one step from any start lands on the target,
    # so the 3 searches from noise end at E = 0 and each example's InfoNCE is log(2 + 3)
    # (the prediction from the target-perturbed start is the other 1). With a step of ~0 the
    # searches stay at the noise: energies ~ ½ a |4 ε|² and the term falls to about log 2.
    y = jax.random.normal(jax.random.key(3), (6, 4))
    loss = ebt(quadratic, num_steps=1, y0="target", start_noise=4.0, contrastive_weight=1.0,
               noise_negatives=3)
    params = ebt_params(jnp.float32(2.0), max(step_size, 1e-6))
    _, (_, info) = _value(loss, params, {"x": y, "y": y})
    if expected is not None:
        np.testing.assert_allclose(float(info["contrastive"]), expected, rtol=1e-5)
    else:
        assert float(info["contrastive"]) < np.log(2.0) + 0.05


def test_noise_negatives_need_the_contrastive_term_and_noisy_starts():
    with pytest.raises(ValueError, match="noise_negatives=2 with contrastive_weight=0.0"):
        ebt(quadratic, y0="noise", noise_negatives=2)
    with pytest.raises(ValueError, match="start_noise=0.0: expected both positive"):
        ebt(quadratic, y0="input", contrastive_weight=1.0, noise_negatives=2)


def test_one_jitted_train_step_learns_the_energy_and_the_step_size():
    # E(x, y) = ½ a |y - x|² from y0 = 0 with targets y = x: one step of h a = 1 is exact.
    loss = ebt(quadratic, num_steps=1, y0="noise", start_noise=1e-3)
    optimizer = optax.adam(0.05)
    y = jax.random.normal(jax.random.key(0), (16, 3))
    batch = {"x": y, "y": y}
    state = init_train_state(jax.random.key(0), ebt_params(jnp.float32(0.5), 0.5), optimizer,
                             loss, batch)
    step = jax.jit(make_train_step(loss, optimizer))
    first = None
    for _ in range(60):
        state, metrics = step(state, batch)
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < 0.05 * first and float(metrics["diverged"]) == 0.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="system3"), "mode='system3'"),
    (dict(num_steps=0), "num_steps=0"),
    (dict(y0="zeros"), "y0='zeros'"),
    (dict(max_steps=8), "mode='system2'"),
    (dict(mode="system2", min_steps=5, max_steps=3), "min_steps=5 > max_steps=3"),
    (dict(mode="system2", replay_capacity=8), "replay_fraction"),
    (dict(contrastive_weight=-1.0), "contrastive_weight=-1.0"),
    (dict(y0="noise", start_noise=0.0), "start_noise=0.0"),
    (dict(perturb_scale=0.0), "perturb_scale=0.0"),
])
def test_loss_refuses_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ebt(quadratic, **kwargs)


@pytest.mark.parametrize("batch, match", [
    ({"x": jnp.zeros((4, 3)), "y": jnp.zeros((4, 5))}, r"batch\['y'\] has shape \(4, 5\)"),
    ({"x": jnp.zeros((4, 3)), "y": jnp.zeros((3, 3))}, "one target per example"),
    ({"x": jnp.zeros((4, 3)), "y": jnp.zeros((4, 3), jnp.int32)}, "dtype int32"),
])
def test_loss_refuses_a_target_the_energy_cannot_take(batch, match):
    loss, params = ebt(quadratic, y0="noise"), ebt_params(jnp.float32(1.0))
    with pytest.raises(ValueError, match=match):
        loss.init(jax.random.key(0), params, batch)


def test_loss_refuses_raw_params_missing_keys_and_starts_of_another_shape():
    loss = ebt(quadratic)
    with pytest.raises(ValueError, match="build it with ebt_params"):
        loss.init(jax.random.key(0), jnp.float32(1.0), batch_of())
    with pytest.raises(KeyError, match="batch\\['y'\\]"):
        loss.init(jax.random.key(0), ebt_params(jnp.float32(1.0)), {"x": jnp.zeros((4, 3))})
    vector = lambda a, x, y: quadratic(a, x[:2], y)  # noqa: E731  (x wider than y)
    with pytest.raises(ValueError, match="y0='input'"):
        ebt(vector).init(jax.random.key(0), ebt_params(jnp.float32(1.0)),
                         {"x": jnp.zeros((4, 3)), "y": jnp.zeros((4, 2))})
    with pytest.raises(ValueError, match="batch_negatives=2 with a batch of 1"):
        ebt(quadratic, contrastive_weight=1.0, batch_negatives=2).init(
            jax.random.key(0), ebt_params(jnp.float32(1.0)), batch_of(n=1))
    with pytest.raises(ValueError, match="replay_capacity=2 with a batch of 4"):
        ebt(quadratic, mode="system2", replay_capacity=2, replay_fraction=0.5).init(
            jax.random.key(0), ebt_params(jnp.float32(1.0)), batch_of())


def test_inference_on_the_trained_energy_refuses_bad_input():
    params, energy = ebt_params(jnp.float32(1.0), 0.2), ebt_energy(quadratic)
    with pytest.raises(ValueError, match="n=0"):
        best_of_n(jax.random.key(0), energy, params, X, lambda k: jnp.zeros(3), 0,
                  num_steps=2, step_size=0.2)
    with pytest.raises(ValueError, match="candidates has shape"):
        rank(energy, params, X, jnp.zeros((4, 5)))
    best = best_of_n(jax.random.key(0), energy, params, X,
                     lambda k: jax.random.normal(k, (3,)), 4, num_steps=3,
                     step_size=ebt_step_size(params))
    assert best.results.y.shape == (4, 3)
