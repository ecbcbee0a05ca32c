"""TabEBM's sampler: the chains start where they should, run SGLD to the right law, and the
reference code's batch-averaged gradient is reproduced exactly by its flag."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.applications.tabular import class_sampler, jittered_starts


def test_starts_are_masked_rows_jittered_by_the_start_noise():
    rows = jnp.array([[0.0, 0.0], [10.0, 10.0], [-7.0, 3.0]])
    starts = jittered_starts(jax.random.key(0), rows, jnp.array([True, True, False]), 4000, 0.1)
    nearest = jnp.argmin(jnp.sum((starts[:, None] - rows[None]) ** 2, -1), 1)
    assert set(np.unique(nearest).tolist()) == {0, 1}           # never the padded row
    share = float(jnp.mean(nearest == 0))
    assert abs(share - 0.5) < 4 * 0.5 / np.sqrt(4000)            # uniform with replacement
    jitter = starts - rows[nearest]
    np.testing.assert_allclose(jnp.std(jitter), 0.1, rtol=0.05)  # 8,000 draws: ~1.6% error


def test_chains_reach_the_gaussian_they_sample():
    """Energy |x - m|^2 / 2 in the temperature form (noise sqrt(2 step)): 2,000 chains after 200
    steps have mean m and variance 1 / (1 - step / 2) (the discretised chain's own stationary
    law), to 5 standard errors; the paper's noise 0.01 would leave a variance ~5e-4."""
    energy = lambda m, x: 0.5 * jnp.sum((x - m) ** 2)  # noqa: E731
    step = 0.1
    sample = jax.jit(class_sampler(energy, 2000, num_steps=200, step_size=step,
                                   noise_scale=float(np.sqrt(2 * step))))
    m = jnp.array([1.0, -2.0])
    x = np.asarray(sample(jax.random.key(0), m, jnp.zeros((3, 2)), jnp.ones(3, bool)))
    variance = 1.0 / (1.0 - step / 2)
    assert np.all(np.abs(x.mean(0) - m) < 5 * np.sqrt(variance / 2000))
    np.testing.assert_allclose(x.var(0), variance, rtol=5 * np.sqrt(2 / 2000))


@pytest.mark.slow
def test_the_batch_mean_flag_is_the_reference_codes_mean_energy_gradient():
    """The reference differentiates the batch's mean energy: x <- x - h ∇_x mean_i E(x_i) + s ε.
    Written out here with the sampler's own keys, it gives the flag's chains to rounding, and
    they stay near their starts while per-example chains move."""
    centre = jnp.array([2.0, 0.0])
    energy = lambda p, x: 0.5 * jnp.sum((x - p) ** 2)  # noqa: E731
    rows, mask = jnp.zeros((1, 2)), jnp.ones(1, bool)
    n, steps, h, s = 50, 20, 0.1, 0.01
    flagged = class_sampler(energy, n, num_steps=steps, step_size=h, noise_scale=s,
                            start_noise=0.01, batch_mean_gradient=True)
    key = jax.random.key(3)
    got = flagged(key, centre, rows, mask)

    start_key, chain_key = jax.random.split(key)
    x = jittered_starts(start_key, rows, mask, n, 0.01)
    mean_energy = lambda x: jnp.mean(jax.vmap(energy, (None, 0))(centre, x))  # noqa: E731
    step_keys = jax.vmap(lambda k: jax.random.split(k, steps))(jax.random.split(chain_key, n))
    for t in range(steps):
        noise = jax.vmap(lambda k: jax.random.normal(k, (2,)))(step_keys[:, t])
        x = x - h * jax.grad(mean_energy)(x) + s * noise
    np.testing.assert_allclose(got, x, atol=1e-6)
    per_example = class_sampler(energy, n, num_steps=steps, step_size=h, noise_scale=s)(
        key, centre, rows, mask)
    assert float(jnp.mean(jnp.abs(got[:, 0]))) < 0.1          # moved ~ 20 * 0.1 * 2 / 50
    assert float(jnp.mean(per_example[:, 0])) > 1.7            # 1 - 0.9^20 of the way to 2
