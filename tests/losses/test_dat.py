"""DAT's energy term: PGD-contrastive samples climb the batch's class logit by normalised
steps, the BCE separates real from contrastive energies with the samples detached, the AUC
curriculum grows T exactly when the window's AUROC reaches the target, and the whole loss
splits the batch between the energy and the adversarial terms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.losses import cross_entropy
from ebm_jax.losses.dat import (AUROC, CURRICULUM_STEPS, DATState, dat, dat_energy,
                                pairwise_auroc, pgd_contrastive_samples)
from ebm_jax.samplers import pool_start


def linear(w, x):
    return w @ x


W = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])      # 2 classes over 3 features
POOL = jax.random.uniform(jax.random.key(0), (40, 3), minval=-0.5, maxval=0.5)


def test_contrastive_samples_climb_the_labels_logit_by_normalised_steps():
    x0 = jnp.zeros((2, 3))
    w = jnp.array([[3.0, 4.0, 0.0], [0.0, 1.0, 0.0]])   # |∇f_0| = 5: steps along (0.6, 0.8)
    out = pgd_contrastive_samples(linear, w, x0, jnp.array([0, 1]), 3, step_size=0.1)
    np.testing.assert_allclose(out, [[0.18, 0.24, 0.0], [0.0, 0.3, 0.0]], atol=1e-6)
    clamped = pgd_contrastive_samples(linear, W, x0, jnp.array([0, 1]), 30, step_size=0.1,
                                      clip_range=(-1.0, 1.0))
    np.testing.assert_allclose(clamped[:, :2], [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)
    unchanged = pgd_contrastive_samples(linear, W, x0 + 0.2, jnp.array([0, 1]), 0)
    np.testing.assert_array_equal(unchanged, x0 + 0.2)


@pytest.mark.slow
def test_the_energy_term_is_the_bce_of_real_against_detached_samples():
    loss = dat_energy(linear, pool_start(POOL), initial_steps=3, auroc_images=8)
    batch = {"x": jnp.full((8, 3), 0.4), "y": jnp.array([0, 1] * 4)}
    state = loss.init(jax.random.key(0), W, batch)
    key = jax.random.key(1)
    (value, (new_state, info)), grad = jax.value_and_grad(loss.loss, has_aux=True)(
        W, state, batch, key)
    # the same samples, by hand: the pool rows the start draws, 3 ascent steps
    x0, _, _ = pool_start(POOL).draw(key, (), W, batch["x"], batch["y"])
    samples = pgd_contrastive_samples(linear, W, x0, batch["y"], 3)

    def by_hand(w):
        def energy(x):
            return -jax.nn.logsumexp(x @ w.T, axis=-1)
        return (jnp.mean(jax.nn.softplus(energy(batch["x"])))
                + jnp.mean(jax.nn.softplus(-energy(samples))))
    expected, expected_grad = jax.value_and_grad(by_hand)(W)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)  # samples detached
    assert float(info[CURRICULUM_STEPS]) == 3.0 and 0.0 <= float(info[AUROC]) <= 1.0


def _run_curriculum(logits_fn, steps, *, target=0.8, max_steps=50):
    loss = dat_energy(logits_fn, pool_start(POOL), auroc_target=target, max_steps=max_steps,
                      auroc_images=16)                                 # a window of 2 steps
    batch = {"x": jnp.full((8, 3), 0.9), "y": jnp.zeros(8, jnp.int32)}
    state = loss.init(jax.random.key(0), W, batch)
    step = jax.jit(loss.loss)
    ts = []
    for i in range(steps):
        _, (state, info) = step(W, state, batch, jax.random.key(i))
        ts.append(int(info[CURRICULUM_STEPS]))
    return ts, state


def test_the_curriculum_grows_t_once_per_full_window_at_the_target():
    # real digits far up the logit (0.9 everywhere), pool near 0: AUROC 1 at any small T
    ts, state = _run_curriculum(linear, 7)
    assert ts == [0, 0, 1, 1, 2, 2, 3]
    assert isinstance(state, DATState) and int(state.num_steps) == 3
    capped, _ = _run_curriculum(linear, 7, max_steps=2)
    assert capped == [0, 0, 1, 1, 2, 2, 2]
    # an energy that cannot tell them apart (constant logits): AUROC 0.5, T never grows
    flat, _ = _run_curriculum(lambda w, x: jnp.zeros(2) + 0.0 * jnp.sum(x), 6)
    assert flat == [0] * 6


def test_the_curriculum_state_resumes_exactly():
    ts, state = _run_curriculum(linear, 3)
    loss = dat_energy(linear, pool_start(POOL), auroc_images=16)
    batch = {"x": jnp.full((8, 3), 0.9), "y": jnp.zeros(8, jnp.int32)}
    restored = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), state)   # a checkpoint
    _, (after, _) = loss.loss(W, restored, batch, jax.random.key(3))
    _, (direct, _) = loss.loss(W, state, batch, jax.random.key(3))
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(direct)):
        np.testing.assert_array_equal(a, b)


def test_pairwise_auroc_counts_ties_as_half():
    assert float(pairwise_auroc(jnp.array([1.0]), jnp.array([1.0]))) == 0.5
    assert float(pairwise_auroc(jnp.array([2.0, 0.0]), jnp.array([1.0]))) == 0.5


def test_the_whole_loss_splits_the_batch_between_its_terms():
    energy = dat_energy(linear, pool_start(POOL), auroc_images=8)
    adversarial = cross_entropy(linear)     # stands in for PGD-AT: CE on its half
    loss = dat(energy, adversarial, energy_weight=2.0)
    x = jax.random.normal(jax.random.key(5), (16, 3))
    batch = {"x": x, "y": jnp.arange(16) % 2}
    state = loss.init(jax.random.key(0), W, batch)
    value, (_, info) = loss.loss(W, state, batch, jax.random.key(1))
    first = {"x": x[:8], "y": batch["y"][:8]}
    second = {"x": x[8:], "y": batch["y"][8:]}
    k_energy, k_adv = jax.random.split(jax.random.key(1))
    e_value = energy.loss(W, state["energy"], first, k_energy)[0]
    a_value = adversarial.loss(W, state["adversarial"], second, k_adv)[0]
    np.testing.assert_allclose(value, 2.0 * e_value + a_value, rtol=1e-6)
    np.testing.assert_allclose(info["adversarial/loss"], a_value, rtol=1e-6)
    with pytest.raises(ValueError, match="expected an even number"):
        loss.init(jax.random.key(0), W, {"x": x[:5], "y": batch["y"][:5]})


@pytest.mark.parametrize("kwargs, match", [
    (dict(step_size=0.0), "step_size=0.0"),
    (dict(initial_steps=5, max_steps=2), "initial_steps=5 > max_steps=2"),
    (dict(auroc_target=1.5), "auroc_target=1.5"),
    (dict(auroc_images=0), "auroc_images=0"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dat_energy(linear, pool_start(POOL), **kwargs)
    with pytest.raises(TypeError, match="expected a ChainStart"):
        dat_energy(linear, POOL)
