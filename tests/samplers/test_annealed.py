"""Tests of annealed Langevin (``ebm_jax.samplers.annealed``).

The statistical tests run many independent vmapped chains through the whole anneal
and compare their final (and first-stage) positions with the *exact* stationary law
of the unadjusted Langevin algorithm (ULA) at that stage, discretisation bias
included: for a Gaussian with covariance eigenvalue ``lam`` (precision ``a = 1/lam``),
step ``h`` and temperature ``T`` the stationary variance is

    c = T lam / (1 - h / (2 lam)) = T / (a (1 - h a / 2))

(derived in ``tests/test_langevin.py::ula_covariance``) and the mean is unbiased.
Final positions of independent chains are iid, so the standard errors are exact for
Gaussian draws: ``SE(mean) = sqrt(c / N)``, ``SE(var) = c sqrt(2 / (N - 1))``. Every
check is at ``Z = 5`` standard errors (keys fixed, so deterministic; a correct sampler
fails a given check with probability < 1e-6 under other seeds), while the breakages
each test is meant to catch (listed in the tests) are off by >= 10 SE.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.energies import gaussian
from ebm_jax.samplers.annealed import (
    AnnealedInfo,
    AnnealedState,
    AnnealingSchedule,
    annealed_langevin,
    annealed_sample,
    song_ermon_step_sizes,
)
from ebm_jax.samplers.base import Sampler, init_chains, run_chain, run_chains

# Long chains and training loops: runtime, not compilation (see tests/conftest.py).
pytestmark = pytest.mark.optimised

Z = 5.0
NUM_CHAINS = 10_000

MEAN = np.array([1.0, -2.0])
# Non-diagonal covariance; eigenvalues ~1.391 and ~0.359 (as in test_langevin).
COV = np.array([[1.0, 0.5], [0.5, 0.75]])


def ula_variances(lams, step_size, temperature=1.0):
    """Exact ULA stationary variances along covariance eigenvalues ``lams``."""
    lams = np.asarray(lams, np.float64)
    assert step_size < 2 * lams.min(), "ULA is unstable at this step size"
    return temperature * lams / (1.0 - step_size / (2.0 * lams))


def check_gaussian(x, mean, vecs, variances):
    """Independent draws x [N, D] have this mean and, along the orthonormal ``vecs``
    (columns), these variances and zero covariances (exact Gaussian standard errors)."""
    n = x.shape[0]
    z = (x - mean) @ vecs
    c = np.asarray(variances)
    np.testing.assert_array_less(np.abs(z.mean(0)), Z * np.sqrt(c / n))
    var = z.var(0, ddof=1)
    np.testing.assert_array_less(np.abs(var - c), Z * c * np.sqrt(2.0 / (n - 1)))
    if z.shape[1] > 1:
        cross = np.mean(z[:, 0] * z[:, 1])
        assert abs(cross) < Z * np.sqrt(c[0] * c[1] / n)


# -- temperature mode ------------------------------------------------------------------

@pytest.mark.slow
def test_temperature_mode_reaches_each_stage_law_and_final_gaussian():
    """Stage 0 (T=8, h=0.3) and the final T=1 stage (h=0.05) both reach their exact ULA laws.

    Each stage's step contracts the slowest direction by (1 - h/1.391) per step, so 300
    steps forget the previous stage (< 2e-5 at h=0.05). 10k chains: SE(var) = 1.4% of the
    variance. The step sizes differ per stage so that the laws pin which one each stage
    used: along the small eigenvalue (0.359) ULA inflates the variance by 1.72 at h=0.3
    and by 1.075 at h=0.05. Catches: temperatures annealed in the wrong order (final T=8:
    variance x8); noise sqrt(2h) without T (stage 0 variance /8); a missing sqrt(2) in the
    noise (variances halve); the final stage run with stage 0's step size (0.616 vs 0.386
    along the small eigenvalue, 40 SE) or vice versa; a flipped drift (divergence).
    """
    target = gaussian(MEAN, COV)
    temperatures, step_sizes, n = [8.0, 4.0, 2.0, 1.0], [0.3, 0.2, 0.1, 0.05], 300
    sampler = annealed_langevin(target.energy_fn, temperatures, n, step_sizes,
                                mode="temperature")
    lams, vecs = np.linalg.eigh(COV)
    x0 = jax.random.normal(jax.random.PRNGKey(0), (NUM_CHAINS, 2)) * 3.0
    states = init_chains(sampler, x0, None)
    run = jax.jit(lambda k, s, steps: run_chains(k, sampler, s, None, steps), static_argnums=2)

    states, info = run(jax.random.PRNGKey(1), states, n)  # stage 0 only
    np.testing.assert_array_equal(info.level, 0)
    check_gaussian(np.asarray(states.position, np.float64), MEAN, vecs,
                   ula_variances(lams, 0.3, temperature=8.0))

    # The counter carries on from step n: the remaining three stages in one more scan.
    states, info = run(jax.random.PRNGKey(2), states, 3 * n)
    np.testing.assert_array_equal(states.step, 4 * n)
    np.testing.assert_array_equal(info.level, 3)
    check_gaussian(np.asarray(states.position, np.float64), MEAN, vecs,
                   ula_variances(lams, 0.05, temperature=1.0))


# -- noise mode ----------------------------------------------------------------------

DATA_MEAN = np.array([2.0, -1.0])
DATA_STD = 0.5
SIGMAS = np.geomspace(0.1, 3.0, 5)  # level 0 the least noise


def noise_conditional_energy(params, x, level):
    """Data N(mu, s^2 I) convolved with N(0, sigma_l^2 I) is N(mu, (s^2 + sigma_l^2) I): exact."""
    var = params["s2"] + params["sigmas"][level] ** 2
    return 0.5 * jnp.sum((x - params["mu"]) ** 2) / var


def noise_params():
    return {"mu": jnp.asarray(DATA_MEAN, jnp.float32), "s2": jnp.float32(DATA_STD**2),
            "sigmas": jnp.asarray(SIGMAS, jnp.float32)}


@pytest.mark.slow  # a long statistical check (over 1.5 s)
def test_noise_mode_anneals_from_the_top_level_down_to_the_data():
    """Song & Ermon step sizes (eps = 0.01, so h_l = sigma_l^2); the first stage samples the
    top level (variance 9.25, h a = 0.97: ULA inflates it by 1/(1 - 0.49) = 1.95) and the
    end samples level 0, N(mu, s^2 + sigma_0^2) = N(mu, 0.26 I) with ULA factor 1.0196,
    i.e. the data law N(mu, 0.25 I) up to the smallest noise and the ULA bias.

    300 steps at level 0 (h a = 0.0385) contract the error left by level 1 by 8e-6.
    Catches: levels annealed 0 -> L-1 (first stage at sigma=0.1: its variance 0.26 vs
    18; the end at sigma=3); step sizes paired with the wrong levels (h=9 at level 0:
    divergence); a missing sqrt(2) in the noise (variances halve); the energy called
    with the stage instead of the level (same as the wrong order).
    """
    params = noise_params()
    step_sizes = song_ermon_step_sizes(SIGMAS, 0.01)
    n = 300
    sampler = annealed_langevin(noise_conditional_energy, SIGMAS, n, step_sizes, mode="noise")
    x0 = jax.random.uniform(jax.random.PRNGKey(3), (NUM_CHAINS, 2), minval=-1.0, maxval=1.0)
    states = init_chains(sampler, x0, params)
    run = jax.jit(lambda k, s, p, steps: run_chains(k, sampler, s, p, steps), static_argnums=3)
    eye = np.eye(2)

    states, info = run(jax.random.PRNGKey(4), states, params, n)
    np.testing.assert_array_equal(info.level, 4)
    top = DATA_STD**2 + SIGMAS[-1] ** 2
    check_gaussian(np.asarray(states.position, np.float64), DATA_MEAN, eye,
                   ula_variances([top, top], step_sizes[-1]))

    states, info = run(jax.random.PRNGKey(5), states, params, 4 * n)
    np.testing.assert_array_equal(info.level, 0)
    bottom = DATA_STD**2 + SIGMAS[0] ** 2
    check_gaussian(np.asarray(states.position, np.float64), DATA_MEAN, eye,
                   ula_variances([bottom, bottom], step_sizes[0]))


@pytest.mark.slow
def test_annealed_sample_runs_exactly_the_whole_schedule():
    params = noise_params()
    sampler = annealed_langevin(noise_conditional_energy, SIGMAS, 7,
                                song_ermon_step_sizes(SIGMAS, 0.01))
    x0 = jax.random.normal(jax.random.PRNGKey(6), (16, 2))
    key = jax.random.PRNGKey(7)

    @jax.jit  # one program for the three runs (op by op, they compiled ~50 small programs)
    def runs(k, x0, p):
        states, _ = run_chains(k, sampler, init_chains(sampler, x0, p), p, 5 * 7)
        return annealed_sample(k, sampler, x0, p), states, annealed_sample(k, sampler, x0, p,
                                                                           trace=True)[1]

    (x, info), states, traced = runs(key, x0, params)
    assert x.shape == (16, 2)
    np.testing.assert_array_equal(info.level, 0)  # the last step is at level 0
    np.testing.assert_allclose(x, states.position, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(states.step, 35)
    assert traced.level.shape == (16, 35)


# -- the schedule (deterministic) -----------------------------------------------------

@pytest.mark.parametrize("mode", ["noise", "temperature"])
def test_counter_to_level_schedule_and_per_level_step_sizes(mode):
    """A linear energy with zero noise makes each step a known move ``-h_level * c``.

    Catches: a wrong stage formula or no clamping (levels past the end), the wrong
    annealing direction per mode, step sizes not paired with ``levels``, the level not
    reaching ``energy_fn`` in noise mode, cond not passed through, counter not advancing.
    """
    num_levels, n, extra = 3, 4, 5
    levels = [0.1, 0.5, 2.0] if mode == "noise" else [4.0, 2.0, 1.0]
    step_sizes = [0.01, 0.1, 1.0]

    def energy(params, x, *args):  # E = 10 * level + c * sum(x); the level is 0 in T mode
        level, c = (args[0], args[1]) if mode == "noise" else (0, args[0])
        return 10.0 * level + c * jnp.sum(x)

    sampler = annealed_langevin(energy, levels, n, step_sizes, mode=mode, noise_scales=0.0)
    assert isinstance(sampler, Sampler) and isinstance(sampler.schedule, AnnealingSchedule)
    assert sampler.schedule.num_steps == num_levels * n
    total = num_levels * n + extra
    c, x0 = 2.0, jnp.array([1.0, -1.0, 0.5])
    state, info = run_chain(jax.random.PRNGKey(0), sampler, sampler.init(x0, None, c), None,
                            total, c, trace=True)
    assert isinstance(state, AnnealedState) and isinstance(info, AnnealedInfo)

    stage = np.minimum(np.arange(total) // n, num_levels - 1)
    expected_level = num_levels - 1 - stage if mode == "noise" else stage
    np.testing.assert_array_equal(info.level, expected_level)
    np.testing.assert_array_equal(sampler.schedule.level_at(np.arange(total)), expected_level)
    assert int(state.step) == total and state.step.dtype == jnp.int32

    moves = c * np.asarray(step_sizes)[expected_level]  # per step, every coordinate
    before = np.asarray(x0)[None] - np.concatenate([[0.0], np.cumsum(moves)[:-1]])[:, None]
    expected_energy = (10.0 * expected_level if mode == "noise" else 0.0) + c * before.sum(1)
    np.testing.assert_allclose(info.energy, expected_energy, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(state.position, np.asarray(x0) - moves.sum(), rtol=1e-5)
    np.testing.assert_allclose(info.grad_norm, c * np.sqrt(3.0), rtol=1e-6)


@pytest.mark.slow
def test_zero_gradient_and_zero_noise_leave_positions_unchanged():
    sampler = annealed_langevin(lambda p, x, level: 0.0 * jnp.sum(x), [0.1, 1.0], 3, 0.5,
                                noise_scales=[0.0, 0.0])
    x0 = jax.random.normal(jax.random.PRNGKey(1), (7, 3))
    states, info = jax.jit(lambda k, x0: run_chains(k, sampler, init_chains(sampler, x0, None),
                                                    None, 8))(jax.random.PRNGKey(2), x0)
    np.testing.assert_array_equal(states.position, x0)
    np.testing.assert_array_equal(states.step, 8)
    np.testing.assert_array_equal(info.grad_norm, 0.0)


def test_default_noise_is_the_temperature_form():
    """Zero gradient: one step's increment has std sqrt(2 h T) (h=0.02, T=3: 0.3464).
    SE(std) = s / sqrt(2n) (0.5%); sqrt(2h) alone or h T are off by > 40%."""
    sampler = annealed_langevin(lambda p, x: 0.0 * jnp.sum(x), [3.0, 1.0], 5, 0.02,
                                mode="temperature")
    np.testing.assert_allclose(sampler.schedule.noise_scales, np.sqrt(2 * 0.02 * np.array([3, 1])))
    n = 20_000

    @jax.jit
    def one_step(key):
        states = init_chains(sampler, jnp.zeros(n), None)
        return jax.vmap(sampler.step, in_axes=(0, 0, None))(jax.random.split(key, n), states,
                                                            None)[0]

    states = one_step(jax.random.PRNGKey(3))
    s = np.sqrt(2 * 0.02 * 3.0)
    assert abs(np.std(np.asarray(states.position, np.float64), ddof=1) - s) < Z * s / np.sqrt(2 * n)


def test_nonfinite_step_keeps_position_and_advances_the_counter():
    sampler = annealed_langevin(lambda p, x, level: jnp.log(x[0]) + jnp.sum(x**2), [0.1, 1.0],
                                2, 0.01)
    x0 = jnp.array([-1.0, 0.5])
    state, info = run_chain(jax.random.PRNGKey(0), sampler, sampler.init(x0), None, 5,
                            trace=True)
    np.testing.assert_array_equal(state.position, x0)
    np.testing.assert_array_equal(info.nonfinite, 1)
    assert int(state.step) == 5


@pytest.mark.slow
def test_clip_range_clamps_positions():
    sampler = annealed_langevin(lambda p, x, level: 0.0 * jnp.sum(x), [0.1, 1.0], 2, 1.0,
                                noise_scales=2.0, clip_range=(-1.0, 1.0))
    states, _ = jax.jit(lambda k: run_chains(k, sampler,
                                             init_chains(sampler, jnp.zeros((500, 4)), None),
                                             None, 3))(jax.random.PRNGKey(0))
    assert float(states.position.min()) == -1.0 and float(states.position.max()) == 1.0


def test_song_ermon_step_sizes():
    np.testing.assert_allclose(song_ermon_step_sizes([0.1, 0.2, 0.4], 1e-3),
                               [1e-3, 4e-3, 16e-3], rtol=1e-12)
    with pytest.raises(ValueError, match="eps"):
        song_ermon_step_sizes([0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="levels"):
        song_ermon_step_sizes([0.2, 0.1], 1e-3)


# -- argument checks ----------------------------------------------------------------

def flat(params, x, *args):
    return 0.0 * jnp.sum(x)


@pytest.mark.parametrize("args, kwargs, message", [
    (([], 10, 0.1), {}, "levels=.*non-empty"),
    (([[0.1, 0.2]], 10, 0.1), {}, "levels=.*shape"),
    (([0.1, -0.2], 10, 0.1), {}, r"levels=.*element 1 is -0\.2"),
    (([0.1, float("nan")], 10, 0.1), {}, "levels=.*element 1"),
    (([1.0, 0.5], 10, 0.1), {}, r"levels=.*levels\[1\]=0\.5 < levels\[0\]=1\.0.*least noise"),
    (([1.0, 2.0], 10, 0.1), {"mode": "temperature"},
     r"levels=.*levels\[1\]=2\.0 > levels\[0\]=1\.0.*annealing order"),
    (([0.1, 1.0], 0, 0.1), {}, "steps_per_level=0: expected a positive Python int"),
    (([0.1, 1.0], 2.0, 0.1), {}, "steps_per_level=2.0"),
    (([0.1, 1.0], True, 0.1), {}, "steps_per_level=True"),
    (([0.1, 1.0], 10, [0.1, 0.2, 0.3]), {}, r"step_sizes=.*shape \(3,\).*sequence of 2"),
    (([0.1, 1.0], 10, [0.1, 0.0]), {}, "step_sizes=.*element 1 is 0.0.*positive"),
    (([0.1, 1.0], 10, -0.1), {}, "step_sizes=.*positive"),
    (([0.1, 1.0], 10, 0.1), {"noise_scales": [0.1, -0.1]}, "noise_scales=.*non-negative"),
    (([0.1, 1.0], 10, 0.1), {"noise_scales": [0.1]}, "noise_scales=.*sequence of 2"),
    (([0.1, 1.0], 10, 0.1), {"mode": "noisy"}, "mode='noisy'"),
    (([0.1, 1.0], 10, 0.1), {"clip_range": (1.0, 1.0)}, "clip_range"),
    (([0.1, 1.0], 10, 0.1), {"clip_range": 1.0}, "clip_range"),
])
def test_bad_arguments_raise_one_clear_error(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        annealed_langevin(flat, *args, **kwargs)


def test_annealed_sample_rejects_other_samplers():
    from ebm_jax.samplers import langevin

    with pytest.raises(ValueError, match="sampler=.*annealed_langevin"):
        annealed_sample(jax.random.PRNGKey(0), langevin(flat, 0.1), jnp.zeros((2, 2)), None)


def test_replace_keeps_the_schedule():
    sampler = annealed_langevin(flat, [0.1, 1.0], 3, 0.1)
    other = sampler._replace(step=sampler.step)
    # the Sampler fields (init, step, support) as a tuple; the schedule rides as an attribute
    assert other.schedule is sampler.schedule and tuple(other) == (sampler.init, sampler.step,
                                                                   None)
    boxed = annealed_langevin(flat, [0.1, 1.0], 3, 0.1, clip_range=(-2, 2))
    assert boxed.support == (-2.0, 2.0) and boxed._replace(init=boxed.init).support == (-2.0, 2.0)
