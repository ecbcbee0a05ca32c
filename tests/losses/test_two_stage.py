"""Two losses in one run: the first for ``switch_step`` applied steps, the second after; each
stage's state advances only while it is active, and the info keeps one structure."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.losses import LossTransform, cross_entropy, two_stage


def _counting(scale: float, key: str) -> LossTransform:
    """A loss ``scale * sum(w)`` whose state counts its calls; info ``{key: count}``."""
    def init(rng_key, params, batch):
        return jnp.zeros((), jnp.int32)

    def loss(params, state, batch, rng_key):
        return scale * jnp.sum(params), (state + 1, {key: state.astype(jnp.float32)})

    return LossTransform(init, loss)


def test_the_stages_switch_after_the_applied_steps_and_keep_their_own_state():
    loss = two_stage(_counting(1.0, "first_calls"), _counting(-2.0, "second_calls"),
                     switch_step=3)
    w = jnp.ones(2)
    state = loss.init(jax.random.key(0), w, {"x": w})
    step = jax.jit(loss.loss)
    values, stages = [], []
    for i in range(5):
        value, (state, info) = step(w, state, {"x": w}, jax.random.key(i))
        grad = jax.grad(lambda p: loss.loss(p, state, {"x": w}, jax.random.key(i))[0])(w)
        values.append(float(value))
        stages.append(int(info["stage"]))
        assert set(info) == {"first_calls", "second_calls", "stage"}
        if stages[-1] == 1:
            assert float(info["first_calls"]) == 0.0       # the inactive stage's key reads 0
    assert values == [2.0, 2.0, 2.0, -4.0, -4.0] and stages == [0, 0, 0, 1, 1]
    assert (int(state.step), int(state.first), int(state.second)) == (5, 3, 2)
    # after step 5 the second stage is active, so the gradient is the second loss's
    np.testing.assert_allclose(grad, [-2.0, -2.0])


def test_switch_step_zero_runs_the_second_stage_only():
    loss = two_stage(_counting(1.0, "a"), _counting(3.0, "b"), switch_step=0)
    w = jnp.ones(2)
    state = loss.init(jax.random.key(0), w, None)
    value, (state, info) = loss.loss(w, state, None, jax.random.key(1))
    assert float(value) == 6.0 and int(info["stage"]) == 1 and int(state.first) == 0


def test_bad_stages_are_refused():
    ce = cross_entropy(lambda w, x: w @ x)
    with pytest.raises(TypeError, match="second=None: expected a LossTransform"):
        two_stage(ce, None, switch_step=1)
    with pytest.raises(ValueError, match="switch_step=-1"):
        two_stage(ce, ce, switch_step=-1)

    def other_shape(params, state, batch, rng_key):
        return jnp.sum(params), (state, {"first_calls": jnp.zeros(3)})

    loss = two_stage(_counting(1.0, "first_calls"), LossTransform(
        lambda *a: jnp.zeros((), jnp.int32), other_shape), switch_step=1)
    w = jnp.ones(2)
    with pytest.raises(ValueError, match="info key 'first_calls'"):
        loss.loss(w, loss.init(jax.random.key(0), w, None), None, jax.random.key(1))
