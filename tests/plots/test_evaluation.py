"""Tests of the evaluation plots (``ebm_jax.plots.evaluation``).

Each plot is written to ``tmp_path`` and read back: the PNG must exist, have the
figure's size and draw something. Bad shapes must raise one ValueError naming
the argument before anything is drawn (no file is written).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.metrics.ood_scores import roc_curve
from ebm_jax.plots.evaluation import (
    save_ood_histograms,
    save_reliability_diagram,
    save_robustness_curve,
    save_roc_curves,
)


def read_png(path):
    import matplotlib.image

    assert path.exists() and path.stat().st_size > 5_000
    return matplotlib.image.imread(str(path))


def assert_drawn(image, width, height):
    assert image.shape[:2] == (height, width)
    colours = np.unique(image.reshape(-1, image.shape[-1]).round(3), axis=0)
    assert len(colours) > 20  # bars, lines, text and antialiasing, not a blank canvas


def overconfident(n=500, k=10, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * 3
    logits[np.arange(n), labels] += 2.0  # right ~60% of the time, with high confidence
    return np.asarray(jax.nn.softmax(jnp.asarray(logits))), labels


@pytest.mark.slow
def test_reliability_diagram(tmp_path):
    probs, labels = overconfident()
    path = tmp_path / "reliability.png"
    save_reliability_diagram(path, probs, labels, num_bins=10, title="overconfident")
    assert_drawn(read_png(path), 480, 560)  # figsize (4.8, 5.6) at dpi 100


def test_reliability_diagram_rejects_bad_input(tmp_path):
    probs, labels = overconfident(50)
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=r"probs has shape \(50,\): expected \[N, K\]"):
        save_reliability_diagram(path, probs[:, 0], labels)
    with pytest.raises(ValueError, match=r"labels have shape \(49,\) and dtype int64: expected "
                                         r"integer labels \(50,\)"):
        save_reliability_diagram(path, probs, labels[:49])
    with pytest.raises(ValueError, match=r"pass softmax\(logits\), not logits"):
        save_reliability_diagram(path, np.log(probs), labels)
    with pytest.raises(ValueError, match="num_bins=0: expected a positive int"):
        save_reliability_diagram(path, probs, labels, num_bins=0)
    assert not path.exists()


@pytest.mark.slow
def test_ood_histograms(tmp_path):
    rng = np.random.default_rng(1)
    in_scores = rng.normal(0.0, 1.0, 400)
    sets = {"uniform_noise": rng.normal(-4.0, 1.0, 300), "hflip": rng.normal(-0.5, 1.0, 300),
            "inverted": rng.normal(-2.0, 2.0, 200), "interpolations": rng.normal(-1.0, 1.0, 100)}
    path = tmp_path / "ood.png"
    save_ood_histograms(path, sets, in_scores, "log p(x)", title="JEM scores")
    assert_drawn(read_png(path), 1260, 640)  # 4 panels in 2 rows of 3: (12.6, 6.4) at dpi 100
    one = tmp_path / "one.png"
    save_ood_histograms(one, {"noise": sets["uniform_noise"]}, in_scores, "log p(x)")
    assert_drawn(read_png(one), 420, 320)


def test_ood_histograms_reject_bad_input(tmp_path):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=r"in_scores has shape \(3, 2\): expected a non-empty 1-D"):
        save_ood_histograms(path, {"a": np.zeros(3)}, np.zeros((3, 2)), "s")
    with pytest.raises(ValueError, match=r"scores\['a'\] has shape \(0,\): expected a non-empty"):
        save_ood_histograms(path, {"a": np.zeros(0)}, np.zeros(3), "s")
    with pytest.raises(ValueError, match=r"scores\['a'\] has 1 NaN/inf values"):
        save_ood_histograms(path, {"a": np.array([0.0, np.nan])}, np.zeros(3), "s")
    with pytest.raises(ValueError, match="scores=dict of length 0: expected a non-empty dict"):
        save_ood_histograms(path, {}, np.zeros(3), "s")
    assert not path.exists()


@pytest.mark.slow
def test_roc_curves(tmp_path):
    rng = np.random.default_rng(2)
    s_in = rng.normal(1.0, 1.0, 200)
    curves = {"good": roc_curve(s_in, rng.normal(-1.0, 1.0, 200)),
              "chance": roc_curve(s_in, rng.normal(1.0, 1.0, 150))}
    path = tmp_path / "roc.png"
    save_roc_curves(path, curves, title="ROC")
    assert_drawn(read_png(path), 480, 460)


def test_roc_curves_reject_bad_input(tmp_path):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=r"curves\['a'\] has fpr \(3,\) and tpr \(2,\): "
                                         r"expected two 1-D arrays of the same length"):
        save_roc_curves(path, {"a": (np.zeros(3), np.zeros(2))})
    with pytest.raises(ValueError, match=r"curves\['a'\]: expected a pair \(fpr, tpr\)"):
        save_roc_curves(path, {"a": np.zeros(3)})
    with pytest.raises(ValueError, match=r"curves\['a'\]: expected non-decreasing fpr and tpr"):
        save_roc_curves(path, {"a": (np.array([0.0, 1.0, 0.5]), np.array([0.0, 0.5, 1.0]))})
    assert not path.exists()


def test_robustness_curve(tmp_path):
    curves = {"baseline": {0.0: 0.97, 0.05: 0.6, 0.1: 0.2, 0.2: 0.0},
              "JEM + SGLD": {0.1: 0.7, 0.0: 0.95, 0.2: 0.4, 0.05: 0.85}}  # unsorted is fine
    path = tmp_path / "robust.png"
    save_robustness_curve(path, curves, "linf", title="PGD-10")
    assert_drawn(read_png(path), 520, 380)


def test_robustness_curve_rejects_bad_input(tmp_path):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match="norm='l1': expected 'linf' or 'l2'"):
        save_robustness_curve(path, {"m": {0.0: 1.0}}, "l1")
    with pytest.raises(ValueError, match=r"curves\['m'\]=\[0.9, 0.5\]: expected a non-empty dict"):
        save_robustness_curve(path, {"m": [0.9, 0.5]}, "l2")
    with pytest.raises(ValueError, match=r"curves\['m'\]: expected budgets >= 0 and accuracies in"):
        save_robustness_curve(path, {"m": {0.0: 97.0}}, "l2")  # a percentage, not a fraction
    assert not path.exists()
