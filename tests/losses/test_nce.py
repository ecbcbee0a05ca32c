"""Tests of noise-contrastive estimation (ebm_jax.losses.nce).

The consistency test fits ``E(x) = ½ xᵀ L Lᵀ x`` and a free ``log_z`` to 5-D
Gaussian data: NCE's estimates converge to the true precision and the true
log normaliser ``½ log det(2πΣ)`` at the ``1/sqrt(N)`` rate. Each fit is
full-batch with a fixed noise sample (the key is the same every step), so it
is deterministic and converges to the exact NCE estimator of that data and
noise sample: the only error left is the statistical one.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.data.toy2d import get_toy
from ebm_jax.energies.distributions import (NoiseDistribution, fit_gaussian, from_pair,
                                            uniform_box)
from ebm_jax.losses.nce import nce, nce_params
from ebm_jax.metrics import kl_by_quadrature
from ebm_jax.nets import MLP, as_energy_fn
from ebm_jax.train.state import init_train_state
from ebm_jax.train.step import make_train_step

# Long chains and training loops: runtime, not compilation (see tests/conftest.py).
pytestmark = pytest.mark.optimised

# -- exact value on a deterministic noise sample ---------------------------------------


def fixed_noise(points, log_prob):
    """A 'distribution' whose draws are always the first n of ``points`` (key ignored), so
    the loss can be recomputed by hand."""
    points = jnp.asarray(points, jnp.float32)
    return from_pair(lambda k, n: points[:n], log_prob, points.shape[1:])


def test_nce_value_gradient_and_info_by_hand():
    """L = [Σ_data softplus(-G) + Σ_noise softplus(G)] / (B + M) with
    G = -E(x) - log_z - log p_n(x) - log(M/B); here E = ½ a|x|², p_n = N(0, I) in 2-D,
    B = 4 data points and M = 6 noise points (noise_ratio 1.5). The gradient in
    (a, log_z) is checked against the closed form dL/dG · dG/dθ."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 2)) * 0.7
    y = rng.normal(size=(6, 2)) * 1.3

    def gauss_lp(z):
        return -0.5 * jnp.sum(z**2) - math.log(2 * math.pi)

    loss = nce(lambda a, z: 0.5 * a * jnp.sum(z**2), fixed_noise(y, gauss_lp), noise_ratio=1.5)
    params = nce_params(jnp.float32(1.7), log_z=0.4)
    batch = {"x": jnp.asarray(x, jnp.float32)}
    assert loss.init(jax.random.PRNGKey(0), params, batch) == ()
    (value, (state, info)), grads = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))(
        params, (), batch, jax.random.PRNGKey(1))
    assert state == ()

    a, log_z, log_nu = 1.7, 0.4, math.log(6 / 4)

    def g(z):
        sq = np.sum(z**2, 1)
        return -0.5 * a * sq - log_z - (-0.5 * sq - math.log(2 * math.pi)) - log_nu

    def softplus(t):
        return np.logaddexp(t, 0.0)

    def sigmoid(t):
        return 1 / (1 + np.exp(-t))

    gx, gy = g(x), g(y)
    np.testing.assert_allclose(value, (softplus(-gx).sum() + softplus(gy).sum()) / 10, rtol=1e-5)
    # dL/dG: -σ(-G) for data, σ(G) for noise; dG/da = -½|z|², dG/dlog_z = -1.
    dx, dy = -sigmoid(-gx) / 10, sigmoid(gy) / 10
    grad_a = np.sum(dx * -0.5 * np.sum(x**2, 1)) + np.sum(dy * -0.5 * np.sum(y**2, 1))
    grad_log_z = -(dx.sum() + dy.sum())
    np.testing.assert_allclose(grads["energy"], grad_a, rtol=1e-4)
    np.testing.assert_allclose(grads["log_z"], grad_log_z, rtol=1e-4)
    np.testing.assert_allclose(info["accuracy"], ((gx > 0).sum() + (gy < 0).sum()) / 10)
    np.testing.assert_allclose(info["log_z"], log_z)
    np.testing.assert_allclose(info["energy_data"], np.mean(0.5 * a * np.sum(x**2, 1)), rtol=1e-5)
    np.testing.assert_allclose(info["energy_noise"], np.mean(0.5 * a * np.sum(y**2, 1)), rtol=1e-5)


