"""Tests of the chain runner's recorded draws (``ebm_jax.samplers.base``: ``sample_chain``,
``sample_chains``, ``Draws``).

The draws are checked exactly against :func:`run_chain` (same keys, same states), and
statistically through the diagnostics on a Gaussian target with known moments.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.samplers import (Draws, init_chains, langevin, mala, run_chain, run_chains,
                              sample_chain, sample_chains)
from ebm_jax.samplers.diagnostics import chain_summary, effective_sample_size

SCALES = jnp.array([1.0, 2.0])  # N(0, diag(SCALES**2))


def gaussian_energy(params, x):
    return 0.5 * jnp.sum((x / SCALES) ** 2)


@pytest.mark.slow
def test_the_draws_are_the_states_run_chain_reaches_every_thin_steps():
    """With thin = 3: draw i is the position run_chain reaches after 3 (i + 1) steps from the
    same key, and the final state is run_chain's after all 12 steps (to float rounding: the
    same steps in another compiled program). A skipped or repeated key, or a draw recorded
    before its last step, moves them by far more."""
    sampler = mala(gaussian_energy, step_size=0.5)
    state = sampler.init(jnp.array([3.0, -3.0]), None)
    key = jax.random.key(0)
    final, draws = jax.jit(lambda k, s: sample_chain(k, sampler, s, None, 4, thin=3))(key, state)
    assert isinstance(draws, Draws) and draws.positions.shape == (4, 2)
    assert draws.info.is_accepted.shape == (4,)
    whole, _ = run_chain(key, sampler, state, None, 12)
    np.testing.assert_allclose(final.position, whole.position, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(draws.positions[-1], final.position)
    # The keys of a 12-step run_chain, replayed one step at a time.
    keys = jax.random.split(key, 12)
    s, positions = state, []
    for i, k in enumerate(keys):
        s, _ = sampler.step(k, s, None)
        if (i + 1) % 3 == 0:
            positions.append(s.position)
    np.testing.assert_allclose(draws.positions, jnp.stack(positions), rtol=1e-6, atol=1e-6)


def test_sample_chains_splits_keys_as_run_chains_and_lays_out_chains_then_draws():
    sampler = langevin(gaussian_energy, step_size=0.1)
    states = init_chains(sampler, jnp.zeros((3, 2)), None)
    final, draws = sample_chains(jax.random.key(1), sampler, states, None, 5, thin=2)
    assert draws.positions.shape == (3, 5, 2)
    ran, _ = run_chains(jax.random.key(1), sampler, states, None, 10)
    np.testing.assert_allclose(final.position, ran.position, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_mala_draws_give_the_targets_moments_within_their_standard_errors():
    """8 MALA chains x 2,000 draws (thin 2, after 200 warm-up steps) of N(0, diag(1, 4)): every
    mean within 4 Monte Carlo standard errors of 0 (4 sd: a 6e-5 two-sided chance per
    coordinate for a right sampler) and every variance within 10% (its relative standard
    error here is about 2-3%); a draws layout with chains and draws swapped, or draws taken
    from the starts, misses. Thinning by 4 gives more ESS per draw than thinning by 1."""
    sampler = mala(gaussian_energy, step_size=1.2)
    starts = jax.random.normal(jax.random.key(2), (8, 2)) * 3.0
    states = init_chains(sampler, starts, None)
    states, _ = jax.jit(lambda k, s: run_chains(k, sampler, s, None, 200))(
        jax.random.key(3), states)
    run = jax.jit(lambda k, s, thin: sample_chains(k, sampler, s, None, 2000, thin=thin),
                  static_argnums=2)
    _, draws = run(jax.random.key(4), states, 2)
    summary = chain_summary(draws.positions)
    assert np.all(np.abs(np.asarray(summary.mean)) < 4 * np.asarray(summary.mcse)), summary
    np.testing.assert_allclose(np.asarray(summary.sd) ** 2, np.asarray(SCALES) ** 2, rtol=0.1)
    assert np.all(np.asarray(summary.rhat) < 1.01)
    _, thin1 = run(jax.random.key(5), states, 1)
    _, thin4 = run(jax.random.key(5), states, 4)
    assert np.all(np.asarray(effective_sample_size(thin4.positions))
                  > np.asarray(effective_sample_size(thin1.positions)))


@pytest.mark.parametrize("field, value, message", [
    ("num_draws", 0, "num_draws=0: expected a positive Python int"),
    ("thin", 0, "thin=0: expected a positive Python int"),
    ("thin", 2.0, "thin=2.0: expected a positive Python int"),
])
def test_bad_counts_are_one_clear_error(field, value, message):
    sampler = langevin(gaussian_energy, step_size=0.1)
    kwargs = {"num_draws": 3, "thin": 1, field: value}
    with pytest.raises((ValueError, TypeError), match=message):
        sample_chain(jax.random.key(0), sampler, sampler.init(jnp.zeros(2)), None,
                     kwargs["num_draws"], thin=kwargs["thin"])


def test_a_state_without_a_position_is_refused():
    sampler = langevin(gaussian_energy, step_size=0.1)
    with pytest.raises(ValueError, match="has no 'position' field"):
        sample_chain(jax.random.key(0), sampler, (jnp.zeros(2),), None, 3)
