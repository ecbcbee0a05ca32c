"""Tests of ebm_jax.energies.distributions: normalised noise distributions for NCE.

Statistical tolerances: a Monte-Carlo moment is compared with its exact value
within 5 standard errors (two-sided P(|Z| > 5) ≈ 6e-7); quadrature errors are
bounded by the grid's resolution (see each test). Keys are fixed, so the tests
are deterministic; these bounds say why they are not fitted to the seed.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.data.toy2d import get_toy
from ebm_jax.energies.distributions import (
    NoiseDistribution,
    check_noise,
    fit_gaussian,
    from_pair,
    mixture,
    uniform_box,
)
from ebm_jax.metrics.likelihood import grid_points

N = 200_000  # draws for the moment tests

# Correlated 2-D data to fit: covariance [[1, 0.6], [0.6, 0.5]], mean (0.5, -1).
TRUE_MEAN = np.array([0.5, -1.0])
TRUE_COV = np.array([[1.0, 0.6], [0.6, 0.5]])


def _data(n=4000, seed=0):
    chol = np.linalg.cholesky(TRUE_COV)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (n, 2)), np.float64)
    return (TRUE_MEAN + z @ chol.T).astype(np.float32)


def _quadrature_mass(log_prob, limit, size=600):
    """∫ exp(log_prob) over [-limit, limit]² by the midpoint rule."""
    points, area = grid_points(limit, size)
    lp = jax.jit(jax.vmap(log_prob))(points)
    return float(jnp.sum(jnp.exp(lp)) * area)


def _moments(noise, n=N, seed=1):
    x = np.asarray(jax.jit(noise.sample, static_argnums=1)(jax.random.PRNGKey(seed), n),
                   np.float64)
    return x, x.mean(0), np.cov(x.T, bias=True)


def _assert_moments(x, mean, cov):
    """Sample mean within 5 SE (SE_i = sqrt(cov_ii / n)) and sample covariance within 5 SE,
    SE_ij = sd((x_i - m_i)(x_j - m_j)) / sqrt(n) estimated from the draws (right for any
    distribution with four moments, not only Gaussians)."""
    n = x.shape[0]
    got_mean, got_cov = x.mean(0), np.cov(x.T, bias=True)
    np.testing.assert_array_less(np.abs(got_mean - mean), 5 * np.sqrt(np.diag(cov) / n))
    c = x - got_mean
    products = c[:, :, None] * c[:, None, :]
    se = products.std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(got_cov - cov), 5 * se)


# -- fit_gaussian ---------------------------------------------------------------------

@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_fit_gaussian_moments_and_scale(covariance):
    """Draws of the fitted noise have the data's (MLE) mean and covariance, the covariance
    multiplied by scale² (only the diagonal for 'diagonal')."""
    data = _data()
    d64 = data.astype(np.float64)
    mean = d64.mean(0)
    cov = np.cov(d64.T, bias=True) + 1e-6 * np.eye(2)
    if covariance == "diagonal":
        cov = np.diag(np.diag(cov))
    scale = 1.5
    noise = fit_gaussian(data, covariance, scale=scale)
    assert noise.shape == (2,)
    x, _, _ = _moments(noise)
    _assert_moments(x, mean, scale**2 * cov)


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_fit_gaussian_log_prob_is_the_closed_form_and_normalised(covariance):
    data = _data()
    noise = fit_gaussian(data, covariance, scale=1.2)
    d64 = data.astype(np.float64)
    mean = d64.mean(0)
    cov = np.cov(d64.T, bias=True) + 1e-6 * np.eye(2)
    if covariance == "diagonal":
        cov = np.diag(np.diag(cov))
    cov = 1.2**2 * cov
    pts = d64[:50]
    diff = pts - mean
    ref = -0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff) \
        - 0.5 * np.linalg.slogdet(2 * np.pi * cov)[1]
    np.testing.assert_allclose(jax.vmap(noise.log_prob)(data[:50]), ref, rtol=1e-5, atol=1e-5)
    # Mass on [-7, 7]² (the density's mean is within 1 of 0 and its stds are at most 1.2,
    # so over 5 stds in every direction: mass outside < 1e-5). The midpoint rule with
    # cell 0.023 on a Gaussian of std >= 0.3 (the minor axis) errs by ~h²/24 × curvature,
    # below 1e-4.
    np.testing.assert_allclose(_quadrature_mass(noise.log_prob, 7.0), 1.0, atol=1e-3)


@pytest.mark.slow
def test_fit_gaussian_flattens_examples_of_any_shape():
    data = jax.random.normal(jax.random.PRNGKey(0), (500, 2, 3)) * 2.0 + 1.0
    noise = fit_gaussian(data, "diagonal")
    assert noise.shape == (2, 3)
    draws = noise.sample(jax.random.PRNGKey(1), 7)
    assert draws.shape == (7, 2, 3) and draws.dtype == jnp.float32
    lp = jax.vmap(noise.log_prob)(data[:4])
    assert lp.shape == (4,)
    flat = fit_gaussian(data.reshape(500, 6), "diagonal")
    np.testing.assert_allclose(lp, jax.vmap(flat.log_prob)(data[:4].reshape(4, 6)), rtol=1e-6)
    check_noise(noise, (2, 3))


def test_fit_gaussian_errors():
    data = _data(100)
    with pytest.raises(ValueError, match="covariance='spherical'"):
        fit_gaussian(data, "spherical")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scale="):
            fit_gaussian(data, scale=bad)
    with pytest.raises(ValueError, match="jitter="):
        fit_gaussian(data, jitter=-1e-3)
    fit_gaussian(data, scale=np.float32(1.5))  # NumPy scalars are numbers too
    with pytest.raises(ValueError, match=r"x has shape \(100,\)"):
        fit_gaussian(data[:, 0])
    with pytest.raises(ValueError, match=r"x has shape \(1, 2\)"):
        fit_gaussian(data[:1])
    with pytest.raises(ValueError, match="non-finite"):
        fit_gaussian(np.array([[0.0, 1.0], [np.inf, 0.0], [1.0, 1.0]]))
    # Three 5-D examples: the covariance has rank 2 (jitter 0 keeps it singular).
    with pytest.raises(ValueError, match="singular"):
        fit_gaussian(np.random.default_rng(0).normal(size=(3, 5)), jitter=0.0)
    with pytest.raises(ValueError, match="zero variance"):
        fit_gaussian(np.ones((10, 2)), "diagonal", jitter=0.0)
    noise = fit_gaussian(data)
    with pytest.raises(ValueError, match=r"got x of shape \(3, 2\)"):
        noise.log_prob(jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="n=2.5"):
        noise.sample(jax.random.PRNGKey(0), 2.5)


# -- uniform_box ----------------------------------------------------------------------

def test_uniform_box_log_prob_support_and_moments():
    low, high = np.array([-1.0, 0.0]), np.array([3.0, 0.5])
    noise = uniform_box(low, high, (2,))
    np.testing.assert_allclose(noise.log_prob(jnp.array([0.0, 0.25])), -math.log(4.0 * 0.5),
                               rtol=1e-6)
    assert noise.log_prob(jnp.array([3.5, 0.25])) == -jnp.inf
    assert noise.log_prob(jnp.array([0.0, -0.01])) == -jnp.inf
    # Normalised: mass over [-4, 4]² is 1 (the midpoint rule is exact for a box aligned
    # with cell edges up to the boundary cells: cell 8/800 = 0.01 divides every edge).
    np.testing.assert_allclose(_quadrature_mass(noise.log_prob, 4.0, size=800), 1.0, atol=1e-3)
    x, _, _ = _moments(noise)
    assert np.all(x >= low) and np.all(x <= high)
    _assert_moments(x, (low + high) / 2, np.diag((high - low) ** 2 / 12))


def test_uniform_box_scalar_bounds_and_shapes():
    noise = uniform_box(-2.0, 2.0, (3, 4))
    assert noise.sample(jax.random.PRNGKey(0), 5).shape == (5, 3, 4)
    np.testing.assert_allclose(noise.log_prob(jnp.zeros((3, 4))), -12 * math.log(4.0), rtol=1e-6)


def test_uniform_box_errors():
    with pytest.raises(ValueError, match="low < high"):
        uniform_box(1.0, 1.0, (2,))
    with pytest.raises(ValueError, match="low < high"):
        uniform_box([0.0, 2.0], [1.0, 1.0], (2,))
    with pytest.raises(ValueError, match="broadcastable to shape"):
        uniform_box(np.zeros(3), 1.0, (2,))
    with pytest.raises(ValueError, match="finite bounds"):
        uniform_box(-np.inf, 1.0, (2,))
    with pytest.raises(ValueError, match="shape="):
        uniform_box(0.0, 1.0, (0,))
    with pytest.raises(ValueError, match="shape="):
        uniform_box(0.0, 1.0, 5)


# -- mixture --------------------------------------------------------------------------

@pytest.mark.slow
def test_mixture_log_prob_normalised_and_moments():
    """Mixture of a Gaussian and a box with weights 3:1 (normalised here to 0.75, 0.25)."""
    data = _data()
    gauss = fit_gaussian(data)
    box = uniform_box(-3.0, 3.0, (2,))
    noise = mixture([gauss, box], weights=[3.0, 1.0])
    x0 = jnp.array([0.3, -0.4])
    ref = np.logaddexp(math.log(0.75) + float(gauss.log_prob(x0)),
                       math.log(0.25) + float(box.log_prob(x0)))
    np.testing.assert_allclose(noise.log_prob(x0), ref, rtol=1e-5)
    # The box's edges lie on cell edges of the 800-cell grid on [-4, 4]² (cell 0.01); the
    # Gaussian part (mean (0.5, -1), stds 1 and 0.71) has mass ~1e-3 outside the box: its
    # y-marginal puts P(y < -4) = Φ(-3 / 0.71) ≈ 1e-5 and x P(x > 4) = Φ(-3.5) ≈ 2e-4.
    np.testing.assert_allclose(_quadrature_mass(noise.log_prob, 4.0, size=800), 1.0, atol=1e-3)
    # Exact moments from the components' (the Gaussian's are the fitted ones; the box's are
    # mean 0 and covariance (6² / 12) I = 3 I).
    d64 = data.astype(np.float64)
    g_mean = d64.mean(0)
    g_cov = np.cov(d64.T, bias=True) + 1e-6 * np.eye(2)
    mean = 0.75 * g_mean
    cov = 0.75 * (g_cov + np.outer(g_mean, g_mean)) + 0.25 * 3.0 * np.eye(2) - np.outer(mean, mean)
    x, _, _ = _moments(noise)
    _assert_moments(x, mean, cov)


def test_mixture_weights_default_equal_and_errors():
    a, b = uniform_box(0.0, 1.0, (2,)), uniform_box(-1.0, 1.0, (2,))
    noise = mixture([a, b])
    np.testing.assert_allclose(noise.log_prob(jnp.array([0.5, 0.5])),
                               math.log(0.5 * 1.0 + 0.5 * 0.25), rtol=1e-6)
    with pytest.raises(ValueError, match="components="):
        mixture([])
    with pytest.raises(ValueError, match=r"components\[1\]"):
        mixture([a, "box"])
    with pytest.raises(ValueError, match="expected all the same example shape"):
        mixture([a, uniform_box(0.0, 1.0, (3,))])
    with pytest.raises(ValueError, match=r"weights has shape \(3,\)"):
        mixture([a, b], weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="weights="):
        mixture([a, b], weights=[1.0, 0.0])


# -- from_pair and check_noise ---------------------------------------------------------

@pytest.mark.slow
def test_from_pair_wraps_a_toy_density():
    toy = get_toy("8gaussians")
    noise = from_pair(toy.sample, toy.log_prob, (2,))
    assert noise.shape == (2,)
    # The toy's own log_prob is normalised (tested in test_toy2d); the wrapper passes it on.
    np.testing.assert_allclose(_quadrature_mass(noise.log_prob, 4.5, size=400), 1.0, atol=1e-3)
    assert noise.sample(jax.random.PRNGKey(0), 3).shape == (3, 2)


def test_from_pair_and_check_noise_errors():
    good_sample = lambda k, n: jnp.zeros((n, 2))  # noqa: E731
    good_lp = lambda x: -jnp.sum(x**2)  # noqa: E731
    with pytest.raises(ValueError, match="sample="):
        from_pair("not callable", good_lp, (2,))
    with pytest.raises(ValueError, match="log_prob="):
        from_pair(good_sample, None, (2,))
    with pytest.raises(ValueError, match=r"samples have shape \(2, 3\) for n=2: expected \(2, 2\)"):
        from_pair(lambda k, n: jnp.zeros((n, 3)), good_lp, (2,))
    with pytest.raises(ValueError, match=r"returned shape \(2,\): expected a scalar"):
        from_pair(good_sample, lambda x: -x**2, (2,))
    with pytest.raises(ValueError, match="floating dtype"):
        from_pair(lambda k, n: jnp.zeros((n, 2), jnp.int32), good_lp, (2,))
    # check_noise infers the shape of a hand-built pair and compares it with the data's.
    bare = NoiseDistribution(good_sample, good_lp)
    check_noise(bare, (2,))
    with pytest.raises(ValueError, match=r"expected \(2, 5\)"):
        check_noise(bare, (5,))
    with pytest.raises(ValueError, match=r"noise has shape \(2,\): expected \(5,\)"):
        check_noise(from_pair(good_sample, good_lp, (2,)), (5,))
    with pytest.raises(ValueError, match="expected a NoiseDistribution"):
        check_noise((good_sample, good_lp), (2,))


def test_distributions_are_jittable_and_deterministic():
    noise = mixture([fit_gaussian(_data()), uniform_box(-3.0, 3.0, (2,))], [0.9, 0.1])
    sample = jax.jit(noise.sample, static_argnums=1)
    a, b = sample(jax.random.PRNGKey(3), 16), sample(jax.random.PRNGKey(3), 16)
    np.testing.assert_array_equal(a, b)
    lp = jax.jit(jax.vmap(noise.log_prob))(a)
    assert lp.shape == (16,) and bool(jnp.all(jnp.isfinite(lp)))
