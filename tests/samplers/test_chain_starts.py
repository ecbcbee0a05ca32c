"""Tests of the chain-start protocol (``ebm_jax.samplers.chain_starts``) and of contrastive
divergence with each start.

Known answers: the fraction of restarted chains is Binomial(B, reinit_prob); data restarts
are rows of the batch; per-class slots hand out and take back slots of the asked class; on a
quadratic with noise-free chains the CD samples are known in closed form for every start.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.losses import CDState, contrastive_divergence, jem_hybrid
from ebm_jax.samplers import (ChainStart, ReplayBuffer, data_start, langevin, noise_start,
                              replay_buffer_start, uniform_init)

# Mostly compilation, brief runs: compile with fewer XLA optimisations (conftest).
pytestmark = pytest.mark.fast_compile

Z = 5.0


def constant_init(value):
    return lambda rng_key, shape: jnp.full(shape, value, jnp.float32)


def _filled(start, value, shape=(3,)):
    """The start's buffer with every stored sample set to ``value`` (init_fn draws the
    restarts, so a stored row and a restarted one can be told apart)."""
    buffer = start.init(jax.random.key(0), shape)
    return buffer._replace(samples=jnp.full_like(buffer.samples, value))


@jax.jit
def _restart_draw(reinit_prob, rng_key, x):
    """A start's draw from a buffer of 7s, reinit_prob traced: one program for every p."""
    start = replay_buffer_start(capacity=500, reinit_prob=reinit_prob)
    return start.draw(rng_key, _filled(start, 7.0), None, x, None)


@pytest.mark.parametrize("reinit_prob", [0.0, 0.05, 0.5, 1.0])
def test_replay_buffer_restart_fraction_is_reinit_prob(reinit_prob):
    """Stored rows are 7; restarts are U(-1, 1). The number of restarts among B = 20,000
    chains is Binomial(B, p): within 5 SD (exact at p = 0 and 1). A start that ignored
    reinit_prob (always or never restarting) is off by > 40 SD at p = 0.05."""
    n = 20_000
    x0, labels, slots = _restart_draw(jnp.float32(reinit_prob), jax.random.key(1),
                                      jnp.zeros((n, 3)))
    restarted = np.asarray(jnp.all(x0 != 7.0, axis=1))
    assert np.all(np.asarray(jnp.all(x0 == 7.0, axis=1)) | restarted)
    assert abs(restarted.sum() - n * reinit_prob) <= Z * np.sqrt(n * reinit_prob * (1 - reinit_prob))
    assert np.abs(np.asarray(x0)[restarted]).max(initial=0.0) <= 1.0
    assert slots.shape == (n,) and int(slots.min()) >= 0 and int(slots.max()) < 500


def test_replay_buffer_data_restarts_use_the_batch_rows():
    """restart_from_data with reinit_prob 1: every chain starts at a row of the batch, and
    the rows are a permutation (each used once)."""
    start = replay_buffer_start(capacity=64, reinit_prob=1.0, restart_from_data=True)
    buffer = _filled(start, 7.0, (2,))
    x = jnp.arange(32.0).reshape(16, 2)
    x0, _, _ = jax.jit(start.draw)(jax.random.key(2), buffer, None, x, None)
    assert not np.array_equal(np.asarray(x0), np.asarray(x))  # shuffled
    assert sorted(map(tuple, np.asarray(x0).tolist())) == sorted(map(tuple, np.asarray(x).tolist()))


