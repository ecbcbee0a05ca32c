"""A chain start whose noise law was left to its default starts and restarts chains in the
sampler's box (its clip range), not in U(-1, 1) whatever the data's range."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.energies import energy_from_logits
from ebm_jax.losses import contrastive_divergence, jem_hybrid
from ebm_jax.samplers import (descent, langevin, mala, noise_start, replay_buffer_start,
                              uniform_init)

ENERGY = staticmethod(lambda params, x: 0.5 * jnp.sum(x ** 2))
BATCH = {"x": jnp.zeros((16, 3)), "y": jnp.arange(16) % 2}


def _buffer_range(loss, params=None):
    state = loss.init(jax.random.key(0), params, BATCH)
    samples = np.asarray(state.buffer.samples if hasattr(state, "buffer")
                         else state["generative"].buffer.samples)
    return samples.min(), samples.max()


def test_samplers_carry_their_clip_range_as_support():
    energy = ENERGY.__func__
    assert langevin(energy, 1.0, 0.01, clip_range=(-5, 5)).support == (-5.0, 5.0)
    assert mala(energy, 0.1, clip_range=(0, 255)).support == (0.0, 255.0)
    assert descent(energy, 0.1, clip_range=(-2, 2)).support == (-2.0, 2.0)
    assert langevin(energy, 1.0, 0.01).support is None


@pytest.mark.parametrize("chain_start, clip, expected", [
    (None, (-5.0, 5.0), (-5.0, 5.0)),                           # the default buffer
    (replay_buffer_start(capacity=400), (-5.0, 5.0), (-5.0, 5.0)),
    (replay_buffer_start(capacity=400), None, (-1.0, 1.0)),      # no box: U(-1, 1)
    (replay_buffer_start(capacity=400, init_fn=uniform_init(-2.0, 2.0)), (-5.0, 5.0),
     (-2.0, 2.0)),                                              # given: kept
])
def test_cd_buffer_fills_from_the_sampler_box_unless_told(chain_start, clip, expected):
    sampler = langevin(ENERGY.__func__, 1.0, 0.01, clip_range=clip)
    low, high = _buffer_range(contrastive_divergence(ENERGY.__func__, sampler,
                                                     chain_start=chain_start, num_steps=1))
    # 400 x 3 (or 10,000 x 3) uniform draws: min and max within 2% of the width of the ends
    width = expected[1] - expected[0]
    assert expected[0] <= low < expected[0] + 0.02 * width
    assert expected[1] - 0.02 * width < high <= expected[1]


@pytest.mark.slow
def test_jem_passes_the_box_to_its_buffer_and_restarts_there():
    logits_fn = lambda w, x: x @ w  # noqa: E731
    sampler = langevin(energy_from_logits(logits_fn), 1.0, 0.01, clip_range=(-4.0, 4.0))
    loss = jem_hybrid(logits_fn, sampler, num_steps=1,
                      chain_start=replay_buffer_start(capacity=400, reinit_prob=1.0))
    params = jnp.zeros((3, 2))
    low, high = _buffer_range(loss, params)
    assert low < -3.8 and high > 3.8
    # every chain restarts (reinit_prob=1) and one zero-gradient step of noise 0.01 moves it
    # little: the chains of a step start in U(-4, 4) too
    state = loss.init(jax.random.key(0), params, BATCH)
    _, (state, _) = loss.loss(params, state, BATCH, jax.random.key(1))
    x = np.asarray(state["generative"].buffer.samples)
    assert x.min() < -3.5 and x.max() > 3.5


def test_noise_start_adopts_the_box_too():
    sampler = langevin(ENERGY.__func__, 1e-3, 0.0, clip_range=(10.0, 20.0))
    loss = contrastive_divergence(ENERGY.__func__, sampler, chain_start=noise_start(),
                                  num_steps=1)
    state = loss.init(jax.random.key(0), None, BATCH)
    _, (_, info) = loss.loss(None, state, BATCH, jax.random.key(1))
    # E = |x|^2 / 2 for x in U(10, 20)^3 (one tiny step): mean 350, always in [150, 600];
    # from U(-1, 1) it would be below 1.5
    assert 250.0 < float(info["energy_sample"]) < 450.0
