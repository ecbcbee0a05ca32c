"""Tests of the MALA sampler (``ebm_jax.samplers.mala``).

The statistical tests run C = 512 independent vmapped chains, started from *exact*
draws of the target (so that they test invariance and need no mixing from afar),
for 200 burn-in steps (room for a wrong kernel to drift to its own law) and then
N = 1000 recorded steps, and compare the sample mean and the second moments
``E[(x - m)(x - m)^T]`` (centred at the true mean) with the exact ones. Each of
these 5 statistics (2-D targets) is the mean of a scalar f over the C*N = 512,000
draws; its tolerance is ``Z * sd(f) / sqrt(ESS(f))`` with Z = 5 and ESS the
multi-chain effective sample size (Stan's estimator: within-chain autocovariances
and the between-chain variance, Geyer's initial positive and monotone sequence),
as blackjax gates its tests on ESS rather than on fixed tolerances.

Measured with the keys below (correct kernel): acceptance ~0.66 at h = 0.5, ESS
~0.9e5-2.0e5 per statistic on the Gaussian and ~0.3e5-2.7e5 on the mixture, all
statistics within 1.6 standard errors. The keys are fixed, so the tests are
deterministic; under another seed a correct kernel would fail one of the 5 checks
with probability ~3e-6.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.energies import gaussian, gaussian_mixture
from ebm_jax.samplers import (
    MALAInfo,
    MALAState,
    init_chains,
    mala,
    mala_kernel,
    run_chain,
    run_chains,
)

from sampler_stats import NUM_CHAINS, check_moments, effective_sample_size, sample_chains

# Mostly compilation, brief runs: compile with fewer XLA optimisations (conftest).
pytestmark = pytest.mark.fast_compile

MEAN = np.array([1.0, -2.0])
# Non-diagonal covariance; eigenvalues ~1.391 and ~0.359.
COV = np.array([[1.0, 0.5], [0.5, 0.75]])
# Two overlapping modes (3.0 apart along (2.2, 1.0), stds 0.6/0.8): bimodal, not Gaussian.
MIXTURE = dict(weights=[0.4, 0.6], means=[[-1.2, -0.4], [1.0, 0.6]], stds=[0.6, 0.8])
GAUSSIAN_TARGET, MIXTURE_TARGET = gaussian(MEAN, COV), gaussian_mixture(**MIXTURE)
# Correlated (0.9, 0.5, 0.7) with sds 0.2, 1 and 5: condition number ~4,000.
CORRELATED_MEAN = np.array([0.5, -1.0, 2.0])
CORRELATED_COV = np.array([[0.04, 0.18, 0.5], [0.18, 1.0, 3.5], [0.5, 3.5, 25.0]])
CORRELATED_TARGET = gaussian(CORRELATED_MEAN, CORRELATED_COV)


# Samplers built inside sample_chains' jitted program from traced arguments: one compiled
# chain program per function (both temperatures share one).
def gaussian_mala(temperature):
    return mala(GAUSSIAN_TARGET.energy_fn, 0.5, temperature=temperature)


def preconditioned_mala(inverse_mass, temperature):
    return mala(CORRELATED_TARGET.energy_fn, 0.5, temperature=temperature,
                inverse_mass=inverse_mass)


def mixture_mala():
    return mala(MIXTURE_TARGET.energy_fn, 0.5)


def clipped_standard_normal_mala():
    return mala(gaussian(np.zeros(2), np.eye(2)).energy_fn, 0.5, clip_range=(0.0, 5.0))


# -- statistics helpers: tests/sampler_stats.py ---------------------------------------

@pytest.mark.parametrize("phi", [0.0, 0.9, -0.5])
def test_effective_sample_size_recovers_ar1_truth(phi):
    """The ESS that sets every tolerance here is right: for a stationary AR(1) with
    coefficient phi, tau = (1 + phi) / (1 - phi) (19 for 0.9, 1/3 for -0.5: antithetic)."""
    c, n = 64, 4000
    eps = np.random.default_rng(0).standard_normal((n, c))
    x = np.empty((n, c))
    x[0] = eps[0] / np.sqrt(1 - phi**2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + eps[t]
    expected = c * n * (1 - phi) / (1 + phi)
    np.testing.assert_allclose(effective_sample_size(x.T), expected, rtol=0.15)


# -- stationary law ---------------------------------------------------------------------

# Breakages caught (checked by editing mala.py, then restoring it):
#  - sign of the MH correction flipped (log q(x'|x) - log q(x|x')): the covariance is off
#    by 335-383 SE (acceptance falls to 0.45);
#  - backward proposal density dropped from the ratio: covariance off by 25-46 SE;
#  - T = 2.5 only: the ratio uses -(E' - E) instead of -(E' - E)/T: off by 260-360 SE;
#    the noise sqrt(2h) instead of sqrt(2hT): off by >100 SE.
@pytest.mark.slow
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_gaussian_moments(temperature):
    """exp(-E/T) for E the N(m, S) energy is N(m, T S): the covariance scales by T."""
    target = GAUSSIAN_TARGET
    x0 = MEAN + np.sqrt(temperature) * (target.sample(jax.random.PRNGKey(1), NUM_CHAINS) - MEAN)
    xs, acc = sample_chains(jax.random.PRNGKey(0), gaussian_mala, x0, hyper=(temperature,))
    assert 0.5 < acc < 0.8  # a step size where the MH correction matters
    check_moments(xs, MEAN, temperature * COV)


# Measured: acceptance 0.84 dense, 0.07 diagonal; every statistic within 0.9 SE.
# Breakages caught (ebm_jax/samplers/mala.py edited, then restored): the drift h grad
# instead of h Sigma grad (acceptance 1e-5: the chains stay at their exact starts, caught by
# the dense case's acceptance); the noise unscaled by L (covariance 54 / 22 SE); the
# ratio's g^T Sigma g taken as |g|^2 (covariance 31 / 3-5 SE).
@pytest.mark.slow
@pytest.mark.parametrize("dense", [True, False])
def test_preconditioned_mala_targets_the_right_law(dense):
    """With the preconditioner Sigma the step sees exp(-E/T) whitened: on the correlated
    target at T = 1.5, h = 0.5 accepts about as on a unit Gaussian with the exact
    covariance; the diagonal (the marginal variances) leaves the correlations and accepts
    less at the same step. Either way the law is N(m, T S)."""
    temperature = 1.5
    start = CORRELATED_MEAN + np.sqrt(temperature) * (
        CORRELATED_TARGET.sample(jax.random.PRNGKey(1), NUM_CHAINS) - CORRELATED_MEAN)
    sigma = jnp.asarray(CORRELATED_COV)
    xs, acc = sample_chains(jax.random.PRNGKey(0), preconditioned_mala, start,
                            hyper=(sigma if dense else jnp.diag(sigma), temperature))
    assert (0.5 < acc < 0.9) if dense else (0.0 < acc < 0.4), acc
    check_moments(xs, CORRELATED_MEAN, temperature * CORRELATED_COV)


# Breakages caught: MH sign flipped (covariance off by 86-232 SE); backward density
# dropped (mean off by 23-27 SE, covariance by 38-71 SE).
@pytest.mark.slow
def test_mixture_moments():
    """A bimodal two-component mixture, chains started from exact draws: invariance of
    the true law (mean and covariance from the closed form)."""
    target = MIXTURE_TARGET
    x0 = target.sample(jax.random.PRNGKey(1), NUM_CHAINS)
    xs, acc = sample_chains(jax.random.PRNGKey(0), mixture_mala, x0)
    assert 0.5 < acc < 0.8
    check_moments(xs, np.asarray(target.mean), np.asarray(target.covariance))


# -- the acceptance ratio, exactly ------------------------------------------------------

def flat_energy(params, x):
    return 0.0 * jnp.sum(x)


@jax.jit
def run_flat_kernel(rng_key, step_size):
    """20 steps of 64 chains of the flat energy at T = 0.7 with a traced step size."""
    kernel = jax.vmap(mala_kernel(flat_energy, temperature=0.7), in_axes=(0, 0, None, None))
    states = init_chains(mala(flat_energy, 1.0), jnp.zeros((64, 3)), None)

    def body(states, key):
        return kernel(jax.random.split(key, 64), states, None, step_size)

    return jax.lax.scan(body, states, jax.random.split(rng_key, 20))


@pytest.mark.slow
@pytest.mark.parametrize("step_size", [1e-3, 1.0, 1e3])
def test_flat_energy_accepts_with_probability_one(step_size):
    """Zero gradient: the proposal is symmetric and E' = E, so the ratio is exactly 1."""
    state, info = run_flat_kernel(jax.random.PRNGKey(1), jnp.float32(step_size))
    np.testing.assert_array_equal(info.acceptance_rate, 1.0)
    assert bool(jnp.all(info.is_accepted)) and int(info.nonfinite.sum()) == 0
    # The chains did move, by sqrt(2 h T) per step: after 20 steps sd = sqrt(40 h T).
    np.testing.assert_allclose(np.std(np.asarray(state.position)), np.sqrt(40 * step_size * 0.7),
                               rtol=0.15)


