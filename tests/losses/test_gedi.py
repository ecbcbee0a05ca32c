"""GEDI (ebm_jax.losses.gedi): invariance and prior terms, and the combined three-term loss.

Deliberate breakages these tests catch (each tried by editing the module and restoring it):

- a ``stop_gradient`` on either view of the invariance term:
  ``test_invariance_gradient_flows_through_both_views``;
- the symmetrisation dropped (one cross-entropy only):
  ``test_symmetric_cross_entropy_matches_numpy``;
- the prior's marginal taken per example instead of over the batch (then it is minimal at
  uniform *assignments*, not a uniform marginal): ``test_prior_is_zero_at_a_uniform_marginal``;
- a weight ignored by ``gedi``: ``test_zero_weights_drop_the_terms_from_the_value``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.data.augment import gaussian_noise, identity
from ebm_jax.energies import energy_from_logits
from ebm_jax.losses.gedi import (gedi, invariance, symmetric_cross_entropy, uniform_prior,
                                 uniform_prior_divergence)
from ebm_jax.samplers import langevin, replay_buffer_start

pytestmark = pytest.mark.fast_compile


def linear(w, x):
    return x @ w


def test_symmetric_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))

    def softmax(v):
        e = np.exp(v - v.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    qa, qb = softmax(a / 2.0), softmax(b / 2.0)
    expected = -0.5 * np.mean((qb * np.log(qa)).sum(-1) + (qa * np.log(qb)).sum(-1))
    got = symmetric_cross_entropy(jnp.asarray(a), jnp.asarray(b), temperature=2.0)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    # symmetric in the two views
    np.testing.assert_allclose(float(symmetric_cross_entropy(jnp.asarray(b), jnp.asarray(a), 2.0)),
                               expected, rtol=1e-5)


@pytest.mark.slow
def test_invariance_gradient_flows_through_both_views():
    """No stop-gradient: each view's logits get a gradient from the term."""
    a = jnp.array([[1.0, -0.5, 0.2], [0.3, 0.1, -1.0]])
    b = jnp.array([[-0.2, 0.4, 0.0], [1.0, -1.0, 0.5]])
    ga, gb = jax.grad(symmetric_cross_entropy, argnums=(0, 1))(a, b)
    assert float(jnp.abs(ga).sum()) > 1e-3 and float(jnp.abs(gb).sum()) > 1e-3
    # and through the transform: the params' gradient equals the sum of both views' parts
    w = jnp.array([[0.5, -0.5], [0.2, 0.1]])
    batch = {"x": jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])}
    term = invariance(linear, gaussian_noise(0.3))
    state = term.init(jax.random.key(0), w, batch)
    key = jax.random.key(1)
    grad = jax.grad(lambda p: term.loss(p, state, batch, key)[0])(w)
    k_a, k_b = jax.random.split(key)
    noise = jax.vmap(gaussian_noise(0.3))
    view_a = noise(jax.random.split(k_a, 3), batch["x"])
    view_b = noise(jax.random.split(k_b, 3), batch["x"])
    g_a = jax.grad(lambda p: symmetric_cross_entropy(view_a @ p,
                                                     jax.lax.stop_gradient(view_b @ w)))(w)
    g_b = jax.grad(lambda p: symmetric_cross_entropy(jax.lax.stop_gradient(view_a @ w),
                                                     view_b @ p))(w)
    assert float(jnp.abs(g_a).sum()) > 1e-3 and float(jnp.abs(g_b).sum()) > 1e-3
    np.testing.assert_allclose(grad, g_a + g_b, rtol=1e-4, atol=1e-6)


def test_invariance_is_zero_for_confident_agreeing_views():
    w = jnp.array([[20.0, -20.0]])
    batch = {"x": jnp.array([[1.0], [-1.0], [2.0]])}
    term = invariance(linear, identity())
    value, (_, info) = term.loss(w, term.init(jax.random.key(0), w, batch), batch,
                                 jax.random.key(1))
    assert float(value) < 1e-6 and float(info["agreement"]) == 1.0


