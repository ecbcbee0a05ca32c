"""Tests of diffusion recovery likelihood (``ebm_jax.losses.recovery_likelihood``) and the
level-conditioned MLP (``ebm_jax.nets.conditioned``).

The sampler tests use Gaussian energies, for which every conditional
``p(x_t | x_{t+1})`` is Gaussian and a Langevin chain is a linear recursion, so the
law of the chain after exactly ``K`` steps (finite step size and all) is known in
closed form; the checks then only allow for Monte Carlo error (Z standard errors).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.data.toy2d import get_toy
from ebm_jax.losses.base import LossTransform
from ebm_jax.losses.recovery_likelihood import (NoiseSchedule, diffuse, noise_schedule,
                                                progressive_sample, recovery_langevin,
                                                recovery_likelihood)
from ebm_jax.metrics import kl_by_quadrature
from ebm_jax.nets.conditioned import (ConditionedMLP, as_conditioned_energy_fn,
                                      sinusoidal_embedding)
from ebm_jax.train.state import init_train_state
from ebm_jax.train.step import make_train_step

# The training loops are runtime and compile fully optimised (``optimised``); the rest of the
# file is mostly compilation, which takes 2-8x longer optimised (measured per test, empty cache,
# 2 cores: 87 s for the file optimised, 72 s with fewer optimisations, 45 s mixed).

# Critical value of the statistical checks, in standard errors: the keys are fixed, so the
# tests are deterministic, and a correct implementation fails a given check with probability
# < 1e-6 under another seed; the mutations they catch are off by tens to thousands of SE.
Z = 5.0
T6 = noise_schedule("t6")


# --------------------------------------------------------------------------- schedules

def test_t6_schedule_matches_the_composed_ddpm_steps():
    """T6 cuts DDPM's 1000 linear betas (1e-4..0.02) at 0, 100, ..., 500 and 999 and drops the
    reference's first step (its level 0 is the data diffused by sigma = 0.01; here level 0 is
    the data). So marginal_alphas[t]^2 must be the product of (1 - beta_i) over steps
    1..100 t (t <= 5) and 1..999 (t = 6): an independent computation from the betas."""
    betas = np.linspace(1e-4, 0.02, 1000)
    cum = np.cumprod(1.0 - betas) / (1.0 - betas[0])
    expected = np.sqrt(np.array([1.0] + [cum[100 * t] for t in range(1, 6)] + [cum[999]]))
    assert isinstance(T6, NoiseSchedule) and T6.num_levels == 6
    np.testing.assert_allclose(T6.marginal_alphas, expected, rtol=1e-10)
    np.testing.assert_allclose(T6.sigmas, [0.32368, 0.51650, 0.63221, 0.71324, 0.77337, 0.99974],
                               atol=1e-5)
    np.testing.assert_allclose(T6.alphas**2 + T6.sigmas**2, 1.0, rtol=1e-12)
    np.testing.assert_allclose(T6.marginal_alphas**2 + T6.marginal_sigmas**2, 1.0, rtol=1e-12)
    assert np.all(np.diff(T6.sigmas) > 0) and np.all(np.diff(T6.marginal_sigmas) > 0)
    assert T6.marginal_alphas[-1] < 0.01          # the end is (nearly) pure noise
    np.testing.assert_array_equal(noise_schedule("ddpm", num_levels=6).sigmas, T6.sigmas)


def test_configurable_schedules():
    lin = noise_schedule("linear", num_levels=5, sigma_min=0.1, sigma_max=0.5)
    np.testing.assert_allclose(lin.sigmas, [0.1, 0.2, 0.3, 0.4, 0.5])
    geo = noise_schedule("geometric", num_levels=4, sigma_min=0.1, sigma_max=0.8)
    np.testing.assert_allclose(geo.sigmas, [0.1, 0.2, 0.4, 0.8])
    explicit = noise_schedule([0.2, 0.2, 0.6])     # equal neighbours are allowed
    np.testing.assert_allclose(explicit.alphas, np.sqrt(1 - np.array([0.04, 0.04, 0.36])))
    np.testing.assert_allclose(explicit.marginal_alphas, np.concatenate(
        [[1.0], np.cumprod(explicit.alphas)]))
    assert explicit.marginal_sigmas[0] == 0.0
    np.testing.assert_array_equal(noise_schedule(explicit).sigmas, explicit.sigmas)


@pytest.mark.parametrize("args, kwargs, match", [
    (([0.3, 0.2],), {}, r"sigmas\[1\]=0.2 < sigmas\[0\]=0.3: noise increases with the level"),
    (([0.3, 1.0],), {}, r"sigmas\[1\]=1.0: expected a noise std strictly inside \(0, 1\)"),
    (([0.0, 0.5],), {}, r"sigmas\[0\]=0.0"),
    (([-0.1],), {}, r"sigmas\[0\]=-0.1"),
    (([0.2, float("nan")],), {}, r"sigmas\[1\]=nan"),
    (([],), {}, r"sigmas has shape \(0,\)"),
    (([[0.1, 0.2]],), {}, r"sigmas has shape \(1, 2\)"),
    (("sigmoid",), {}, r"schedule='sigmoid': expected one of"),
    (("t6",), {"logsnr_max": 9.0}, r"logsnr_max=9.0: not used by the 't6' schedule"),
    (("cosine",), {"sigma_max": 0.5}, r"sigma_max=0.5: not used by the 'cosine' schedule"),
    (("cosine",), {"logsnr_max": 1.0, "logsnr_min": 2.0}, r"logsnr_max=1.0, logsnr_min=2.0"),
    (("linear",), {"sigma_min": 0.1, "sigma_max": 0.5}, r"num_levels=None"),
    (("linear",), {"num_levels": 3, "sigma_min": 0.5, "sigma_max": 0.1},
     r"sigma_min=0.5 > sigma_max=0.1: noise increases with the level"),
    (("geometric",), {"num_levels": 3, "sigma_min": 0.1, "sigma_max": 1.0}, r"sigma_max=1.0"),
    (("t6",), {"num_levels": 4}, r"num_levels=4: not used by the 't6' schedule"),
    (([0.1],), {"sigma_max": 0.4}, r"sigma_max=0.4: not used by the explicit sigmas"),
    (("ddpm",), {"num_levels": 1}, r"num_levels=1: the 'ddpm' schedule needs 2..501"),
])
def test_schedule_validation(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        noise_schedule(*args, **kwargs)


# --------------------------------------------------------------------------- forward diffusion

@jax.jit
def _diffuse_t6(key, x0, level):
    return diffuse(key, T6, x0, level)


def test_forward_diffusion_marginals():
    """From constant data c, x_t ~ N(abar_t c, 1 - abar_t^2) and x_{t+1} = a_t x_t + sigma_t eps,
    so x_{t+1} ~ N(abar_{t+1} c, 1 - abar_{t+1}^2) and cov(x_t, x_{t+1}) = a_t var(x_t).
    200,000 scalars per level: SE of a mean <= 0.0023, of a variance <= 0.0032."""
    n = 100_000
    c = np.array([1.5, -1.0], np.float32)
    x0 = jnp.broadcast_to(jnp.asarray(c), (n, 2))
    for level in range(T6.num_levels):
        x_t, x_next = map(np.asarray, _diffuse_t6(jax.random.PRNGKey(level), x0, level))
        for x, t in ((x_t, level), (x_next, level + 1)):
            mean, var = T6.marginal_alphas[t] * c, T6.marginal_sigmas[t] ** 2
            if var == 0.0:
                np.testing.assert_array_equal(x, x0)   # level 0 is the data itself
                continue
            se_mean, se_var = np.sqrt(var / n), var * np.sqrt(2.0 / (2 * n))
            np.testing.assert_allclose(x.mean(0), mean, atol=Z * se_mean)
            np.testing.assert_allclose(x.var(0).mean(), var, atol=Z * se_var)
        if level > 0:
            cov = np.mean((x_t - x_t.mean(0)) * (x_next - x_next.mean(0)))
            var_t = T6.marginal_sigmas[level] ** 2
            np.testing.assert_allclose(cov, T6.alphas[level] * var_t,
                                       atol=Z * np.sqrt(var_t * (var_t + 1) / (2 * n)))


def test_diffuse_checks_the_level():
    with pytest.raises(ValueError, match=r"level=6: expected an int scalar in \[0, 6\)"):
        diffuse(jax.random.PRNGKey(0), T6, jnp.zeros((3, 2)), 6)
    with pytest.raises(ValueError, match=r"level=1.0"):
        diffuse(jax.random.PRNGKey(0), T6, jnp.zeros((3, 2)), 1.0)


# --------------------------------------------------------------------------- Gaussian energies

def gaussian_energy(params, x, t):
    """E(x, t) = |x - m_t|^2 / (2 v_t): per-level isotropic Gaussians."""
    return 0.5 * jnp.sum((x - params["m"][t]) ** 2) / params["v"][t]


def chain_law(schedule, level, m, v, start_coef, start_var, x_next, scale, num_steps):
    """Mean and per-coordinate variance of an unadjusted chain after exactly K steps.

    U(x) = |x - m|^2 / 2v + a^2 |x - x_next/a|^2 / 2 sigma^2 has precision P = 1/v + a^2/sigma^2
    and minimum mu = (m/v + a x_next / sigma^2) / P (the conditional's exact mean). With
    h = scale sigma^2 the step x' = x - h P (x - mu) + sqrt(2h) xi is AR(1) with r = 1 - hP:
        x_K = r^K x_0 + (1 - r^K) mu + N(0, 2h (1 - r^2K) / (1 - r^2)).
    The chain starts at start_coef * x_next plus N(0, start_var) noise.
    Returns (mean, var, P) so callers can also form the stationary law.
    """
    sigma, a = schedule.sigmas[level], schedule.alphas[level]
    precision = 1.0 / v + a**2 / sigma**2
    mu = (m / v + a * x_next / sigma**2) / precision
    h = scale * sigma**2
    r = 1.0 - h * precision
    rk = r**num_steps
    mean = rk * start_coef * x_next + (1 - rk) * mu
    var = rk**2 * start_var + 2 * h * (1 - rk**2) / (1 - r**2)
    return mean, var, precision


N_CHAINS = 20_000


@functools.partial(jax.jit, static_argnames=("chain_init", "num_steps", "scale", "metropolis",
                                             "num_candidates"))
def _conditional_samples(key, params, level, x_next, chain_init, num_steps, scale,
                         metropolis=False, num_candidates=16):
    x = jnp.broadcast_to(x_next, (N_CHAINS, x_next.shape[0]))
    samples, info = recovery_langevin(key, gaussian_energy, params, T6, level, x,
                                      num_steps=num_steps, step_size_scale=scale,
                                      chain_init=chain_init, metropolis=metropolis,
                                      num_candidates=num_candidates)
    return samples, info


GAUSS_PARAMS = {"m": jnp.asarray(np.linspace([-1.0, 0.5], [1.0, 2.0], 6), jnp.float32),
                "v": jnp.asarray([0.6, 0.8, 1.0, 1.2, 1.4, 1.6], jnp.float32)}
X_NEXT = np.array([1.0, -0.5], np.float32)


@pytest.mark.parametrize("level", [1, 4])
@pytest.mark.parametrize("chain_init, start_coef", [
    ("rescaled", "1/a"), ("noisy", "1"), ("posterior_mean", "a")])
def test_conditional_chain_moments_after_k_steps(level, chain_init, start_coef):
    """8 unadjusted steps from each deterministic start: the sample mean and variance must match
    the exact law of the linear recursion (chain_law). Wrong conditional precision (sigma^2
    instead of sigma^2/a^2), centre (x_next instead of x_next/a), start, step size or noise
    scale shift the mean by >= 0.05 (> 8 SE of ~0.006) or the variance by > 10%."""
    a = T6.alphas[level]
    coef = {"1/a": 1 / a, "1": 1.0, "a": a}[start_coef]
    m, v = np.asarray(GAUSS_PARAMS["m"][level]), float(GAUSS_PARAMS["v"][level])
    samples, info = _conditional_samples(jax.random.PRNGKey(level), GAUSS_PARAMS, level,
                                         jnp.asarray(X_NEXT), chain_init, 8, 0.3)
    samples = np.asarray(samples, np.float64)
    mean, var, _ = chain_law(T6, level, m, v, coef, 0.0, X_NEXT, 0.3, 8)
    np.testing.assert_allclose(samples.mean(0), mean, atol=Z * np.sqrt(var / N_CHAINS))
    np.testing.assert_allclose(samples.var(0), var, rtol=Z * np.sqrt(2.0 / N_CHAINS))
    assert info.langevin.energy.shape == (N_CHAINS, 8)
    np.testing.assert_array_equal(info.acceptance, 1.0)
    np.testing.assert_allclose(np.mean(info.displacement),
                               np.mean(np.linalg.norm(samples - coef * X_NEXT, axis=1)), rtol=1e-5)


def test_conditional_chain_converges_to_the_bayes_posterior():
    """With 40 steps the chain forgets its start (r^K < 1e-9) and its law is the ULA stationary
    law of the exact conditional N(mu, 1/P): mean mu and variance (1/P) / (1 - hP/2). The
    closed-form posterior p(x_t | x_{t+1}) ∝ N(x_t; m, v) N(x_{t+1}; a x_t, sigma^2)."""
    level, scale = 3, 0.5
    sigma, a = T6.sigmas[level], T6.alphas[level]
    m, v = np.asarray(GAUSS_PARAMS["m"][level], np.float64), float(GAUSS_PARAMS["v"][level])
    precision = 1 / v + a**2 / sigma**2
    mu = (m / v + a * X_NEXT / sigma**2) / precision
    h = scale * sigma**2
    assert abs(1 - h * precision) ** 40 < 1e-9
    stationary_var = (1 / precision) / (1 - h * precision / 2)
    samples, _ = _conditional_samples(jax.random.PRNGKey(7), GAUSS_PARAMS, level,
                                      jnp.asarray(X_NEXT), "rescaled", 40, scale)
    samples = np.asarray(samples, np.float64)
    np.testing.assert_allclose(samples.mean(0), mu, atol=Z * np.sqrt(stationary_var / N_CHAINS))
    np.testing.assert_allclose(samples.var(0), stationary_var, rtol=Z * np.sqrt(2.0 / N_CHAINS))


@pytest.mark.slow
def test_metropolis_chains_sample_the_exact_conditional():
    """MALA removes the discretisation bias: at a large step (h P = 0.8, where ULA inflates the
    variance by 1 / (1 - 0.4) = 1.67) the variance must be the exact 1/P. Each chain's end is
    an independent draw; after 40 steps (a MALA chain at hP = 0.8 mixes in a few) its law is
    the target's, so the tolerances are Z SE of 20,000 independent draws (5% on the variance;
    the ULA error is 67%, an unadjusted or wrongly adjusted chain fails)."""
    level = 2
    sigma, a = T6.sigmas[level], T6.alphas[level]
    m, v = np.asarray(GAUSS_PARAMS["m"][level], np.float64), float(GAUSS_PARAMS["v"][level])
    precision = 1 / v + a**2 / sigma**2
    scale = 0.8 / (precision * sigma**2)
    mu = (m / v + a * X_NEXT / sigma**2) / precision
    samples, info = _conditional_samples(jax.random.PRNGKey(3), GAUSS_PARAMS, level,
                                         jnp.asarray(X_NEXT), "rescaled", 40, float(scale),
                                         metropolis=True)
    samples = np.asarray(samples, np.float64)
    assert 0.5 < float(np.mean(info.acceptance)) < 1.0
    np.testing.assert_allclose(samples.mean(0), mu, atol=Z * np.sqrt(1 / precision / N_CHAINS))
    np.testing.assert_allclose(samples.var(0), 1 / precision, rtol=Z * np.sqrt(2.0 / N_CHAINS))


def test_importance_init_weights_candidates_by_energy():
    """With E(x) = |x|^2/2 - beta . x the importance weights exp(-E + |x|^2/2) = exp(beta . x)
    tilt the proposal N(a x_next, sigma^2) to N(a x_next + sigma^2 beta, sigma^2). One tiny
    step (scale 1e-6) leaves the chains at their starts. Self-normalised resampling among 64
    candidates has an O(var(w)/M) bias, here < 0.5% of the shift; a sign error or uniform
    picks move the mean by the whole shift, sigma^2 |beta| = 0.27 (~50 SE)."""
    level = 1
    sigma, a = T6.sigmas[level], T6.alphas[level]
    beta = np.array([1.0, -0.5], np.float32)

    def tilted(params, x, t):
        return 0.5 * jnp.sum(x**2) - jnp.dot(params, x)

    x_next = jnp.broadcast_to(jnp.asarray(X_NEXT), (N_CHAINS, 2))
    run = jax.jit(lambda key: recovery_langevin(key, tilted, jnp.asarray(beta), T6, level, x_next,
                                                num_steps=1, step_size_scale=1e-6,
                                                chain_init="importance", num_candidates=64)[0])
    samples = np.asarray(run(jax.random.PRNGKey(5)), np.float64)
    expected = a * X_NEXT + sigma**2 * beta
    np.testing.assert_allclose(samples.mean(0), expected,
                               atol=Z * sigma / np.sqrt(N_CHAINS) + 0.003)
    np.testing.assert_allclose(samples.std(0), sigma, rtol=0.03)


@pytest.mark.slow
def test_progressive_sampling_law_with_exact_gaussian_marginals():
    """Data N(mu0, s0^2): every marginal is Gaussian, p_t = N(abar_t mu0, abar_t^2 s0^2 + 1 -
    abar_t^2), and with those energies each level's chain maps x_{t+1} linearly plus noise.
    Propagating mean and variance through the 6 levels with chain_law gives the exact law of
    every trajectory level; level order, init and step size errors all show up."""
    mu0, s0, scale, k = np.array([1.0, -0.5]), 0.5, 0.2, 10
    var_t = T6.marginal_alphas[:-1] ** 2 * s0**2 + T6.marginal_sigmas[:-1] ** 2
    params = {"m": jnp.asarray(T6.marginal_alphas[:-1, None] * mu0, jnp.float32),
              "v": jnp.asarray(var_t, jnp.float32)}
    for chain_init, coef in (("rescaled", lambda a: 1 / a), ("posterior_mean", lambda a: a)):
        sample = jax.jit(lambda key, p: progressive_sample(
            key, gaussian_energy, p, T6, (2,), N_CHAINS, num_langevin_steps=k,
            step_size_scale=scale, chain_init=chain_init, metropolis=False,
            return_trajectory=True))
        samples, trajectory = sample(jax.random.PRNGKey(11), params)
        assert samples.shape == (N_CHAINS, 2) and trajectory.shape == (7, N_CHAINS, 2)
        np.testing.assert_array_equal(trajectory[0], samples)
        mean, var = np.zeros(2), 1.0
        for level in range(5, -1, -1):
            coef_l = coef(T6.alphas[level])
            m, v = np.asarray(params["m"][level], np.float64), float(params["v"][level])
            # x_level = A x_next + B + noise, read off chain_law at x_next = 0 and x_next = 1.
            b, noise_var, _ = chain_law(T6, level, m, v, coef_l, 0.0, 0.0, scale, k)
            slope = float((chain_law(T6, level, m, v, coef_l, 0.0, 1.0, scale, k)[0] - b)[0])
            mean, var = slope * mean + b, slope**2 * var + noise_var
            x = np.asarray(trajectory[level], np.float64)
            np.testing.assert_allclose(x.mean(0), mean, atol=Z * np.sqrt(var / N_CHAINS))
            np.testing.assert_allclose(x.var(0), var, rtol=Z * np.sqrt(2.0 / N_CHAINS))
        if chain_init == "posterior_mean":
            # And the result is near the data law (ULA and finite-K bias only). Starting the top
            # level at x_T / a_5 (a_5 = 0.023) instead leaves a var of ~20 after 10 steps.
            np.testing.assert_allclose(mean, mu0, atol=0.1)
            np.testing.assert_allclose(var, s0**2, rtol=0.35)


# --------------------------------------------------------------------------- the loss

SMALL = noise_schedule([0.3, 0.5, 0.7])


@pytest.mark.slow
def test_loss_gradient_is_the_score_difference_with_samples_held_constant():
    """E(x, t; phi) = (1 + phi) |x|^2 / 2 at phi = 0. With samples held constant,
    dL/dphi = sum_t w_t (mean |x_t|^2/2 - mean |x_s|^2/2), which is exactly the loss value
    at phi = 0. If gradients flowed through the chains (params not frozen and samples not
    stopped), dL/dphi would gain -mean grad_x E(x_s) . dx_s/dphi, a term of the same size."""
    def energy(params, x, t):
        return (1.0 + params["phi"]) * 0.5 * jnp.sum(x**2)

    params = {"phi": jnp.zeros(())}
    batch = {"x": 2.0 + 0.3 * jax.random.normal(jax.random.PRNGKey(0), (60, 2))}
    for weights, split in ((None, False), ([1.0, 2.0, 3.0], True)):
        loss = recovery_likelihood(energy, SMALL, num_langevin_steps=5, step_size_scale=0.3,
                                   level_weights=weights, split_batch=split, per_level_info=True)
        (value, (state, info)), grads = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))(
            params, loss.init(None, params, batch), batch, jax.random.PRNGKey(1))
        assert state == ()
        np.testing.assert_allclose(grads["phi"], value, rtol=1e-5, atol=1e-6)
        w = np.ones(3) if weights is None else np.asarray(weights)
        per_level = np.array([info[f"loss/level_{t}"] for t in range(3)])
        np.testing.assert_allclose(value, np.sum(w * per_level) / w.sum(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(per_level, [info[f"energy_data/level_{t}"]
                                               - info[f"energy_sample/level_{t}"]
                                               for t in range(3)], rtol=1e-5, atol=1e-6)
        # The data at level 0 are the batch itself.
        if not split:
            np.testing.assert_allclose(info["energy_data/level_0"],
                                       np.mean(0.5 * np.sum(np.asarray(batch["x"]) ** 2, 1)),
                                       rtol=1e-5)
        assert abs(float(value)) > 0.05    # not trivially zero
        assert int(info["nonfinite_steps"]) == 0


def test_data_noise_smooths_level_0():
    """data_noise adds N(0, s^2) to the batch before the diffusion: with an all-zero batch and
    E = |x|^2 / 2 in 2-D, the level-0 data energy is 0.5 |n|^2, mean s^2 = 0.25 (SD 0.25, SE
    0.023 over 120 examples; without the noise it would be exactly 0)."""
    loss = recovery_likelihood(lambda p, x, t: 0.5 * jnp.sum(x**2), SMALL, num_langevin_steps=1,
                               data_noise=0.5, per_level_info=True)
    _, (_, info) = jax.jit(loss.loss)(None, (), {"x": jnp.zeros((120, 2))},
                                      jax.random.PRNGKey(0))
    np.testing.assert_allclose(info["energy_data/level_0"], 0.25, atol=Z * 0.25 / np.sqrt(120))


@pytest.mark.slow
def test_loss_gradient_moves_the_energy_toward_the_data():
    """Data near +2, E(x, t) = |x - mu|^2 / 2 with mu = 0 at every level. The samples of
    p(x_t | x_{t+1}) are pulled toward mu = 0 relative to x_t, so dL/dmu = sum_t w_t (mean
    x_s - mean x_t) < 0: one SGD step must raise mu. A flipped sign lowers it."""
    def energy(params, x, t):
        return 0.5 * jnp.sum((x - params["mu"]) ** 2)

    params = {"mu": jnp.zeros(2)}
    batch = {"x": 2.0 + 0.3 * jax.random.normal(jax.random.PRNGKey(0), (128, 2))}
    loss = recovery_likelihood(energy, SMALL, num_langevin_steps=20, step_size_scale=0.3)
    (_, (_, info)), grads = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))(
        params, (), batch, jax.random.PRNGKey(1))
    assert np.all(np.asarray(grads["mu"]) < -0.2)
    assert float(info["energy_data"]) > float(info["energy_sample"])
    new_mu = optax.apply_updates(params, jax.tree.map(lambda g: -0.5 * g, grads))["mu"]
    assert np.all(np.asarray(new_mu) > 0.1)


def _fixed_point_variance(schedule, level, true_var, scale):
    """The v at which training a per-level Gaussian E = |x - m|^2 / 2v stops moving.

    With converged unadjusted chains the gradient in v vanishes when the data's second moment
    about m equals the samples'. The samples are N(mu(x_{t+1}), c) with c = (1/P)/(1 - hP/2)
    (ULA's stationary variance) and mu - m = a (x_{t+1} - a m) / (sigma^2 P), x_{t+1} having
    variance a^2 V + sigma^2, so v solves  V = c(v) + a^2 (a^2 V + sigma^2) / (sigma^4 P(v)^2).
    (With h -> 0 the root is v = V: recovery likelihood is consistent.)"""
    from scipy.optimize import brentq

    sigma, a = schedule.sigmas[level], schedule.alphas[level]
    h = scale * sigma**2

    def gap(v):
        precision = 1 / v + a**2 / sigma**2
        c = (1 / precision) / (1 - h * precision / 2)
        return c + a**2 * (a**2 * true_var + sigma**2) / (sigma**4 * precision**2) - true_var

    # The bracket excludes small v, where hP -> 2 and the chain's variance diverges.
    return brentq(gap, 0.4 * true_var, 1.5 * true_var)


GAUSS_MU0, GAUSS_S0, GAUSS_SCALE = np.array([1.5, -1.0]), 0.5, 0.3


def _train_per_level_gaussians(seed, metropolis=False):
    """Fit E(x, t) = |x - m_t|^2 / 2 v_t (levels of SMALL, 2-D) to N(mu0, s0^2) data by recovery
    likelihood with fresh data every step; return the final (m [3, 2], v [3])."""
    loss = recovery_likelihood(gaussian_energy, SMALL, num_langevin_steps=30,
                               step_size_scale=GAUSS_SCALE, split_batch=True,
                               chain_init="rescaled", metropolis=metropolis)
    num_steps = 400
    opt = optax.adam(optax.cosine_decay_schedule(0.05, num_steps))

    def log_v_loss(p, state, batch, key):
        return loss.loss({"m": p["m"], "v": jnp.exp(p["log_v"])}, state, batch, key)

    wrapped = LossTransform(loss.init, log_v_loss)
    params = {"m": jnp.zeros((3, 2)), "log_v": jnp.zeros(3)}
    batch_size = 3 * 512
    sample = jax.jit(lambda key: {"x": jnp.asarray(GAUSS_MU0, jnp.float32)
                                  + GAUSS_S0 * jax.random.normal(key, (batch_size, 2))})
    state = init_train_state(jax.random.PRNGKey(seed), params, opt, wrapped,
                             sample(jax.random.PRNGKey(seed)))
    step = jax.jit(make_train_step(wrapped, opt), donate_argnums=0)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), num_steps)
    for i in range(num_steps):
        state, metrics = step(state, sample(keys[i]))
    assert int(metrics["nonfinite_steps"]) == 0
    return np.asarray(state.params["m"]), np.exp(np.asarray(state.params["log_v"]))


def gaussian_targets():
    """The fixed point of _train_per_level_gaussians: m_t = abar_t mu0 and the ULA root v_t."""
    true_var = SMALL.marginal_alphas[:-1] ** 2 * GAUSS_S0**2 + SMALL.marginal_sigmas[:-1] ** 2
    m = SMALL.marginal_alphas[:-1, None] * GAUSS_MU0
    v = np.array([_fixed_point_variance(SMALL, t, true_var[t], GAUSS_SCALE) for t in range(3)])
    return m, v, true_var


@pytest.mark.slow
@pytest.mark.optimised  # runtime
def test_training_per_level_gaussians_reaches_the_fixed_point():
    """The true marginals are N(abar_t mu0, V_t), V_t = abar_t^2 s0^2 + 1 - abar_t^2. ULA's
    stationary mean is exact, so m_t must reach abar_t mu0, and v_t the ULA fixed point of
    _fixed_point_variance (13-22% below V_t at this step size). Over 5 seeds the errors had
    SD ~0.008 (m) and ~1% (v), the largest 0.018 and 2.2%; we allow 0.05 and 6%, still far
    below the 13-22% ULA bias, which the target resolves. A flipped gradient sign, a dropped
    data or sample term, or gradients leaking through the chains end far outside."""
    m, v = _train_per_level_gaussians(0)
    target_m, target_v, true_var = gaussian_targets()
    assert np.all(target_v < 0.9 * true_var)    # the ULA bias is real and resolved
    np.testing.assert_allclose(m, target_m, atol=0.05)
    np.testing.assert_allclose(v, target_v, rtol=0.06)


@pytest.mark.slow
@pytest.mark.optimised  # runtime
def test_training_with_metropolis_chains_recovers_the_true_marginals():
    """With MALA the conditional samples are exact, so recovery likelihood is consistent: the
    per-level Gaussians must reach the true marginals N(abar_t mu0, V_t), with no step-size
    bias (the ULA fixed point is 13-22% low). Over 5 seeds the errors had SD ~0.01 (m) and
    ~1.5% (v), the largest 0.02 and 3%; we allow 0.05 and 7%."""
    m, v = _train_per_level_gaussians(0, metropolis=True)
    target_m, _, true_var = gaussian_targets()
    np.testing.assert_allclose(m, target_m, atol=0.05)
    np.testing.assert_allclose(v, true_var, rtol=0.07)


def test_loss_argument_errors():
    with pytest.raises(ValueError, match="num_langevin_steps=0"):
        recovery_likelihood(gaussian_energy, T6, num_langevin_steps=0)
    with pytest.raises(ValueError, match="step_size_scale=-0.1"):
        recovery_likelihood(gaussian_energy, T6, step_size_scale=-0.1)
    with pytest.raises(ValueError, match="chain_init='data'"):
        recovery_likelihood(gaussian_energy, T6, chain_init="data")
    with pytest.raises(ValueError, match="num_candidates=0"):
        recovery_likelihood(gaussian_energy, T6, chain_init="importance", num_candidates=0)
    with pytest.raises(ValueError, match=r"grad_clip=1.0 with metropolis=True"):
        recovery_likelihood(gaussian_energy, T6, metropolis=True, grad_clip=1.0)
    with pytest.raises(ValueError, match=r"level_weights has shape \(2,\): expected \(6,\)"):
        recovery_likelihood(gaussian_energy, T6, level_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="level_weights"):
        recovery_likelihood(gaussian_energy, T6, level_weights=[1.0, -1.0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"data_noise=1.5: expected a noise std in \[0, 1\)"):
        recovery_likelihood(gaussian_energy, T6, data_noise=1.5)
    with pytest.raises(ValueError, match="energy_l2=-1"):
        recovery_likelihood(gaussian_energy, T6, energy_l2=-1)
    with pytest.raises(ValueError, match=r"sigmas\[1\]=0.1 < sigmas\[0\]=0.5"):
        recovery_likelihood(gaussian_energy, [0.5, 0.1])
    with pytest.raises(TypeError, match="expected a NoiseSchedule"):
        recovery_likelihood(gaussian_energy, 0.5)
    split = recovery_likelihood(gaussian_energy, T6, split_batch=True)
    with pytest.raises(ValueError, match=r"has 10 examples: split_batch=True needs a multiple "
                                         r"of the number of levels, 6"):
        split.init(None, GAUSS_PARAMS, {"x": jnp.zeros((10, 2))})
    with pytest.raises(KeyError, match="'x'"):
        split.init(None, GAUSS_PARAMS, {"y": jnp.zeros((12,))})
    with pytest.raises(ValueError, match=r"shape=\(2, 0\)"):
        progressive_sample(jax.random.PRNGKey(0), gaussian_energy, GAUSS_PARAMS, T6, (2, 0), 4)
    with pytest.raises(ValueError, match="num_samples=0"):
        progressive_sample(jax.random.PRNGKey(0), gaussian_energy, GAUSS_PARAMS, T6, (2,), 0)
    with pytest.raises(ValueError, match="num_steps=0"):
        recovery_langevin(jax.random.PRNGKey(0), gaussian_energy, GAUSS_PARAMS, T6, 0,
                          jnp.zeros((4, 2)), num_steps=0)


# --------------------------------------------------------------------------- the network

@functools.lru_cache(maxsize=None)
def _net(embedding="learned", conditioning="film"):
    return ConditionedMLP(2, (16, 16), 4, embedding=embedding, conditioning=conditioning,
                          rngs=nnx.Rngs(0))


@pytest.mark.parametrize("embedding, conditioning", [("learned", "film"), ("sinusoidal", "add")])
def test_conditioned_mlp_levels(embedding, conditioning):
    """Shapes; at initialisation the level projections are zero, so every level computes the
    same function; once they are perturbed the levels differ; traced levels work under jit."""
    model = as_conditioned_energy_fn(_net(embedding, conditioning))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2)), jnp.float32)
    energies = jax.jit(jax.vmap(jax.vmap(model.apply, in_axes=(None, 0, None)),
                                in_axes=(None, None, 0)))
    e = np.asarray(energies(model.params, x, jnp.arange(4)))
    assert e.shape == (4, 5) and np.all(np.isfinite(e))
    np.testing.assert_allclose(e, np.broadcast_to(e[0], e.shape), rtol=1e-6)
    params = jax.tree.map(lambda p: p, model.params)     # fresh dicts, same arrays
    key = jax.random.PRNGKey(1)
    for i, projection in params["projections"].items():
        projection["kernel"] = 0.3 * jax.random.normal(jax.random.fold_in(key, i),
                                                       projection["kernel"].shape)
    e = np.asarray(energies(params, x, jnp.arange(4)))
    assert np.min(np.abs(e[1:] - e[0])) > 1e-4
    assert model.apply(model.params, x[0], 3).shape == ()


def test_conditioned_mlp_errors_and_embedding():
    with pytest.raises(ValueError, match="embedding='onehot'"):
        ConditionedMLP(2, (8,), 3, embedding="onehot", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="conditioning='concat'"):
        ConditionedMLP(2, (8,), 3, conditioning="concat", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_levels=0"):
        ConditionedMLP(2, (8,), 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"hidden=\(\)"):
        ConditionedMLP(2, (), 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="embed_dim=7: expected a positive int, even"):
        ConditionedMLP(2, (8,), 3, embedding="sinusoidal", embed_dim=7, rngs=nnx.Rngs(0))
    model = as_conditioned_energy_fn(_net())
    with pytest.raises(ValueError, match=r"t=4: expected a scalar level in \[0, 4\)"):
        model.apply(model.params, jnp.zeros(2), 4)
    emb = np.asarray(sinusoidal_embedding(jnp.array([0, 3]), 6))
    freqs = np.array([1.0, 0.01, 1e-4])
    np.testing.assert_allclose(emb, np.concatenate([np.sin(np.outer([0, 3], freqs)),
                                                    np.cos(np.outer([0, 3], freqs))], 1),
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow
@pytest.mark.optimised  # runtime
def test_training_on_8gaussians_improves_progressive_samples_and_level0_kl():
    """A small conditioned MLP trained briefly (600 steps) on 8gaussians: the KL (quadrature of
    E(x, 0)) and the MMD of progressive samples must drop far below the untrained model's.
    Over 4 seeds: KL 1.9-3.3 -> 0.11-0.21 nats, MMD 0.15-0.25 -> 0.001-0.003."""
    toy = get_toy("8gaussians")
    schedule = noise_schedule("t6")
    net = ConditionedMLP(2, (32, 32), schedule.num_levels, rngs=nnx.Rngs(0))
    model = as_conditioned_energy_fn(net)
    chain = dict(num_langevin_steps=15, step_size_scale=0.1, chain_init="posterior_mean",
                 metropolis=False)
    loss = recovery_likelihood(model.apply, schedule, split_batch=True, **chain)
    opt = optax.adam(3e-3)
    sample_data = jax.jit(lambda key: {"x": toy.sample(key, 192)})
    state = init_train_state(jax.random.PRNGKey(0), model.params, opt, loss,
                             sample_data(jax.random.PRNGKey(0)))
    untrained = jax.tree.map(jnp.copy, model.params)
    step = jax.jit(make_train_step(loss, opt, ema_decay=0.99), donate_argnums=0)
    keys = jax.random.split(jax.random.PRNGKey(1), 600)
    for key in keys:
        state, metrics = step(state, sample_data(key))

    @jax.jit
    def evaluate(params):
        kl = kl_by_quadrature(toy.log_prob, lambda x: model.apply(params, x, 0), size=150)
        x = progressive_sample(jax.random.PRNGKey(2), model.apply, params, schedule, (2,), 1000,
                               **chain)
        y = toy.sample(jax.random.PRNGKey(3), 1000)
        return kl, _mmd(x, y)

    kl0, mmd0 = evaluate(untrained)
    kl1, mmd1 = evaluate(state.ema_params)
    assert float(kl1) < 0.45 and float(kl1) < 0.25 * float(kl0)
    assert float(mmd1) < 0.1 * float(mmd0)


def _mmd(x, y, bandwidths=(0.3, 1.0, 3.0)):
    """Unbiased squared MMD with a sum of RBF kernels."""
    def k(a, b):
        d = jnp.sum((a[:, None] - b[None]) ** 2, -1)
        return sum(jnp.exp(-d / (2 * bw**2)) for bw in bandwidths)

    n = x.shape[0]
    kxx, kyy = k(x, x), k(y, y)
    return ((jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
            + (jnp.sum(kyy) - jnp.trace(kyy)) / (n * (n - 1)) - 2 * jnp.mean(k(x, y)))