# Catches a flipped MH correction (log ratio -2 a.(x'-x)/T) and an energy change not
# divided by T (log ratio a.(x'-x) (1/T - 1)): both give ratios far from 1. (Not a dropped
# backward density: its log ratio |eps|^2/2 - a.(x'-x)/T is >= 0 for a linear energy, so
# that breakage is left to the moment tests.)
@pytest.mark.slow
def test_linear_energy_ratio_is_one():
    """E = a.x at T = 3: the energy change -a.(x'-x)/T and the proposal log-density ratio
    a.(x'-x)/T cancel exactly, so every proposal is accepted with probability 1."""
    a = jnp.array([3.0, -1.0, 0.5])
    sampler = mala(lambda p, x: p @ x, 0.2, temperature=3.0)
    _, info = jax.jit(lambda k, x0, a: run_chains(k, sampler, init_chains(sampler, x0, a), a, 5,
                                                  trace=True))(
        jax.random.PRNGKey(2), jnp.zeros((256, 3)), a)
    np.testing.assert_allclose(info.acceptance_rate, 1.0, atol=1e-4)


# -- the state cache, tracing and compilation ------------------------------------------

def counting_energy(traces):
    def energy_fn(params, x, *cond):
        traces.append(1)  # Python side effect: once per trace, never at run time
        return 0.5 * jnp.sum(((x - params["mu"]) / params["scale"]) ** 2)
    return energy_fn