def test_replay_buffer_per_class_slots():
    """With num_classes, a chain of class k draws from and returns to class k's slots
    (slots [10k, 10k + 10) of a 30-slot buffer), and carries label k."""
    start = replay_buffer_start(capacity=30, reinit_prob=0.0, num_classes=3,
                                init_fn=constant_init(0.0))
    buffer = jax.jit(start.init, static_argnums=1)(jax.random.key(0), (2,))
    np.testing.assert_array_equal(buffer.labels, np.repeat(np.arange(3), 10))
    labels = jnp.array([0, 1, 2, 2, 1, 0, 2, 2], jnp.int32)
    x0, out_labels, slots = jax.jit(start.draw)(jax.random.key(3), buffer, None,
                                                jnp.zeros((8, 2)), labels)
    np.testing.assert_array_equal(out_labels, labels)
    np.testing.assert_array_equal(np.asarray(slots) // 10, labels)
    samples = jnp.arange(16.0).reshape(8, 2) + 1.0
    new = jax.jit(start.update)(buffer, samples, slots)
    slots, written = np.asarray(slots), np.asarray(new.samples)
    for i, slot in enumerate(slots):   # slots are drawn with replacement: one of them is kept
        assert any(np.array_equal(written[slot], np.asarray(samples)[j])
                   for j in np.flatnonzero(slots == slot))
    np.testing.assert_array_equal(new.labels, buffer.labels)
    with pytest.raises(ValueError, match="labels were not given to a replay buffer with "
                                         "num_classes=3"):
        start.draw(jax.random.key(3), buffer, None, jnp.zeros((8, 2)), None)
    plain = replay_buffer_start(capacity=30)
    with pytest.raises(ValueError, match="labels were given to a replay buffer with "
                                         "num_classes=None"):
        plain.draw(jax.random.key(3), plain.init(jax.random.key(0), (2,)), None,
                   jnp.zeros((8, 2)), labels)


def test_replay_buffer_update_writes_back_to_the_drawn_slots():
    start = replay_buffer_start(capacity=40, reinit_prob=0.0, num_shards=4)
    buffer = jax.jit(start.init, static_argnums=1)(jax.random.key(0), (1,))
    _, _, slots = jax.jit(start.draw)(jax.random.key(1), buffer, None, jnp.zeros((8, 1)), None)
    # Chain slice b (2 chains) draws from block b (10 slots).
    np.testing.assert_array_equal(np.asarray(slots) // 10, np.repeat(np.arange(4), 2))
    new = jax.jit(start.update)(buffer, jnp.full((8, 1), 9.0), slots)
    assert set(np.flatnonzero(np.asarray(new.samples)[:, 0] == 9.0)) == set(np.asarray(slots))


def test_data_and_noise_starts():
    x = jnp.arange(12.0).reshape(6, 2)
    labels = jnp.arange(6) % 2
    start = data_start()
    state = start.init(jax.random.key(0), (2,))
    x0, out, handle = start.draw(jax.random.key(1), state, None, x, labels)
    np.testing.assert_array_equal(x0, x)
    np.testing.assert_array_equal(out, labels)
    assert start.update(state, x0, handle) == ()
    shuffled, _, _ = data_start(shuffle=True).draw(jax.random.key(1), (), None, x, None)
    assert sorted(np.asarray(shuffled)[:, 0].tolist()) == np.asarray(x)[:, 0].tolist()

    noise = noise_start(uniform_init(2.0, 3.0))
    x0, _, _ = noise.draw(jax.random.key(1), noise.init(None, (2,)), None,
                          jnp.zeros((20_000, 2)), None)
    x0 = np.asarray(x0)
    assert x0.shape == (20_000, 2) and x0.min() >= 2.0 and x0.max() <= 3.0
    # U(2, 3): mean 2.5, SD 1/sqrt(12).
    assert abs(x0.mean() - 2.5) < Z / np.sqrt(12 * x0.size)


@pytest.mark.parametrize("make, message", [
    (lambda: replay_buffer_start(capacity=0), "capacity=0: expected a positive int"),
    (lambda: replay_buffer_start(reinit_prob=1.5), r"reinit_prob=1.5: expected a probability"),
    (lambda: replay_buffer_start(reinit_prob="a"), r"reinit_prob='a'"),
    (lambda: replay_buffer_start(capacity=10, num_classes=3), "capacity=10 with num_shards=1 "
                                                              "and num_classes=3"),
    (lambda: replay_buffer_start(num_shards=0), "num_shards=0"),
    (lambda: replay_buffer_start(init_fn=3), "init_fn=3"),
    (lambda: replay_buffer_start(restart_from_data="yes"), "restart_from_data='yes'"),
    (lambda: data_start(shuffle=1), "shuffle=1"),
])
def test_bad_arguments_raise_naming_the_field(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# -- contrastive divergence with each start -----------------------------------------------

H, K = 0.1, 5
SHRINK = (1 - H) ** K


def quadratic(params, x):
    return 0.5 * jnp.sum((x - params["mu"]) ** 2)


def _cd(chain_start, **options):
    sampler = langevin(quadratic, step_size=H, noise_scale=0.0)
    return contrastive_divergence(quadratic, sampler, num_steps=K, chain_start=chain_start,
                                  **options)


PARAMS = {"mu": jnp.array([0.5, -1.0])}
BATCH = {"x": jnp.array([[1.0, 2.0], [0.0, -3.0], [2.5, 0.5], [-1.0, 1.0]])}


def _sample_energy(x0):
    """Mean energy of noise-free chains from x0: x_K - mu = SHRINK (x0 - mu)."""
    return float(np.mean(0.5 * np.sum((SHRINK * (np.asarray(x0) - PARAMS["mu"])) ** 2, 1)))


def test_cd_k_from_data_samples_in_closed_form():
    """data_start: chains start at the batch, so E(x_s) = SHRINK² E(x)."""
    cd = _cd(data_start())
    state = cd.init(jax.random.key(0), PARAMS, BATCH)
    assert state == CDState(())
    _, (new_state, info) = cd.loss(PARAMS, state, BATCH, jax.random.key(1))
    assert new_state == CDState(())
    np.testing.assert_allclose(info["energy_sample"], _sample_energy(BATCH["x"]), rtol=1e-5)


def test_cd_from_noise_samples_in_closed_form():
    cd = _cd(noise_start(constant_init(0.3)))
    state = cd.init(jax.random.key(0), PARAMS, BATCH)
    _, (_, info) = cd.loss(PARAMS, state, BATCH, jax.random.key(1))
    np.testing.assert_allclose(info["energy_sample"], _sample_energy(jnp.full((4, 2), 0.3)),
                               rtol=1e-5)


def test_cd_default_chain_start_is_jems_replay_buffer():
    """No chain_start: a replay buffer of 10,000 with 5% U(-1, 1) restarts; the state keeps
    today's leaf paths (buffer.samples, buffer.labels, buffer.pointer) so checkpoints
    restore. The same loss as an explicit replay_buffer_start(10_000, 0.05)."""
    sampler = langevin(quadratic, step_size=H, noise_scale=0.01)
    default = contrastive_divergence(quadratic, sampler, num_steps=K)
    explicit = contrastive_divergence(quadratic, sampler, num_steps=K,
                                      chain_start=replay_buffer_start(10_000, 0.05))
    state = default.init(jax.random.key(0), PARAMS, BATCH)
    assert isinstance(state.buffer, ReplayBuffer) and state.buffer.samples.shape == (10_000, 2)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    assert paths == [".buffer.samples", ".buffer.labels", ".buffer.pointer"]
    a = default.loss(PARAMS, state, BATCH, jax.random.key(1))
    b = explicit.loss(PARAMS, explicit.init(jax.random.key(0), PARAMS, BATCH), BATCH,
                      jax.random.key(1))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_conditional_cd_default_has_per_class_slots():
    def energy(params, x, y):
        return 0.5 * jnp.sum((x - params["mu"][y]) ** 2)

    cd = contrastive_divergence(energy, langevin(energy, H, 0.0), num_steps=2, num_classes=4)
    state = cd.init(jax.random.key(0), {"mu": jnp.zeros((4, 2))},
                    {"x": jnp.zeros((8, 2)), "y": jnp.zeros(8, jnp.int32)})
    np.testing.assert_array_equal(state.buffer.labels, np.repeat(np.arange(4), 2500))


def test_entropy_needs_a_replay_buffer_and_jem_takes_a_chain_start():
    cd = _cd(data_start(), entropy_weight=0.1)
    with pytest.raises(ValueError, match="entropy_weight=0.1 with a chain start whose state is "
                                         "a tuple: expected a replay-buffer chain start"):
        cd.init(jax.random.key(0), PARAMS, BATCH)

    def logits(params, x):
        return x @ params

    w = jnp.ones((2, 3))
    from ebm_jax.energies import energy_from_logits
    jem = jem_hybrid(logits, langevin(energy_from_logits(logits), 0.1, 0.0), num_steps=2,
                     chain_start=data_start())
    batch = {"x": BATCH["x"], "y": jnp.array([0, 1, 2, 0])}
    state = jem.init(jax.random.key(0), w, batch)
    assert state["generative"] == CDState(())
    value, _ = jem.loss(w, state, batch, jax.random.key(1))
    assert np.isfinite(float(value))


def test_a_custom_start_plugs_in_and_sees_the_params():
    """The protocol takes any (init, draw, update): a 'generator' start whose chains start at
    params['shift'] + noise (a stand-in for a learned generator reading its params)."""
    seen = []

    def draw(rng_key, state, params, x, labels):
        seen.append(True)
        return jnp.broadcast_to(params["mu"], x.shape), labels, None

    start = ChainStart(lambda key, shape: (), draw, lambda state, samples, handle: state)
    cd = _cd(start)
    _, (_, info) = cd.loss(PARAMS, cd.init(jax.random.key(0), PARAMS, BATCH), BATCH,
                           jax.random.key(1))
    assert seen
    # Chains start at the minimum mu and stay there: sample energy 0.
    np.testing.assert_allclose(info["energy_sample"], 0.0, atol=1e-10)


def test_pool_start_draws_rows_of_the_pool_uniformly_and_checks_its_shape():
    from ebm_jax.samplers import pool_start
    pool = jnp.arange(4.0)[:, None] * jnp.ones((4, 3))       # row i is all i
    start = pool_start(pool)
    state = start.init(jax.random.key(0), (3,))
    x0, labels, _ = start.draw(jax.random.key(1), state, None, jnp.zeros((4000, 3)),
                               jnp.ones(4000, jnp.int32))
    rows = np.asarray(x0[:, 0]).astype(int)
    assert np.all(x0 == x0[:, :1]) and labels.shape == (4000,)
    # each of the 4 rows about 1,000 times: binomial sd ~27, 5 sd = 137
    assert np.all(np.abs(np.bincount(rows, minlength=4) - 1000) < 137)
    with pytest.raises(ValueError, match=r"pool has examples of shape \(3,\): expected \(2,\)"):
        start.init(jax.random.key(0), (2,))
    with pytest.raises(ValueError, match=r"pool has shape \(0, 3\)"):
        pool_start(jnp.zeros((0, 3)))
