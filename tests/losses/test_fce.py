"""Flow contrastive estimation: NCE's gradient for the EBM, the reversed (or cut) gradient for
the flow, the threshold rule, the flow's own optimizer state, and the game's value."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.losses import fce, fce_optimizer, fce_params, nce, nce_params
from ebm_jax.nets import RealNVP, as_noise, flow_functions


def energy_fn(w, x):
    return 0.5 * jnp.sum((x - w["mean"]) ** 2 * jnp.exp(w["log_precision"]))


def setup(seed=0):
    module = RealNVP(2, num_layers=2, hidden=(8,), rngs=nnx.Rngs(seed))
    flow = flow_functions(module)
    # move the flow off the identity, so that every term has a gradient
    flow_params = jax.tree.map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.key(seed + 1), p.shape), flow.params)
    energy = {"mean": jnp.array([0.3, -0.2]), "log_precision": jnp.array([0.1, -0.3])}
    params = fce_params(energy, flow_params, log_z=0.4)
    batch = {"x": 1.5 * jax.random.normal(jax.random.key(seed + 2), (32, 2)) + 0.5}
    return flow, params, batch


def plain_game_loss(flow, params, batch, key):
    """NCE's loss with the flow as a differentiable noise, no reversal: what the EBM descends
    and the flow ascends."""
    x = batch["x"]
    y, log_q_y = flow.sample_and_log_prob(params["flow"], key, x.shape[0])
    log_q_x = jax.vmap(flow.log_prob, (None, 0))(params["flow"], x)
    e = jax.vmap(energy_fn, (None, 0))
    g_data = -e(params["energy"], x) - params["log_z"] - log_q_x
    g_noise = -e(params["energy"], y) - params["log_z"] - log_q_y
    return (jnp.sum(jax.nn.softplus(-g_data)) + jnp.sum(jax.nn.softplus(g_noise))) / (2 * len(x))


@pytest.mark.slow
def test_on_a_moving_step_the_ebm_descends_and_the_flow_ascends_the_same_loss():
    flow, params, batch = setup()
    key = jax.random.key(5)
    loss = fce(energy_fn, flow, threshold=0.0)        # the flow moves on every step
    (value, (_, info)), grads = jax.value_and_grad(loss.loss, has_aux=True)(params, (), batch,
                                                                            key)
    plain_value, plain = jax.value_and_grad(plain_game_loss, 1)(flow, params, batch, key)
    np.testing.assert_allclose(value, plain_value, rtol=1e-5)
    assert float(info["flow_updated"]) == 1.0
    for part in ("energy", "log_z"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
                     grads[part], plain[part])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, -b, rtol=1e-4, atol=1e-7),
                 grads["flow"], plain["flow"])
    assert optax.tree.norm(grads["flow"]) > 1e-3


@pytest.mark.slow
def test_on_a_still_step_the_flow_gets_no_gradient_and_the_ebm_gets_nce_s():
    flow, params, batch = setup()
    key = jax.random.key(5)
    loss = fce(energy_fn, flow, threshold=0.99)       # this EBM is far from 99% accurate
    (value, (_, info)), grads = jax.value_and_grad(loss.loss, has_aux=True)(params, (), batch,
                                                                            key)
    assert float(info["flow_updated"]) == 0.0 and float(info["accuracy"]) < 0.99
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads["flow"]))
    # NCE against the frozen flow (the same draws: the same key) gives the same EBM step
    reference = nce(energy_fn, as_noise(flow, params["flow"]))
    ref_params = nce_params(params["energy"], params["log_z"])
    (ref_value, (_, ref_info)), ref_grads = jax.value_and_grad(reference.loss, has_aux=True)(
        ref_params, (), batch, key)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    np.testing.assert_allclose(info["accuracy"], ref_info["accuracy"], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
                 {"energy": grads["energy"], "log_z": grads["log_z"]}, ref_grads)


def test_the_game_s_value_is_log_4_when_the_model_is_the_flow():
    flow, params, batch = setup()
    model = lambda w, x: -flow.log_prob(w, x)   # noqa: E731   E = -log q, Z = 1
    loss = fce(model, flow)
    params = fce_params(params["flow"], params["flow"], log_z=0.0)
    _, (_, info) = loss.loss(params, (), batch, jax.random.key(0))
    np.testing.assert_allclose(info["minus_value"], np.log(4.0), rtol=1e-5)


def test_the_flow_s_optimizer_state_sits_out_the_still_steps():
    flow, params, batch = setup()
    optimizer = fce_optimizer(optax.adam(1e-2), optax.adam(1e-2))
    state = optimizer.init(params)

    def step(threshold, params, state):
        grads = jax.grad(lambda p: fce(energy_fn, flow, threshold=threshold).loss(
            p, (), batch, jax.random.key(1))[0])(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    moved, state1 = step(0.0, params, state)           # moves the flow and its Adam moments
    kept, state2 = step(0.99, moved, state1)           # a still step
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), kept["flow"], moved["flow"])
    # the flow's Adam moments and counts are as they were (only the skip's own flag differs)
    flow_state = lambda s: s.inner_states["flow"].inner_state._replace(   # noqa: E731
        skip_state=())
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), flow_state(state2),
                 flow_state(state1))
    assert int(state2.inner_states["flow"].inner_state.gradient_step) == 1
    assert not np.allclose(kept["energy"]["mean"], moved["energy"]["mean"])   # the EBM moved
    pairs = zip(jax.tree.leaves(moved["flow"]), jax.tree.leaves(params["flow"]))
    assert not all(np.array_equal(a, b) for a, b in pairs)        # the first step moved it


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 1.0}, "threshold=1.0: expected an accuracy in [0, 1)"),
    ({"noise_ratio": 0}, "noise_ratio=0"),
    ({"flow_likelihood_weight": -1.0}, "flow_likelihood_weight=-1.0"),
])
def test_bad_settings_are_refused(kwargs, message):
    flow, _, _ = setup()
    with pytest.raises(ValueError) as error:
        fce(energy_fn, flow, **kwargs)
    assert message in str(error.value)


def test_params_and_batches_of_the_wrong_form_are_refused_before_compute():
    flow, params, batch = setup()
    loss = fce(energy_fn, flow)
    with pytest.raises(ValueError, match="fce params are"):
        loss.init(jax.random.key(0), nce_params(params["energy"]), batch)
    with pytest.raises(ValueError, match=r"flat examples \[B, D\]"):
        loss.init(jax.random.key(0), params, {"x": jnp.zeros((4, 2, 1))})
    with pytest.raises(ValueError, match="expected the flow's pure functions"):
        fce(energy_fn, object())


def test_the_likelihood_term_moves_only_the_flow():
    flow, params, batch = setup()
    key = jax.random.key(5)
    grad = lambda lam: jax.grad(lambda p: fce(energy_fn, flow, threshold=0.99,   # noqa: E731
                                              flow_likelihood_weight=lam).loss(
        p, (), batch, key)[0])(params)
    with_nll, without = grad(1.0), grad(0.0)
    nll_grad = jax.grad(lambda f: -jnp.mean(jax.vmap(flow.log_prob, (None, 0))(f, batch["x"])))(
        params["flow"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
                 with_nll["flow"], nll_grad)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 with_nll["energy"], without["energy"])