def test_prior_is_zero_at_a_uniform_marginal():
    """Minimal (0) for a batch spread evenly over clusters with confident assignments (the
    batch marginal is uniform; each example's assignment is not), larger the more collapsed."""
    balanced = jnp.array([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0]])
    collapsed = jnp.array([[9.0, 0.0, 0.0]] * 3)
    half = jnp.array([[9.0, 0.0, 0.0], [9.0, 0.0, 0.0], [0.0, 9.0, 0.0]])
    for divergence in ("kl", "reverse_kl"):
        zero = float(uniform_prior_divergence(balanced, divergence=divergence))
        assert abs(zero) < 1e-6
        assert float(uniform_prior_divergence(half, divergence=divergence)) > 0.1
        assert float(uniform_prior_divergence(collapsed, divergence=divergence)) > \
            float(uniform_prior_divergence(half, divergence=divergence))
    np.testing.assert_allclose(float(uniform_prior_divergence(collapsed * 10)), np.log(3),
                               rtol=1e-4)


def test_prior_gradient_vanishes_at_the_uniform_marginal_and_pushes_towards_it():
    logits = jnp.array([[2.0, -2.0], [-2.0, 2.0]])
    grad = jax.grad(uniform_prior_divergence)(logits)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    skewed = jnp.array([[2.0, -2.0], [2.0, -2.0]])          # both in cluster 0
    step = skewed - 1.0 * jax.grad(uniform_prior_divergence)(skewed)
    assert float(uniform_prior_divergence(step)) < float(uniform_prior_divergence(skewed))


def test_prior_info_reports_the_largest_cluster_share():
    term = uniform_prior(linear)
    w = jnp.array([[1.0, -1.0]])
    batch = {"x": jnp.array([[1.0], [2.0], [3.0], [-1.0]])}
    _, (_, info) = term.loss(w, term.init(jax.random.key(0), w, batch), batch, jax.random.key(1))
    assert float(info["largest_cluster_share"]) == 0.75


def _small_gedi(**weights):
    logits_fn = lambda w, x: jnp.tanh(x @ w)             # noqa: E731
    sampler = langevin(energy_from_logits(logits_fn), step_size=0.1, noise_scale=0.01)
    return logits_fn, gedi(logits_fn, sampler, gaussian_noise(0.1), num_steps=3,
                           chain_start=replay_buffer_start(capacity=16), **weights)


@pytest.mark.slow
def test_zero_weights_drop_the_terms_from_the_value():
    w = 0.3 * jax.random.normal(jax.random.key(0), (2, 3))
    batch = {"x": jax.random.normal(jax.random.key(1), (8, 2))}
    values = {}
    for name, weights in {"all": {}, "no_gen": {"generative_weight": 0.0},
                          "no_prior": {"prior_weight": 0.0}}.items():
        _, loss = _small_gedi(**weights)
        state = loss.init(jax.random.key(2), w, batch)
        value, (_, info) = loss.loss(w, state, batch, jax.random.key(3))
        values[name] = (float(value), {k: float(v) for k, v in info.items()})
    full, info = values["all"]
    np.testing.assert_allclose(full, info["generative/loss"] + info["invariance/loss"]
                               + info["prior/loss"], rtol=1e-5)
    no_gen, info_ng = values["no_gen"]
    np.testing.assert_allclose(no_gen, info_ng["invariance/loss"] + info_ng["prior/loss"],
                               rtol=1e-5)
    no_prior, info_np = values["no_prior"]
    np.testing.assert_allclose(no_prior, info_np["generative/loss"] + info_np["invariance/loss"],
                               rtol=1e-5)
    assert set(info) == set(info_ng) == set(info_np)      # same program, same keys


