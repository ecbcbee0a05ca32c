"""Tests of dual-averaging step-size adaptation (``ebm_jax.samplers.adaptation``).

The pure update is checked against an independent float64 transcription of
Hoffman & Gelman (2014), Algorithm 5, and for convergence on a known acceptance
curve. The warm-ups are checked end to end: after adapting on the correlated 2-D
Gaussian, 512 chains started from exact draws run 200 steps with the adapted step
size, and their mean acceptance probability (102,400 draws, standard error < 0.002)
must be within 0.05 of the target. Measured over keys 0-3: MALA adapts to h = 0.58-0.62
(acceptance 0.561-0.590 for target 0.574), HMC with L = 5 to eps = 0.83 (acceptance
0.793-0.797 for target 0.8): within 0.015 of the target.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.energies import gaussian
from ebm_jax.samplers import (
    AdaptationInfo,
    DualAveragingState,
    Sampler,
    Warmup,
    adapt_step_size,
    adapt_step_size_chains,
    dual_averaging_init,
    dual_averaging_update,
    final_step_size,
    hmc,
    hmc_kernel,
    init_chains,
    mala,
    mala_kernel,
    run_chains,
    sample_chains,
    warmup_chains,
)
from ebm_jax.samplers.adaptation import (regularised_covariance, regularised_variance,
                                         window_adaptation, warmup_windows)
from ebm_jax.samplers.diagnostics import effective_sample_size

MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.5], [0.5, 0.75]])
TARGET = gaussian(MEAN, COV)


def algorithm_5(h0, acceptances, delta, gamma=0.05, t0=10.0, kappa=0.75):
    """Hoffman & Gelman (2014), Algorithm 5, in float64: [(log h_m, log h̄_m, H̄_m)]."""
    mu, h_bar, log_avg, out = np.log(10 * h0), 0.0, np.log(h0), []
    for m, alpha in enumerate(acceptances, start=1):
        h_bar = (1 - 1 / (m + t0)) * h_bar + (delta - alpha) / (m + t0)
        log_h = mu - np.sqrt(m) / gamma * h_bar
        log_avg = m ** (-kappa) * log_h + (1 - m ** (-kappa)) * log_avg
        out.append((log_h, log_avg, h_bar))
    return np.array(out)


# Catches a flipped error sign (target - acceptance), a wrong weight 1/(m + t0), averaging
# the previous iterate instead of the new one, and final_step_size returning the iterate.
def test_update_matches_algorithm_5():
    acceptances = np.random.default_rng(0).uniform(size=60)
    state = dual_averaging_init(0.1)
    assert isinstance(state, DualAveragingState)
    np.testing.assert_allclose(final_step_size(state), 0.1, rtol=1e-6)
    got = []
    for alpha in acceptances:
        state = dual_averaging_update(state, jnp.float32(alpha), 0.65)
        got.append((state.log_step_size, state.log_step_size_avg, state.avg_error))
        np.testing.assert_allclose(final_step_size(state), np.exp(state.log_step_size_avg),
                                   rtol=1e-6)
    np.testing.assert_allclose(np.array(got), algorithm_5(0.1, acceptances, 0.65),
                               rtol=1e-4, atol=1e-5)
    assert int(state.step) == 60
    # By hand, the first update from h0 = 0.1 (mu = log 1 = 0) with acceptance 0.9, target
    # 0.574: H_1 = (0.574 - 0.9) / 11, log h_1 = -H_1 / 0.05 = 0.5927: accepted too often, grow.
    first = dual_averaging_update(dual_averaging_init(0.1), 0.9, 0.574)
    np.testing.assert_allclose(first.log_step_size, 0.326 / 11 / 0.05, rtol=1e-5)
    np.testing.assert_allclose(final_step_size(first), np.exp(0.326 / 11 / 0.05), rtol=1e-5)


@pytest.mark.parametrize("target", [0.3, 0.574, 0.8])
def test_update_converges_on_a_known_acceptance_curve(target):
    """With acceptance exp(-h) the averaged step size converges to h* = -log(target)."""

    def body(state, _):
        return dual_averaging_update(state, jnp.exp(-jnp.exp(state.log_step_size)), target), None

    state, _ = jax.lax.scan(body, dual_averaging_init(0.01), None, length=2000)
    np.testing.assert_allclose(final_step_size(state), -np.log(target), rtol=0.02)


def mean_acceptance(kernel, init, step_size, num_chains=512, num_steps=200):
    """Mean acceptance probability of chains started from exact draws, at this step size."""
    states = jax.vmap(init, in_axes=(0, None))(TARGET.sample(jax.random.PRNGKey(7), num_chains),
                                               None)
    step = jax.vmap(kernel, in_axes=(0, 0, None, None))

    def body(states, key):
        states, info = step(jax.random.split(key, num_chains), states, None, step_size)
        return states, info.acceptance_rate

    _, acc = jax.lax.scan(body, states, jax.random.split(jax.random.PRNGKey(8), num_steps))
    return acc.mean()


def test_single_chain_mala_reaches_the_target():
    kernel, init = mala_kernel(TARGET.energy_fn), mala(TARGET.energy_fn, 0.01).init

    @jax.jit
    def run(key):
        _, step_size, info = adapt_step_size(key, kernel, init(jnp.zeros(2), None), None,
                                             initial_step_size=0.01, num_warmup=2000)
        return step_size, info, mean_acceptance(kernel, init, step_size)

    step_size, info, acceptance = run(jax.random.PRNGKey(0))
    assert isinstance(info, AdaptationInfo) and step_size.shape == ()
    assert info.step_size.shape == info.acceptance_rate.shape == (2000,)
    np.testing.assert_allclose(info.step_size[0], 0.01, rtol=1e-6)
    assert float(step_size) > 10 * 0.01  # it moved far from its start
    assert abs(float(acceptance) - 0.574) < 0.05, (float(step_size), float(acceptance))


@pytest.mark.slow
@pytest.mark.parametrize("sampler_name, target", [("mala", 0.574), ("hmc", 0.8)])
def test_shared_step_size_reaches_the_target(sampler_name, target):
    if sampler_name == "mala":
        kernel, init = mala_kernel(TARGET.energy_fn), mala(TARGET.energy_fn, 0.1).init
    else:
        kernel, init = hmc_kernel(TARGET.energy_fn, 5), hmc(TARGET.energy_fn, 0.1, 5).init

    @jax.jit
    def run(key):
        states = jax.vmap(init, in_axes=(0, None))(jnp.zeros((128, 2)), None)
        states, step_size, info = adapt_step_size_chains(
            key, kernel, states, None, initial_step_size=1.0, num_warmup=500,
            target_acceptance=target)
        return states, step_size, info, mean_acceptance(kernel, init, step_size)

    states, step_size, info, acceptance = run(jax.random.PRNGKey(0))
    assert step_size.shape == () and states.position.shape == (128, 2)
    assert info.step_size.shape == info.acceptance_rate.shape == (500,)
    assert info.info.acceptance_rate.shape == (500, 128)
    np.testing.assert_allclose(info.acceptance_rate, info.info.acceptance_rate.mean(1), rtol=1e-5)
    assert abs(float(acceptance) - target) < 0.05, (float(step_size), float(acceptance))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["mala", "hmc"])
def test_warmup_chains_is_the_three_step_recipe_in_one_call(family):
    """From a constructor alone: the same states and step size as a sampler's init_chains,
    its kernel through adapt_step_size_chains and the sampler rebuilt at the adapted step
    (to float rounding), and the returned sampler is that last one."""
    if family == "mala":
        make, kernel = functools.partial(mala, TARGET.energy_fn), mala_kernel(TARGET.energy_fn)
    else:
        make, kernel = (lambda h: hmc(TARGET.energy_fn, h, 5)), hmc_kernel(TARGET.energy_fn, 5)
    starts = jax.random.normal(jax.random.key(3), (16, 2))
    warm = warmup_chains(jax.random.key(4), make, starts, None, initial_step_size=0.5,
                         num_warmup=60)
    assert isinstance(warm, Warmup) and isinstance(warm.sampler, Sampler)
    states = init_chains(make(0.5), starts, None)
    states, step_size, info = jax.jit(lambda k, s: adapt_step_size_chains(
        k, kernel, s, None, initial_step_size=0.5, num_warmup=60))(jax.random.key(4), states)
    np.testing.assert_allclose(warm.step_size, step_size, rtol=1e-5)
    np.testing.assert_allclose(warm.states.position, states.position, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(warm.info.acceptance_rate, info.acceptance_rate, rtol=1e-5,
                               atol=1e-6)
    ours, _ = run_chains(jax.random.key(5), warm.sampler, warm.states, None, 3)
    theirs, _ = run_chains(jax.random.key(5), make(step_size), states, None, 3)
    np.testing.assert_allclose(ours.position, theirs.position, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_warmed_up_sampler_accepts_at_the_target():
    """128 MALA chains warmed up from one point: the returned sampler's mean acceptance over
    the next 200 steps is within 0.05 of the target (as adapt_step_size_chains's own test);
    a sampler returned at the initial step size (1.0 here) accepts far less."""
    warm = warmup_chains(jax.random.key(6), functools.partial(mala, TARGET.energy_fn),
                         jnp.zeros((128, 2)), None, initial_step_size=1.0, num_warmup=500)
    _, info = jax.jit(lambda k, s: run_chains(k, warm.sampler, s, None, 200, trace=True))(
        jax.random.key(7), warm.states)
    assert abs(float(info.acceptance_rate.mean()) - 0.574) < 0.05, float(warm.step_size)


def test_warmup_chains_refuses_what_is_not_a_sampler_constructor():
    with pytest.raises(TypeError, match="make_sampler=3: expected a function step_size"):
        warmup_chains(jax.random.key(0), 3, jnp.zeros((2, 2)), None, initial_step_size=0.1,
                      num_warmup=5)
    with pytest.raises(TypeError, match=r"make_sampler\(0.1\) returned function: expected a "
                                        "Sampler"):
        warmup_chains(jax.random.key(0), lambda h: mala_kernel(TARGET.energy_fn),
                      jnp.zeros((2, 2)), None, initial_step_size=0.1, num_warmup=5)
    with pytest.raises(ValueError, match="num_warmup"):
        warmup_chains(jax.random.key(0), functools.partial(mala, TARGET.energy_fn),
                      jnp.zeros((2, 2)), None, initial_step_size=0.1, num_warmup=0)


def test_adaptation_is_a_pure_function_of_its_key():
    kernel = mala_kernel(TARGET.energy_fn)
    state = mala(TARGET.energy_fn, 0.1).init(jnp.zeros(2), None)

    def adapt(key):
        return adapt_step_size(key, kernel, state, None, initial_step_size=0.1, num_warmup=200)

    jitted = jax.jit(adapt)
    a, b = jitted(jax.random.PRNGKey(0)), jitted(jax.random.PRNGKey(0))
    c = adapt(jax.random.PRNGKey(0))  # not jitted
    for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c)):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, rtol=1e-5, atol=1e-6)
    other = jitted(jax.random.PRNGKey(1))
    assert float(other[1]) != float(a[1])


def test_chains_take_per_chain_cond():
    """``cond`` is batched like the states: each chain samples its own target."""
    energy_fn = lambda p, x, centre: 0.5 * jnp.sum((x - centre) ** 2)  # noqa: E731
    centres = jnp.linspace(-20.0, 20.0, 16)[:, None] * jnp.ones((16, 2))
    sampler = mala(energy_fn, 0.1)
    states = init_chains(sampler, centres, None, centres)
    states, _, info = jax.jit(lambda k, s, c: adapt_step_size_chains(
        k, mala_kernel(energy_fn), s, None, c, initial_step_size=0.1, num_warmup=300))(
        jax.random.PRNGKey(0), states, centres)
    # Each chain stays near its centre (unit variance around it): far from the others.
    assert float(jnp.max(jnp.abs(states.position - centres))) < 6.0
    assert 0.45 < float(info.acceptance_rate[-100:].mean()) < 0.7


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_warmup=0), r"num_warmup=0: expected a positive int"),
    (dict(num_warmup=2.5), r"num_warmup=2.5"),
    (dict(num_warmup=True), r"num_warmup=True"),
    (dict(initial_step_size=0.0), r"initial_step_size=0.0: expected a positive finite number"),
    (dict(initial_step_size=float("nan")), r"initial_step_size=nan"),
    (dict(target_acceptance=0.0), r"target_acceptance=0.0: expected a number in \(0, 1\)"),
    (dict(target_acceptance=1.0), r"target_acceptance=1.0"),
    (dict(target_acceptance=57.4), r"target_acceptance=57.4"),
    (dict(gamma=0.0), r"gamma=0.0"),
    (dict(t0=-1.0), r"t0=-1.0: expected a finite number >= 0"),
    (dict(kappa=0.5), r"kappa=0.5: expected a number in \(0.5, 1\]"),
])
@pytest.mark.parametrize("adapt", [adapt_step_size, adapt_step_size_chains])
def test_bad_arguments_raise_naming_the_argument(adapt, kwargs, message):
    state = mala(TARGET.energy_fn, 0.1).init(jnp.zeros(2), None)
    args = dict(initial_step_size=0.1, num_warmup=10) | kwargs
    with pytest.raises(ValueError, match=message):
        adapt(jax.random.PRNGKey(0), mala_kernel(TARGET.energy_fn), state, None, **args)


def test_pure_pieces_check_their_arguments():
    with pytest.raises(ValueError, match=r"step_size=-0.1: expected a positive finite number"):
        dual_averaging_init(-0.1)
    with pytest.raises(ValueError, match=r"target_acceptance=1.5"):
        dual_averaging_update(dual_averaging_init(0.1), 0.5, 1.5)


# -- Stan's windowed adaptation ---------------------------------------------------------------

def test_the_windows_are_stans():
    """Stan's schedule (windowed_adaptation.hpp): for 1,000 warm-up steps a 75-step buffer,
    slow windows of 25, 50, 100, 200 and 500 (the last stretched to the final buffer) and a
    50-step buffer; Stan's 15/75/10% split when the defaults do not fit; none below 20."""
    assert warmup_windows(1000) == (75, [(75, 100), (100, 150), (150, 250), (250, 450),
                                         (450, 950)], 50)
    # 100 + 2 x 50 reaches the final buffer: the second window is stretched to it.
    assert warmup_windows(300) == (75, [(75, 100), (100, 250)], 50)
    assert warmup_windows(100) == (15, [(15, 90)], 10)
    assert warmup_windows(10) == (10, [], 0)


def test_the_regularised_variance_is_stans():
    draws = jax.random.normal(jax.random.key(0), (20, 3)) * jnp.array([1.0, 2.0, 0.0])
    n = 20
    expected = n / (n + 5) * np.var(np.asarray(draws), axis=0, ddof=1) + 1e-3 * 5 / (n + 5)
    np.testing.assert_allclose(regularised_variance(draws), expected, rtol=1e-5)


SCALES = jnp.array([1.0, 30.0])


def _wide_energy(params, x):
    return 0.5 * jnp.sum((x / SCALES) ** 2)


@pytest.mark.slow
def test_window_adaptation_learns_the_variances_and_beats_the_identity_mass():
    """N(0, diag(1, 900)), 16 HMC chains (L = 4: a path of about 4 normalised units, short
    of the Gaussian's period 2 pi, whose multiples make fixed-length HMC return where it
    started), 300 warm-up steps (windows 25 and 150): the inverse mass within 30% of the
    variances (measured 1.00 and 855), the acceptance between 0.75 and 0.97 for Stan's
    target 0.8 (dual averaging's averaged step is smaller than its last iterates, so the
    acceptance after warm-up lands above the target: measured 0.85-0.91 under the suite's
    and the default compile flags; the initial step 0.1 accepts 0.99+), the draws' variances
    within 20%, and the wide coordinate's ESS over 300 draws at least 10 times that of the
    same HMC with the identity mass and a step size adapted alone (measured 7,300 against
    45: the identity mass's step is set by the narrow coordinate). A mass in place of the
    inverse mass, or no update after the windows, fails."""
    make = lambda h, m: hmc(_wide_energy, h, 4, inverse_mass=m)  # noqa: E731
    starts = jax.random.normal(jax.random.key(1), (16, 2))
    warm = window_adaptation(jax.random.key(2), make, starts, None, initial_step_size=0.1,
                             num_warmup=300)
    np.testing.assert_allclose(warm.inverse_mass, np.asarray(SCALES) ** 2, rtol=0.3)
    assert warm.info.step_size.shape == (300,) and warm.info.info.acceptance_rate.shape == (300, 16)
    run = jax.jit(lambda k, sampler, s: sample_chains(k, sampler, s, None, 300),
                  static_argnums=1)
    _, draws = run(jax.random.key(3), warm.sampler, warm.states)
    assert 0.75 < float(draws.info.acceptance_rate.mean()) < 0.97
    np.testing.assert_allclose(np.asarray(draws.positions).reshape(-1, 2).var(0),
                               np.asarray(SCALES) ** 2, rtol=0.2)
    plain = warmup_chains(jax.random.key(2), lambda h: hmc(_wide_energy, h, 4), starts, None,
                          initial_step_size=0.1, num_warmup=300, target_acceptance=0.8)
    _, plain_draws = run(jax.random.key(3), plain.sampler, plain.states)
    ess, plain_ess = (np.asarray(effective_sample_size(d.positions))[1]
                      for d in (draws, plain_draws))
    assert ess > 10 * plain_ess, (ess, plain_ess)


def test_the_regularised_covariance_is_stans():
    draws = jax.random.normal(jax.random.key(0), (20, 3)) @ jnp.array(
        [[1.0, 0.5, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    n = 20
    expected = (n / (n + 5) * np.cov(np.asarray(draws), rowvar=False, ddof=1)
                + 1e-3 * 5 / (n + 5) * np.eye(3))
    np.testing.assert_allclose(regularised_covariance(draws), expected, rtol=1e-5, atol=1e-7)
    # Its diagonal is the regularised variance; one coordinate gives a [1, 1] matrix.
    np.testing.assert_allclose(np.diag(regularised_covariance(draws)),
                               regularised_variance(draws), rtol=1e-5)
    assert regularised_covariance(draws[:, :1]).shape == (1, 1)


# Correlated (0.9, 0.5, 0.7) with sds 0.2, 1 and 5: condition number ~4,000; whitened by
# its variances alone the correlation matrix keeps a condition number of ~38.
CORRELATED_COV = np.array([[0.04, 0.18, 0.5], [0.18, 1.0, 3.5], [0.5, 3.5, 25.0]])
CORRELATED = gaussian(np.zeros(3), CORRELATED_COV)


@pytest.mark.slow
def test_dense_window_adaptation_learns_the_covariance_and_beats_the_diagonal():
    """The correlated 3-D Gaussian, 16 HMC chains (L = 4), 300 warm-up steps: the dense
    inverse mass within 20% of each variance and 0.1 of each correlation (measured 3% and
    0.01); the adapted step at least 3 times the diagonal mass's (measured 1.0 against 0.23:
    the diagonal's step is set by the correlations it leaves) and the slowest coordinate's
    ESS over 300 draws at least 5 times (measured 2,700-17,700 against 250-420: with L = 4
    fixed, the ESS on a whitened Gaussian swings with the step size's place against the
    period, which float rounding under the suite's compile flags moves). The diagonal's
    estimate in place of the covariance, or no update after the windows, fails."""
    starts = jax.random.normal(jax.random.key(1), (16, 3))
    run = jax.jit(lambda k, sampler, s: sample_chains(k, sampler, s, None, 300),
                  static_argnums=1)
    make = lambda h, m: hmc(CORRELATED.energy_fn, h, 4, inverse_mass=m)  # noqa: E731
    warm, ess = {}, {}
    for dense in (True, False):
        warm[dense] = window_adaptation(jax.random.key(2), make, starts, None,
                                        initial_step_size=0.1, num_warmup=300,
                                        dense_mass=dense)
        _, draws = run(jax.random.key(3), warm[dense].sampler, warm[dense].states)
        ess[dense] = float(np.min(np.asarray(effective_sample_size(draws.positions))))
    learnt = np.asarray(warm[True].inverse_mass)
    assert learnt.shape == (3, 3) and warm[False].inverse_mass.shape == (3,)
    sd, true_sd = np.sqrt(np.diag(learnt)), np.sqrt(np.diag(CORRELATED_COV))
    np.testing.assert_allclose(sd**2, true_sd**2, rtol=0.2)
    np.testing.assert_allclose(learnt / np.outer(sd, sd),
                               CORRELATED_COV / np.outer(true_sd, true_sd), atol=0.1)
    assert float(warm[True].step_size) > 3 * float(warm[False].step_size)
    assert ess[True] > 5 * ess[False], ess


def test_dense_mass_is_a_flag():
    with pytest.raises(ValueError, match=r"dense_mass='yes'"):
        window_adaptation(jax.random.key(0), lambda h, m: hmc(CORRELATED.energy_fn, h, 4,
                                                              inverse_mass=m),
                          jnp.zeros((4, 3)), None, initial_step_size=0.1, num_warmup=30,
                          dense_mass="yes")


class _DrawState(NamedTuple):
    position: jax.Array


class _DrawInfo(NamedTuple):
    acceptance_rate: jax.Array


def _independent_draws(step_size, inverse_mass):
    """A stand-in sampler whose draws are iid N(0, diag(SCALES^2)) and whose acceptance is
    exp(-step size x mean inverse mass): dual averaging converges on it without the chaos of
    a real chain (where float rounding alone flips an accept after ~40 steps)."""
    def step(key, state, params):
        position = jax.random.normal(key, state.position.shape) * SCALES
        return _DrawState(position), _DrawInfo(jnp.exp(-step_size * jnp.mean(inverse_mass)))

    return Sampler(lambda position, params: _DrawState(position), step)


@pytest.mark.slow
def test_the_windowed_scan_is_stans_schedule_step_by_step():
    """The one-scan warm-up against the schedule written out step by step in Python (the
    same per-step keys): 300 steps are a 75-step buffer, windows (75, 100) and (100, 250)
    and a 50-step buffer; dual averaging restarts after steps 75, 100 and 250 from its
    averaged step size; after each window the inverse mass becomes the regularised variance
    of that window's pooled draws (25 x 8, then 150 x 8). Restarting at the wrong step, a
    window off by one, or the second window's mass from both windows' draws fails."""
    num_chains, num_warmup = 8, 300
    starts = jnp.zeros((num_chains, 2))
    warm = window_adaptation(jax.random.key(2), _independent_draws, starts, None,
                             initial_step_size=0.1, num_warmup=num_warmup)

    @jax.jit
    def step(key, states, step_size, inverse_mass):
        sampler = _independent_draws(step_size, inverse_mass)
        return jax.vmap(sampler.step, in_axes=(0, 0, None))(
            jax.random.split(key, num_chains), states, None)

    states = _DrawState(starts)
    da, inverse_mass, window, steps = dual_averaging_init(0.1), jnp.ones(2), [], []
    for i, key in enumerate(jax.random.split(jax.random.key(2), num_warmup)):
        steps.append(jnp.exp(da.log_step_size))
        states, info = step(key, states, steps[-1], inverse_mass)
        da = dual_averaging_update(da, jnp.mean(info.acceptance_rate), 0.8)
        if 75 <= i < 250:
            window.append(states.position)
        if i in (99, 249):
            inverse_mass, window = regularised_variance(jnp.concatenate(window)), []
        if i in (74, 99, 249):
            da = dual_averaging_init(final_step_size(da))
    np.testing.assert_allclose(warm.info.step_size, np.asarray(steps), rtol=1e-4)
    np.testing.assert_allclose(warm.inverse_mass, inverse_mass, rtol=1e-4)
    np.testing.assert_allclose(warm.step_size, final_step_size(da), rtol=1e-4)
    np.testing.assert_allclose(warm.states.position, states.position, rtol=1e-5)


def test_window_adaptation_compiles_once_for_any_key_and_initial_step():
    from ebm_jax.samplers.adaptation import _windowed_warmup
    make = lambda h, m: hmc(_wide_energy, h, 2, inverse_mass=m)  # noqa: E731
    before = _windowed_warmup._cache_size()
    for seed, initial in ((0, 0.1), (1, 0.3)):
        window_adaptation(jax.random.key(seed), make, jnp.zeros((4, 2)), None,
                          initial_step_size=initial, num_warmup=40)
    assert _windowed_warmup._cache_size() == before + 1


def _quartic(params, x):
    return 0.25 * jnp.sum(x ** 4)


def test_a_chain_that_accepts_nothing_pulls_the_shared_step_down():
    """Four MALA chains on exp(-sum x^4 / 4), one started at (6, 6) where the gradient is
    216 a coordinate: a step that suits the three started at 0 throws it hundreds away, so it
    accepts nothing. Pooled by the arithmetic mean (the three accept ~0.6-0.8) the step stays
    there and the chain never moves (measured: still at (6, 6) after 300 steps); the harmonic
    mean, throughout or in the initial buffer (the default), shrinks the step until it moves
    and it joins the others (|x| < 3)."""
    make = lambda h, m: mala(_quartic, h, inverse_mass=m)  # noqa: E731
    starts = jnp.array([[0.0, 0.0], [0.1, -0.1], [-0.1, 0.1], [6.0, 6.0]])
    stuck = window_adaptation(jax.random.key(0), make, starts, None, initial_step_size=0.1,
                              num_warmup=300, target_acceptance=0.574,
                              acceptance_mean="arithmetic")
    np.testing.assert_array_equal(stuck.states.position[3], starts[3])
    for mean in ("harmonic_initial", "harmonic"):
        moved = window_adaptation(jax.random.key(0), make, starts, None, initial_step_size=0.1,
                                  num_warmup=300, target_acceptance=0.574, acceptance_mean=mean)
        assert float(jnp.max(jnp.abs(moved.states.position[3]))) < 3.0, (mean, moved.states)
    with pytest.raises(ValueError, match=r"acceptance_mean='geometric': expected one of"):
        window_adaptation(jax.random.key(0), make, starts, None, initial_step_size=0.1,
                          num_warmup=30, acceptance_mean="geometric")
