"""A loss trained with batch norm's statistics updating is the batched network's loss: the
same value and weight gradients as normalising by the batch by hand, and the running
statistics move by the running average."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.losses import cross_entropy
from ebm_jax.losses.batch_statistics import (MATCHING, with_batch_statistics,
                                             with_frozen_statistics)
from ebm_jax.nets import MLP, pure_batch_norm, statistics_mask, with_running_statistics
from ebm_jax.nets.batch_norm import statistic_leaves

X = 2.0 + 3.0 * jax.random.normal(jax.random.key(0), (32, 4))
Y = jax.random.randint(jax.random.key(1), (32,), 0, 3)
BATCH = {"x": X, "y": Y}
MODEL = pure_batch_norm(MLP(4, (16,), 3, batch_norm=True, rngs=nnx.Rngs(0)))


def _by_hand(params):
    """Cross-entropy of the batched pass (normalised by the batch): what BN trains."""
    logits, _ = MODEL.apply_batch(params, X)
    picked = jnp.take_along_axis(logits, Y[:, None], 1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, -1) - picked)


@pytest.mark.slow
def test_the_wrapped_loss_is_the_batched_networks_loss():
    loss = with_batch_statistics(cross_entropy(MODEL.apply), MODEL.apply_batch)
    state = loss.init(jax.random.key(0), MODEL.params, BATCH)

    def value(params):
        out, (_, info) = loss.loss(params, state, BATCH, jax.random.key(1))
        return out - info[MATCHING], info

    (wrapped, info), grads = jax.value_and_grad(value, has_aux=True)(MODEL.params)
    expected, expected_grads = jax.value_and_grad(_by_hand)(MODEL.params)
    np.testing.assert_allclose(wrapped, expected, rtol=1e-4)
    assert float(info[MATCHING]) > 0.1        # the running statistics start at 0 and 1
    mask = jax.tree.leaves(statistics_mask(MODEL.params))
    for is_stat, g, e in zip(mask, jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)
        if is_stat:
            assert float(jnp.max(jnp.abs(g))) == 0.0     # nothing of the task reaches them


def test_training_moves_the_running_statistics_by_the_running_average():
    loss = with_batch_statistics(cross_entropy(MODEL.apply), MODEL.apply_batch)
    opt = with_running_statistics(optax.adam(1e-3), update_rate=0.25)
    params, opt_state = MODEL.params, opt.init(MODEL.params)
    state = loss.init(jax.random.key(0), params, BATCH)
    grad = jax.jit(jax.grad(lambda p: loss.loss(p, state, BATCH, jax.random.key(1))[0]))
    means = []
    for _ in range(4):
        means.append(MODEL.apply_batch(params, X)[1])
        updates, opt_state = opt.update(grad(params), opt_state, params)
        params = optax.apply_updates(params, updates)
    # the first layer's statistics move toward each step's own batch statistics
    running = statistic_leaves(MODEL.params)[0]
    for targets in means:
        running = 0.75 * running + 0.25 * statistic_leaves(targets)[0]
    np.testing.assert_allclose(statistic_leaves(params)[0], running, rtol=1e-5, atol=1e-6)


def test_frozen_statistics_stay_while_the_weights_train():
    """The frozen loss normalises by the running statistics (its value is the plain loss's)
    and its gradient stops at them: with the running-average optimizer they do not move,
    while every other parameter does. Without the freeze they would (the task's gradient
    reaches them), which the last assertion shows."""
    plain = cross_entropy(MODEL.apply)
    frozen = with_frozen_statistics(plain)
    opt = with_running_statistics(optax.adam(1e-2), update_rate=0.25)
    key = jax.random.key(1)
    state = frozen.init(jax.random.key(0), MODEL.params, BATCH)
    np.testing.assert_allclose(frozen.loss(MODEL.params, state, BATCH, key)[0],
                               plain.loss(MODEL.params, state, BATCH, key)[0], rtol=1e-6)
    mask = jax.tree.leaves(statistics_mask(MODEL.params))

    def one_step(loss):
        grads = jax.grad(lambda p: loss.loss(p, state, BATCH, key)[0])(MODEL.params)
        updates, _ = opt.update(grads, opt.init(MODEL.params), MODEL.params)
        return optax.apply_updates(MODEL.params, updates)

    for is_stat, before, after in zip(mask, jax.tree.leaves(MODEL.params),
                                      jax.tree.leaves(one_step(frozen))):
        moved = float(jnp.max(jnp.abs(after - before)))
        assert (moved == 0.0) if is_stat else (moved > 0.0)
    unfrozen = statistic_leaves(one_step(plain))
    assert any(float(jnp.max(jnp.abs(a - b))) > 0.0
               for a, b in zip(unfrozen, statistic_leaves(MODEL.params)))


def test_a_wrong_argument_is_refused():
    with pytest.raises(TypeError, match="expected a LossTransform"):
        with_batch_statistics(MODEL.apply, MODEL.apply_batch)
    with pytest.raises(TypeError, match="apply_batch=None"):
        with_batch_statistics(cross_entropy(MODEL.apply), None)
    with pytest.raises(TypeError, match="expected a LossTransform"):
        with_frozen_statistics(MODEL.apply)
