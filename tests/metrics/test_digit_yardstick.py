"""The yardstick of generated digits (``ebm_jax.metrics.digit_yardstick``) on sets whose
answer is known: real digits that are not the test digits (the floor), uniform noise, a
collapse onto a few images, one class only; and the class diversity figure."""
import numpy as np
import pytest

from ebm_jax.data import load_digits
from ebm_jax.metrics.digit_yardstick import (MIN_SAMPLES, YARDSTICK_KEYS, digit_diversity,
                                             reference_digits, score_digits)

DIGITS = load_digits()
FAST = dict(kid_subsets=10)


def test_real_digits_score_as_the_data_and_noise_as_nothing_like_it():
    """The 1,437 training digits against the 360 test digits (measured: Fréchet distance
    0.18, KID -0.014 with subset sd 0.008, precision 0.93, recall 0.89, density 1.03,
    coverage 1.0); uniform noise (Fréchet distance 62, KID 12.6, the rest 0)."""
    real = score_digits(DIGITS.x_train, **FAST)
    assert set(real) == {*YARDSTICK_KEYS, "kid_std", "num_samples"}
    assert real["num_samples"] == 1437
    assert real["frechet_distance"] < 0.5 and abs(real["kid"]) < 0.05
    assert real["precision"] > 0.85 and real["recall"] > 0.85 and real["coverage"] > 0.95
    assert 0.8 < real["density"] < 1.25
    noise = score_digits(np.random.default_rng(0).uniform(-1, 1, (500, 64)), **FAST)
    assert noise["frechet_distance"] > 20 and noise["kid"] > 1.0
    assert noise["precision"] == noise["recall"] == noise["coverage"] == 0.0


def test_a_collapse_and_a_single_class_keep_precision_and_lose_coverage():
    """Ten training digits repeated 50 times: real digits (precision 1), but recall 0 and
    coverage 0.1 or less; the 145 training 1s: precision stays high, coverage is about
    one class's share of the test digits (measured 0.11), recall low."""
    collapsed = score_digits(np.repeat(DIGITS.x_train[:10], 50, 0), **FAST)
    assert collapsed["precision"] > 0.8 and collapsed["recall"] == 0.0
    assert collapsed["coverage"] < 0.15
    ones = score_digits(DIGITS.x_train[DIGITS.y_train == 1], **FAST)
    assert ones["precision"] > 0.8 and ones["coverage"] < 0.2 and ones["recall"] < 0.3
    assert ones["frechet_distance"] > 10 * score_digits(DIGITS.x_train, **FAST)[
        "frechet_distance"]


def test_kid_subsets_are_chosen_by_the_key_reproducibly():
    import jax

    first = score_digits(DIGITS.x_train[:200], rng_key=jax.random.key(1), **FAST)
    assert score_digits(DIGITS.x_train[:200], rng_key=jax.random.key(1), **FAST) == first
    assert score_digits(DIGITS.x_train[:200], rng_key=jax.random.key(2), **FAST)["kid"] \
        != first["kid"]


def test_diversity_is_relative_to_the_test_digits_of_each_class():
    """Training digits labelled with their classes: about 1 per class (measured 0.96-1.06);
    one image per class: 0; the labels say which class a sample was generated for."""
    real = digit_diversity(DIGITS.x_train, DIGITS.y_train)
    assert real.by_class.shape == (10,) and np.all(np.abs(real.by_class - 1.0) < 0.15)
    one_each = np.stack([DIGITS.x_train[DIGITS.y_train == c][0] for c in range(10)])
    labels = np.repeat(np.arange(10), 10)
    assert digit_diversity(np.repeat(one_each, 10, 0), labels).ratio == 0.0
    x_test, y_test = reference_digits()
    wrong = digit_diversity(DIGITS.x_train, (DIGITS.y_train + 1) % 10)
    assert not np.allclose(wrong.by_class, real.by_class, atol=0.05)
    assert len(x_test) == len(y_test) == 360


@pytest.mark.parametrize("call, message", [
    (lambda: score_digits(DIGITS.x_train[:MIN_SAMPLES - 1]),
     r"samples has 3 digits: expected at least 4"),
    (lambda: score_digits(np.zeros((10, 32))), r"x has shape \(10, 32\): expected \[N, 64\]"),
    (lambda: digit_diversity(DIGITS.x_train[:10], np.full(10, 10)),
     r"num_classes=10 with labels up to 10"),
])
def test_bad_samples_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
