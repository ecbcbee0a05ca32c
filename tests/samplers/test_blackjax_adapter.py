"""Tests of the blackjax adapter (``ebm_jax.samplers.blackjax_adapter``).

blackjax is a test dependency (``pip install -e .[test]``); the package itself must not
import it. The statistical tests run 16 vmapped chains through our ``run_chains`` on an
analytic correlated 2-D Gaussian and compare Monte Carlo estimates of five moments,

    f(x) = [x1, x2, (x1-m1)^2, (x2-m2)^2, (x1-m1)(x2-m2)],  E f = [m1, m2, S11, S22, S12],

with the exact values. Each estimate's standard error is ``sqrt(Var f / ESS)`` with the
exact Gaussian ``Var f = [S11, S22, 2 S11^2, 2 S22^2, S11 S22 + S12^2]`` and the ESS of
that statistic from our own diagnostics (Stan/ArviZ mean-ESS, whose estimation error of
a few percent moves the SE by half that). Checks are at ``Z = 5`` SE (keys fixed, so
deterministic); the tests also require a minimum ESS so that the tolerance stays tight,
and R-hat < 1.01.
"""
import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.samplers.base import Sampler, init_chains, run_chain, run_chains
from ebm_jax.samplers.blackjax_adapter import from_blackjax
from ebm_jax.samplers.diagnostics import chain_summary

blackjax = pytest.importorskip("blackjax")

Z = 5.0
MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.5], [0.5, 0.75]])  # eigenvalues ~1.391 and ~0.359
EXACT = np.array([MEAN[0], MEAN[1], COV[0, 0], COV[1, 1], COV[0, 1]])
EXACT_VAR = np.array([COV[0, 0], COV[1, 1], 2 * COV[0, 0] ** 2, 2 * COV[1, 1] ** 2,
                      COV[0, 0] * COV[1, 1] + COV[0, 1] ** 2])
NUM_CHAINS, NUM_WARMUP, NUM_DRAWS = 16, 300, 2000


def gaussian_energy(params, x):
    """The target as a function of explicit params (they are a runtime argument)."""
    d = x - params["mean"]
    return 0.5 * d @ params["precision"] @ d


PARAMS = {"mean": jnp.asarray(MEAN, jnp.float32),
          "precision": jnp.asarray(np.linalg.inv(COV), jnp.float32)}


def moments(x):
    d = x - MEAN
    return jnp.stack([x[0], x[1], d[0] ** 2, d[1] ** 2, d[0] * d[1]])


@functools.partial(jax.jit, static_argnums=0)
def _draw(make_sampler, seed_key, params):
    k0, k1, k2 = jax.random.split(seed_key, 3)
    sampler = make_sampler()
    x0 = 2.0 * jax.random.normal(k0, (NUM_CHAINS, 2))
    states = init_chains(sampler, x0, params)
    states, _ = run_chains(k1, sampler, states, params, NUM_WARMUP)

    def one(key, state):
        def body(s, k):
            s, _ = sampler.step(k, s, params)
            return s, s.position
        return jax.lax.scan(body, state, jax.random.split(key, NUM_DRAWS))[1]

    return jax.vmap(one)(jax.random.split(k2, NUM_CHAINS), states)


def draw(make_sampler, seed):
    """[chains, draws, 2] positions: warm-up through run_chains, then a traced scan. One
    compiled program per sampler factory, whatever the seed (a traced key)."""
    return _draw(make_sampler, jax.random.PRNGKey(seed), PARAMS)


_summary = jax.jit(chain_summary, static_argnums=1)  # one program, not one per eager op


def estimates(make_sampler, seed, min_ess):
    """Moment estimates and their standard errors; asserts the chains mixed."""
    summary = _summary(draw(make_sampler, seed), moments)
    ess = np.asarray(summary.ess, np.float64)
    assert np.all(ess > min_ess), ess
    assert np.all(np.asarray(summary.rhat) < 1.01), summary.rhat
    return np.asarray(summary.mean, np.float64), np.sqrt(EXACT_VAR / ess)


# Module-level sampler factories (built inside _draw's program): blackjax's MALA runs in two
# tests below and compiles once.
def blackjax_mala():
    return from_blackjax(blackjax.mala, gaussian_energy, step_size=0.5)


