"""Offline OOD sets (``ebm_jax.data.ood``): shapes, ranges, exact transforms, determinism.

The transforms are checked on images whose pixels name their own position
(a flip must move pixel (r, c) to (H-1-r, c) or (r, W-1-c)), on a
non-square multi-channel shape as well as digits, and the interpolations on
one-hot examples, from which every blend's two parents can be read back.
"""
import jax
import numpy as np
import pytest

from ebm_jax.data.digits import load_digits
from ebm_jax.data.ood import (
    OOD_SET_NAMES,
    flipped,
    gaussian_noise,
    held_out_class,
    interpolations,
    inverted,
    offline_ood_sets,
    uniform_noise,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.mark.slow
def test_offline_sets_of_digits_have_the_data_shape_and_range_and_depend_only_on_the_key(digits):
    x, y = digits.x_test, digits.y_test
    sets = offline_ood_sets(jax.random.PRNGKey(0), x, digits.image_shape, digits.data_range,
                            num=200, y=y)
    assert tuple(sets) == OOD_SET_NAMES
    for name, s in sets.items():
        assert s.shape == (200, 64) and s.dtype == np.float32, name
        assert s.min() >= -1.0 and s.max() <= 1.0, name
        # None of the sets is (mostly) copies of real test images.
        copies = (np.abs(s[:, None, :] - x[None]).max(-1) < 1e-6).any(1).mean()
        assert copies < 0.1, name
    again = offline_ood_sets(jax.random.PRNGKey(0), x, digits.image_shape, digits.data_range,
                             num=200, y=y)
    other = offline_ood_sets(jax.random.PRNGKey(1), x, digits.image_shape, digits.data_range,
                             num=200, y=y)
    for name in OOD_SET_NAMES:
        np.testing.assert_array_equal(sets[name], again[name])
        assert not np.array_equal(sets[name], other[name]), name
    # Default size is N; the noise sets look like the data's range and moments as documented.
    full = offline_ood_sets(jax.random.PRNGKey(0), x, digits.image_shape, digits.data_range)
    assert all(s.shape == x.shape for s in full.values())
    assert abs(full["uniform_noise"].mean()) < 0.02  # uniform on [-1, 1]
    assert abs(full["gaussian_noise"].mean() - x.mean()) < 0.1  # matched before clipping


@pytest.mark.slow
def test_noise_sets():
    u = uniform_noise(jax.random.PRNGKey(0), 4000, (3, 5), (0.0, 2.0))
    assert u.shape == (4000, 3, 5) and 0.0 <= u.min() and u.max() <= 2.0
    assert u.mean() == pytest.approx(1.0, abs=0.02)
    assert u.std() == pytest.approx(2 / 12**0.5, abs=0.02)
    g = gaussian_noise(jax.random.PRNGKey(1), 4000, (6,), (-1.0, 1.0), mean=0.0, std=2.0)
    assert g.min() == -1.0 and g.max() == 1.0  # clipped: a wide Gaussian hits both ends
    assert (np.abs(g) == 1.0).mean() == pytest.approx(0.617, abs=0.02)  # P(|N(0, 2)| > 1)
    g = gaussian_noise(jax.random.PRNGKey(1), 4000, (6,), (-1.0, 1.0), mean=0.2, std=0.1)
    assert g.mean() == pytest.approx(0.2, abs=0.01) and g.std() == pytest.approx(0.1, abs=0.01)


def test_inverted_is_an_exact_involution_of_the_range():
    x = np.array([[-1.0, 0.0, 0.25, 1.0]], np.float32)
    np.testing.assert_array_equal(inverted(x, (-1.0, 1.0)), [[1.0, 0.0, -0.25, -1.0]])
    np.testing.assert_array_equal(inverted(x + 1.0, (0.0, 2.0)), [[2.0, 1.0, 0.75, 0.0]])
    np.testing.assert_array_equal(inverted(inverted(x, (-1, 1)), (-1, 1)), x)


@pytest.mark.parametrize("image_shape", [(8, 8, 1), (3, 5, 2), (4, 6)])
def test_flips_move_each_pixel_to_its_mirror_position(image_shape):
    h, w = image_shape[:2]
    c = image_shape[2] if len(image_shape) == 3 else 1
    rows, cols, chans = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    # Each pixel's value names its position (r, c, ch).
    code = (rows * 100 + cols * 10 + chans).astype(np.float32).reshape(image_shape)
    images = np.stack([code, code + 1000])  # [2, *image_shape]
    flat = images.reshape(2, -1)
    v, hz = flipped(flat, image_shape, "vertical"), flipped(flat, image_shape, "horizontal")
    assert v.shape == hz.shape == flat.shape
    v, hz = v.reshape(images.shape), hz.reshape(images.shape)
    for r in range(h):
        for col in range(w):
            np.testing.assert_array_equal(v[:, r, col], images[:, h - 1 - r, col])
            np.testing.assert_array_equal(hz[:, r, col], images[:, r, w - 1 - col])
    both = flipped(images, image_shape, "both")  # unflattened input keeps its shape
    assert both.shape == images.shape
    np.testing.assert_array_equal(both, images[:, ::-1, ::-1])
    np.testing.assert_array_equal(flipped(v.reshape(2, -1), image_shape), flat)  # an involution


@pytest.mark.slow
def test_interpolations_are_midpoints_of_pairs_from_different_classes():
    n = 12
    x = np.eye(n, dtype=np.float32)  # example i is e_i: a blend's support names its parents
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    blends = interpolations(jax.random.PRNGKey(0), x, y, 3000)
    assert blends.shape == (3000, n)
    parents = [np.flatnonzero(b) for b in blends]
    assert all(len(p) == 2 for p in parents)  # two distinct parents, never an example with itself
    np.testing.assert_allclose(blends[blends > 0], 0.5)
    pairs = np.array(parents)
    assert (y[pairs[:, 0]] != y[pairs[:, 1]]).all()  # always different classes
    # Every cross-class pair occurs: the partner is uniform over the other classes' examples.
    seen = {tuple(p) for p in pairs}
    expected = {(i, j) for i in range(n) for j in range(i + 1, n) if y[i] != y[j]}
    assert seen == expected
    # Without labels: distinct examples, with any pair possible.
    no_labels = np.array([np.flatnonzero(b) for b in interpolations(jax.random.PRNGKey(1), x,
                                                                       num=3000)])
    assert no_labels.shape == (3000, 2)
    assert {tuple(p) for p in no_labels} == {(i, j) for i in range(n) for j in range(i + 1, n)}
    # A weight other than ½.
    b = interpolations(jax.random.PRNGKey(2), x, y, 10, weight=0.25)
    assert sorted(np.unique(b[b > 0]).tolist()) == [0.25, 0.75]


def test_held_out_class_splits_by_class():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 0])
    split = held_out_class(x, y, 2)
    np.testing.assert_array_equal(split.x_out, x[[2, 5, 6]])
    np.testing.assert_array_equal(split.x_in, x[[0, 1, 3, 4, 7, 8, 9]])
    np.testing.assert_array_equal(split.y_in, [0, 1, 1, 0, 1, 0, 0])
    with pytest.raises(ValueError, match=r"cls=7: expected a class present in y alongside others"):
        held_out_class(x, y, 7)
    with pytest.raises(ValueError, match=r"y has shape \(9,\): expected labels \(10,\)"):
        held_out_class(x, y[:9], 0)


