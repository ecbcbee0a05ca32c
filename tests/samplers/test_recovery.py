"""Importance-resampled chain starts from a defensive mixture (a learned proposal and the
level's own Gaussian) against the conditional's known mode weights."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.samplers import (RecoveryCondition, mixture_importance_chain_start,
                              mixture_importance_start, noise_schedule)

T6 = noise_schedule("t6")
MODES, WEIGHTS, WIDTH = np.array([-0.3, 0.3]), np.array([0.2, 0.8]), 0.05


def two_wells(params, x, level):
    """E(x) = -log(0.2 N(x; -0.3, 0.05²) + 0.8 N(x; 0.3, 0.05²)) in 1-D."""
    del params, level
    comps = jnp.log(jnp.asarray(WEIGHTS)) - 0.5 * jnp.square((x[0] - jnp.asarray(MODES)) / WIDTH)
    return -jax.nn.logsumexp(comps)


def share_of_the_right_mode(x_tilde: float) -> float:
    """The conditional's mass at x > 0: the two wells times the level-0 Gaussian term
    ``exp(-a² (x - x̃)² / 2σ²)``, by quadrature."""
    grid = np.linspace(-1.5, 1.5, 30001)
    wells = (WEIGHTS * np.exp(-0.5 * ((grid[:, None] - MODES) / WIDTH) ** 2)).sum(1)
    density = wells * np.exp(-0.5 * (T6.alphas[0] / T6.sigmas[0]) ** 2 * (grid - x_tilde) ** 2)
    return float(density[grid > 0].sum() / density.sum())


@pytest.mark.slow
def test_the_picks_follow_the_conditional_even_where_the_learned_proposal_sits_in_one_mode():
    # The learned proposal is a point guess in the light mode (std 0.01 at -0.3); the pick must
    # still give the heavy mode its conditional share, 0.869 with x̃ = 0.1 (0.8 without the
    # Gaussian term, about 0.3 with the proposal's density left out of the weights: both fail).
    # 4,000 chains: standard error 0.0053; SIR's own bias with 256 candidates measured at
    # -0.002 to -0.008 over three seeds (64 candidates: -0.014), hence the 0.02 tolerance.
    chains, x_tilde = 4000, 0.1
    x_next = jnp.full((chains, 1), x_tilde * T6.alphas[0], jnp.float32)
    starts = mixture_importance_start(jax.random.key(0), two_wells, None, T6, 0, x_next,
                                      jnp.full((chains, 1), -0.3), 0.01, 256)
    assert starts.shape == (chains, 1)
    share = float(jnp.mean(starts[:, 0] > 0))
    assert abs(share - share_of_the_right_mode(x_tilde)) < 0.02, share


@pytest.mark.slow
def test_a_marginal_top_level_drops_the_gaussian_term_and_draws_wide_candidates_around_zero():
    # At the top level of a marginal EBM the conditional is exp(-E) alone: the wells' own
    # 0.2 / 0.8, whatever x_next says (with the Gaussian term kept, x̃ = 3,000 here would give
    # the right well a share of 0.91, and the wide candidates would sit around a_T² x̃ = 1.6).
    chains, top = 4000, T6.num_levels - 1
    x_next = jnp.full((chains, 1), 3000.0 * T6.alphas[top], jnp.float32)
    starts = mixture_importance_start(jax.random.key(1), two_wells, None, T6, top, x_next,
                                      jnp.full((chains, 1), -0.3), 0.01, 256, marginal_top=True)
    share = float(jnp.mean(starts[:, 0] > 0))
    assert abs(share - 0.8) < 0.02, share


@pytest.mark.parametrize("num_candidates", [0, 3])
def test_an_odd_or_empty_candidate_count_is_refused(num_candidates):
    with pytest.raises(ValueError, match=f"num_candidates={num_candidates}"):
        mixture_importance_start(jax.random.key(0), two_wells, None, T6, 0, jnp.zeros((2, 1)),
                                 jnp.zeros((2, 1)), 0.1, num_candidates)


def test_the_chain_start_picks_as_the_function_does_around_the_initializer_s_mean():
    # the start reads the proposal's mean from the initializer and its std from the level
    def initializer(params, x_next, level):
        return params * x_next

    start = mixture_importance_chain_start(two_wells, initializer, T6, [0.01] * 6, 8)
    x_next = jnp.linspace(-0.5, 0.5, 16)[:, None]
    starts, labels, _ = start.draw(jax.random.key(3), start.init(None, ()), 0.5,
                                   RecoveryCondition(x_next, 2))
    direct = mixture_importance_start(jax.random.key(3), two_wells, 0.5, T6, 2, x_next,
                                      0.5 * x_next, 0.01, 8)
    np.testing.assert_array_equal(starts, direct)
    assert labels is None
    with pytest.raises(ValueError, match="proposal_stds"):
        mixture_importance_chain_start(two_wells, initializer, T6, [0.01] * 5, 8)
    with pytest.raises(ValueError, match="num_candidates=3"):
        mixture_importance_chain_start(two_wells, initializer, T6, [0.01] * 6, 3)
