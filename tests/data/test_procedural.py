"""The procedural datasets of the robustness matrix: the shapes and scales they promise, seeded,
balanced, and learnable (a small sklearn model on the training split beats chance on the test
split by a wide margin, so a failed run on them is the method's, not the data's)."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ebm_jax.data.procedural import byte_images, heavy_tailed_table, signals, subsample


def _accuracy(data, model=None):
    """Test accuracy of standardised logistic regression (or ``model``)."""
    model = model or make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(data.x_train.reshape(len(data.x_train), -1), data.y_train)
    return model.score(data.x_test.reshape(len(data.x_test), -1), data.y_test)


def _signal_features(x):
    """Phase-free features: the magnitude spectrum and the smoothed energy envelope (random
    phases make the raw signals linearly inseparable; these keep frequency and position)."""
    x = x.reshape(len(x), -1)
    spectrum = np.abs(np.fft.rfft(x, axis=1))
    envelope = np.apply_along_axis(lambda r: np.convolve(r, np.ones(5) / 5, "same"), 1, x ** 2)
    return np.concatenate([spectrum, envelope], axis=1)


def _signal_accuracy(data):
    features = data._replace(x_train=_signal_features(data.x_train),
                             x_test=_signal_features(data.x_test))
    return _accuracy(features)


@pytest.mark.parametrize("waveform", ["sine", "chirp", "burst"])
def test_signals_are_unit_variance_balanced_seeded_and_learnable(waveform):
    data = signals(seed=1, num_train=600, num_test=300, length=40, num_classes=5,
                   waveform=waveform)
    assert data.x_train.shape == (600, 40) and data.x_test.shape == (300, 40)
    both = np.concatenate([data.x_train, data.x_test])
    assert abs(both.std() - 1.0) < 1e-5 and abs(both.mean()) < 1e-5
    assert both.min() < -2.5 and both.max() > 2.5                  # not in [-1, 1]
    assert np.bincount(data.y_train).tolist() == [120] * 5
    np.testing.assert_array_equal(signals(seed=1, num_train=600, num_test=300, length=40,
                                          num_classes=5, waveform=waveform).x_test, data.x_test)
    assert _signal_accuracy(data) > 0.2 + 0.3                       # chance is 0.2


def test_multichannel_signals():
    data = signals(seed=0, num_train=50, num_test=20, length=16, channels=3, num_classes=2)
    assert data.x_train.shape == (50, 16, 3)


def test_heavy_tailed_table_has_outliers_and_mixed_scales():
    data = heavy_tailed_table(seed=0, num_train=1000, num_test=400)
    x = data.x_train
    z = (x - np.median(x, 0)) / (np.percentile(x, 75, 0) - np.percentile(x, 25, 0))
    assert np.abs(z).max() > 20                                     # values far out
    scales = x.std(0)
    assert scales.max() / scales.min() > 20                         # columns on other scales
    assert _accuracy(data) > 0.33 + 0.25


def test_byte_images_are_raw_pixels_and_learnable():
    data = byte_images(seed=0, num_train=400, num_test=200, size=12, num_classes=4)
    assert data.x_train.shape == (400, 12, 12, 1)
    assert data.x_train.min() >= 0 and data.x_train.max() <= 255 and data.x_train.max() > 200
    assert _accuracy(data) > 0.25 + 0.35


def test_subsample_is_class_balanced_and_keeps_the_test_split():
    data = signals(seed=0, num_train=1000, num_test=100, num_classes=10)
    tiny = subsample(data, 200, seed=3)
    assert len(tiny.x_train) == 200 and np.bincount(tiny.y_train).tolist() == [20] * 10
    assert tiny.x_test is data.x_test
    rows = {r.tobytes() for r in data.x_train}
    assert all(r.tobytes() in rows for r in tiny.x_train)           # a subset, not new data
    with pytest.raises(ValueError, match="num_train=5: expected 10..1000"):
        subsample(data, 5)
