"""Tests for ebm_jax.energies: the energy protocol helpers and the analytic energies.

Statistical tolerances: a Monte-Carlo estimate is compared with its exact
value within 5 of its standard errors (two-sided P(|Z| > 5) ≈ 6e-7 for a
Gaussian estimate); keys are fixed, so the tests are deterministic, and the
bounds say why they are not fitted to the seed.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from ebm_jax.energies import (AnalyticEnergy, batch_energy, energy_from_logits, gaussian,
                              gaussian_mixture, joint_energy_from_logits, with_temperature)

N = 20_000  # samples for the moment tests

MEAN = np.array([0.5, -1.0])
COV = np.array([[1.0, 0.6], [0.6, 2.0]])

MIX_WEIGHTS = np.array([1.0, 2.0, 1.0])  # unnormalised on purpose: the factory normalises
MIX_MEANS = np.array([[-2.0, 0.0], [1.5, 1.0], [0.0, -2.5]])
MIX_STDS = np.array([0.5, 0.8, 0.6])


def _linear_logits(params, x):
    """A tiny classifier: ``logits = W x + b`` for one example ``x[D]``."""
    return params["w"] @ x + params["b"]


def _classifier_params(seed, d=3, k=4):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(k, d)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(k,)), jnp.float32)}


_batched_logits = jax.jit(jax.vmap(_linear_logits, in_axes=(None, 0)))


def _normal(seed, shape, scale=1.0):
    """Test inputs from NumPy: cheaper than compiling eager jax.random ops."""
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _grid(lo, hi, n):
    """Midpoints ``[n*n, 2]`` of an n x n grid over ``[lo0, hi0] x [lo1, hi1]``, and cell area."""
    h = (np.asarray(hi, np.float64) - np.asarray(lo, np.float64)) / n
    g0 = lo[0] + (np.arange(n) + 0.5) * h[0]
    g1 = lo[1] + (np.arange(n) + 0.5) * h[1]
    xx, yy = np.meshgrid(g0, g1, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], -1), h[0] * h[1]


def _energies_on(analytic: AnalyticEnergy, pts):
    energies = jax.jit(batch_energy(analytic.energy_fn))(None, jnp.asarray(pts, jnp.float32))
    return np.asarray(energies, np.float64)


# --------------------------------------------------------------------------- protocol helpers


def test_batch_energy_shapes_and_values():
    def energy_fn(params, x, c):
        return params * jnp.sum(x**2) + c

    xs = jnp.arange(12.0).reshape(4, 3)
    cs = jnp.array([0.0, 1.0, 2.0, 3.0])
    out = batch_energy(energy_fn)(2.0, xs, cs)
    assert out.shape == (4,)
    expected = [energy_fn(2.0, xs[i], cs[i]) for i in range(4)]
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-6)
    # params are shared (not batched): a pytree of params with no batch axis works.
    params = {"a": jnp.ones(3)}
    out = jax.jit(batch_energy(lambda p, x: jnp.dot(p["a"], x)))(params, xs)
    np.testing.assert_allclose(np.asarray(out), np.asarray(xs.sum(1)), rtol=1e-6)


def test_energy_from_logits_is_minus_logsumexp():
    params = _classifier_params(0)
    xs = _normal(1, (8, 3))
    energy = jax.jit(batch_energy(energy_from_logits(_linear_logits)))(params, xs)
    assert energy.shape == (8,)
    logits = np.asarray(_batched_logits(params, xs), np.float64)
    m = logits.max(1)
    expected = -(m + np.log(np.exp(logits - m[:, None]).sum(1)))  # stable numpy logsumexp
    np.testing.assert_allclose(np.asarray(energy), expected, rtol=1e-5, atol=1e-5)


def test_energy_from_logits_stable_for_large_logits():
    energy = energy_from_logits(lambda p, x: x)
    value = energy(None, jnp.array([1000.0, 1000.0, -1000.0]))
    assert float(value) == pytest.approx(-1000.0 - np.log(2.0), rel=1e-6)
    assert float(energy(None, jnp.zeros(3))) == pytest.approx(-np.log(3.0), rel=1e-6)


def test_joint_energy_picks_minus_logit_of_label():
    params = _classifier_params(1)
    xs = _normal(2, (6, 3))
    ys = jnp.array([0, 1, 2, 3, 2, 1])
    joint = jax.jit(batch_energy(joint_energy_from_logits(_linear_logits)))
    energy = joint(params, xs, ys)
    logits = np.asarray(_batched_logits(params, xs))
    np.testing.assert_allclose(np.asarray(energy), -logits[np.arange(6), np.asarray(ys)], rtol=1e-6)
    # Consistency: -log p(y|x) = E(x, y) - E(x), so the softmax over labels sums to 1.
    e_x = np.asarray(jax.jit(batch_energy(energy_from_logits(_linear_logits)))(params, xs))
    all_y = np.stack([np.asarray(joint(params, xs, jnp.full((6,), y))) for y in range(4)], axis=1)
    np.testing.assert_allclose(np.exp(e_x[:, None] - all_y).sum(1), 1.0, rtol=1e-5)


def test_with_temperature_scales_energy_and_passes_conditioning():
    def energy_fn(params, x, c):
        return params * jnp.sum(x) + c

    tempered = with_temperature(energy_fn, 4.0)
    x = jnp.array([1.0, 2.0])
    assert float(tempered(2.0, x, 2.0)) == pytest.approx((2.0 * 3.0 + 2.0) / 4.0)
    assert float(with_temperature(energy_fn, 1.0)(2.0, x, 2.0)) == pytest.approx(8.0)
    # Gradients scale too: a sampler at temperature T sees ∇E / T.
    g = jax.grad(with_temperature(lambda p, x: 0.5 * jnp.sum(x**2), 0.5), argnums=1)(None, x)
    np.testing.assert_allclose(np.asarray(g), 2.0 * np.asarray(x), rtol=1e-6)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_with_temperature_rejects_non_positive(temperature):
    with pytest.raises(ValueError, match=r"temperature=.*: expected a positive number"):
        with_temperature(lambda p, x: jnp.sum(x), temperature)


# --------------------------------------------------------------------------- analytic gaussian


def test_gaussian_log_z_matches_quadrature():
    g = gaussian(MEAN, COV)
    assert g.log_z.shape == () and g.log_z.dtype == jnp.float32
    # ±9 marginal stds around the mean on a 400x400 midpoint grid: the mass
    # outside is < 1e-15 and the midpoint rule on a Gaussian with cell/std <= 0.05
    # is accurate far beyond float32, so 1e-4 on log Z is float32 rounding room.
    sd = np.sqrt(np.diag(COV))
    pts, area = _grid(MEAN - 9 * sd, MEAN + 9 * sd, 400)
    z = np.sum(np.exp(-_energies_on(g, pts))) * area
    assert float(g.log_z) == pytest.approx(np.log(z), abs=1e-4)
    assert float(g.log_z) == pytest.approx(0.5 * np.log(np.linalg.det(2 * np.pi * COV)), abs=1e-5)


def test_gaussian_log_prob_matches_scipy():
    g = gaussian(MEAN, COV)
    xs = _normal(3, (10, 2), 2.0)
    lp = np.asarray(jax.jit(jax.vmap(g.log_prob))(xs))
    np.testing.assert_allclose(lp, multivariate_normal(MEAN, COV).logpdf(np.asarray(xs)),
                               rtol=1e-5, atol=1e-5)
    assert g.energy_fn(None, jnp.asarray(MEAN, jnp.float32)) == 0.0  # minimum at the mean


def test_gaussian_sample_moments(key):
    g = gaussian(MEAN, COV)
    sample = jax.jit(g.sample, static_argnums=1)
    x = sample(key, N)
    assert x.shape == (N, 2) and x.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(x), np.asarray(sample(key, N)))  # deterministic
    np.testing.assert_allclose(np.asarray(g.mean), MEAN, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g.covariance), COV, rtol=1e-6)
    x = np.asarray(x, np.float64)
    # Mean: standard error sqrt(Σ_ii / n); 5 standard errors.
    np.testing.assert_array_less(np.abs(x.mean(0) - MEAN), 5 * np.sqrt(np.diag(COV) / N))
    # Covariance entry (i, j) of a Gaussian: Var(S_ij) ≈ (Σ_ii Σ_jj + Σ_ij²) / n; 5 standard errors.
    se_cov = np.sqrt((np.outer(np.diag(COV), np.diag(COV)) + COV**2) / N)
    np.testing.assert_array_less(np.abs(np.cov(x.T) - COV), 5 * se_cov)


def test_gaussian_three_dimensional_log_z():
    cov = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.5]])
    g = gaussian(np.zeros(3), cov)
    expected = 1.5 * np.log(2 * np.pi) + 0.5 * np.log(np.linalg.det(cov))
    assert float(g.log_z) == pytest.approx(expected, abs=1e-5)
    assert g.sample(jax.random.PRNGKey(0), 5).shape == (5, 3)


@pytest.mark.parametrize("mean, cov, match", [
    (np.zeros(2), np.ones((2, 3)),
     r"covariance has shape \(2, 3\): expected a square \[D, D\] matrix"),
    (np.zeros(2), np.ones(2), r"covariance has shape \(2,\): expected a square"),
    (np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), r"covariance is not symmetric"),
    (np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), r"covariance is not positive definite"),
    (np.zeros(2), np.zeros((2, 2)), r"covariance is not positive definite"),
    (np.zeros(3), np.eye(2), r"covariance has shape \(2, 2\): expected \[3, 3\] to match mean"),
    (np.zeros((2, 1)), np.eye(2), r"mean has shape \(2, 1\): expected a vector \[D\]"),
])
def test_gaussian_bad_input(mean, cov, match):
    with pytest.raises(ValueError, match=match):
        gaussian(mean, cov)


# --------------------------------------------------------------------------- gaussian mixture


def _mixture():
    return gaussian_mixture(MIX_WEIGHTS, MIX_MEANS, MIX_STDS)


def _mixture_grid():
    # [-6, 6]^2 holds every component to >= 5 stds (the outermost mean, (0, -2.5)
    # with std 0.6, is 5.8 stds from the edge; tail mass < 1e-8). 400x400 cells
    # of side 0.03 <= 0.06 stds: midpoint error far below 1e-5.
    return _grid(np.array([-6.0, -6.0]), np.array([6.0, 6.0]), 400)


def test_gaussian_mixture_is_normalised():
    mix = _mixture()
    assert float(mix.log_z) == 0.0
    pts, area = _mixture_grid()
    p = np.exp(-_energies_on(mix, pts))
    assert np.sum(p) * area == pytest.approx(1.0, abs=1e-4)


def test_gaussian_mixture_closed_form_moments_match_quadrature():
    mix = _mixture()
    pts, area = _mixture_grid()
    p = np.exp(-_energies_on(mix, pts)) * area
    mean = p @ pts
    centred = pts - mean
    cov = (centred * p[:, None]).T @ centred
    np.testing.assert_allclose(np.asarray(mix.mean), mean, atol=1e-4)
    np.testing.assert_allclose(np.asarray(mix.covariance), cov, atol=1e-4)


def test_gaussian_mixture_matches_explicit_density():
    mix = _mixture()
    xs = np.asarray(_normal(4, (20, 2), 2.0), np.float64)
    w = MIX_WEIGHTS / MIX_WEIGHTS.sum()
    dens = sum(w[k] * multivariate_normal(MIX_MEANS[k], MIX_STDS[k] ** 2 * np.eye(2)).pdf(xs)
               for k in range(3))
    log_prob = jax.jit(jax.vmap(mix.log_prob))(jnp.asarray(xs, jnp.float32))
    np.testing.assert_allclose(np.asarray(log_prob), np.log(dens), rtol=1e-5, atol=1e-5)


def test_gaussian_mixture_sample_moments_and_weights(key):
    mix = _mixture()
    x = jax.jit(mix.sample, static_argnums=1)(key, N)
    assert x.shape == (N, 2) and x.dtype == jnp.float32
    x = np.asarray(x, np.float64)
    mean, cov = np.asarray(mix.mean, np.float64), np.asarray(mix.covariance, np.float64)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 5 * np.sqrt(np.diag(cov) / N))
    # A mixture is not Gaussian, so the standard error of each covariance entry is
    # estimated from the draws: sd((x_i - m_i)(x_j - m_j)) / sqrt(n).
    c = x - x.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    se_cov = prods.std(0) / np.sqrt(N)
    np.testing.assert_array_less(np.abs(np.cov(x.T) - cov), 5 * se_cov)
    # Component frequencies: the nearest mean is the true component except for
    # draws > 2.5 stds out towards another mean (a few %); assign by the largest
    # posterior responsibility instead, whose average equals the weight exactly:
    # E_x[p(k | x)] = w_k. Each responsibility lies in [0, 1], so its variance
    # is <= w_k (1 - w_k); 5 standard errors.
    w = MIX_WEIGHTS / MIX_WEIGHTS.sum()
    log_comp = np.stack([np.log(w[k]) + multivariate_normal(
        MIX_MEANS[k], MIX_STDS[k] ** 2 * np.eye(2)).logpdf(x) for k in range(3)], axis=1)
    resp = np.exp(log_comp - np.logaddexp.reduce(log_comp, axis=1, keepdims=True))
    np.testing.assert_array_less(np.abs(resp.mean(0) - w), 5 * np.sqrt(w * (1 - w) / N))


def test_gaussian_mixture_weights_are_normalised():
    a = gaussian_mixture(MIX_WEIGHTS, MIX_MEANS, MIX_STDS)
    b = gaussian_mixture(MIX_WEIGHTS / MIX_WEIGHTS.sum(), MIX_MEANS, MIX_STDS)
    x = jnp.array([0.3, -0.7])
    assert float(a.energy_fn(None, x)) == pytest.approx(float(b.energy_fn(None, x)), rel=1e-6)


@pytest.mark.parametrize("weights, means, stds, match", [
    ([1.0, 1.0], [0.0, 1.0], [1.0, 1.0], r"means has shape \(2,\): expected \[K, D\]"),
    ([1.0], [[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0],
     r"weights \(1,\) and stds \(2,\): expected both of shape \(2,\) to match means"),
    ([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], [1.0],
     r"weights \(2,\) and stds \(1,\): expected both of shape \(2,\)"),
    ([1.0, 0.0], [[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0], r"weights and stds must be positive"),
    ([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], [1.0, -1.0], r"weights and stds must be positive"),
])
def test_gaussian_mixture_bad_input(weights, means, stds, match):
    with pytest.raises(ValueError, match=match):
        gaussian_mixture(weights, means, stds)
