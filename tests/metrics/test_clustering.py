"""Clustering metrics (ebm_jax.metrics.clustering) on labels whose answers are known."""
import numpy as np
import pytest

from ebm_jax.metrics.clustering import (cluster_accuracy, kmeans_clusters,
                                        largest_cluster_share, nmi)


def test_permuted_labels_score_perfectly():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 200)
    permutation = np.array([2, 0, 3, 1])
    assert nmi(truth, permutation[truth]) == pytest.approx(1.0)
    assert cluster_accuracy(truth, permutation[truth]) == 1.0


def test_hungarian_matching_on_a_hand_worked_example():
    truth = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    # cluster 5 holds class 0 (3), cluster 1 holds class 1 (2) and one of class 2,
    # cluster 0 holds one of class 1 and one of class 2: best matching 5->0, 1->1, 0->2
    pred = np.array([5, 5, 5, 1, 1, 0, 1, 0])
    assert cluster_accuracy(truth, pred) == pytest.approx(6 / 8)
    # a greedy majority vote would map clusters 1 and 0 both to class... -> matching is 1:1
    assert cluster_accuracy(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0])) == 0.5


def test_nmi_of_independent_labels_is_near_zero_and_of_a_merge_is_in_between():
    truth = np.repeat([0, 1], 50)
    assert nmi(truth, np.tile([0, 1], 50)) == pytest.approx(0.0, abs=1e-12)
    four = np.repeat([0, 1, 2, 3], 25)
    merged = np.repeat([0, 0, 1, 1], 25)
    assert 0.5 < nmi(four, merged) < 1.0


def test_largest_cluster_share():
    assert largest_cluster_share(np.array([0, 1, 2, 3])) == 0.25
    assert largest_cluster_share(np.array([7, 7, 7, 7])) == 1.0


def test_kmeans_recovers_separated_blobs_and_predicts_new_points():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + rng.normal(size=(30, 2)) for c in centres])
    y = np.repeat([0, 1, 2], 30)
    new = centres + 0.1
    labels = kmeans_clusters(x, 3, seed=1, x_predict=np.concatenate([x, new]))
    assert cluster_accuracy(y, labels[:90]) == 1.0
    assert sorted(labels[90:].tolist()) == sorted(set(labels[:90].tolist()))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="labels_true has shape .* labels_pred"):
        nmi(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="labels_pred has dtype float"):
        cluster_accuracy(np.zeros(3, int), np.array([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match="expected labels >= 0"):
        largest_cluster_share(np.array([-1, 0]))
    with pytest.raises(ValueError, match="non-empty vector"):
        nmi(np.zeros((2, 2), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="num_clusters=0"):
        kmeans_clusters(np.zeros((4, 2)), 0)
    with pytest.raises(ValueError, match="x_predict has 3 features"):
        kmeans_clusters(np.zeros((4, 2)), 2, x_predict=np.zeros((2, 3)))
