"""The OOD pool for contrastive chains (DAT): each kind is what it says, the pool is seeded,
held out from the data, and a user's pool is checked."""
import jax
import numpy as np
import pytest

from ebm_jax.data import (POOL_KINDS, blurred_noise, check_pool, load_digits, mixtures, ood_pool,
                          shifted)

DIGITS = load_digits()
RANGE = DIGITS.data_range


def _neighbour_correlation(images: np.ndarray) -> float:
    """The correlation of horizontally adjacent pixels of ``[N, 8, 8]`` images."""
    left, right = images[:, :, :-1].ravel(), images[:, :, 1:].ravel()
    return float(np.corrcoef(left, right)[0, 1])


def test_blurred_noise_is_smooth_and_spans_the_range():
    noise = blurred_noise(jax.random.key(0), 200, (8, 8), RANGE)
    raw = np.asarray(jax.random.uniform(jax.random.key(0), (200, 8, 8)))
    # a blur of sigma 1 px leaves adjacent pixels strongly correlated; raw noise is not
    assert _neighbour_correlation(noise.reshape(-1, 8, 8)) > 0.6
    assert abs(_neighbour_correlation(raw)) < 0.1
    np.testing.assert_allclose(noise.min(axis=1), -1.0, atol=1e-6)
    np.testing.assert_allclose(noise.max(axis=1), 1.0, atol=1e-6)


def test_mixtures_hold_both_digits_strokes_of_two_classes():
    x, y = DIGITS.x_train[:20], DIGITS.y_train[:20]
    mixed = mixtures(jax.random.key(1), x, 50, y=y)
    # every mixture is the max of two of the digits, of different classes: find them
    pairs = np.maximum(x[:, None], x[None]).reshape(-1, 64)             # [20 * 20, 64]
    gap = np.abs(mixed[:, None] - pairs[None]).max(-1)                  # [50, 400]
    first, second = np.divmod(np.argmin(gap, axis=1), 20)
    assert np.all(gap.min(axis=1) < 1e-6)
    assert np.all(y[first] != y[second])


def test_shifted_digits_move_by_two_to_three_pixels():
    x = -np.ones((1, 64), np.float32)
    x[0, 3 * 8 + 4] = 1.0                            # one lit pixel at (3, 4)
    moved = shifted(jax.random.key(2), np.repeat(x, 50, 0), (8, 8), RANGE, 50)
    lit = [divmod(int(np.argmax(m)), 8) for m in moved if m.max() > 0]
    steps = np.abs(np.array(lit) - np.array([3, 4]))
    assert len(lit) > 0 and np.all((steps >= 2) & (steps <= 3))
    assert np.all(moved[[m.max() <= 0 for m in moved]] == -1.0)  # moved out: background


def test_the_pool_is_seeded_mixed_in_shares_and_off_the_data():
    args = (DIGITS.x_train, DIGITS.image_shape, RANGE)
    pool = ood_pool(jax.random.key(3), *args, num=500, y=DIGITS.y_train)
    again = ood_pool(jax.random.key(3), *args, num=500, y=DIGITS.y_train)
    other = ood_pool(jax.random.key(4), *args, num=500, y=DIGITS.y_train)
    np.testing.assert_array_equal(pool, again)
    assert not np.array_equal(pool, other)
    assert pool.shape == (500, 64) and pool.dtype == np.float32
    assert pool.min() >= RANGE[0] and pool.max() <= RANGE[1]

    def nearest(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min(axis=1)
    # test digits lie nearer the training digits than the pool does (off the data manifold)
    test_gap = nearest(DIGITS.x_test[:200], DIGITS.x_train).mean()
    pool_gap = nearest(pool[:200], DIGITS.x_train).mean()
    assert pool_gap > 1.3 * test_gap
    # one kind alone: five pools of 100 of one kind each differ from each other
    singles = [ood_pool(jax.random.key(3), *args, num=100, kinds=(k,)) for k in POOL_KINDS]
    assert len({s.tobytes() for s in singles}) == len(POOL_KINDS)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kinds=("noise",)), r"kinds=\('noise',\): expected a non-empty subset"),
    (dict(num=0), "num=0"),
])
def test_the_pool_refuses_bad_settings(kwargs, match):
    settings = dict(num=10) | kwargs
    with pytest.raises(ValueError, match=match):
        ood_pool(jax.random.key(0), DIGITS.x_train, DIGITS.image_shape, RANGE, **settings)


@pytest.mark.parametrize("pool, match", [
    (np.zeros((3, 63)), r"ood_pool has shape \(3, 63\): expected \[N, 64\]"),
    (np.full((3, 64), 2.0), r"values in \[2, 2\]: expected values within the data range"),
    (np.full((3, 64), np.nan), "non-finite"),
])
def test_a_users_pool_is_checked(pool, match):
    with pytest.raises(ValueError, match=match):
        check_pool(pool, (64,), RANGE)
