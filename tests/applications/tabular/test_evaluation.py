"""The augmentation protocol's pieces against known answers: the jitter's noise, SMOTE's
interpolations, the privacy and fidelity figures on sets built to have them, and one split's
rows."""
import numpy as np
import pytest
from sklearn.datasets import load_iris

from ebm_jax.applications.tabular.evaluation import (evaluate_split, fidelity, jitter_rows,
                                                     privacy, smote_rows, stratified_split)

KEYS = ("dataset", "n_real", "method", "classifier", "seed", "balanced_accuracy", "ks_mean",
        "mmd", "dcr_median", "exact_copy_rate")


def _two_classes(seed=0, n=30):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (n, 3)), rng.normal(4, 2, (n, 3))])
    return X, np.repeat([0, 1], n)


def test_jitter_is_real_rows_plus_a_tenth_of_a_standard_deviation():
    X, y = _two_classes()
    X_new, y_new = jitter_rows(X, y, 2000, seed=0)
    assert np.bincount(y_new).tolist() == [2000, 2000]
    nearest = np.abs(X_new[:, None] - X[None]).sum(-1).argmin(1)
    noise = (X_new - X[nearest]) / X.std(0)
    np.testing.assert_allclose(noise.std(0), 0.1, rtol=0.05)  # 4,000 draws a feature: ~1%
    assert np.all(y[nearest] == y_new)


def test_smote_rows_lie_between_two_rows_of_their_class():
    pytest.importorskip("imblearn")
    X, y = _two_classes(n=12)
    X_new, y_new = smote_rows(X, y, 25, seed=0)
    assert np.bincount(y_new).tolist() == [25, 25]
    for x, label in zip(X_new, y_new):
        own = X[y == label]
        # x = a + t (b - a): some pair (a, b) of the class and t in [0, 1] reproduce it
        a, b = own[:, None], own[None]
        t = ((x - a) * (b - a)).sum(-1) / np.maximum(((b - a) ** 2).sum(-1), 1e-12)
        gap = np.abs(a + np.clip(t, 0, 1)[..., None] * (b - a) - x).max(-1)
        assert gap.min() < 1e-6


def test_privacy_counts_copies_and_measures_the_closest_row():
    X_train = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])  # std 1 per feature
    synth = np.array([[0.0, 0.0], [2.0, 2.0], [1.0, 0.0], [0.0, 0.5]])
    measured = privacy(synth, X_train)
    assert measured["exact_copy_rate"] == 0.5
    assert measured["dcr_median"] == pytest.approx(0.25)  # distances 0, 0, 1, 0.5 -> 0.25


def test_fidelity_is_near_zero_for_the_same_law_and_grows_with_a_shift():
    X, y = _two_classes(seed=1, n=200)
    X_test, y_test = _two_classes(seed=2, n=200)
    same = fidelity(X, y, X_test, y_test, X)
    shifted = fidelity(X + 1.5, y, X_test, y_test, X)
    assert same["ks_mean"] < 0.15 < shifted["ks_mean"]
    assert abs(same["mmd"]) < 0.02 < shifted["mmd"]


@pytest.mark.slow
def test_one_split_makes_a_row_per_method_and_classifier_with_every_key():
    X, y = load_iris(return_X_y=True)
    rows = evaluate_split("iris", X, y, 20, seed=0, methods=("real", "tabebm_kernel"),
                          classifiers=("knn", "logistic_regression"))
    assert [(r["method"], r["classifier"]) for r in rows] == [
        ("real", "knn"), ("real", "logistic_regression"),
        ("tabebm_kernel", "knn"), ("tabebm_kernel", "logistic_regression")]
    for row in rows:
        assert set(KEYS) <= set(row) and 0.0 <= row["balanced_accuracy"] <= 1.0
    assert rows[0]["mmd"] is None and rows[2]["exact_copy_rate"] == 0.0
    assert rows[2]["dcr_median"] > 0


def test_the_split_is_stratified_and_tests_on_the_rest():
    X, y = load_iris(return_X_y=True)
    X_train, y_train, X_test, y_test = stratified_split(X, y, 21, seed=3)
    assert np.bincount(y_train).tolist() == [7, 7, 7] and len(X_test) == 129
