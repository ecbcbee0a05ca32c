"""The digit feature extractor (``ebm_jax.metrics.digit_classifier``): the shipped weights load,
classify the test digits at the recorded accuracy, ship with the package, and are what the
training function makes."""
import os
import tomllib

import numpy as np
import pytest

from ebm_jax.data import load_digits
from ebm_jax.metrics.digit_classifier import (
    FEATURE_DIM,
    NORMALISATION,
    TEST_ACCURACY,
    WEIGHTS_FILE,
    digit_features,
    digit_logits,
    load_digit_classifier,
    save_digit_classifier,
    train_digit_classifier,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = load_digits()


def test_the_shipped_weights_classify_the_test_digits_at_the_recorded_accuracy():
    logits = digit_logits(DIGITS.x_test)
    assert logits.shape == (360, 10) and logits.dtype == np.float32
    correct = int(np.sum(logits.argmax(1) == DIGITS.y_test))
    assert correct / 360 == TEST_ACCURACY and TEST_ACCURACY >= 0.95, correct


def test_features_are_the_normalised_feature_layer():
    """Training digits have features of mean 0 and mean variance 1 (the normalisation was
    measured on them); the images' shape does not matter; the arrays are read-only."""
    features = digit_features(DIGITS.x_train)
    assert features.shape == (1437, FEATURE_DIM) and features.dtype == np.float32
    np.testing.assert_allclose(features.mean(0), 0.0, atol=1e-4)
    assert features.var(0).mean() == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_array_equal(digit_features(DIGITS.x_test.reshape(360, 8, 8, 1)),
                                  digit_features(DIGITS.x_test))
    params = load_digit_classifier()
    assert load_digit_classifier() is params and not params["feature_mean"].flags.writeable
    assert set(NORMALISATION) <= set(params)


def test_weights_round_trip_and_a_wrong_file_is_named(tmp_path):
    params = load_digit_classifier()
    path = str(tmp_path / "copy.npz")
    save_digit_classifier(params, path)
    np.testing.assert_array_equal(digit_features(DIGITS.x_test[:5], load_digit_classifier(path)),
                                  digit_features(DIGITS.x_test[:5]))
    np.savez(str(tmp_path / "other.npz"), w=np.zeros(3))
    with pytest.raises(ValueError, match=r"other.npz lacks \['feature_mean', "):
        load_digit_classifier(str(tmp_path / "other.npz"))
    with pytest.raises(ValueError, match=r"no digit classifier weights at .*missing.npz"):
        load_digit_classifier(str(tmp_path / "missing.npz"))


@pytest.mark.parametrize("x, message", [
    (np.zeros((3, 63)), r"x has shape \(3, 63\): expected \[N, 64\] digits"),
    (np.zeros((0, 64)), r"x has shape \(0, 64\)"),
    (np.full((2, 64), np.nan), r"x has 128 non-finite values: expected finite pixels"),
])
def test_bad_digits_are_refused(x, message):
    with pytest.raises(ValueError, match=message):
        digit_features(x)


def test_the_weights_ship_as_package_data():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    assert "*.npz" in package_data["ebm_jax.metrics"]
    assert os.path.isfile(WEIGHTS_FILE) and WEIGHTS_FILE.endswith(".npz")


@pytest.mark.slow
@pytest.mark.optimised  # runtime: the training (5.8 s -> 2.6 s cold)
def test_the_training_function_reproduces_the_shipped_weights():
    """Retrain (about 3-8 s on 2 cores). On the machine and flags that wrote the file the
    result is bit for bit the same; the tests compile with other XLA flags (fewer
    optimisations, other fusions), which moved the weights by at most 5e-7 and the features
    (unit scale) by at most 1.9e-6 when measured. The bound, 1e-3 of the features' unit
    scale, leaves room for another CPU's rounding while staying far below anything the
    yardstick sees (the floor's Fréchet distance is 0.18; shifting every feature by 1e-3
    moves a Fréchet distance by ~3e-5)."""
    params = train_digit_classifier()
    shipped = load_digit_classifier()
    assert set(params) == set(shipped)
    np.testing.assert_allclose(digit_features(DIGITS.x_test, params),
                               digit_features(DIGITS.x_test), atol=1e-3)
    assert np.mean(digit_logits(DIGITS.x_test, params).argmax(1) == DIGITS.y_test) \
        == TEST_ACCURACY