def blackjax_hmc():
    return from_blackjax(blackjax.hmc, gaussian_energy, step_size=0.3,
                         inverse_mass_matrix=np.ones(2), num_integration_steps=10)


def toolkit_mala():
    from ebm_jax.samplers.mala import mala
    return mala(gaussian_energy, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("name, make_sampler, min_ess", [
    ("mala", blackjax_mala, 4000),
    ("hmc", blackjax_hmc, 4000),
])
def test_blackjax_algorithms_reach_the_exact_moments(name, make_sampler, min_ess):
    """MALA (acceptance ~0.66) and HMC (~0.98) through the adapter and run_chains.

    Measured ESS per statistic: MALA 5.9k-12.5k, HMC 6k-98k (HMC is antithetic for the
    means) of 32k draws, so the SEs are 0.3%-2.7% of the moments. Catches: the sign of
    the log-density flipped (chains diverge), a tempered target such as -E/2 (variances
    double: > 30 SE), params or cond not reaching the energy, the kwargs not reaching
    the algorithm (blackjax rejects the call)."""
    mean, se = estimates(make_sampler, seed=0, min_ess=min_ess)
    np.testing.assert_array_less(np.abs(mean - EXACT), Z * se)


@pytest.mark.slow
def test_toolkit_mala_and_blackjax_mala_agree():
    """The issue: for the same target and seed budget (16 chains x 2000 draws after 300
    warm-up steps, step size 0.5 in both, whose proposals are the same law
    x - h grad E + sqrt(2h) N(0, I)), the toolkit's MALA and blackjax's MALA agree on the
    moments: each within Z SE of the exact value, and their difference within
    Z sqrt(SE_a^2 + SE_b^2) of zero (independent runs). Catches a toolkit MALA with a
    wrong Metropolis correction or proposal scale (biased variances), and an adapter
    that changes blackjax's target."""
    ours, ours_se = estimates(toolkit_mala, seed=1, min_ess=4000)
    theirs, theirs_se = estimates(blackjax_mala, seed=2, min_ess=4000)
    np.testing.assert_array_less(np.abs(ours - EXACT), Z * ours_se)
    np.testing.assert_array_less(np.abs(theirs - EXACT), Z * theirs_se)
    np.testing.assert_array_less(np.abs(ours - theirs), Z * np.hypot(ours_se, theirs_se))


# -- the protocol (deterministic) ----------------------------------------------------------

def shifted_energy(params, x, shift):
    """Params and a per-chain cond argument both change the target."""
    return 0.5 * jnp.sum((x - params["mean"] - shift) ** 2) * params["scale"]


@pytest.mark.slow
def test_init_and_step_equal_blackjax_called_directly():
    """Same key, same closed-over target: identical states and infos. Catches params or
    cond not passed, the energy's sign, and a step that alters blackjax's (state, info)."""
    params = {"mean": jnp.array([1.0, -1.0]), "scale": jnp.array(2.0)}
    shift = jnp.array([0.5, 0.25])
    kwargs = {"step_size": 0.2, "inverse_mass_matrix": jnp.ones(2), "num_integration_steps": 5}
    sampler = from_blackjax(blackjax.hmc, shifted_energy, **kwargs)
    direct = blackjax.hmc(lambda x: -shifted_energy(params, x, shift), **kwargs)
    x0 = jnp.array([0.3, 0.7])
    ours, theirs = sampler.init(x0, params, shift), direct.init(x0)
    np.testing.assert_allclose(ours.logdensity, theirs.logdensity, rtol=1e-6)
    np.testing.assert_allclose(ours.logdensity_grad, theirs.logdensity_grad, rtol=1e-6)
    key = jax.random.PRNGKey(3)
    (ours, our_info), (theirs, their_info) = sampler.step(key, ours, params, shift), \
        direct.step(key, theirs)
    assert type(ours) is type(theirs) and type(our_info) is type(their_info)
    for a, b in zip(jax.tree.leaves((ours, our_info)), jax.tree.leaves((theirs, their_info))):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.slow
def test_params_are_a_runtime_argument_and_cond_is_per_chain():
    """One compilation across param values; cond vmapped over chains by run_chains."""
    traces = []

    def counting(params, x, shift):
        traces.append(1)  # Python side effect: runs at trace time only
        return shifted_energy(params, x, shift)

    sampler = from_blackjax(blackjax.mala, counting, step_size=0.05)
    shifts = jnp.array([[0.0, 0.0], [10.0, -10.0]])

    @jax.jit
    def run(params):
        states = init_chains(sampler, jnp.zeros((2, 2)), params, shifts)
        return run_chains(jax.random.PRNGKey(0), sampler, states, params, 400, shifts)

    p1 = {"mean": jnp.array([1.0, 1.0]), "scale": jnp.array(4.0)}
    states, info = run(p1)
    n = len(traces)
    p2 = {"mean": jnp.array([-3.0, 2.0]), "scale": jnp.array(4.0)}
    states2, _ = run(p2)
    assert len(traces) == n, "new param values re-traced"
    assert info.acceptance_rate.shape == (2,)
    # Each chain sits near its own mode, mean + shift (sd 0.5 there): well within 3.
    np.testing.assert_allclose(states.position, p1["mean"] + shifts, atol=3.0)
    np.testing.assert_allclose(states2.position, p2["mean"] + shifts, atol=3.0)
    assert isinstance(sampler, Sampler)
    # A single chain through run_chain too.
    state, _ = run_chain(jax.random.PRNGKey(1), sampler, sampler.init(jnp.zeros(2), p1, shifts[1]),
                         p1, 5, shifts[1])
    assert state.position.shape == (2,)


@pytest.mark.slow
def test_importing_ebm_jax_does_not_import_blackjax():
    code = ("import sys, ebm_jax, ebm_jax.samplers.blackjax_adapter; "
            "assert 'blackjax' not in sys.modules, 'blackjax was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


@pytest.mark.parametrize("args, kwargs, message", [
    (("mala", gaussian_energy), {"stepsize": 0.1}, r"kwargs=\{'stepsize': 0.1\} were rejected"),
    (("hmc", gaussian_energy), {"step_size": 0.1}, "kwargs=.*num_integration_steps"),
    ((None, gaussian_energy), {}, "build=None: expected a blackjax algorithm constructor"),
    (("mala", "energy"), {"step_size": 0.1}, "energy_fn='energy': expected a callable"),
    ((lambda logdensity_fn: 3, gaussian_energy), {}, "returned int: expected an object with init"),
])
def test_bad_arguments_raise_one_clear_error(args, kwargs, message):
    build, energy_fn = args
    build = getattr(blackjax, build) if isinstance(build, str) else build
    with pytest.raises(ValueError, match=message):
        from_blackjax(build, energy_fn, **kwargs)


@pytest.mark.slow
def test_nuts_through_the_adapter_takes_stans_window_adaptation():
    """blackjax's NUTS as ``make_sampler(step_size, inverse_mass)`` for
    :func:`~ebm_jax.samplers.window_adaptation` (150 warm-up steps: buffers of 75 and 50
    around one 25-step window), 8 chains on N(0, diag(1, 900)): the inverse mass within 30%
    of the variances (measured 0.94 and 840 after 300 steps), then 300 draws whose means lie
    within Z standard errors of 0 and whose sds are within 10% of (1, 30), R-hat < 1.01."""
    scales = jnp.array([1.0, 30.0])

    def energy(params, x):
        return 0.5 * jnp.sum((x / scales) ** 2)

    from ebm_jax.samplers import sample_chains, window_adaptation

    make = lambda h, m: from_blackjax(blackjax.nuts, energy, step_size=h,  # noqa: E731
                                      inverse_mass_matrix=m)
    starts = jax.random.normal(jax.random.key(1), (8, 2))
    warm = window_adaptation(jax.random.key(2), make, starts, None, initial_step_size=0.1,
                             num_warmup=150)
    np.testing.assert_allclose(warm.inverse_mass, np.asarray(scales) ** 2, rtol=0.3)
    _, draws = jax.jit(lambda k, s: sample_chains(k, warm.sampler, s, None, 300))(
        jax.random.key(3), warm.states)
    summary = chain_summary(draws.positions)
    assert np.all(np.abs(np.asarray(summary.mean)) < Z * np.asarray(summary.mcse)), summary
    np.testing.assert_allclose(summary.sd, scales, rtol=0.1)
    assert np.all(np.asarray(summary.rhat) < 1.01)
