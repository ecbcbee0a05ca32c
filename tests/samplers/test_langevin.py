"""Tests of the SGLD sampler (``ebm_jax.samplers.langevin``) and the chain runners.

The statistical tests use an analytic 2-D Gaussian with a non-diagonal
covariance and compare many independent vmapped chains with the *known*
stationary law of the unadjusted Langevin algorithm (ULA), including its
discretisation bias, so that they can tell a correct sampler from one with the
wrong noise scale, a flipped drift, or no drift at all.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.energies import gaussian
from ebm_jax.samplers import LangevinInfo, langevin, run_chain, run_chains

# Long chains and training loops: runtime, not compilation (see tests/conftest.py).
pytestmark = pytest.mark.optimised

MEAN = np.array([1.0, -2.0])
# Non-diagonal covariance; eigenvalues ~1.391 and ~0.359 (condition number ~3.9).
COV = np.array([[1.0, 0.5], [0.5, 0.75]])

NUM_CHAINS = 10_000
# Critical value of every statistical check below, in standard errors. The keys are
# fixed, so the tests are deterministic; 5 SE means a correct sampler would fail a
# given check with probability < 1e-6 under any other seed, while the mutations the
# tests are meant to catch are off by 10-1000 SE.
Z = 5.0


def ula_covariance(cov, step_size, temperature=1.0):
    """Stationary covariance of ULA on N(m, S) at temperature T.

    With P = S^-1 the step is x' - m = (I - hP)(x - m) + sqrt(2hT) xi, a linear
    (AR(1)) recursion whose stationary covariance C solves
        C = (I - hP) C (I - hP) + 2hT I.
    In the eigenbasis of S (eigenvalue lam, so P has 1/lam) this is scalar:
        c = (1 - h/lam)^2 c + 2hT  =>  c (2h/lam - h^2/lam^2) = 2hT
        =>  c = T lam / (1 - h / (2 lam)),
    i.e. C = T S (I - h/2 S^-1)^-1. It exists iff |1 - h/lam| < 1 (h < 2 lam_min);
    the mean is unbiased. The bias factor 1/(1 - h/(2 lam)) -> 1 as h -> 0.
    """
    lam, vecs = np.linalg.eigh(cov)
    assert step_size < 2 * lam.min(), "ULA is unstable at this step size"
    c = temperature * lam / (1.0 - step_size / (2.0 * lam))
    return (vecs * c) @ vecs.T


GAUSSIAN_TARGET = gaussian(MEAN, COV)


@functools.partial(jax.jit, static_argnums=0)
def _run_500_steps(default_temperature, key, position, step_size, temperature):
    """500 steps of the chains at ``position``; the step size and temperature are traced, so
    every call with the same form (default T or explicit temperature) shares one program."""
    kwargs = {} if default_temperature else {"temperature": temperature}
    sampler = langevin(GAUSSIAN_TARGET.energy_fn, step_size, **kwargs)
    return run_chains(key, sampler, jax.vmap(sampler.init)(position), None, 500)[0].position


def run_gaussian_chains(step_size, temperature=None, num_steps=1000, seed=0):
    """Final positions of NUM_CHAINS temperature-form chains started at the origin."""
    position = jnp.zeros((NUM_CHAINS, 2))
    # Several shorter jitted runs (same compiled program) keep the per-step key array small.
    for key in jax.random.split(jax.random.PRNGKey(seed), num_steps // 500):
        position = _run_500_steps(temperature is None, key, position, jnp.float32(step_size),
                                  jnp.float32(1.0 if temperature is None else temperature))
    return np.asarray(position, np.float64)


def check_moments(x, mean, cov):
    """Assert that samples x [N, 2] of independent chains have this mean and covariance.

    Checked in the eigenbasis of ``cov`` (coordinates z = V^T (x - mean), independent
    Gaussians with variances c_i if the sampler is right), where the standard errors are
    exact for Gaussian data: SE(mean z_i) = sqrt(c_i/N), SE(var z_i) = c_i sqrt(2/(N-1)),
    SE(cov(z_1, z_2)) = sqrt(c_1 c_2 / N).
    """
    n = x.shape[0]
    c, vecs = np.linalg.eigh(cov)
    z = (x - mean) @ vecs
    z_mean = z.mean(0)
    np.testing.assert_array_less(np.abs(z_mean), Z * np.sqrt(c / n))
    emp = np.cov(z, rowvar=False)
    np.testing.assert_array_less(np.abs(np.diag(emp) - c), Z * c * np.sqrt(2.0 / (n - 1)))
    assert abs(emp[0, 1]) < Z * np.sqrt(c[0] * c[1] / n)
    return emp


# Mixing: from the origin, the mean error decays like (1 - h/lam_max)^t and the
# covariance error like (1 - h/lam_max)^(2t). For h = 0.05, t = 1000 steps:
# (1 - 0.05/1.391)^1000 ~ 1e-16, far below the standard errors. At this step the
# bias factor on the small eigenvalue is 1/(1 - 0.05/0.718) = 1.075, about 5 SE.
@pytest.mark.slow  # a long statistical check (over 1.5 s)
@pytest.mark.parametrize("temperature", [None, 2.0])
def test_temperature_form_matches_ula_stationary_law(temperature):
    step_size = 0.05
    x = run_gaussian_chains(step_size, temperature)
    t = 1.0 if temperature is None else temperature
    # Temperature T targets exp(-E/T) = N(m, T S): the covariance scales by T.
    check_moments(x, MEAN, ula_covariance(COV, step_size, t))


@pytest.mark.slow
def test_large_step_bias_is_visible():
    """At h = 0.4 ULA's covariance is inflated by 1/(1 - 0.4/(2*0.359)) ~ 2.26 on the
    small eigenvalue: the chains match the biased law and clearly miss the true one,
    so the moment checks above resolve the discretisation bias."""
    step_size = 0.4
    x = run_gaussian_chains(step_size, num_steps=500)  # (1 - 0.4/1.391)^500 ~ 1e-74
    check_moments(x, MEAN, ula_covariance(COV, step_size))
    c_true, vecs = np.linalg.eigh(COV)
    var_emp = np.var((x - MEAN) @ vecs, axis=0, ddof=1)
    se = c_true * np.sqrt(2.0 / (x.shape[0] - 1))
    # The small eigenvalue's variance is off the truth by ~1.26 c, i.e. ~90 SE.
    assert abs(var_emp[0] - c_true[0]) > 10 * Z * se[0]


# -- the decoupled form ---------------------------------------------------------------

def flat_energy(params, x):
    return 0.0 * jnp.sum(x)


def test_decoupled_zero_noise_zero_grad_leaves_positions_unchanged():
    sampler = langevin(flat_energy, step_size=1.0, noise_scale=0.0)
    x0 = jax.random.normal(jax.random.PRNGKey(1), (7, 3))
    state, info = jax.jit(lambda k, x0: run_chains(k, sampler, jax.vmap(sampler.init)(x0), None,
                                                   10))(jax.random.PRNGKey(2), x0)
    np.testing.assert_array_equal(state.position, x0)
    np.testing.assert_array_equal(info.grad_norm, 0.0)


def test_decoupled_drift_is_minus_step_size_times_gradient():
    a = jnp.array([1.0, -2.0, 0.5])
    sampler = langevin(lambda p, x: p @ x, step_size=0.3, noise_scale=0.0)
    state, info = sampler.step(jax.random.PRNGKey(0), sampler.init(jnp.ones(3)), a)
    np.testing.assert_allclose(state.position, 1.0 - 0.3 * a, rtol=1e-6)
    np.testing.assert_allclose(info.energy, jnp.sum(a))
    np.testing.assert_allclose(info.grad_norm, jnp.linalg.norm(a), rtol=1e-6)
    assert int(info.nonfinite) == 0


def test_decoupled_increment_std_equals_noise_scale():
    noise_scale = 0.01
    sampler = langevin(flat_energy, step_size=1.0, noise_scale=noise_scale)
    n = 20_000
    state, _ = jax.jit(lambda key: jax.vmap(sampler.step, in_axes=(0, 0, None))(
        jax.random.split(key, n), jax.vmap(sampler.init)(jnp.full((n,), 3.0)), None))(
        jax.random.PRNGKey(0))
    inc = np.asarray(state.position, np.float64) - 3.0
    # Gaussian increments: SE(mean) = s/sqrt(n); SE(std) ~ s/sqrt(2n) (0.5% here). A noise
    # of sqrt(2*h*s^2) or s^2 would be off by >40% (>80 SE).
    assert abs(inc.mean()) < Z * noise_scale / np.sqrt(n)
    assert abs(inc.std(ddof=1) - noise_scale) < Z * noise_scale / np.sqrt(2 * n)


def test_temperature_form_noise_scale():
    """noise = sqrt(2 h T) per step with zero gradient (h=0.02, T=3: 0.3464)."""
    sampler = langevin(flat_energy, step_size=0.02, temperature=3.0)
    n = 20_000
    state, _ = jax.jit(lambda key: jax.vmap(sampler.step, in_axes=(0, 0, None))(
        jax.random.split(key, n), jax.vmap(sampler.init)(jnp.zeros(n)), None))(
        jax.random.PRNGKey(3))
    s = np.sqrt(2 * 0.02 * 3.0)
    assert abs(np.std(np.asarray(state.position, np.float64), ddof=1) - s) < Z * s / np.sqrt(2 * n)


# -- clipping ------------------------------------------------------------------------

def test_grad_clip_is_elementwise():
    # Steep quadratic E = 50 |x|^2: gradient 100 x = [100, -200, 0.1].
    sampler = langevin(lambda p, x: 50.0 * jnp.sum(x**2), step_size=0.1, noise_scale=0.0,
                       grad_clip=1.0)
    x0 = jnp.array([1.0, -2.0, 0.001])
    state, info = sampler.step(jax.random.PRNGKey(0), sampler.init(x0), None)
    # Each coordinate moves by at most step_size * grad_clip = 0.1; the small one is unclipped.
    # (Norm clipping would give moves 0.1 * [0.447, -0.894, ~0].)
    np.testing.assert_allclose(state.position, [0.9, -1.9, 0.001 - 0.1 * 0.1], rtol=1e-5)
    # grad_norm reports the unclipped gradient.
    np.testing.assert_allclose(info.grad_norm, np.sqrt(100.0**2 + 200.0**2 + 0.1**2), rtol=1e-5)


def test_grad_clip_bounds_every_step_of_a_chain():
    sampler = langevin(lambda p, x: 500.0 * jnp.sum(x**2), step_size=0.01, noise_scale=0.0,
                       grad_clip=2.0)
    x = sampler.init(jnp.array([3.0, -1.5, 0.7, 0.0]))
    for i in range(5):
        new, _ = sampler.step(jax.random.PRNGKey(i), x, None)
        assert np.all(np.abs(new.position - x.position) <= 0.01 * 2.0 * (1 + 1e-6))
        x = new


def test_clip_range_clamps_positions():
    sampler = langevin(flat_energy, step_size=1.0, noise_scale=2.0, clip_range=(-1.0, 1.0))
    state, _ = jax.jit(lambda k, x0: run_chains(k, sampler, jax.vmap(sampler.init)(x0), None, 3))(
        jax.random.PRNGKey(0), jnp.zeros((1000, 4)))
    pos = np.asarray(state.position)
    assert pos.min() == -1.0 and pos.max() == 1.0  # noise 2 reaches the bounds; they clamp
    # Inside the range, clamping changes nothing: same key and no clip gives the same point.
    free = langevin(flat_energy, step_size=1.0, noise_scale=0.1)
    clipped = langevin(flat_energy, step_size=1.0, noise_scale=0.1, clip_range=(-5.0, 5.0))
    key, s0 = jax.random.PRNGKey(4), free.init(jnp.zeros(4))
    np.testing.assert_array_equal(free.step(key, s0, None)[0].position,
                                  clipped.step(key, s0, None)[0].position)


# -- non-finite energies -----------------------------------------------------------

@pytest.mark.parametrize("x0, expect_nonfinite", [
    ([-1.0, 0.5], 1),   # sqrt of a negative number: NaN energy and gradient
    ([0.0, 0.5], 1),    # gradient of sqrt at 0 is inf
    ([4.0, 0.5], 0),    # finite
])
def test_nonfinite_step_leaves_position_unchanged(x0, expect_nonfinite):
    sampler = langevin(lambda p, x: jnp.sqrt(x[0]) + jnp.sum(x**2), step_size=0.01,
                       noise_scale=0.1)
    x0 = jnp.array(x0)
    state, info = sampler.step(jax.random.PRNGKey(0), sampler.init(x0), None)
    assert isinstance(info, LangevinInfo)
    assert int(info.nonfinite) == expect_nonfinite
    if expect_nonfinite:
        np.testing.assert_array_equal(state.position, x0)
    else:
        assert np.all(np.isfinite(state.position)) and not np.array_equal(state.position, x0)


def test_nonfinite_chain_does_not_propagate_nan():
    sampler = langevin(lambda p, x: jnp.log(x[0]) + jnp.sum(x**2), step_size=0.01,
                       noise_scale=0.1)
    x0 = jnp.array([-1.0, 0.5])  # log of a negative: NaN forever at this position
    state, info = jax.jit(lambda k, x0: run_chain(k, sampler, sampler.init(x0), None, 20,
                                                  trace=True))(jax.random.PRNGKey(0), x0)
    np.testing.assert_array_equal(state.position, x0)
    np.testing.assert_array_equal(info.nonfinite, np.ones(20, np.int32))


# -- argument checks ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(step_size=0.0), "step_size"),
    (dict(step_size=-0.1), "step_size"),
    (dict(step_size=0.1, noise_scale=-0.01), "noise_scale"),
    (dict(step_size=0.1, noise_scale=0.01, temperature=1.0), "noise_scale"),
    (dict(step_size=0.1, noise_scale=0.01, temperature=1.0), "temperature"),
    (dict(step_size=0.1, temperature=0.0), "temperature"),
    (dict(step_size=0.1, grad_clip=-1.0), "grad_clip"),
    (dict(step_size=0.1, clip_range=(1.0, 1.0)), "clip_range"),
    (dict(step_size=0.1, clip_range=(1.0, -1.0)), "clip_range"),
])
def test_bad_arguments_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        langevin(flat_energy, **kwargs)


def test_run_chain_rejects_bad_num_steps():
    sampler = langevin(flat_energy, 0.1, 0.0)
    for bad in (0, -3, 2.0):
        with pytest.raises(ValueError, match="num_steps"):
            run_chain(jax.random.PRNGKey(0), sampler, sampler.init(jnp.zeros(2)), None, bad)


# -- compilation and tracing ----------------------------------------------------------

def counting_energy(counter):
    def energy_fn(params, x, *cond):
        counter.append(1)  # Python side effect: runs once per trace, never at run time
        return 0.5 * jnp.sum(((x - params["mu"]) / params["scale"]) ** 2)
    return energy_fn


def test_run_chains_jit_compiles_once_across_params():
    traces = []
    sampler = langevin(counting_energy(traces), step_size=0.05)
    states = jax.vmap(sampler.init)(jnp.zeros((16, 2)))

    @jax.jit
    def run(key, params, states):
        return run_chains(key, sampler, states, params, 30)

    p1 = {"mu": jnp.array([1.0, 2.0]), "scale": jnp.array(1.0)}
    p2 = {"mu": jnp.array([-3.0, 0.5]), "scale": jnp.array(0.5)}
    out1, info = run(jax.random.PRNGKey(0), p1, states)
    assert info.energy.shape == (16,)  # trace=False: the last step's info per chain
    n_traces = len(traces)
    assert n_traces > 0
    out2, _ = run(jax.random.PRNGKey(0), p2, states)
    assert len(traces) == n_traces, "second call with same-shaped params re-traced"
    # Params really are a runtime argument, not a baked-in constant.
    assert not np.allclose(out1.position, out2.position)
    # Control: the counter does see a re-trace (params of a new shape must re-trace).
    run(jax.random.PRNGKey(0), {"mu": p2["mu"], "scale": jnp.ones(2)}, states)
    assert len(traces) > n_traces


def test_run_chain_jit_compiles_once_across_params():
    traces = []
    sampler = langevin(counting_energy(traces), step_size=0.05, noise_scale=0.0)
    run = jax.jit(lambda key, params, s: run_chain(key, sampler, s, params, 40)[0])
    s0 = sampler.init(jnp.zeros(2))
    a = run(jax.random.PRNGKey(0), {"mu": jnp.array([1.0, 1.0]), "scale": jnp.array(1.0)}, s0)
    n_traces = len(traces)
    b = run(jax.random.PRNGKey(0), {"mu": jnp.array([-1.0, 2.0]), "scale": jnp.array(1.0)}, s0)
    assert len(traces) == n_traces
    # Noise-free gradient descent on the quadratic: x_t = mu (1 - (1 - h)^t).
    factor = 1 - (1 - 0.05) ** 40
    np.testing.assert_allclose(a.position, factor * np.array([1.0, 1.0]), rtol=1e-5)
    np.testing.assert_allclose(b.position, factor * np.array([-1.0, 2.0]), rtol=1e-5)


def test_trace_returns_per_step_info():
    sampler = langevin(lambda p, x: 0.5 * jnp.sum(x**2), step_size=0.1, noise_scale=0.3)
    params, num_steps, key = None, 12, jax.random.PRNGKey(5)
    s0 = sampler.init(jnp.full(3, 2.0))
    (final_t, info_t), (final, info) = jax.jit(lambda k, s: (
        run_chain(k, sampler, s, params, num_steps, trace=True),
        run_chain(k, sampler, s, params, num_steps)))(key, s0)
    assert info_t.energy.shape == info_t.grad_norm.shape == info_t.nonfinite.shape == (num_steps,)
    assert info.energy.shape == ()
    # Both paths use the same per-step keys: same end point, last info = last traced info.
    np.testing.assert_allclose(final.position, final_t.position, rtol=1e-6)
    np.testing.assert_allclose(info.energy, info_t.energy[-1], rtol=1e-6)
    # The traced energies are measured at each step's start: first is E(x0) = 6.
    np.testing.assert_allclose(info_t.energy[0], 6.0, rtol=1e-6)

    states = jax.vmap(sampler.init)(jnp.ones((4, 3)))
    _, infos = jax.jit(lambda k, s: run_chains(k, sampler, s, params, num_steps, trace=True))(
        key, states)
    assert infos.energy.shape == (4, num_steps)
    # Same start, so equal first energies; chains get different keys, so the last differ.
    np.testing.assert_allclose(infos.energy[:, 0], 1.5, rtol=1e-6)
    assert len(np.unique(np.asarray(infos.energy[:, -1]))) == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"step_size": np.float32(-0.1)}, "step_size=.*expected a positive number"),
    ({"step_size": np.int64(0)}, "step_size=.*expected a positive number"),
    ({"step_size": 0.1, "noise_scale": np.float32(-1.0)}, "noise_scale=.*expected a number >= 0"),
    ({"step_size": 0.1, "temperature": np.float64(0.0)}, "temperature=.*expected a positive number"),
])
def test_numpy_scalars_are_validated_like_python_numbers(kwargs, message):
    with pytest.raises(ValueError, match=message):
        langevin(lambda p, x: jnp.sum(x**2), **kwargs)


# -- the kernel (step size and noise scale as arguments) ----------------------------------

from ebm_jax.samplers import LangevinState, langevin_kernel, temperature_noise_scale  # noqa: E402


def _standard_normal_energy(params, x):
    return 0.5 * jnp.sum(x**2)


def _kernel_chains(step_size, noise_scale, num_chains=20_000, num_steps=300, seed=0):
    """Final positions of 1-D chains on N(0, 1) run by the kernel, with the step size and
    the noise scale traced arguments of one compiled program."""
    kernel = langevin_kernel(_standard_normal_energy)

    @jax.jit
    def run(key, h, s):
        def one(k):
            def body(state, step_key):
                return kernel(step_key, state, None, h, s)[0], None
            state, _ = jax.lax.scan(body, LangevinState(jnp.zeros(1)),
                                    jax.random.split(k, num_steps))
            return state.position[0]
        return jax.vmap(one)(jax.random.split(key, num_chains))

    return np.asarray(run(jax.random.key(seed), jnp.float32(step_size), jnp.float32(noise_scale)),
                      np.float64), run


@pytest.mark.parametrize("step_size", [0.05, 0.2])
def test_kernel_temperature_form_samples_the_ula_law_of_a_standard_normal(step_size):
    """On E = x²/2 the chain x' = (1-h) x + s ε is AR(1): stationary mean 0 and variance
    s² / (1 - (1-h)²), which for the temperature form s = sqrt(2h) is 1 / (1 - h/2) (1 as
    h -> 0). 20,000 independent chains after 300 steps ((1-h)^300 < 2e-7 of the start
    remains) must match both within 5 SE. A flipped drift diverges, a dropped noise term
    gives variance 0, a doubled noise variance 4."""
    x, _ = _kernel_chains(step_size, temperature_noise_scale(step_size))
    n = x.size
    var = 1.0 / (1.0 - step_size / 2.0)
    assert abs(x.mean()) < Z * np.sqrt(var / n)
    assert abs(x.var() - var) < Z * var * np.sqrt(2.0 / n)


def test_kernel_decoupled_noise_and_traced_arguments_compile_once():
    """Decoupled form: variance s² / (2h - h²). Different step sizes and noise scales reuse
    one compiled program (they are arguments of the kernel, not constants)."""
    h, s = 0.1, 0.3
    x, run = _kernel_chains(h, s)
    var = s**2 / (2 * h - h**2)
    assert abs(x.mean()) < Z * np.sqrt(var / x.size)
    assert abs(x.var() - var) < Z * var * np.sqrt(2.0 / x.size)
    run(jax.random.key(1), jnp.float32(0.2), jnp.float32(0.1))
    assert run._cache_size() == 1


def test_sampler_step_is_the_kernel_bit_for_bit():
    """langevin() is built on langevin_kernel: same key, same position, same numbers."""
    target = gaussian(MEAN, COV)
    sampler = langevin(target.energy_fn, 0.1, 0.3, grad_clip=0.5, clip_range=(-2.0, 2.0))
    kernel = langevin_kernel(target.energy_fn, grad_clip=0.5, clip_range=(-2.0, 2.0))
    state = sampler.init(jnp.array([1.5, -1.0]))
    key = jax.random.key(3)
    a, info_a = sampler.step(key, state, None)
    b, info_b = kernel(key, state, None, 0.1, 0.3)
    np.testing.assert_array_equal(a.position, b.position)
    np.testing.assert_array_equal(info_a.grad_norm, info_b.grad_norm)


def test_temperature_noise_scale():
    assert temperature_noise_scale(0.02) == pytest.approx(0.2)
    assert temperature_noise_scale(0.02, 4.0) == pytest.approx(0.4)
    np.testing.assert_allclose(temperature_noise_scale(jnp.float32(0.5)), 1.0)


def test_kernel_arguments_are_checked():
    with pytest.raises(ValueError, match="grad_clip=-1.0"):
        langevin_kernel(_standard_normal_energy, grad_clip=-1.0)
    with pytest.raises(ValueError, match=r"clip_range=\(1, 0\)"):
        langevin_kernel(_standard_normal_energy, clip_range=(1, 0))
