"""CDRL's pieces against known answers: the reference's schedule and constants, the shared-noise
pairs' marginals, Tweedie's factor on an analytic Gaussian, which network each term trains, and
a Gaussian learned end to end (the EBM's mean and the initializer's regression)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.losses.cdrl import (CDRLState, cdrl, cdrl_optimizer, cdrl_params, cdrl_scales,
                                 decoupled_energy, residual_initializer)
from ebm_jax.samplers import (cosine_logsnr, diffuse_shared, noise_schedule,
                              progressive_sample, tweedie_denoise)
from ebm_jax.samplers.chain_starts import RecoveryCondition, initializer_start

COSINE = noise_schedule("cosine")

# The reference code's schedule (levels 0..6: log-SNR and sqrt(sigmoid(logsnr))) and per-step
# constants, recomputed from its formulas: s_t² = 4e-4 c_t β_t, the posterior std of the
# proposal in the network's space sqrt(β̃_t as_t) (sqrt(β̃_6) at the top), w_t = σ_1/σ_t.
REFERENCE_LOGSNR = [9.8, 2.688820, 1.196880, 0.141071, -0.876073, -2.172388, -5.1]
REFERENCE_ALPHAS = [0.99997228, 0.96765888, 0.87633861, 0.73158007, 0.54221050, 0.31977747,
                    0.07784473]
REFERENCE_STEP_SQ = [2.5434e-05, 2.4370e-03, 7.8425e-03, 1.6505e-02, 2.9436e-02, 4.7881e-02]
REFERENCE_PROPOSAL_STD = [0.00720281, 0.20112724, 0.32472529, 0.40371253, 0.42236813, 0.92179]
REFERENCE_WEIGHTS = [1.0, 0.594612, 0.458029, 0.375606, 0.312243, 0.259980]


def test_the_cosine_schedule_and_the_scales_are_the_reference_s():
    np.testing.assert_allclose(cosine_logsnr(6), REFERENCE_LOGSNR, atol=1e-5)
    # our level 0 is the data diffused once: marginal scales are relative to it
    np.testing.assert_allclose(COSINE.marginal_alphas,
                               np.array(REFERENCE_ALPHAS) / REFERENCE_ALPHAS[0], rtol=1e-6)
    scales = cdrl_scales(COSINE)
    assert math.isclose(scales.data_noise, 0.00744638, rel_tol=1e-5)
    np.testing.assert_allclose(scales.energy_scales, REFERENCE_STEP_SQ, rtol=2e-4)
    # the proposal std in x is the reference's (in y = a x) over a, except at the top (a = 1)
    in_y = scales.proposal_stds * scales.input_scales
    np.testing.assert_allclose(in_y, REFERENCE_PROPOSAL_STD, rtol=1e-4)
    np.testing.assert_allclose(scales.loss_weights / scales.energy_scales, REFERENCE_WEIGHTS,
                               rtol=1e-5)
    assert scales.input_scales[-1] == 1.0 and scales.marginal_top
    # a chain step in x is the reference's step s² in y = a x: h = s² / (2 a²)
    np.testing.assert_allclose(scales.step_sizes * 2 * scales.input_scales**2,
                               scales.energy_scales)


@pytest.mark.parametrize("kwargs, message", [
    (dict(data_noise=0.0), "data_noise=0.0"),
    (dict(step_scale=-1.0), "step_scale=-1.0"),
    (dict(per_level_c=1), "per_level_c=1"),
])
def test_bad_scales_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cdrl_scales(COSINE, **kwargs)


def test_shared_pairs_have_the_right_marginals_and_one_noise():
    x0 = jnp.full((20_000, 1), 2.0)
    for level in (1, 3):
        x_t, x_next = diffuse_shared(jax.random.key(level), COSINE, x0, level)
        for x, k in ((x_t, level), (x_next, level + 1)):
            mean, std = 2.0 * COSINE.marginal_alphas[k], COSINE.marginal_sigmas[k]
            # 20,000 draws: the mean within 5 standard errors, the std within 3%
            assert abs(float(x.mean()) - mean) < 5 * std / math.sqrt(20_000)
            assert abs(float(x.std()) / std - 1) < 0.03
        eps_t = (x_t - 2.0 * COSINE.marginal_alphas[level]) / COSINE.marginal_sigmas[level]
        eps_next = ((x_next - 2.0 * COSINE.marginal_alphas[level + 1])
                    / COSINE.marginal_sigmas[level + 1])
        np.testing.assert_allclose(eps_t, eps_next, atol=1e-4)     # one draw for both


def test_tweedie_with_the_sampler_s_score_is_the_posterior_mean_and_twice_it_is_not():
    # Clean data N(m, τ²); noisy x = sqrt(1-d²) x_clean + d ε. A decoupled energy whose f is
    # the exact noisy log-density times s_0² is the exact level-0 energy; Tweedie with it is
    # E[x_clean | x] exactly. The reference code's step divides f by half of s_0²: twice the
    # score, which misses the posterior mean by d² |score|.
    m, tau, d = 1.5, 0.5, 0.3
    scales = cdrl_scales(COSINE, data_noise=d)
    a, s_sq = scales.input_scales[0], scales.energy_scales[0]
    var = (1 - d**2) * tau**2 + d**2
    mean = math.sqrt(1 - d**2) * m

    def f(p, y, t):                     # f(a x) = -s² (x - mean)² / (2 var)
        return -s_sq * jnp.sum((y / a - mean) ** 2) / (2 * var)

    energy = decoupled_energy(f, scales)
    x = jnp.array([[0.0], [1.0], [2.5]])
    exact = mean / math.sqrt(1 - d**2) + math.sqrt(1 - d**2) * tau**2 / var * (x - mean)
    ours = tweedie_denoise(energy, None, x, d)
    np.testing.assert_allclose(ours, exact, atol=1e-5)
    doubled = tweedie_denoise(lambda p, z, t: 2 * energy(p, z, t), None, x, d)
    assert float(jnp.max(jnp.abs(doubled - exact))) > 0.1


def _gaussian_model(scales):
    """f(y, t) = -s_t² ||y/a_t - μ_t||² / (2 v_t) with learned μ_t and log v_t: E is a
    Gaussian in x per level; g(x_next, t) = x_next / a_t + c_t x_next with learned c_t."""
    energy_scales = jnp.asarray(scales.energy_scales, jnp.float32)
    input_scales = jnp.asarray(scales.input_scales, jnp.float32)

    def f(p, y, t):
        x = y / input_scales[t]
        return -energy_scales[t] * jnp.sum((x - p["energy"]["mean"][t]) ** 2) / (
            2 * jnp.exp(p["energy"]["log_var"][t]))

    energy_fn = decoupled_energy(f, scales)
    initializer_fn = residual_initializer(lambda p, x, t: p["initializer"][t] * x, scales)
    return energy_fn, initializer_fn


@pytest.mark.slow
def test_each_term_trains_its_own_network_only():
    scales = cdrl_scales(COSINE, step_scale=2e-3, per_level_c=False)
    energy_fn, initializer_fn = _gaussian_model(scales)
    loss = cdrl(energy_fn, initializer_fn, COSINE, scales=scales, num_langevin_steps=3)
    params = cdrl_params({"mean": jnp.zeros((6, 2)), "log_var": jnp.zeros(6)}, jnp.full(6, 0.1))
    batch = {"x": jnp.ones((12, 2))}
    grads = jax.grad(lambda p: loss.loss(p, (), batch, jax.random.key(0))[0])(params)
    assert float(jnp.abs(grads["initializer"]).sum()) > 0
    assert float(jnp.abs(grads["energy"]["mean"]).sum()) > 0
    # the EBM's term alone: no gradient reaches the initializer through the chains' starts
    no_init = cdrl(energy_fn, initializer_fn, COSINE, scales=scales, num_langevin_steps=3,
                   initializer_weight=1e-30)
    grads = jax.grad(lambda p: no_init.loss(p, (), batch, jax.random.key(0))[0])(params)
    assert float(jnp.abs(grads["initializer"]).max()) < 1e-20


@pytest.mark.slow
@pytest.mark.optimised  # runtime: 1,500 steps of 15-step chains (10.2 s -> 4.1 s cold)
@pytest.mark.parametrize("metropolis", [False, True])
def test_a_gaussian_is_learned_level_by_level_and_the_initializer_follows(metropolis):
    # Data N(m, 0.5² I) in 2-D: the exact model is Gaussian at every level, so the learned
    # means must reach the diffused data means a_t m. 1,500 Adam steps (cosine decay), batch
    # 240 (40 a level).
    # The initializer's proposal x_next/a + c x_next must move from c = 0 towards the posterior
    # mean's slope (measured -0.12 to -1.08 at levels 1-4); a flipped EBM term sends the means
    # away and the check fails. Unadjusted (the reference's) and MALA refinement alike.
    m = jnp.array([1.5, -1.0])
    scales = cdrl_scales(COSINE, step_scale=2e-3, per_level_c=False)
    energy_fn, initializer_fn = _gaussian_model(scales)
    loss = cdrl(energy_fn, initializer_fn, COSINE, scales=scales, num_langevin_steps=15,
                metropolis=metropolis)
    params = cdrl_params({"mean": jnp.zeros((6, 2)), "log_var": jnp.zeros(6)}, jnp.zeros(6))
    tx = cdrl_optimizer(optax.adam(optax.cosine_decay_schedule(3e-2, 1500)),
                        optax.adam(optax.cosine_decay_schedule(1e-2, 1500)))

    @jax.jit
    def step(carry, key):
        p, s = carry
        k_data, k_loss = jax.random.split(key)
        x = m + 0.5 * jax.random.normal(k_data, (240, 2))
        grads = jax.grad(lambda q: loss.loss(q, (), {"x": x}, k_loss)[0])(p)
        updates, s = tx.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)),
                                  jax.random.split(jax.random.key(0), 1500))
    data_scale = math.sqrt(1 - scales.data_noise**2)
    target = data_scale * np.asarray(COSINE.marginal_alphas[:-1])[:, None] * np.asarray(m)
    # measured: every level within 0.035 of its target; a flipped EBM term is off by > 1
    np.testing.assert_allclose(params["energy"]["mean"], target, atol=0.06)
    assert np.all(np.asarray(params["initializer"][1:5]) < -0.05)   # shrinks x_next / a


def test_an_energy_that_is_not_decoupled_keeps_the_steps_and_weighs_e_directly():
    coupled = cdrl_scales(COSINE, step_scale=2e-3, per_level_c=False)
    plain = cdrl_scales(COSINE, step_scale=2e-3, per_level_c=False, decoupled=False)
    np.testing.assert_array_equal(plain.energy_scales, np.ones(6))
    np.testing.assert_allclose(plain.step_sizes, coupled.step_sizes)
    np.testing.assert_allclose(plain.loss_weights, COSINE.sigmas[0] / COSINE.sigmas)
    with pytest.raises(ValueError, match="decoupled"):
        cdrl_scales(COSINE, decoupled=1)


@pytest.mark.slow
def test_mala_refinement_reports_its_acceptance():
    scales = cdrl_scales(COSINE, step_scale=2e-3, per_level_c=False)
    energy_fn, initializer_fn = _gaussian_model(scales)
    params = cdrl_params({"mean": jnp.zeros((6, 2)), "log_var": jnp.zeros(6)}, jnp.zeros(6))
    batch = {"x": jnp.ones((12, 2))}
    for metropolis in (False, True):
        loss = cdrl(energy_fn, initializer_fn, COSINE, scales=scales, num_langevin_steps=3,
                    metropolis=metropolis)
        info = loss.loss(params, (), batch, jax.random.key(0))[1][1]
        assert ("acceptance_rate" in info) == metropolis
    assert 0.0 < float(info["acceptance_rate"]) <= 1.0
    with pytest.raises(ValueError, match="metropolis"):
        cdrl(energy_fn, initializer_fn, COSINE, scales=scales, metropolis="yes")


def _acceptance_under_adaptation(adapt_rate, calls=150):
    """Per-level acceptance and step multipliers over ``calls`` loss calls with fixed params
    (the state threaded through), level 0's energy 1,000x sharper than its conditional's
    Gaussian term, so that its configured MALA step is far too large."""
    scales = cdrl_scales(COSINE, step_scale=2e-3, per_level_c=False)
    energy_fn, initializer_fn = _gaussian_model(scales)
    # level 0's energy variance: 1e-3 of the diffusion's posterior variance (σ_0 / a_0)²
    sharp = math.log(1e-3 * (COSINE.sigmas[0] / COSINE.alphas[0]) ** 2)
    params = cdrl_params({"mean": jnp.zeros((6, 2)),
                          "log_var": jnp.zeros(6).at[0].set(sharp)}, jnp.zeros(6))
    loss = cdrl(energy_fn, initializer_fn, COSINE, scales=scales, num_langevin_steps=5,
                metropolis=True, adapt_rate=adapt_rate, per_level_info=True)
    batch = {"x": jnp.zeros((96, 2))}

    def call(state, key):
        state, info = loss.loss(params, state, batch, key)[1]
        return state, jnp.stack([info[f"acceptance/level_{t}"] for t in range(6)])

    state, acceptance = jax.jit(lambda s: jax.lax.scan(
        call, s, jax.random.split(jax.random.key(0), calls)))(loss.init(None, params, batch))
    return np.asarray(acceptance), state


@pytest.mark.slow
def test_step_adaptation_brings_a_too_large_step_to_the_target_acceptance():
    """Robbins-Monro on each level's log step: level 0's acceptance (0 with its configured step,
    measured over 20 calls) settles at the target, 0.9 (the mean of the last 50 calls within
    0.05; measured 0.90); the levels already above the target keep their steps (multipliers
    within 5% of 1). A flipped update, or a multiplier that does not reach the chains, leaves
    level 0 near 0."""
    fixed, state = _acceptance_under_adaptation(0.0, calls=20)
    assert state == () and fixed[:, 0].mean() < 0.3
    adapted, state = _acceptance_under_adaptation(0.2)
    assert isinstance(state, CDRLState)
    multipliers = np.exp(np.asarray(state.log_step_multipliers))
    assert abs(adapted[-50:, 0].mean() - 0.9) < 0.05 and multipliers[0] < 0.1
    assert np.all(adapted[-50:, 1:].mean(0) > 0.9)
    assert np.all(multipliers[1:] > 0.95)     # a noisy call below 0.9 nudges, then grows back


def test_step_adaptation_is_checked_before_compute():
    scales = cdrl_scales(COSINE)
    energy_fn, initializer_fn = _gaussian_model(scales)
    for kwargs, message in [(dict(adapt_rate=-0.1, metropolis=True), "adapt_rate=-0.1"),
                            (dict(adapt_rate=0.1), "adapt_rate=0.1 with metropolis=False"),
                            (dict(target_acceptance=1.0), "target_acceptance=1.0")]:
        with pytest.raises(ValueError, match=message):
            cdrl(energy_fn, initializer_fn, COSINE, scales=scales, **kwargs)


@pytest.mark.slow
def test_importance_resampled_starts_reach_the_chains_and_bad_counts_are_refused():
    # The initializer proposes 50x its input, far from the energy's unit wells around 0: chains
    # started there (and moved by one small step) keep a huge sample energy; picks among
    # candidates half of which come from each level's Gaussian land in the wells.
    scales = cdrl_scales(COSINE, step_scale=2e-3, per_level_c=False)
    energy_fn, initializer_fn = _gaussian_model(scales)
    params = cdrl_params({"mean": jnp.zeros((6, 2)), "log_var": jnp.zeros(6)}, jnp.full(6, 50.0))
    batch = {"x": 0.5 * jax.random.normal(jax.random.key(1), (60, 2))}

    def sample_energy(num_candidates):
        loss = cdrl(energy_fn, initializer_fn, COSINE, scales=scales, num_langevin_steps=1,
                    num_candidates=num_candidates)
        return float(loss.loss(params, (), batch, jax.random.key(0))[1][1]["energy_sample"])

    far, picked = sample_energy(0), sample_energy(32)
    assert picked < 0.01 * far, (picked, far)
    with pytest.raises(ValueError, match="num_candidates=3"):
        cdrl(energy_fn, initializer_fn, COSINE, scales=scales, num_candidates=3)


def test_progressive_sampling_from_the_initializer_alone_returns_its_proposals():
    scales = cdrl_scales(COSINE, step_scale=2e-3, per_level_c=False)
    energy_fn, initializer_fn = _gaussian_model(scales)
    params = cdrl_params({"mean": jnp.zeros((6, 2)), "log_var": jnp.zeros(6)}, jnp.zeros(6))
    start = initializer_start(initializer_fn, np.zeros(6))          # no noise: deterministic
    samples, trajectory, proposals = progressive_sample(
        jax.random.key(0), energy_fn, params, COSINE, (2,), 8, num_langevin_steps=0,
        chain_start=start, step_sizes=scales.step_sizes, marginal_top=True, metropolis=False,
        chain_init="rescaled", return_trajectory=True, return_proposals=True)
    np.testing.assert_allclose(trajectory[:-1], proposals)
    expected = trajectory[-1]
    for t in range(5, -1, -1):
        expected = expected / scales.input_scales[t]
    np.testing.assert_allclose(samples, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="return_proposals=True without a chain_start"):
        progressive_sample(jax.random.key(0), energy_fn, params, COSINE, (2,), 8,
                           return_proposals=True)


def test_the_initializer_start_draws_from_a_recovery_condition():
    start = initializer_start(lambda p, x, t: p * x, [0.0, 0.0])
    with pytest.raises(TypeError, match="RecoveryCondition"):
        start.draw(jax.random.key(0), (), 1.0, jnp.ones((2, 2)), None)
    x0, _, _ = start.draw(jax.random.key(0), (), 3.0, RecoveryCondition(jnp.ones((2, 2)), 1),
                          None)
    np.testing.assert_allclose(x0, 3.0)
    with pytest.raises(ValueError, match="proposal_stds"):
        initializer_start(lambda p, x, t: x, [-1.0])


@pytest.mark.parametrize("kwargs, batch, message", [
    ({}, {"x": jnp.ones((7, 2))}, "7 examples: split_batch=True needs a multiple"),
    ({}, {"y": jnp.ones(6)}, r"cdrl needs batch\['x'\]"),
    (dict(null_label=10), {"x": jnp.ones((6, 2))}, r"cdrl needs batch\['y'\]"),
])
def test_bad_batches_are_refused_before_compute(kwargs, batch, message):
    scales = cdrl_scales(COSINE)
    energy_fn, initializer_fn = _gaussian_model(scales)
    loss = cdrl(energy_fn, initializer_fn, COSINE, scales=scales, **kwargs)
    with pytest.raises((ValueError, KeyError), match=message):
        loss.init(None, None, batch)


def test_scales_of_another_schedule_are_refused():
    scales = cdrl_scales(noise_schedule("cosine", num_levels=4))
    with pytest.raises(ValueError, match="scales have 4 levels: expected 6"):
        cdrl(lambda p, x, t: 0.0, lambda p, x, t: x, COSINE, scales=scales)
