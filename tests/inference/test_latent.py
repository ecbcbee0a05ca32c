"""Latent-variable inference: joint descent over (y, z), and several outputs for one input
from several latent starts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.inference import latent_outputs, minimize_latent

pytestmark = pytest.mark.fast_compile  # small programs: mostly compilation


def two_answers(p, x, y, z):
    """E(x, y, z) = |y - z|^2 + (z^2 - 1)^2: minima at y = z = +1 and y = z = -1."""
    return jnp.sum((y - z) ** 2) + jnp.sum((z ** 2 - 1.0) ** 2)


def test_several_latent_starts_give_both_answers():
    z0s = jnp.linspace(-1.5, 1.5, 6)[:, None]
    run = jax.jit(lambda z0s: latent_outputs(two_answers, None, None, jnp.zeros(1), z0s,
                                             num_steps=200, step_size=0.05))
    out = run(z0s)
    assert out.y.shape == (6, 1) and out.z.shape == (6, 1) and out.energies.shape == (6, 201)
    y = np.asarray(out.y[:, 0])
    np.testing.assert_allclose(np.abs(y), 1.0, atol=1e-3)
    np.testing.assert_allclose(out.z, out.y, atol=1e-3)
    np.testing.assert_array_equal(np.sign(y), np.sign(np.asarray(z0s[:, 0])))  # z picks one
    np.testing.assert_allclose(out.energy, 0.0, atol=1e-5)


def test_joint_descent_on_a_quadratic_of_output_and_latent_of_other_shapes():
    """E = |y - x - B z|^2 + |z|^2, y in R^2, z in R^(2x1): the minimum is y = x, z = 0, and
    the energy of the joint descent never increases for a small step."""
    b = jnp.array([[0.5], [0.5]])

    def energy(b, x, y, z):
        return jnp.sum((y - x - b @ z[:, 0]) ** 2) + jnp.sum(z ** 2)

    x = jnp.array([0.5, -1.0])
    out = jax.jit(lambda x: minimize_latent(energy, b, x, jnp.zeros(2), jnp.ones((1, 1)),
                                            num_steps=100, step_size=0.2))(x)
    assert out.y.shape == (2,) and out.z.shape == (1, 1)
    np.testing.assert_allclose(out.y, x, atol=1e-3)
    np.testing.assert_allclose(out.z, 0.0, atol=1e-3)
    assert np.all(np.diff(np.asarray(out.energies)) <= 1e-6)


def test_noise_keys_are_split_per_latent_start():
    z0s = jnp.full((2, 1), 0.8)
    out = jax.jit(lambda key: latent_outputs(two_answers, None, None, jnp.zeros(1), z0s,
                                             num_steps=5, step_size=0.05, noise_scale=0.1,
                                             rng_key=key))(jax.random.key(0))
    assert not np.allclose(out.y[0], out.y[1])


@pytest.mark.parametrize("y0, z0, kwargs, match", [
    (jnp.zeros(1), jnp.zeros(2), {}, r"energy_fn failed on it with z0 of shape \(2,\)"),
    (jnp.zeros(1), jnp.zeros(1, jnp.int32), {}, r"z0 has dtype int32: expected a floating"),
    (jnp.zeros(1, jnp.int32), jnp.zeros(1), {}, r"y0 has dtype int32: expected a floating"),
    (jnp.zeros(1), jnp.zeros(1), {"num_steps": 0}, r"num_steps=0: expected a positive"),
    (jnp.zeros(1), jnp.zeros(1), {"step_size": 0.0}, r"step_size=0.0: expected a positive"),
])
def test_bad_starts_are_refused(y0, z0, kwargs, match):
    def energy(p, x, y, z):
        return jnp.sum((y - z) ** 2) + jnp.dot(y, z)   # dot: y and z of one shape

    kwargs = {"num_steps": 3, "step_size": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        minimize_latent(energy, None, None, y0, z0, **kwargs)
    with pytest.raises(ValueError, match=match):
        latent_outputs(energy, None, None, y0, z0[None], **kwargs)


def test_an_empty_stack_of_latent_starts_and_unknown_keywords_are_refused():
    with pytest.raises(ValueError, match=r"z0s has shape \(0, 1\): expected a non-empty"):
        latent_outputs(two_answers, None, None, jnp.zeros(1), jnp.zeros((0, 1)), num_steps=3,
                       step_size=0.1)
    with pytest.raises(TypeError, match=r"minimize_latent got \['steps'\]"):
        minimize_latent(two_answers, None, None, jnp.zeros(1), jnp.zeros(1), steps=3,
                        step_size=0.1)
    with pytest.raises(TypeError, match=r"minimize_latent needs num_steps"):
        minimize_latent(two_answers, None, None, jnp.zeros(1), jnp.zeros(1), step_size=0.1)
