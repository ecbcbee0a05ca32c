"""Batch norm with its statistics as parameters: batch mode normalises by the batch, the
running statistics follow the usual running average through the optimizer, the task's
gradient never reaches them, and frozen they stay put while the weights train."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.nets import MLP
from ebm_jax.nets.batch_norm import (BatchNorm, pure_batch_norm, statistic_leaves,
                                     statistics_mask, statistics_matching,
                                     with_running_statistics)

XS = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (64, 5))


def _model():
    return pure_batch_norm(MLP(5, (16, 16), 3, batch_norm=True, rngs=nnx.Rngs(0)))


def test_batch_mode_normalises_each_feature_by_the_batch():
    model = pure_batch_norm(BatchNorm(5))
    out, targets = model.apply_batch(model.params, XS)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(0), 1.0, rtol=1e-3)
    np.testing.assert_allclose(targets["running_mean"], XS.mean(0), rtol=1e-5)
    np.testing.assert_allclose(targets["running_var"], XS.var(0), rtol=1e-5)
    # per example, the running statistics (0 and 1 at the start): the input unchanged
    np.testing.assert_allclose(model.apply(model.params, XS[0]), XS[0], rtol=1e-4)


@pytest.mark.slow
def test_the_running_statistics_follow_the_running_average():
    model, rate = _model(), 0.1
    opt = with_running_statistics(optax.adam(1e-2), update_rate=rate)
    params, opt_state = model.params, opt.init(model.params)
    _, first_targets = model.apply_batch(params, XS)
    start = statistic_leaves(params)
    for _ in range(5):   # the first layer's batch statistics do not depend on any weight's
        grads = jax.grad(statistics_matching)(params, model.apply_batch(params, XS)[1])
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    expected = [(1 - rate) ** 5 * s + (1 - (1 - rate) ** 5) * t
                for s, t in zip(start[:2], statistic_leaves(first_targets)[:2])]
    for got, want in zip(statistic_leaves(params)[:2], expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_task_gradient_never_reaches_a_statistic_and_matching_never_a_weight():
    model = _model()
    mask = jax.tree.leaves(statistics_mask(model.params))
    assert sum(mask) == 4   # two layers, a mean and a variance each

    def task(params):   # a task loss with the statistics matched, as a loss would add it
        out, targets = model.apply_batch(params, XS)
        return jnp.sum(out ** 2) + statistics_matching(params, targets)

    grads = jax.tree.leaves(jax.grad(task)(model.params))
    params = jax.tree.leaves(model.params)
    _, targets = model.apply_batch(model.params, XS)
    for is_stat, g, p, t in zip(mask, grads, params, jax.tree.leaves(targets)):
        if is_stat:   # exactly s - t: nothing of the task's loss
            np.testing.assert_allclose(g, p - t, rtol=1e-5, atol=1e-6)
    only_matching = jax.grad(lambda p: statistics_matching(p, model.apply_batch(p, XS)[1]))
    for is_stat, g in zip(mask, jax.tree.leaves(only_matching(model.params))):
        if not is_stat:
            assert float(jnp.max(jnp.abs(g))) == 0.0


def test_frozen_statistics_stay_while_the_weights_train():
    model = _model()
    opt = with_running_statistics(optax.sgd(0.1), frozen=True)

    def loss(params):   # per example: normalised by the running statistics
        return jnp.mean(jax.vmap(model.apply, (None, 0))(params, XS) ** 2)

    grads = jax.grad(loss)(model.params)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in statistic_leaves(grads))
    updates, _ = opt.update(grads, opt.init(model.params), model.params)
    params = optax.apply_updates(model.params, updates)
    for before, after in zip(statistic_leaves(model.params), statistic_leaves(params)):
        np.testing.assert_array_equal(before, after)
    moved = [not np.array_equal(a, b) for a, b, s in zip(
        jax.tree.leaves(model.params), jax.tree.leaves(params),
        jax.tree.leaves(statistics_mask(params))) if not s]
    assert all(moved)


def test_with_the_statistics_of_the_data_per_example_equals_the_batch():
    model = _model()
    params = model.params
    for _ in range(3):   # each layer's statistics set to the batch's (rate 1), in turn
        params = model.apply_batch(params, XS)[1]
    batch_out, _ = model.apply_batch(params, XS)
    per_example = jax.vmap(model.apply, (None, 0))(params, XS)
    np.testing.assert_allclose(per_example, batch_out, rtol=1e-4, atol=1e-4)


def test_a_bad_update_rate_is_refused():
    with pytest.raises(ValueError, match=r"update_rate=0.0: expected a number in \(0, 1\]"):
        with_running_statistics(optax.sgd(0.1), update_rate=0.0)


@pytest.mark.slow
def test_a_wide_resnet_with_batch_norm_normalises_before_every_activation():
    from ebm_jax.nets import WideResNet
    net = WideResNet((8, 8, 3), 4, depth=10, widen_factor=1, batch_norm=True,
                     rngs=nnx.Rngs(0))
    model = pure_batch_norm(net)
    # one block per group: 2 norms each, and the final one (mean and variance each)
    assert sum(jax.tree.leaves(statistics_mask(model.params))) == 2 * (3 * 2 + 1)
    xs = jax.random.normal(jax.random.key(1), (6, 8 * 8 * 3))
    out, targets = model.apply_batch(model.params, xs)
    assert out.shape == (6, 4)
    per_example = jax.vmap(model.apply, (None, 0))(targets, xs)   # the batch's statistics
    np.testing.assert_allclose(per_example, out, rtol=1e-4, atol=1e-5)
    plain = WideResNet((8, 8, 3), 4, depth=10, widen_factor=1, rngs=nnx.Rngs(0))
    assert not any(jax.tree.leaves(statistics_mask(pure_batch_norm(plain).params)))
