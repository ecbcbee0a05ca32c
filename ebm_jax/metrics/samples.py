"""Sample-quality measures that no one tuned: an independent classifier's view of samples."""
from __future__ import annotations

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


def fit_reference_classifier(x_train: np.ndarray, y_train: np.ndarray, seed: int = 0):
    """A multinomial logistic regression fitted on real training data: the independent judge."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, random_state=seed).fit(
        np.asarray(x_train, np.float64).reshape(len(x_train), -1), y_train)