@pytest.mark.slow
def test_nce_gradient_vanishes_at_the_truth_in_expectation():
    """Population NCE is stationary at p_model = p_data, log_z = log Z. For data and noise
    both from N(0, I) in 2-D and the true model (a = 1, log_z = log 2π), G = -log ν for
    every point, so dL/dlog_z = [B σ(-G) - M σ(G)] / (B + M) = [B·ν/(1+ν) - M/(1+ν)] / (B+M)
    = 0 exactly, and dL/da is a mean-zero average (checked within 5 SE)."""
    n = 20_000
    # N(0, ½ I) is the moment fit of the 4 points ±e_i; widen it to N(0, I) by scale √2.
    noise = fit_gaussian(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]),
                         scale=math.sqrt(2.0), jitter=0.0)
    loss = nce(lambda a, z: 0.5 * a * jnp.sum(z**2), noise, noise_ratio=2.0)
    params = nce_params(jnp.float32(1.0), log_z=math.log(2 * math.pi))
    x = jax.random.normal(jax.random.PRNGKey(0), (n, 2))
    (_, (_, info)), grads = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))(
        params, (), {"x": x}, jax.random.PRNGKey(1))
    np.testing.assert_allclose(grads["log_z"], 0.0, atol=1e-6)
    # dL/da = [Σ_data σ(-G)·½|x|² - Σ_noise σ(G)·½|y|²]/(B+M) with σ(-G) = 2/3, σ(G) = 1/3:
    # per point ±(1/3)·½|z|² (|z|² ~ χ²₂, sd 2): SE = sqrt(B·(2/3)² + M·(1/3)²)·1/(B+M) ≈ 1.1e-4.
    se = math.sqrt(n * (2 / 3) ** 2 + 2 * n * (1 / 3) ** 2) / (3 * n)
    np.testing.assert_allclose(grads["energy"], 0.0, atol=5 * se)
    # The classifier is at chance: G = -log 2 < 0 for every point, so it calls all noise.
    np.testing.assert_allclose(info["accuracy"], 2 / 3, rtol=1e-6)


# -- consistency: precision and log normaliser of a 5-D Gaussian ------------------------

D = 5
_A = np.random.default_rng(0).normal(size=(D, D))
SIGMA = _A @ _A.T / D + 0.5 * np.eye(D)          # eigenvalues 0.52 ... 2.12
P_TRUE = np.linalg.inv(SIGMA)
LOG_Z_TRUE = 0.5 * np.linalg.slogdet(2 * np.pi * SIGMA)[1]
SEEDS = 3


def precision_energy(lower, x):
    """E(x) = ½ xᵀ P x with P = L Lᵀ, L the lower triangle of a free matrix."""
    return 0.5 * jnp.sum((jnp.tril(lower).T @ x) ** 2)


@functools.lru_cache(maxsize=None)
def wide_noise():
    """A Gaussian fitted to an independent pilot sample of 20,000 points and widened by
    1.2: fixed, shared by every fit, close to the data but heavier-tailed."""
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(99), (20_000, D)), np.float64)
    return fit_gaussian(z @ np.linalg.cholesky(SIGMA).T, scale=1.2)


def nce_fit_errors(n):
    """Fit by NCE on SEEDS independent data sets of size n (vmapped); returns the relative
    Frobenius errors of P and the absolute errors of log_z, each [SEEDS]."""
    loss = nce(precision_energy, wide_noise(), noise_ratio=1.0)
    num_steps = 1000
    opt = optax.adam(optax.cosine_decay_schedule(0.05, num_steps))
    chol = jnp.asarray(np.linalg.cholesky(SIGMA), jnp.float32)

    def fit_one(seed_key):
        k_data, k_noise = jax.random.split(seed_key)
        batch = {"x": jax.random.normal(k_data, (n, D)) @ chol.T}
        params = nce_params(jnp.eye(D))

        def step(carry, _):
            p, o = carry
            # The same key every step: one fixed noise sample of M = n points.
            grads, _ = jax.grad(loss.loss, has_aux=True)(p, (), batch, k_noise)
            u, o = opt.update(grads, o, p)
            return (optax.apply_updates(p, u), o), None

        (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=num_steps)
        return p

    params = jax.jit(jax.vmap(fit_one))(jax.random.split(jax.random.PRNGKey(n), SEEDS))
    lower = np.tril(np.asarray(params["energy"], np.float64))
    p_hat = lower @ np.swapaxes(lower, 1, 2)
    p_err = np.linalg.norm(p_hat - P_TRUE, axis=(1, 2)) / np.linalg.norm(P_TRUE)
    return p_err, np.abs(np.asarray(params["log_z"], np.float64) - LOG_Z_TRUE)


