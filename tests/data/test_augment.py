"""Augmentations (ebm_jax.data.augment): pure per-example functions, vmappable, jit-able."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.data.augment import augment_batch, compose, gaussian_noise, identity, random_shift


def test_gaussian_noise_has_the_requested_scale_and_independent_rows():
    views = augment_batch(gaussian_noise(0.2), jax.random.key(0), jnp.zeros((2000, 3)))
    assert views.shape == (2000, 3)
    assert float(jnp.std(views)) == pytest.approx(0.2, rel=0.05)
    assert abs(float(jnp.mean(views))) < 0.01
    assert float(jnp.max(jnp.abs(gaussian_noise(0.0)(jax.random.key(1), jnp.ones(3)) - 1))) == 0


def test_random_shift_translates_an_image_and_fills_in():
    image = jnp.zeros((5, 5)).at[2, 2].set(1.0)
    aug = random_shift(2, (5, 5), fill=-1.0)
    seen = set()
    for seed in range(40):
        out = aug(jax.random.key(seed), image.reshape(-1)).reshape(5, 5)
        assert float(out.max()) == 1.0 and int((out == 1.0).sum()) == 1   # the pixel survives
        row, col = np.argwhere(np.asarray(out) == 1.0)[0]
        seen.add((row - 2, col - 2))
        dy, dx = row - 2, col - 2
        # the rows/columns shifted in are the fill value
        if dy > 0:
            assert bool((out[:dy] == -1.0).all())
        if dx < 0:
            assert bool((out[:, dx:] == -1.0).all())
    assert all(abs(a) <= 2 and abs(b) <= 2 for a, b in seen) and len(seen) > 10


def test_random_shift_keeps_shape_and_channels():
    x = jnp.arange(4 * 4 * 2, dtype=jnp.float32).reshape(4, 4, 2)
    out = random_shift(1, (4, 4, 2))(jax.random.key(0), x)
    assert out.shape == (4, 4, 2)
    flat = random_shift(1, (4, 4, 2))(jax.random.key(0), x.reshape(-1))
    np.testing.assert_array_equal(flat, out.reshape(-1))        # same key, same shift
    np.testing.assert_array_equal(random_shift(0, (4, 4, 2))(jax.random.key(0), x), x)


def test_compose_applies_in_order_and_jits():
    aug = jax.jit(compose(random_shift(1, (3, 3)), gaussian_noise(0.0), identity()))
    out = aug(jax.random.key(0), jnp.ones(9))
    assert out.shape == (9,) and set(np.unique(np.asarray(out)).tolist()) <= {0.0, 1.0}


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="sigma=-1"):
        gaussian_noise(-1.0)
    with pytest.raises(ValueError, match="image_shape"):
        random_shift(1, (8,))
    with pytest.raises(ValueError, match="max_shift=8"):
        random_shift(8, (8, 8))
    with pytest.raises(ValueError, match="expected one image of shape \\(8, 8\\)"):
        random_shift(1, (8, 8))(jax.random.key(0), jnp.zeros(10))
    with pytest.raises(TypeError, match="floating"):
        gaussian_noise(0.1)(jax.random.key(0), jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match="no augmentations"):
        compose()