def test_bad_settings_and_batches_raise_clear_errors():
    logits_fn = linear
    sampler = langevin(energy_from_logits(logits_fn), step_size=0.1, noise_scale=0.01)
    with pytest.raises(ValueError, match="prior_weight=-1.0"):
        gedi(logits_fn, sampler, identity(), prior_weight=-1.0)
    with pytest.raises(ValueError, match="temperature=0"):
        invariance(logits_fn, identity(), temperature=0)
    with pytest.raises(ValueError, match="divergence"):
        uniform_prior(logits_fn, divergence="js")
    with pytest.raises(ValueError, match="augment"):
        invariance(logits_fn, None)
    term = uniform_prior(logits_fn)
    with pytest.raises(KeyError, match="batch\\['x'\\]"):
        term.init(jax.random.key(0), jnp.ones((2, 2)), {"y": jnp.zeros(3)})
    with pytest.raises(TypeError, match="floating"):
        term.init(jax.random.key(0), jnp.ones((2, 2)), {"x": jnp.ones((3, 2), jnp.int32)})
    with pytest.raises(ValueError, match="K >= 2"):
        term.init(jax.random.key(0), jnp.ones((2, 1)), {"x": jnp.ones((3, 2))})


@pytest.mark.slow
@pytest.mark.optimised
def test_a_short_run_clusters_two_blobs_and_the_prior_keeps_them_balanced():
    """A tiny network, 300 steps on two separated blobs: GEDI splits them (both ways round)."""
    from ebm_jax.metrics.clustering import cluster_accuracy
    from ebm_jax.train import init_train_state, make_train_step

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1.5, 0.3, (128, 2)), rng.normal(1.5, 0.3, (128, 2))])
    y = np.repeat([0, 1], 128)
    x = jnp.asarray(x, jnp.float32)

    def logits_fn(p, v):
        return jnp.tanh(v @ p["w1"] + p["b1"]) @ p["w2"]

    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"w1": 0.5 * jax.random.normal(k1, (2, 16)), "b1": jnp.zeros(16),
              "w2": 0.5 * jax.random.normal(k2, (16, 2))}
    sampler = langevin(energy_from_logits(logits_fn), step_size=0.01, clip_range=(-3.0, 3.0))
    loss = gedi(logits_fn, sampler, gaussian_noise(0.1), num_steps=5, energy_l2=0.1,
                chain_start=replay_buffer_start(capacity=256))
    optimizer = optax.adam(1e-2)
    state = init_train_state(jax.random.key(1), params, optimizer, loss, {"x": x[:64]})
    step = make_train_step(loss, optimizer, guard=None)

    @jax.jit
    def run(state, index):
        return jax.lax.scan(lambda s, i: (step(s, {"x": x[i]})[0], None), state, index)[0]

    index = jax.random.randint(jax.random.key(2), (300, 64), 0, x.shape[0])
    state = run(state, index)
    pred = np.asarray(jnp.argmax(jax.vmap(logits_fn, (None, 0))(state.params, x), -1))
    assert cluster_accuracy(y, pred) >= 0.95
    assert max(np.mean(pred == 0), np.mean(pred == 1)) <= 0.6


def test_after_warmup_counts_evaluations_and_passes_the_term_through_afterwards():
    from ebm_jax.losses import after_warmup, cross_entropy

    term = cross_entropy(lambda w, x: x @ w)
    late = after_warmup(term, 3)
    w = jnp.array([[1.0, -1.0], [0.5, 0.0]])
    batch = {"x": jnp.ones((4, 2)), "y": jnp.array([0, 1, 1, 0])}
    state = late.init(jax.random.key(0), w, batch)
    inner_value = term.loss(w, (), batch, jax.random.key(1))[0]
    grad = jax.jit(jax.grad(lambda w, s: late.loss(w, s, batch, jax.random.key(1))[0]))
    for step in range(5):
        value, (new_state, info) = late.loss(w, state, batch, jax.random.key(1))
        on = step >= 3
        assert float(info["active"]) == float(on) and int(new_state.count) == step + 1
        np.testing.assert_allclose(value, inner_value if on else 0.0, rtol=1e-6)
        assert (float(jnp.abs(grad(w, state)).max()) > 0) == on   # no gradient while warming
        state = new_state
    with pytest.raises(ValueError, match="num_steps=-1"):
        after_warmup(term, -1)