def mle_rates(n):
    """The maximum-likelihood error scales at sample size n, the yardstick for NCE:
    E|P̂ - P|_F² ≈ ((tr P)² + |P|_F²) / n (Wishart, entry variances (P_ii P_jj + P_ij²)/n),
    and sd(½ log det Σ̂) ≈ sqrt(D / (2n))."""
    p_rate = math.sqrt((np.trace(P_TRUE) ** 2 + np.sum(P_TRUE**2)) / n) / np.linalg.norm(P_TRUE)
    return p_rate, math.sqrt(D / (2 * n))


@pytest.mark.slow
def test_nce_is_consistent_for_precision_and_log_normaliser():
    """Errors shrink at the 1/sqrt(N) rate from N = 2,000 to N = 20,000.

    Tolerances: NCE with ν = 1 and noise near the data is about sqrt(2) less efficient
    than maximum likelihood (Gutmann & Hyvärinen 2012, Fig. 4: asymptotic variance
    (1 + 1/ν) times the MLE's when p_n = p_data). Each error, averaged over 3 data sets,
    must be below 3 × sqrt(2) × the MLE error scale at its N (0.21 / 0.066 relative for P,
    0.15 / 0.047 for log_z); measured: 0.069 / 0.019 and 0.062 / 0.015. The larger set
    must have the smaller error in both, and for P (a 15-parameter Frobenius norm averaged
    over 3 sets, so concentrated: sd of the mean ~10%) the ratio must exceed half of the
    expected sqrt(10). A flipped sign, a detached energy or a dropped noise term leaves
    errors of order 1."""
    small_p, small_z = nce_fit_errors(2_000)
    large_p, large_z = nce_fit_errors(20_000)
    for n, p_err, z_err in ((2_000, small_p, small_z), (20_000, large_p, large_z)):
        p_rate, z_rate = mle_rates(n)
        assert p_err.mean() < 3 * math.sqrt(2) * p_rate, (n, p_err, p_rate)
        assert z_err.mean() < 3 * math.sqrt(2) * z_rate, (n, z_err, z_rate)
    assert large_p.mean() < small_p.mean() / (math.sqrt(10) / 2), (small_p, large_p)
    assert large_z.mean() < small_z.mean(), (small_z, large_z)


# -- an MLP energy on 8gaussians -------------------------------------------------------

@pytest.mark.slow
def test_nce_learns_8gaussians_with_an_mlp():
    """A 2-64-64-1 Swish MLP trained by NCE against a Gaussian fitted to the data
    (noise_ratio 1, batch 256, Adam 3e-3 cosine-decayed over 2,000 steps, through
    init_train_state / make_train_step). Measured KL(true || model) on a 200x200 grid:
    0.0175 here, 0.016-0.044 over 6 seeds (1,500-2,000 steps). Threshold 0.1 nats: the
    untrained net is at 2.6, the fitted Gaussian itself at ~1.4, and a flipped
    sign or a detached energy never leaves that range."""
    toy = get_toy("8gaussians")
    model = as_energy_fn(MLP(2, (64, 64), 1, activation="swish", rngs=nnx.Rngs(0)))
    noise = fit_gaussian(toy.sample(jax.random.PRNGKey(1), 20_000))
    loss = nce(model.apply, noise, noise_ratio=1.0)
    num_steps, batch_size = 2000, 256
    opt = optax.adam(optax.cosine_decay_schedule(3e-3, num_steps, alpha=0.01))
    example = {"x": toy.sample(jax.random.PRNGKey(2), batch_size)}
    state = init_train_state(jax.random.PRNGKey(3), nce_params(model.params), opt, loss, example)
    train_step = make_train_step(loss, opt)

    def energy(params, x):
        return model.apply(params["energy"], x)

    @jax.jit
    def train_and_score(state):
        def body(s, key):
            s, metrics = train_step(s, {"x": toy.sample(key, batch_size)})
            return s, metrics["accuracy"]

        keys = jax.random.split(jax.random.PRNGKey(4), num_steps)
        before = kl_by_quadrature(toy.log_prob, lambda x: energy(state.params, x), size=200)
        state, accuracy = jax.lax.scan(body, state, keys)
        after = kl_by_quadrature(toy.log_prob, lambda x: energy(state.params, x), size=200)
        return before, after, accuracy[-100:].mean(), state.params["log_z"]

    before, after, accuracy, log_z = train_and_score(state)
    assert float(before) > 1.0
    assert float(after) < 0.1, float(after)
    # Data and noise overlap (the Gaussian covers the modes), so the Bayes classifier is
    # well above chance (1/2) but below 1.
    assert 0.7 < float(accuracy) < 0.95
    assert np.isfinite(float(log_z))