PARAMS = {"mu": jnp.array([1.0, 2.0]), "scale": jnp.array(1.5)}


def test_init_caches_energy_and_gradient_and_takes_cond():
    energy_fn = lambda p, x, shift: 0.5 * jnp.sum((x - p - shift) ** 2)  # noqa: E731
    sampler = mala(energy_fn, 0.1)
    state = sampler.init(jnp.array([1.0, 2.0]), jnp.array([0.5, 0.5]), jnp.array([0.0, 1.0]))
    assert isinstance(state, MALAState)
    np.testing.assert_allclose(state.energy, 0.5 * (0.25 + 0.25))
    np.testing.assert_allclose(state.grad, [0.5, 0.5])
    states = init_chains(sampler, jnp.zeros((5, 2)), jnp.zeros(2), jnp.ones((5, 2)))
    assert states.energy.shape == (5,) and states.grad.shape == (5, 2)
    np.testing.assert_allclose(states.energy, 1.0)


def test_step_evaluates_the_energy_once():
    """The state caches E and its gradient: one step traces the energy once (at the proposal)."""
    traces = []
    sampler = mala(counting_energy(traces), 0.1)
    state = sampler.init(jnp.zeros(2), PARAMS)
    traces.clear()
    new_state, info = jax.jit(sampler.step)(jax.random.PRNGKey(0), state, PARAMS)
    assert len(traces) == 1
    assert isinstance(info, MALAInfo)
    # The cache is consistent with the position it ends at.
    e, g = jax.value_and_grad(counting_energy([]), argnums=1)(PARAMS, new_state.position)
    np.testing.assert_allclose(new_state.energy, e, rtol=1e-6)
    np.testing.assert_allclose(new_state.grad, g, rtol=1e-6)


