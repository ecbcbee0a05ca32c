"""Clustering metrics (host-side, NumPy in and out) and a k-means baseline.

* :func:`nmi`: normalised mutual information between true classes and clusters
  (scikit-learn's arithmetic-mean normalisation), invariant to relabelling the clusters.
* :func:`cluster_accuracy`: accuracy after the best one-to-one matching of clusters to
  classes (the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``); clusters left
  unmatched (more clusters than classes) count as errors.
* :func:`largest_cluster_share`: the share of points in the most populated cluster
  (``1 / K`` balanced, 1.0 for a collapsed clustering).
* :func:`kmeans_clusters`: scikit-learn's ``KMeans`` fitted on one set, predicting another.

Labels are 1-D integer arrays of equal length ``[N]``; every check raises a ``ValueError``
naming the argument, what it got and what was expected.

Example::

  >>> truth = np.array([0, 0, 1, 1, 2, 2])
  >>> clusters = np.array([2, 2, 0, 0, 1, 1])                  # the same partition, renamed
  >>> round(nmi(truth, clusters), 4), cluster_accuracy(truth, clusters)
  (1.0, 1.0)
  >>> largest_cluster_share(np.array([0, 0, 0, 1]))
  0.75
"""
from __future__ import annotations

import numpy as np

from ebm_jax._checks import check_int

__all__ = ["cluster_accuracy", "kmeans_clusters", "largest_cluster_share", "nmi"]


def _labels(name: str, labels) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{name} has shape {array.shape}: expected a non-empty vector [N] "
                         "of integer labels")
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) \
                and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise ValueError(f"{name} has dtype {array.dtype}: expected integer labels "
                             "(e.g. argmax of the cluster logits)")
    if array.min() < 0:
        raise ValueError(f"{name} has a label {int(array.min())}: expected labels >= 0")
    return array


def _pair(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    truth = _labels("labels_true", labels_true)
    pred = _labels("labels_pred", labels_pred)
    if truth.shape != pred.shape:
        raise ValueError(f"labels_true has shape {truth.shape} and labels_pred {pred.shape}: "
                         "expected one cluster label per true label")
    return truth, pred


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information in ``[0, 1]`` (``sklearn.metrics``'s
    ``normalized_mutual_info_score``, arithmetic normalisation).

    Example::

      >>> round(nmi(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])), 4)   # independent
      0.0
    """
    from sklearn.metrics import normalized_mutual_info_score

    truth, pred = _pair(labels_true, labels_pred)
    return float(normalized_mutual_info_score(truth, pred))


def cluster_accuracy(labels_true, labels_pred) -> float:
    """Accuracy under the one-to-one cluster-to-class matching that maximises it.

    Example::

      >>> cluster_accuracy(np.array([0, 0, 1, 1]), np.array([1, 1, 1, 0]))   # 1->0, 0->1
      0.75
    """
    from scipy.optimize import linear_sum_assignment

    truth, pred = _pair(labels_true, labels_pred)
    size = max(int(truth.max()), int(pred.max())) + 1
    counts = np.zeros((size, size), np.int64)                  # [cluster, class]
    np.add.at(counts, (pred, truth), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / truth.shape[0])


def largest_cluster_share(labels_pred) -> float:
    """The share of points in the most populated cluster.

    Example::

      >>> largest_cluster_share(np.array([3, 3, 1, 0]))
      0.5
    """
    pred = _labels("labels_pred", labels_pred)
    return float(np.bincount(pred).max() / pred.shape[0])


def kmeans_clusters(x_fit, num_clusters: int, *, seed: int = 0,
                    x_predict=None, n_init: int = 10) -> np.ndarray:
    """k-means (scikit-learn's ``KMeans``, ``n_init`` restarts) fitted on ``x_fit [N, ...]``
    (flattened per row); returns the cluster of each row of ``x_predict`` (default ``x_fit``).

    Example::

      >>> x = np.concatenate([np.zeros((5, 2)), np.ones((5, 2)) * 10.0])
      >>> labels = kmeans_clusters(x, 2)
      >>> cluster_accuracy(np.repeat([0, 1], 5), labels)
      1.0
    """
    from sklearn.cluster import KMeans

    num_clusters = check_int("num_clusters", num_clusters, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    n_init = check_int("n_init", n_init)
    fit = np.asarray(x_fit, np.float64)
    if fit.ndim < 2 or fit.shape[0] < num_clusters:
        raise ValueError(f"x_fit has shape {fit.shape}: expected [N, ...] with at least "
                         f"num_clusters={num_clusters} rows")
    fit = fit.reshape(fit.shape[0], -1)
    predict = fit if x_predict is None else np.asarray(x_predict, np.float64)
    predict = predict.reshape(predict.shape[0], -1)
    if predict.shape[1] != fit.shape[1]:
        raise ValueError(f"x_predict has {predict.shape[1]} features per row: expected "
                         f"{fit.shape[1]}, as x_fit")
    model = KMeans(num_clusters, n_init=n_init, random_state=seed).fit(fit)
    return model.predict(predict).astype(np.int64)