# -- errors ------------------------------------------------------------------------------

def quad(p, x):
    return 0.5 * jnp.sum(x**2) * p


def test_nce_argument_errors():
    noise = uniform_box(-3.0, 3.0, (2,))
    for bad in (0.0, -1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="noise_ratio="):
            nce(quad, noise, noise_ratio=bad)
    with pytest.raises(ValueError, match="expected a NoiseDistribution"):
        nce(quad, (noise.sample, noise.log_prob))
    nce(quad, noise, noise_ratio=np.float32(2.0))  # NumPy scalars are numbers too
    with pytest.raises(ValueError, match=r"log_z has shape \(2,\)"):
        nce_params(1.0, log_z=jnp.zeros(2))


def test_nce_checks_noise_shape_at_init_and_first_trace():
    batch = {"x": jnp.zeros((8, 2))}
    params = nce_params(jnp.float32(1.0))
    wrong_box = nce(quad, uniform_box(-3.0, 3.0, (3,)))
    with pytest.raises(ValueError, match=r"noise has shape \(3,\): expected \(2,\) to match"):
        wrong_box.init(jax.random.PRNGKey(0), params, batch)
    # A hand-built pair with no declared shape: found by tracing its sampler.
    bare = nce(quad, NoiseDistribution(lambda k, n: jnp.zeros((n, 3)), lambda x: jnp.sum(x)))
    with pytest.raises(ValueError, match=r"noise samples have shape \(2, 3\) for n=2: "
                                         r"expected \(2, 2\)"):
        bare.init(jax.random.PRNGKey(0), params, batch)
    # ... and at the first trace of loss, under jit, before any compute.
    with pytest.raises(ValueError, match="noise samples have shape"):
        jax.jit(bare.loss)(params, (), batch, jax.random.PRNGKey(0))
    per_batch = nce(quad, NoiseDistribution(lambda k, n: jnp.zeros((n, 2)), lambda x: x))
    with pytest.raises(ValueError, match=r"returned shape \(2,\): expected a scalar"):
        jax.jit(per_batch.loss)(params, (), batch, jax.random.PRNGKey(0))


def test_nce_checks_params_and_batch():
    loss = nce(quad, uniform_box(-3.0, 3.0, (2,)), noise_ratio=0.05)
    with pytest.raises(ValueError, match=r"expected a dict with keys \['energy', 'log_z'\]"):
        loss.init(jax.random.PRNGKey(0), jnp.float32(1.0), {"x": jnp.zeros((8, 2))})
    with pytest.raises(ValueError, match=r"params\['log_z'\] has shape \(3,\)"):
        loss.init(jax.random.PRNGKey(0), {"energy": 1.0, "log_z": jnp.zeros(3)},
                  {"x": jnp.zeros((8, 2))})
    with pytest.raises(KeyError, match="'x'"):
        loss.init(jax.random.PRNGKey(0), nce_params(1.0), {"y": jnp.zeros(8)})
    # 0.05 × 8 rounds to no noise sample at all.
    with pytest.raises(ValueError, match="noise_ratio=0.05 with a batch of 8"):
        loss.init(jax.random.PRNGKey(0), nce_params(1.0), {"x": jnp.zeros((8, 2))})
    loss.init(jax.random.PRNGKey(0), nce_params(1.0), {"x": jnp.zeros((20, 2))})  # M = 1: fine


def test_nce_data_outside_a_box_noise_support():
    """Data outside the noise's support has log p_n = -inf, G = +inf: a certain 'data'
    call that adds nothing to the loss and a zero, finite gradient."""
    loss = nce(quad, uniform_box(-1.0, 1.0, (2,)))
    batch = {"x": jnp.array([[5.0, 0.0], [0.0, 0.0]])}
    (value, (_, info)), grads = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))(
        nce_params(jnp.float32(1.0)), (), batch, jax.random.PRNGKey(0))
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
