"""Tests of denoising and sliced score matching (ebm_jax.losses.score_matching).

The training tests fit a quadratic energy ``E(x) = ½ (x-m)ᵀ L Lᵀ (x-m)`` to a
fixed 2-D Gaussian sample, for which both optima are known in closed form:

- DSM with noise ``σ``: the least-squares regression of ``-ε/σ`` on ``x̃ = x + σε``
  (population over ``ε``, empirical over the data) gives ``m`` = the data mean and
  precision ``P = (S + σ²I)⁻¹`` with ``S`` the data's (``1/N``) covariance; with
  several levels drawn uniformly and ``σ²`` weighting, ``P = (S + (Σσ⁴/Σσ²) I)⁻¹``.
- SSM: Hyvärinen's objective ``-tr P + ½ mean |P(x-m)|²`` is minimised at
  ``P = S⁻¹`` and ``m`` = the data mean: unbiased.

These are the optima for *this* data set, so the only error left is the
optimiser's Monte-Carlo noise (from ``ε`` or the projections ``v``), which a
cosine-decayed Adam rate averages away; tolerances are set from it.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.losses.score_matching import denoising_score_matching, sliced_score_matching

# Long chains and training loops: runtime, not compilation (see tests/conftest.py).
pytestmark = pytest.mark.optimised

TRUE_COV = np.array([[1.0, 0.5], [0.5, 0.5]])
N_DATA = 2000


@functools.lru_cache(maxsize=None)
def gaussian_data():
    chol = np.linalg.cholesky(TRUE_COV)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (N_DATA, 2)), np.float64)
    x = np.array([1.0, -0.5]) + z @ chol.T
    return x.astype(np.float32)


def empirical_moments():
    x = gaussian_data().astype(np.float64)
    return x.mean(0), np.cov(x.T, bias=True)


def quadratic(params, x):
    lower = jnp.tril(params["L"])
    d = x - params["m"]
    return 0.5 * jnp.sum((lower.T @ d) ** 2)


def precision(params):
    lower = np.tril(np.asarray(params["L"], np.float64))
    return lower @ lower.T


def fit(loss, num_steps, lr, repeat=1, seed=0):
    """Adam with a cosine-decayed rate on the full data set (tiled ``repeat`` times so that
    each step averages more noise draws), all steps in one ``lax.scan``."""
    batch = {"x": jnp.tile(jnp.asarray(gaussian_data()), (repeat, 1))}
    params = {"L": jnp.eye(2), "m": jnp.zeros(2)}
    opt = optax.adam(optax.cosine_decay_schedule(lr, num_steps, alpha=0.0))

    def step(carry, key):
        p, o = carry
        (value, (_, info)), g = jax.value_and_grad(loss.loss, has_aux=True)(p, (), batch, key)
        u, o = opt.update(g, o, p)
        return (optax.apply_updates(p, u), o), value

    keys = jax.random.split(jax.random.PRNGKey(seed), num_steps)
    (params, _), values = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), keys))(params)
    return params, values


# -- denoising score matching ---------------------------------------------------------

@pytest.mark.slow
def test_dsm_loss_is_zero_for_the_kernel_score():
    """With all data at 0, x̃ = σε and E(x) = ½|x|²/σ² has -∇E(x̃) = -ε/σ, the noising
    kernel's score, so ½|σ s(x̃) + ε|² is exactly 0 for every draw. With the noise level
    given to the energy, E(x, σ) = ½|x|²/σ² does the same for several levels at once.
    A flipped sign (σ s - ε) or a wrong σ makes it ~D = 2 per example."""
    batch = {"x": jnp.zeros((64, 2))}
    sigma = 0.3
    dsm = denoising_score_matching(lambda p, x: 0.5 * jnp.sum(x**2) / sigma**2, sigma=sigma)
    assert dsm.init(jax.random.PRNGKey(0), None, batch) == ()
    value, (_, info) = jax.jit(dsm.loss)(None, (), batch, jax.random.PRNGKey(1))
    assert float(value) < 1e-10
    # score_norm = mean |ε|/σ: for 2-D ε, E|ε| = sqrt(π/2) = 1.2533 (SE 0.655/8/σ per batch).
    np.testing.assert_allclose(info["score_norm"] * sigma, np.sqrt(np.pi / 2), atol=5 * 0.655 / 8)

    cond = denoising_score_matching(lambda p, x, s: 0.5 * jnp.sum(x**2) / s**2,
                                    sigmas=(0.1, 0.5, 2.0), noise_conditional=True)
    value, _ = jax.jit(cond.loss)(None, (), batch, jax.random.PRNGKey(2))
    assert float(value) < 1e-10
    # The same energy told the wrong level is far off: E(x, 1) with σ = 0.3 gives
    # ε - σ·σε = (1 - σ²) ε, loss ½ (0.91)² |ε|² ≈ 0.83 per example.
    wrong = denoising_score_matching(lambda p, x: 0.5 * jnp.sum(x**2), sigma=sigma)
    value, _ = jax.jit(wrong.loss)(None, (), batch, jax.random.PRNGKey(1))
    assert float(value) > 0.4


def test_dsm_expected_loss_and_gradient_on_a_quadratic():
    """E(x) = ½ a|x - μ|²: σs + ε = (1 - aσ²) ε - aσ(x - μ), so
    E[L] = ½ [(1 - aσ²)² D + a²σ² mean|x - μ|²] and dE[L]/da = -(1-aσ²)σ² D + aσ² mean|x-μ|².
    Monte Carlo over 200,000 draws: the per-example loss has sd < 2 here, so SE < 0.005;
    we allow 0.02."""
    a, mu, sigma = 1.5, jnp.array([0.2, -0.1]), 0.4
    x = jnp.asarray(gaussian_data())
    batch = {"x": jnp.tile(x, (100, 1))}
    dsm = denoising_score_matching(lambda p, y: 0.5 * p * jnp.sum((y - mu) ** 2), sigma=sigma)
    (value, _), grad = jax.jit(jax.value_and_grad(dsm.loss, has_aux=True))(
        a, (), batch, jax.random.PRNGKey(0))
    sq = float(np.mean(np.sum((np.asarray(x, np.float64) - np.asarray(mu)) ** 2, axis=1)))
    expected = 0.5 * ((1 - a * sigma**2) ** 2 * 2 + a**2 * sigma**2 * sq)
    np.testing.assert_allclose(value, expected, atol=0.02)
    np.testing.assert_allclose(grad, -(1 - a * sigma**2) * sigma**2 * 2 + a * sigma**2 * sq,
                               atol=0.02)


@pytest.mark.slow
def test_dsm_learns_the_smoothed_precision():
    """The fitted precision is (S + σ²I)⁻¹, not S⁻¹: DSM's bias, exactly.

    Tolerance: the gradient noise is from ε; with 8 copies of the 2,000 points per step
    (16,000 draws) and a rate decayed to 0 over 1,500 steps, the final iterate averages
    many steps' draws: over 3 seeds the error was 0.07-0.13% of |P| (0.08-0.15% of the
    data scale in m). We allow 2% of |P| and 0.02 in m; the bias |(S + σ²I)⁻¹ - S⁻¹| is
    126% of |P|, and a sign flip or a detached gradient leaves P far from both."""
    sigma = 0.5
    params, values = fit(denoising_score_matching(quadratic, sigma=sigma), 1500, 0.05, repeat=8)
    assert np.all(np.isfinite(np.asarray(values)))
    mean, s = empirical_moments()
    target = np.linalg.inv(s + sigma**2 * np.eye(2))
    p = precision(params)
    tol = 0.02 * np.linalg.norm(target)
    assert np.linalg.norm(p - target) < tol, (p, target)
    assert np.linalg.norm(p - np.linalg.inv(s)) > 20 * tol  # the bias is real and visible
    # m: its gradient noise is ~|P| σ |ε| / sqrt(16,000) per step, averaged likewise.
    np.testing.assert_allclose(params["m"], mean, atol=0.02)


@pytest.mark.slow
def test_dsm_several_sigmas_weighted_by_sigma_squared():
    """Levels drawn uniformly per example with σ² weighting: the quadratic optimum solves
    Σ_k λ_k (P (S + σ_k² I) - I) = 0, i.e. P = (S + (Σσ⁴/Σσ²) I)⁻¹ = (S + 0.306 I)⁻¹ for
    σ ∈ {0.3, 0.6} with λ = σ². Without the weighting (λ = 1) it would be
    (S + mean(σ²) I)⁻¹ = (S + 0.225 I)⁻¹, 19% of |P| away. Over 3 seeds the fit was within
    0.2% of the target (noise from ε and the level draws, as in the single-level test);
    we allow 1%."""
    sigmas = (0.3, 0.6)
    params, _ = fit(denoising_score_matching(quadratic, sigmas=sigmas), 1500, 0.05, repeat=8)
    _, s = empirical_moments()
    sig = np.asarray(sigmas)
    target = np.linalg.inv(s + (np.sum(sig**4) / np.sum(sig**2)) * np.eye(2))
    p = precision(params)
    assert np.linalg.norm(p - target) < 0.01 * np.linalg.norm(target), (p, target)
    unweighted = np.linalg.inv(s + np.mean(sig**2) * np.eye(2))
    assert np.linalg.norm(p - unweighted) > 0.1 * np.linalg.norm(target)


def test_dsm_errors():
    e = lambda p, x: jnp.sum(x**2)  # noqa: E731
    with pytest.raises(ValueError, match="exactly one"):
        denoising_score_matching(e)
    with pytest.raises(ValueError, match="exactly one"):
        denoising_score_matching(e, sigma=0.1, sigmas=(0.1,))
    for bad in (0.0, -1.0, float("inf"), "0.1", True):
        with pytest.raises(ValueError, match="sigma="):
            denoising_score_matching(e, sigma=bad)
    with pytest.raises(ValueError, match="sigmas="):
        denoising_score_matching(e, sigmas=())
    with pytest.raises(ValueError, match="sigmas=0.1"):
        denoising_score_matching(e, sigmas=0.1)
    denoising_score_matching(e, sigma=np.float32(0.1))  # NumPy scalars are numbers too
    with pytest.raises(ValueError, match=r"sigmas\[1\]=-0.5"):
        denoising_score_matching(e, sigmas=(0.1, -0.5))
    with pytest.raises(KeyError, match="'x'"):
        denoising_score_matching(e, sigma=0.1).init(None, None, {"y": jnp.zeros(3)})


# -- sliced score matching ------------------------------------------------------------

def test_ssm_vr_is_exact_for_an_isotropic_quadratic_with_rademacher_projections():
    """E = ½ c|x - m|²: H = cI and vᵀHv = c|v|² = cD for ±1 projections, so SSM-VR is
    exactly -cD + ½c² mean|x - m|², and its gradient in c is -D + c mean|x - m|²."""
    c, m = 2.0, jnp.array([0.5, 0.0])
    energy = lambda p, x: 0.5 * p * jnp.sum((x - m) ** 2)  # noqa: E731
    x = jnp.asarray(gaussian_data()[:256])
    ssm = sliced_score_matching(energy, num_projections=3, projection="rademacher")
    (value, (_, info)), grad = jax.jit(jax.value_and_grad(ssm.loss, has_aux=True))(
        c, (), {"x": x}, jax.random.PRNGKey(0))
    sq = np.sum((np.asarray(x, np.float64) - np.asarray(m)) ** 2, axis=1)
    np.testing.assert_allclose(value, -2 * c + 0.5 * c**2 * sq.mean(), rtol=1e-5)
    np.testing.assert_allclose(grad, -2 + c * sq.mean(), rtol=1e-5)
    np.testing.assert_allclose(info["score_norm"], c * np.sqrt(sq).mean(), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variance_reduction", [True, False])
def test_ssm_estimates_hyvarinen_objective_on_a_network(variance_reduction):
    """For a non-quadratic energy the SSM value is an unbiased estimate of
    E[-tr ∇²E + ½|∇E|²] (the Hessian from jax.hessian here). 4,000 Gaussian projections
    per point on 16 points: the estimate's SE is computed from the projections themselves
    (per-projection values recomputed by hand); we allow 5 SE."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    params = {"w": jax.random.normal(k1, (2, 8)), "b": jax.random.normal(k2, (8,)),
              "v": jax.random.normal(k3, (8,))}

    def energy(p, x):
        return jnp.sum(p["v"] * jnp.tanh(x @ p["w"] + p["b"])) + 0.1 * jnp.sum(x**4)

    x = jnp.asarray(gaussian_data()[:16])
    num = 4000
    ssm = sliced_score_matching(energy, num_projections=num,
                                variance_reduction=variance_reduction)
    value, _ = jax.jit(ssm.loss)(params, (), {"x": x}, jax.random.PRNGKey(5))
    hess = jax.vmap(jax.hessian(energy, argnums=1), in_axes=(None, 0))(params, x)
    grads = jax.vmap(jax.grad(energy, argnums=1), in_axes=(None, 0))(params, x)
    exact = np.mean(-np.trace(np.asarray(hess), axis1=1, axis2=2)
                    + 0.5 * np.sum(np.asarray(grads) ** 2, axis=1))
    # SE from the per-projection values, drawn with independent projections here.
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(9), (16, num, 2)), np.float64)
    h, g = np.asarray(hess, np.float64), np.asarray(grads, np.float64)
    vhv = np.einsum("bpi,bij,bpj->bp", v, h, v)
    second = 0.5 * np.sum(g**2, 1)[:, None] if variance_reduction \
        else 0.5 * np.einsum("bpi,bi->bp", v, g) ** 2
    per = -vhv + second
    se = per.std() / np.sqrt(per.size)
    np.testing.assert_allclose(value, exact, atol=5 * se)
    np.testing.assert_allclose(per.mean(), exact, atol=5 * se)  # the hand estimator agrees