def test_run_chains_compiles_once_whatever_the_number_of_steps():
    def traces_for(num_steps):
        traces = []
        sampler = mala(counting_energy(traces), 0.1)
        states = init_chains(sampler, jnp.zeros((8, 2)), PARAMS)
        traces.clear()
        run = jax.jit(lambda k, s, p: run_chains(k, sampler, s, p, num_steps))
        return traces, run, states

    counts = {}
    for num_steps in (2, 10, 1000):  # tracing (no compile) is enough to count traces
        traces, run, states = traces_for(num_steps)
        run.trace(jax.random.PRNGKey(0), states, PARAMS)
        counts[num_steps] = len(traces)
    # The scan body and run_chain's final step: a constant, not one per step.
    assert counts[2] == counts[10] == counts[1000] <= 2, counts

    traces, run, states = traces_for(10)
    out, _ = run(jax.random.PRNGKey(0), states, PARAMS)
    n = len(traces)
    out2, _ = run(jax.random.PRNGKey(0), states, {"mu": jnp.array([-1.0, 0.0]),
                                                  "scale": jnp.array(0.5)})
    assert len(traces) == n, "new params of the same shape re-traced"
    assert not np.allclose(out.position, out2.position)  # params are a runtime argument


def test_step_size_may_be_traced_and_kernel_matches_step():
    target = gaussian(MEAN, COV)
    key = jax.random.PRNGKey(3)
    state = mala(target.energy_fn, 0.3).init(jnp.zeros(2), None)

    @jax.jit
    def both(step_size, state):  # a traced step size, through both levels of the API
        return (mala(target.energy_fn, step_size).step(key, state, None),
                mala_kernel(target.energy_fn)(key, state, None, step_size))

    (new, info), (new_k, info_k) = both(jnp.float32(0.3), state)
    for a, b in zip(jax.tree.leaves((new, info)), jax.tree.leaves((new_k, info_k))):
        np.testing.assert_array_equal(a, b)
    assert bool(info.is_accepted) and not np.array_equal(new.position, state.position)


# -- non-finite energies ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("energy_fn", [
    lambda p, x: jnp.sqrt(x[0]) + 0.5 * jnp.sum(x**2),                     # NaN for x0 < 0
    lambda p, x: jnp.where(x[0] > 0, 0.5 * jnp.sum(x**2), jnp.inf),      # +inf for x0 <= 0
], ids=["nan", "inf"])
def test_nonfinite_proposals_are_rejected_and_counted(energy_fn):
    sampler = mala(energy_fn, 0.5)
    state, info = jax.jit(lambda k, x0: run_chains(k, sampler, init_chains(sampler, x0, None),
                                                   None, 100, trace=True))(
        jax.random.PRNGKey(0), jnp.tile(jnp.array([0.3, 0.0]), (64, 1)))
    assert int(info.nonfinite.sum()) > 100  # many proposals cross x0 = 0
    assert np.all(np.asarray(state.position[:, 0]) > 0)
    for leaf in (state.position, state.energy, state.grad, info.energy, info.acceptance_rate):
        assert np.all(np.isfinite(leaf))
    # A non-finite proposal is never accepted and has acceptance probability 0.
    bad = np.asarray(info.nonfinite, bool)
    assert not np.any(np.asarray(info.is_accepted)[bad])
    np.testing.assert_array_equal(np.asarray(info.acceptance_rate)[bad], 0.0)


def test_nonfinite_start_stays_put():
    sampler = mala(lambda p, x: jnp.log(x[0]) + jnp.sum(x**2), 0.1)
    x0 = jnp.array([-1.0, 0.5])  # NaN energy and gradient: every proposal is NaN
    state, info = jax.jit(lambda k, x0: run_chain(k, sampler, sampler.init(x0, None), None, 10,
                                                  trace=True))(jax.random.PRNGKey(0), x0)
    np.testing.assert_array_equal(state.position, x0)
    np.testing.assert_array_equal(info.nonfinite, np.ones(10, np.int32))
    np.testing.assert_array_equal(info.acceptance_rate, 0.0)


