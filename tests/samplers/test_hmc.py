"""Tests of the HMC sampler (``ebm_jax.samplers.hmc``).

The statistical tests follow ``tests/test_mala.py``: C = 512 independent vmapped chains
started from *exact* draws of the target (testing invariance), 200 burn-in steps, then
N = 1000 recorded steps; the sample mean and the centred second moments
``E[(x - m)(x - m)^T]`` must match the exact ones within ``Z * sd(f) / sqrt(ESS(f))``,
Z = 5, with ESS the multi-chain effective sample size (within-chain autocovariances and
the between-chain variance, Geyer's initial positive and monotone sequence; the
estimator is checked against AR(1) truths in ``tests/test_mala.py``).

Measured with the keys below (correct kernel, L = 4-5 leapfrog steps): acceptance
0.92-0.97; ESS per statistic 0.6e5-2.9e6 of 512,000 draws (above C*N for the means:
HMC's draws are anticorrelated); every statistic within 1.6 standard errors.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.energies import gaussian, gaussian_mixture
from ebm_jax.samplers import (
    HMCInfo,
    HMCState,
    hmc,
    hmc_kernel,
    init_chains,
    mala,
    run_chain,
    run_chains,
)

from ebm_jax.samplers import chain_summary
from ebm_jax.samplers import sample_chains as sample_chains_of
from sampler_stats import NUM_CHAINS, check_moments, sample_chains

# Mostly compilation, brief runs: compile with fewer XLA optimisations (conftest).
pytestmark = pytest.mark.fast_compile

MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.5], [0.5, 0.75]])  # eigenvalues ~1.391 and ~0.359
MIXTURE = dict(weights=[0.4, 0.6], means=[[-1.2, -0.4], [1.0, 0.6]], stds=[0.6, 0.8])
# Badly scaled (sds 0.2 and 5, correlation 0.3): identity-mass HMC would need eps < ~0.4.
SCALED_MEAN = np.array([0.5, 3.0])
SCALED_COV = np.array([[0.04, 0.3], [0.3, 25.0]])
GAUSSIAN_TARGET, MIXTURE_TARGET = gaussian(MEAN, COV), gaussian_mixture(**MIXTURE)
SCALED_TARGET = gaussian(SCALED_MEAN, SCALED_COV)
# Correlated (0.9, 0.5, 0.7) with sds 0.2, 1 and 5: condition number ~4,000; the diagonal
# alone leaves a correlation matrix of condition number ~38.
CORRELATED_MEAN = np.array([0.5, -1.0, 2.0])
CORRELATED_COV = np.array([[0.04, 0.18, 0.5], [0.18, 1.0, 3.5], [0.5, 3.5, 25.0]])
CORRELATED_TARGET = gaussian(CORRELATED_MEAN, CORRELATED_COV)


# Samplers built inside sample_chains' jitted program from traced arguments: one compiled
# chain program per function (both temperatures share one).
def gaussian_hmc(step_size, temperature):
    return hmc(GAUSSIAN_TARGET.energy_fn, step_size, 5, temperature=temperature)


def scaled_hmc():
    return hmc(SCALED_TARGET.energy_fn, 0.7, 4, inverse_mass=np.diag(SCALED_COV))


def correlated_hmc(inverse_mass):
    return hmc(CORRELATED_TARGET.energy_fn, 0.7, 4, inverse_mass=inverse_mass)


def jittered_hmc(step_size):
    return hmc(GAUSSIAN_TARGET.energy_fn, step_size, 5, step_size_jitter=0.9)


def mixture_hmc():
    return hmc(MIXTURE_TARGET.energy_fn, 0.5, 5)


# -- stationary law ---------------------------------------------------------------------

# Breakages caught (checked by editing hmc.py, then restoring it):
#  - first leapfrog kick a full step instead of a half (T=1 / T=2.5): covariance off by
#    148 / 15 SE; last half kick dropped: 50 / 119 SE;
#  - MH sign flipped (accepting exp(+dH)): 69 / 57 SE;
#  - T = 2.5 only: the Hamiltonian's E not divided by T: 370 SE (acceptance 0.41).
@pytest.mark.slow
@pytest.mark.parametrize("temperature, step_size", [(1.0, 0.6), (2.5, 0.8)])
def test_gaussian_moments(temperature, step_size):
    """exp(-E/T) for the N(m, S) energy is N(m, T S)."""
    target = GAUSSIAN_TARGET
    x0 = MEAN + np.sqrt(temperature) * (target.sample(jax.random.PRNGKey(1), NUM_CHAINS) - MEAN)
    xs, acc = sample_chains(jax.random.PRNGKey(0), gaussian_hmc, x0,
                            hyper=(step_size, temperature))
    assert acc > 0.85
    check_moments(xs, MEAN, temperature * COV)


# Breakages caught: kinetic energy without the inverse mass (151 SE, acceptance 0.03);
# momentum drawn with sd sqrt(inverse_mass) instead of 1/sqrt(inverse_mass) (184 SE);
# full first kick (48 SE); last half kick dropped (57 SE); MH sign flipped (41 SE).
@pytest.mark.slow
def test_diagonal_inverse_mass_targets_the_right_law():
    """Preconditioned by the marginal variances, eps = 0.7 is fine on a target whose
    smallest sd is 0.2 (identity mass would diverge); the law must still be exact."""
    xs, acc = sample_chains(jax.random.PRNGKey(0), scaled_hmc,
                            SCALED_TARGET.sample(jax.random.PRNGKey(1), NUM_CHAINS))
    assert acc > 0.9
    check_moments(xs, SCALED_MEAN, SCALED_COV)


# Measured: acceptance 0.977 (the diagonal alone 0.001), every statistic within 1.1 SE.
# Breakages caught (ebm_jax/samplers/mass_matrix.py edited, then restored): momentum drawn
# as L z instead of L^-T z (acceptance 0.41, covariance 130-200 SE); kinetic energy
# 1/2 |p|^2 instead of 1/2 p^T Sigma p (acceptance 0.05, covariance 50 SE); drift p instead
# of Sigma p (acceptance 0.00: the chains stay at their exact starts, caught by acc > 0.9).
@pytest.mark.slow
def test_dense_inverse_mass_targets_the_right_law():
    """Preconditioned by the exact covariance, eps = 0.7 sees a unit Gaussian and accepts
    nearly always on a target of condition number ~4,000; the diagonal alone at the same
    step accepts far less (the correlations are left); the law must be exact."""
    start = CORRELATED_TARGET.sample(jax.random.PRNGKey(1), NUM_CHAINS)
    xs, acc = sample_chains(jax.random.PRNGKey(0), correlated_hmc, start,
                            hyper=(jnp.asarray(CORRELATED_COV),))
    assert acc > 0.9
    check_moments(xs, CORRELATED_MEAN, CORRELATED_COV)
    _, diagonal_acc = sample_chains(jax.random.PRNGKey(0), correlated_hmc, start,
                                    hyper=(jnp.diag(jnp.asarray(CORRELATED_COV)),))
    assert diagonal_acc < acc - 0.2, (diagonal_acc, acc)


# Measured: acceptance 0.89, every statistic within 1.0 SE. Breakage caught: the jitter's
# factor taken from the chain's position (u = 1 + 0.9 tanh(x_0)), not drawn independently of
# it: no longer a mixture of kernels that each leave the target invariant (mean off by 107 SE).
@pytest.mark.slow
def test_a_jittered_step_keeps_the_law():
    """Each trajectory's step from eps U(0.1, 1.9): a mixture of HMC kernels, each leaving the
    target invariant, so the law is exact."""
    xs, acc = sample_chains(jax.random.PRNGKey(0), jittered_hmc,
                            GAUSSIAN_TARGET.sample(jax.random.PRNGKey(1), NUM_CHAINS),
                            hyper=(0.6,))
    assert acc > 0.8
    check_moments(xs, MEAN, COV)


@pytest.mark.slow
def test_jitter_breaks_the_fixed_paths_resonance():
    """N(0, diag(1, 100)) preconditioned by its variances, 10 leapfrog steps of
    2 sin(pi / 10) = 0.618: each step turns the whitened phase by 2 pi / 10, so a trajectory
    comes back where it started (to float rounding) and the chains barely move (measured
    R-hat 4.2 over 4 x 1,000 draws), while accepting everything; a step jittered by 50%
    mixes (R-hat 1.001, the sds within 1%). (Window adaptation lands near such a step: on
    this target with the seeds of README's example it chose 0.90 and 0.97, R-hat 1.4-2.0.)"""
    scales = jnp.array([1.0, 10.0])
    energy = lambda p, x: 0.5 * jnp.sum((x / scales) ** 2)  # noqa: E731
    starts = jax.random.normal(jax.random.key(0), (4, 2)) * scales
    step = 2 * np.sin(np.pi / 10)
    rhat, sds, acc = {}, {}, {}
    for jitter in (0.0, 0.5):
        sampler = hmc(energy, step, 10, inverse_mass=scales ** 2, step_size_jitter=jitter)
        _, draws = jax.jit(lambda k, s: sample_chains_of(k, sampler, s, None, 1000))(
            jax.random.key(2), init_chains(sampler, starts, None))
        summary = chain_summary(draws.positions)
        rhat[jitter], sds[jitter] = float(summary.rhat.max()), np.asarray(summary.sd)
        acc[jitter] = float(draws.info.acceptance_rate.mean())
    assert rhat[0.0] > 2 and acc[0.0] > 0.99, (rhat, acc, sds)
    assert rhat[0.5] < 1.01, rhat
    np.testing.assert_allclose(sds[0.5], scales, rtol=0.1)


# Breakages caught: full first kick (21 SE); last half kick dropped (62 SE).
@pytest.mark.slow
def test_mixture_moments():
    """The bimodal mixture, chains started from exact draws: invariance of the true law."""
    target = MIXTURE_TARGET
    xs, acc = sample_chains(jax.random.PRNGKey(0), mixture_hmc,
                            target.sample(jax.random.PRNGKey(1), NUM_CHAINS))
    assert acc > 0.85
    check_moments(xs, np.asarray(target.mean), np.asarray(target.covariance))


# -- the integrator and the acceptance ratio, exactly -----------------------------------

def test_one_leapfrog_step_is_mala():
    """HMC with L = 1, unit mass and step eps is MALA with h = eps^2 / (2T): the same
    proposal x + eps p - eps^2 g / (2T) from the same normal draw, and the same
    acceptance probability (two independent derivations of the MH ratio must agree).
    Catches a wrong half kick, a flipped MH sign or a missing 1/T in either sampler."""
    target = gaussian_mixture(**MIXTURE)
    eps, temperature = 0.9, 1.5
    sampler_h = hmc(target.energy_fn, eps, 1, temperature=temperature)
    sampler_m = mala(target.energy_fn, eps**2 / (2 * temperature), temperature=temperature)
    x0 = target.sample(jax.random.PRNGKey(1), 2000)
    keys = jax.random.split(jax.random.PRNGKey(2), 2000)

    @jax.jit
    def both(keys, x0):
        return [jax.vmap(s.step, in_axes=(0, 0, None))(keys, init_chains(s, x0, None), None)
                for s in (sampler_h, sampler_m)]

    out = both(keys, x0)
    (state_h, info_h), (state_m, info_m) = out
    assert 0.3 < float(info_h.acceptance_rate.mean()) < 0.9  # the ratio is not trivially 1
    np.testing.assert_allclose(info_h.acceptance_rate, info_m.acceptance_rate, atol=2e-4)
    same = np.asarray(info_h.is_accepted == info_m.is_accepted)
    assert same.mean() > 0.995
    np.testing.assert_allclose(np.asarray(state_h.position)[same],
                               np.asarray(state_m.position)[same], atol=1e-5)


def test_linear_energy_conserves_the_hamiltonian():
    """Constant force: leapfrog is exact, so H is conserved and every proposal accepted.
    Catches a full first kick, a dropped last half kick and a kinetic energy without the
    inverse mass (which make H drift by O(1))."""
    a = jnp.array([2.0, -1.0, 0.5])
    sampler = hmc(lambda p, x: p @ x, 0.3, 7, inverse_mass=np.array([0.5, 2.0, 1.0]),
                  temperature=1.7)
    _, info = jax.jit(lambda k, x0, a: run_chains(k, sampler, init_chains(sampler, x0, a), a, 4,
                                                  trace=True))(
        jax.random.PRNGKey(0), jnp.zeros((256, 3)), a)
    np.testing.assert_allclose(info.energy_error, 0.0, atol=2e-5)
    np.testing.assert_allclose(info.acceptance_rate, 1.0, atol=2e-5)


def test_leapfrog_is_second_order():
    """Over a fixed trajectory length, halving eps divides the RMS energy error by ~4
    (measured 4.08 here); a first-order integrator (full first kick) gives ~2."""
    target = gaussian_mixture(**MIXTURE)
    x0 = target.sample(jax.random.PRNGKey(1), NUM_CHAINS)
    keys = jax.random.split(jax.random.PRNGKey(0), NUM_CHAINS)
    errors = []
    for num_steps, eps in [(4, 0.4), (8, 0.2)]:
        sampler = hmc(target.energy_fn, eps, num_steps)
        _, info = jax.jit(lambda k, x: jax.vmap(sampler.step, in_axes=(0, 0, None))(
            k, init_chains(sampler, x, None), None))(keys, x0)
        assert isinstance(info, HMCInfo)
        np.testing.assert_allclose(info.acceptance_rate,
                                   np.minimum(1.0, np.exp(-np.asarray(info.energy_error))),
                                   rtol=1e-6)
        errors.append(float(np.sqrt(np.mean(np.square(info.energy_error)))))
    assert 3.5 < errors[0] / errors[1] < 4.5, errors


@pytest.mark.slow
def test_inverse_mass_follows_the_position_shape():
    """A [2, 3] position with a [6] inverse mass in row-major order: preconditioned by the
    exact variances, eps = 0.5 accepts nearly always; the reversed order does not."""
    var = np.array([[0.01, 1.0, 100.0], [4.0, 0.25, 9.0]])
    energy_fn = lambda p, x: 0.5 * jnp.sum(x**2 / var)  # noqa: E731
    x0 = jax.random.normal(jax.random.PRNGKey(0), (256, 2, 3)) * np.sqrt(var)

    @jax.jit
    def mean_acceptance(inverse_mass):  # a traced inverse mass: one compile for both
        sampler = hmc(energy_fn, 0.5, 3, inverse_mass=inverse_mass)
        _, info = run_chains(jax.random.PRNGKey(1), sampler, init_chains(sampler, x0, None),
                             None, 5, trace=True)
        return info.acceptance_rate.mean()

    rates = [float(mean_acceptance(jnp.asarray(m))) for m in (var.ravel(), var.ravel()[::-1])]
    assert rates[0] > 0.9 and rates[1] < 0.5, rates


# -- the state cache, tracing and compilation ------------------------------------------

def counting_energy(traces):
    def energy_fn(params, x, *cond):
        traces.append(1)  # Python side effect: once per trace, never at run time
        return 0.5 * jnp.sum(((x - params["mu"]) / params["scale"]) ** 2)
    return energy_fn


PARAMS = {"mu": jnp.array([1.0, 2.0]), "scale": jnp.array(1.5)}


def test_init_caches_energy_and_gradient():
    sampler = hmc(counting_energy([]), 0.1, 3)
    state = sampler.init(jnp.array([2.5, 2.0]), PARAMS)
    assert isinstance(state, HMCState)
    np.testing.assert_allclose(state.energy, 0.5)
    np.testing.assert_allclose(state.grad, [1.5 / 2.25, 0.0], rtol=1e-6)


@pytest.mark.parametrize("num_leapfrog_steps", [1, 50])
def test_step_traces_the_energy_once_whatever_the_trajectory_length(num_leapfrog_steps):
    """The leapfrog is a fori_loop: its body (one energy + gradient) is traced once."""
    traces = []
    sampler = hmc(counting_energy(traces), 0.1, num_leapfrog_steps)
    state = sampler.init(jnp.zeros(2), PARAMS)
    traces.clear()
    jax.jit(sampler.step).trace(jax.random.PRNGKey(0), state, PARAMS)
    assert len(traces) == 1


def test_run_chains_compiles_once_whatever_the_number_of_steps():
    counts = {}
    for num_steps in (2, 10, 1000):
        traces = []
        sampler = hmc(counting_energy(traces), 0.1, 3)
        states = init_chains(sampler, jnp.zeros((8, 2)), PARAMS)
        traces.clear()
        jax.jit(lambda k, s, p: run_chains(k, sampler, s, p, num_steps)).trace(
            jax.random.PRNGKey(0), states, PARAMS)
        counts[num_steps] = len(traces)
    # (that params are a runtime argument, not re-traced, is checked for MALA in test_mala.py;
    # the runner is sampler-agnostic)
    assert counts[2] == counts[10] == counts[1000] <= 2, counts


def test_step_size_may_be_traced_and_kernel_matches_step():
    target = gaussian(MEAN, COV)
    key = jax.random.PRNGKey(3)
    state = hmc(target.energy_fn, 0.3, 4).init(jnp.zeros(2), None)

    @jax.jit
    def both(step_size, state):  # a traced step size, through both levels of the API
        return (hmc(target.energy_fn, step_size, 4).step(key, state, None),
                hmc_kernel(target.energy_fn, 4)(key, state, None, step_size))

    (new, info), (new_k, info_k) = both(jnp.float32(0.3), state)
    for a, b in zip(jax.tree.leaves((new, info)), jax.tree.leaves((new_k, info_k))):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(new.position, state.position)  # the step did something


# -- non-finite energies ----------------------------------------------------------------

@pytest.mark.parametrize("energy_fn", [
    lambda p, x: jnp.sqrt(x[0]) + 0.5 * jnp.sum(x**2),                     # NaN for x0 < 0
    lambda p, x: jnp.where(x[0] > 0, 0.5 * jnp.sum(x**2), jnp.inf),      # +inf for x0 <= 0
], ids=["nan", "inf"])
def test_nonfinite_trajectories_are_rejected_and_counted(energy_fn):
    sampler = hmc(energy_fn, 0.4, 5)
    state, info = jax.jit(lambda k, x0: run_chains(k, sampler, init_chains(sampler, x0, None),
                                                   None, 50, trace=True))(
        jax.random.PRNGKey(0), jnp.tile(jnp.array([0.3, 0.0]), (64, 1)))
    assert int(info.nonfinite.sum()) > 50
    assert np.all(np.asarray(state.position[:, 0]) > 0)
    for leaf in (state.position, state.energy, state.grad, info.energy, info.acceptance_rate):
        assert np.all(np.isfinite(leaf))
    bad = np.asarray(info.nonfinite, bool)
    assert not np.any(np.asarray(info.is_accepted)[bad])
    np.testing.assert_array_equal(np.asarray(info.acceptance_rate)[bad], 0.0)
    np.testing.assert_array_equal(np.asarray(info.energy_error)[bad], np.inf)
    assert np.all(np.isfinite(np.asarray(info.energy_error)[~bad]))


def test_nonfinite_start_stays_put():
    sampler = hmc(lambda p, x: jnp.log(x[0]) + jnp.sum(x**2), 0.1, 3)
    x0 = jnp.array([-1.0, 0.5])
    state, info = jax.jit(lambda k, x0: run_chain(k, sampler, sampler.init(x0, None), None, 10,
                                                  trace=True))(jax.random.PRNGKey(0), x0)
    np.testing.assert_array_equal(state.position, x0)
    np.testing.assert_array_equal(info.nonfinite, np.ones(10, np.int32))


# -- argument checks --------------------------------------------------------------------

def quadratic(params, x):
    return 0.5 * jnp.sum(x**2)


@pytest.mark.parametrize("args, kwargs, message", [
    ((0.0, 3), {}, r"step_size=0.0: expected a positive finite number"),
    ((-0.1, 3), {}, r"step_size=-0.1"),
    ((float("nan"), 3), {}, r"step_size=nan"),
    ((np.float32(-1.0), 3), {}, r"step_size=.*expected a positive finite number"),
    ((0.1, 0), {}, r"num_leapfrog_steps=0: expected a positive int"),
    ((0.1, -2), {}, r"num_leapfrog_steps=-2"),
    ((0.1, 2.5), {}, r"num_leapfrog_steps=2.5"),
    ((0.1, True), {}, r"num_leapfrog_steps=True"),
    ((0.1, 3), dict(inverse_mass=[1.0, np.nan]), r"inverse_mass=\[1.0, nan\]: expected finite"),
    ((0.1, 3), dict(inverse_mass=[1.0, np.inf]), r"inverse_mass=.*expected finite entries"),
    ((0.1, 3), dict(inverse_mass=[1.0, -1.0]), r"inverse_mass=.*expected finite positive"),
    ((0.1, 3), dict(inverse_mass=[0.0, 1.0]), r"inverse_mass=.*expected finite positive"),
    ((0.1, 3), dict(inverse_mass=np.ones((2, 3))),
     r"inverse_mass has shape \(2, 3\): expected a 1-D array \[D\] .* or a square 2-D"),
    ((0.1, 3), dict(inverse_mass=np.ones((2, 2, 2))), r"inverse_mass has shape \(2, 2, 2\)"),
    ((0.1, 3), dict(inverse_mass=np.ones((2, 2))),
     r"inverse_mass=\[\[1.0, 1.0\], \[1.0, 1.0\]\]: expected a symmetric positive definite "
     r"matrix \(its smallest eigenvalue is"),
    ((0.1, 3), dict(inverse_mass=[[1.0, 0.5], [0.0, 1.0]]),
     r"inverse_mass=.*expected a symmetric matrix"),
    ((0.1, 3), dict(inverse_mass=[[1.0, np.nan], [np.nan, 1.0]]),
     r"inverse_mass=.*expected finite entries"),
    ((0.1, 3), dict(temperature=0.0), r"temperature=0.0: expected a positive finite"),
    ((0.1, 3), dict(step_size_jitter=1.0), r"step_size_jitter=1.0: expected a value in \[0, 1\)"),
    ((0.1, 3), dict(step_size_jitter=-0.1), r"step_size_jitter=-0.1"),
])
def test_bad_arguments_raise_naming_the_argument(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        hmc(quadratic, *args, **kwargs)


def test_kernel_checks_its_arguments():
    with pytest.raises(ValueError, match="num_leapfrog_steps=0"):
        hmc_kernel(quadratic, 0)
    with pytest.raises(ValueError, match="inverse_mass"):
        hmc_kernel(quadratic, 3, inverse_mass=[-1.0])


def test_init_rejects_a_wrong_mass_size_naming_both_shapes():
    sampler = hmc(quadratic, 0.1, 3, inverse_mass=np.ones(3))
    with pytest.raises(ValueError, match=r"inverse_mass has shape \(3,\): expected \(2,\), "
                                         r"from the flattened size of the position "
                                         r"\(shape \(2,\)\)"):
        sampler.init(jnp.zeros(2), None)
    # The kernel checks it too (at trace time, before any compute).
    state = hmc(quadratic, 0.1, 3).init(jnp.zeros(2), None)
    with pytest.raises(ValueError, match=r"inverse_mass has shape \(3,\): expected \(2,\)"):
        hmc_kernel(quadratic, 3, inverse_mass=np.ones(3))(jax.random.PRNGKey(0), state, None, 0.1)


def test_init_rejects_a_batch():
    sampler = hmc(lambda p, x: 0.5 * jnp.sum(x**2, axis=-1), 0.1, 3)
    with pytest.raises(ValueError, match=r"energy_fn returned \(4,\) \(dtype float32\) for one "
                                         r"example of shape \(4, 2\): expected a floating-point "
                                         r"scalar, .*init takes one chain's position: use "
                                         r"init_chains for a batch"):
        sampler.init(jnp.zeros((4, 2)), None)