@pytest.mark.slow
@pytest.mark.parametrize("variance_reduction", [True, False])
def test_ssm_learns_the_unbiased_precision(variance_reduction):
    """SSM's optimum is P = S⁻¹, m = the data mean. Gradient noise comes from the
    projections only (-vvᵀ in P, and for plain SSM (vᵀ∇E)² too); 4 projections on 2,000
    points per step and a rate decayed to 0 over 1,500 steps left 0.09-0.27% relative
    error over 3 seeds (m within 0.004); we allow 2% of |P| and 0.02 in m (the DSM optimum
    at σ = 0.5 is 126% of |P| away)."""
    ssm = sliced_score_matching(quadratic, num_projections=4,
                                variance_reduction=variance_reduction)
    params, values = fit(ssm, 1500, 0.05)
    assert np.all(np.isfinite(np.asarray(values)))
    mean, s = empirical_moments()
    target = np.linalg.inv(s)
    p = precision(params)
    assert np.linalg.norm(p - target) < 0.02 * np.linalg.norm(target), (p, target)
    np.testing.assert_allclose(params["m"], mean, atol=0.02)


def test_ssm_errors():
    e = lambda p, x: jnp.sum(x**2)  # noqa: E731
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_projections="):
            sliced_score_matching(e, num_projections=bad)
    with pytest.raises(ValueError, match="projection='sphere'"):
        sliced_score_matching(e, projection="sphere")
    with pytest.raises(KeyError, match="'x'"):
        sliced_score_matching(e).init(None, None, {"y": jnp.zeros(3)})
