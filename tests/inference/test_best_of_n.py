"""best_of_n on a double well whose left well is deeper: the pick is the deep minimum, and it
beats a start picked at random."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.inference import best_of_n

pytestmark = pytest.mark.fast_compile  # small programs: mostly compilation


def double_well(p, x, y):
    """E(y) = (y^2 - 1)^2 + 0.3 y: minima at y = -1.0356 (E = -0.305) and y = 0.9601 (0.294)."""
    return (y ** 2 - 1.0) ** 2 + 0.3 * y


def uniform_start(key):
    return jax.random.uniform(key, (), minval=-2.0, maxval=2.0)


DEEP = -1.0356  # 4y(y^2 - 1) + 0.3 = 0, the left root


def test_picks_the_deeper_well_and_beats_a_random_pick():
    run = jax.jit(lambda key: best_of_n(key, double_well, None, None, uniform_start, 16,
                                        num_steps=150, step_size=0.05))
    out = run(jax.random.key(0))
    finals = np.asarray(out.results.energy)
    assert out.results.y.shape == (16,) and out.results.energies.shape == (16, 151)
    assert abs(float(out.y) - DEEP) < 1e-3 and float(out.energy) == finals.min()
    assert int(out.index) == int(np.argmin(finals)) and float(out.results.y[out.index]) == out.y
    # some starts end in the shallow well, so a random pick is worse on average
    shallow = np.asarray(out.results.y) > 0
    assert 0 < shallow.sum() < 16
    assert float(out.energy) < finals.mean() - 0.1


def test_an_array_of_starts_and_noise_keys():
    starts = jnp.array([1.5, 0.8, jnp.nan, -0.3, 2.0])   # a NaN start is never picked
    out = jax.jit(lambda key: best_of_n(key, double_well, None, None, starts, num_steps=150,
                                        step_size=0.05))(jax.random.key(1))
    np.testing.assert_allclose(out.results.y, [0.96, 0.96, np.nan, DEEP, 0.96], atol=0.01)
    assert int(out.index) == 3 and abs(float(out.y) - DEEP) < 1e-3
    starts = jnp.array([1.5, 0.8, -0.3, 2.0])
    noisy = jax.jit(lambda key: best_of_n(key, double_well, None, None, starts, 4,
                                          num_steps=20, step_size=0.05, noise_scale=0.05))
    a, b = noisy(jax.random.key(1)), noisy(jax.random.key(2))
    assert not np.allclose(a.results.y, b.results.y)   # the noise follows the key
    np.testing.assert_array_equal(a.results.y, noisy(jax.random.key(1)).results.y)


@pytest.mark.parametrize("start, n, kwargs, error, match", [
    (uniform_start, 0, {}, ValueError, r"n=0: expected a positive int"),
    (uniform_start, None, {}, ValueError, r"n=None: expected a positive int"),
    (jnp.zeros(3), 4, {}, ValueError, r"sample_start has shape \(3,\): expected n=4 starts"),
    (jnp.zeros(3, jnp.int32), None, {}, ValueError, r"sample_start has dtype int32"),
    ([0.0, 1.0], 2, {}, ValueError, r"sample_start=\[0.0, 1.0\]: expected a callable"),
    (lambda key: jnp.zeros(3), 4, {}, ValueError,
     r"sample_start\(key\) has shape \(3,\).*returned \(3,\)"),
    (uniform_start, 4, {"num_steps": 0}, ValueError, r"num_steps=0: expected a positive"),
    (uniform_start, 4, {"step_size": -1.0}, ValueError, r"step_size=-1.0"),
    (uniform_start, 4, {"rng_key": None}, TypeError, r"multiple values for argument 'rng_key'"),
    (uniform_start, 4, {"steps": 3}, TypeError, r"best_of_n got \['steps'\]"),
])
def test_bad_input_is_refused(start, n, kwargs, error, match):
    kwargs = {"num_steps": 5, "step_size": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        best_of_n(jax.random.key(0), double_well, None, None, start, n, **kwargs)


def test_a_missing_key_is_refused():
    with pytest.raises(ValueError, match=r"rng_key=None: expected a PRNG key"):
        best_of_n(None, double_well, None, None, uniform_start, 4, num_steps=5, step_size=0.1)
