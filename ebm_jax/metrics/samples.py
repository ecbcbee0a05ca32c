"""Sample-quality measures that no one tuned: an independent classifier's view of samples."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np


def classifier_sample_quality(samples: np.ndarray, predict_proba: Callable[[np.ndarray], np.ndarray],
                              num_classes: int, data_range: tuple[float, float],
                              range_tolerance: float = 0.1) -> dict:
    """Judge samples with an independent classifier.

    Args:
      samples: ``[N, D]`` samples.
      predict_proba: ``[N, D] -> [N, K]`` class probabilities from a classifier
        trained on real data only (e.g. scikit-learn logistic regression).
      num_classes: ``K``.
      data_range: ``(low, high)`` of real data.
      range_tolerance: slack around the range when counting in-range pixels.

    Returns:
      ``sample_confidence`` (mean max-probability), ``sample_class_fractions``
      (fraction of samples assigned to each class, a list of K floats) and
      ``sample_in_range_fraction`` (fraction of sample values within the range).
    """
    samples = np.asarray(samples, np.float64).reshape(len(samples), -1)
    probs = predict_proba(samples)
    low, high = data_range
    in_range = (samples >= low - range_tolerance) & (samples <= high + range_tolerance)
    counts = np.bincount(probs.argmax(axis=1), minlength=num_classes)
    return {
        "sample_confidence": float(probs.max(axis=1).mean()),
        "sample_class_fractions": (counts / len(samples)).tolist(),
        "sample_in_range_fraction": float(in_range.mean()),
    }


# Judges already fitted, by the content of their inputs: every evaluation of a run (each
# checkpoint's, each resumed leg's, the conditional samples') asks for the same one, and a fit
# on the digits takes about a second. A few kept, oldest dropped first.
_JUDGES: OrderedDict = OrderedDict()
_JUDGES_KEPT = 4


def fit_reference_classifier(x_train: np.ndarray, y_train: np.ndarray, seed: int = 0):
    """A multinomial logistic regression fitted on real training data: the independent judge.

    Args:
      x_train: ``[N, ...]`` real examples (flattened to ``[N, D]``).
      y_train: ``[N]`` integer labels.
      seed: the fit's ``random_state``.

    Returns:
      A fitted scikit-learn ``LogisticRegression``. The same inputs (by content) return the
      same object, fitted once in this process: use it to predict, do not refit or change it.

    Example:
      >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [0.9, 1.0]])
      >>> judge = fit_reference_classifier(x, np.array([0, 0, 1, 1]))
      >>> judge.predict(np.array([[0.05, 0.0], [1.0, 0.9]])).tolist()
      [0, 1]
      >>> fit_reference_classifier(x.copy(), np.array([0, 0, 1, 1])) is judge
      True
    """
    from ebm_jax.train.checkpoint import params_fingerprint  # bytes, dtypes and shapes

    x = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
    y = np.asarray(y_train)
    key = (params_fingerprint((x, y)), int(seed))
    if key in _JUDGES:
        _JUDGES.move_to_end(key)
        return _JUDGES[key]
    from sklearn.linear_model import LogisticRegression

    judge = LogisticRegression(max_iter=2000, random_state=seed).fit(x, y)
    _JUDGES[key] = judge
    while len(_JUDGES) > _JUDGES_KEPT:
        _JUDGES.popitem(last=False)
    return judge