def test_bad_input_raises_one_clear_error():
    x = np.zeros((5, 64), np.float32)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"image_shape=\(8, 7, 1\): expected \(H, W\[, C\]\) with "
                                         r"H\*W\*C = 64"):
        offline_ood_sets(key, x, (8, 7, 1), (-1.0, 1.0))
    with pytest.raises(ValueError, match=r"x has values in \[0, 16\]: expected values within "
                                         r"data_range \(-1.0, 1.0\)"):
        offline_ood_sets(key, x + np.linspace(0, 16, 64, dtype=np.float32), (8, 8, 1), (-1.0, 1.0))
    with pytest.raises(ValueError, match=r"data_range=\(1.0, -1.0\): expected \(low, high\)"):
        offline_ood_sets(key, x, (8, 8, 1), (1.0, -1.0))
    with pytest.raises(ValueError, match="num=0: expected a positive int"):
        offline_ood_sets(key, x, (8, 8, 1), (-1.0, 1.0), num=0)
    with pytest.raises(ValueError, match=r"x has shape \(64,\): expected a non-empty batch"):
        flipped(x[0], (8, 8, 1))
    with pytest.raises(ValueError, match="direction='diagonal'"):
        flipped(x, (8, 8, 1), "diagonal")
    with pytest.raises(ValueError, match=r"y has the single class \[3\]"):
        interpolations(key, x, np.full(5, 3))
    with pytest.raises(ValueError, match="std=0.0: expected a positive number"):
        gaussian_noise(key, 3, (2,), (-1.0, 1.0), std=0.0)