# -- argument checks --------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(step_size=0.0), r"step_size=0.0: expected a positive finite number"),
    (dict(step_size=-0.1), r"step_size=-0.1"),
    (dict(step_size=float("nan")), r"step_size=nan"),
    (dict(step_size=float("inf")), r"step_size=inf"),
    (dict(step_size=np.float32(-1.0)), r"step_size=.*expected a positive finite number"),
    (dict(step_size=np.array([0.1, 0.2])), r"step_size has shape \(2,\): expected a scalar"),
    (dict(step_size=0.1, temperature=0.0), r"temperature=0.0: expected a positive finite"),
    (dict(step_size=0.1, temperature=float("nan")), r"temperature=nan"),
])
def test_bad_arguments_raise_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mala(lambda p, x: jnp.sum(x**2), **kwargs)


def test_kernel_checks_temperature():
    with pytest.raises(ValueError, match="temperature=-1.0"):
        mala_kernel(lambda p, x: jnp.sum(x**2), temperature=-1.0)


def test_init_rejects_a_batch():
    sampler = mala(lambda p, x: 0.5 * jnp.sum(x**2, axis=-1), 0.1)
    with pytest.raises(ValueError, match=r"energy_fn returned \(4,\) \(dtype float32\) for one "
                                         r"example of shape \(4, 2\): expected a floating-point "
                                         r"scalar, .*init takes one chain's position: use "
                                         r"init_chains for a batch"):
        sampler.init(jnp.zeros((4, 2)), None)
    # An energy that cannot even evaluate a batch (a [D] x [D, D] x [D] product) also gets
    # a ValueError naming the position's shape.
    with pytest.raises(ValueError, match=r"(?s)energy_fn failed on one example of shape \(4, 2\).*"
                                         r"use init_chains"):
        mala(gaussian(MEAN, COV).energy_fn, 0.1).init(jnp.zeros((4, 2)), None)


def test_init_rejects_integer_positions():
    with pytest.raises(ValueError, match="position has dtype int32: expected a floating-point"):
        mala(lambda p, x: jnp.sum(x**2), 0.1).init(jnp.zeros(2, jnp.int32), None)


@pytest.mark.slow
def test_clip_range_samples_the_target_restricted_to_the_box():
    """With clip_range proposals outside the box are rejected, so the chains sample
    exp(-E) restricted to it. On a standard normal per coordinate restricted to [0, 5],
    the half-normal (its mass beyond 5 is 3e-7): mean sqrt(2/pi), second moment about that
    mean 1 - 2/pi. Chains start at exact half-normal draws. A kernel that clamped instead
    of rejecting piles mass on 0 and lowers the mean by > 5 SE; one without the box gives
    mean 0."""
    x0 = jnp.abs(jax.random.normal(jax.random.key(0), (NUM_CHAINS, 2)))
    xs, acc = sample_chains(jax.random.key(1), clipped_standard_normal_mala, x0)
    assert xs.min() >= 0.0 and xs.max() <= 5.0
    m = np.sqrt(2 / np.pi)
    check_moments(xs, np.array([m, m]), (1 - 2 / np.pi) * np.eye(2))
    assert 0.3 < acc < 1.0


def test_clip_range_rejections_are_not_counted_as_nonfinite():
    sampler = mala(lambda p, x: 0.5 * jnp.sum(x**2), 4.0, clip_range=(-0.1, 0.1))
    states, info = jax.jit(lambda k, x0: run_chains(k, sampler, init_chains(sampler, x0, None),
                                                    None, 20, trace=True))(
        jax.random.key(0), jnp.zeros((256, 2)))
    assert int(jnp.sum(info.nonfinite)) == 0
    assert float(jnp.mean(info.is_accepted)) < 0.2          # most proposals leave the box
    assert float(jnp.abs(states.position).max()) <= 0.1
    with pytest.raises(ValueError, match=r"clip_range=\(1.0, 0.0\)"):
        mala(lambda p, x: jnp.sum(x), 0.1, clip_range=(1.0, 0.0))
