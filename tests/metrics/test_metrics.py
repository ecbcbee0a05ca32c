"""Classification, calibration, OOD and quadrature metrics against independent computations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ebm_jax import metrics
from ebm_jax.energies import gaussian


def _ece_reference(probs, labels, num_bins=15):
    """A plain-numpy ECE with (lo, hi] bins, written independently of the library."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for lo, hi in zip(np.linspace(0, 1, num_bins + 1)[:-1], np.linspace(0, 1, num_bins + 1)[1:]):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            total += mask.mean() * abs((pred[mask] == labels[mask]).mean() - conf[mask].mean())
    return total


def test_ece_matches_a_reference_implementation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)) * 3
    labels = rng.integers(0, 10, 500)
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits)), np.float64)
    ours = float(metrics.expected_calibration_error(jnp.asarray(probs), jnp.asarray(labels)))
    assert ours == pytest.approx(_ece_reference(probs, labels), abs=1e-5)


@pytest.mark.slow
def test_ece_is_zero_for_a_perfectly_calibrated_predictor_and_large_for_an_overconfident_one():
    # Confidence 0.75 and exactly 75% correct: calibrated.
    probs = jnp.tile(jnp.array([[0.75, 0.25]]), (400, 1))
    labels = jnp.array([0] * 300 + [1] * 100)
    assert float(metrics.expected_calibration_error(probs, labels)) == pytest.approx(0.0, abs=1e-6)
    # Confidence 0.99 but only 50% correct: ECE = 0.49.
    probs = jnp.tile(jnp.array([[0.99, 0.01]]), (400, 1))
    labels = jnp.array([0, 1] * 200)
    assert float(metrics.expected_calibration_error(probs, labels)) == pytest.approx(0.49, abs=1e-5)


def test_fit_temperature_recovers_the_temperature_of_the_labels_and_fixes_ece():
    # Labels drawn from softmax(z / 0.4): the logits z are underconfident by a factor 2.5.
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 10)).astype(np.float32)
    p = np.asarray(jax.nn.softmax(jnp.asarray(z / 0.4)), np.float64)
    labels = jnp.asarray((p.cumsum(-1) > rng.random((4000, 1))).argmax(-1))
    t = float(metrics.fit_temperature(jnp.asarray(z), labels))
    assert t == pytest.approx(0.4, rel=0.08)
    ece = lambda logits: float(metrics.expected_calibration_error(jax.nn.softmax(logits), labels))
    assert ece(jnp.asarray(z / t)) < 0.03 < 0.2 < ece(jnp.asarray(z))
    with pytest.raises(ValueError, match="expected 0 < low < high"):
        metrics.fit_temperature(jnp.asarray(z), labels, low=2.0, high=1.0)


@pytest.mark.slow
def test_accuracy_and_nll():
    logits = jnp.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    labels = jnp.array([0, 1, 1])
    assert float(metrics.accuracy(logits, labels)) == pytest.approx(2 / 3)
    expected = np.mean([np.log1p(np.exp(-2)), np.log1p(np.exp(-2)), 2 + np.log1p(np.exp(-2))])
    assert float(metrics.negative_log_likelihood(logits, labels)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"labels have shape \(2,\): expected \(3,\)"):
        metrics.accuracy(logits, labels[:2])


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    s_in = np.round(rng.normal(1.0, 1.0, 300), 1)  # rounding makes ties
    s_out = np.round(rng.normal(0.0, 1.0, 200), 1)
    expected = roc_auc_score(np.r_[np.ones(300), np.zeros(200)], np.r_[s_in, s_out])
    assert float(metrics.auroc(jnp.asarray(s_in), jnp.asarray(s_out))) == pytest.approx(expected, abs=1e-6)
    # Swapping the roles flips the AUROC around 1/2.
    assert float(metrics.auroc(jnp.asarray(s_out), jnp.asarray(s_in))) == pytest.approx(1 - expected,
                                                                                         abs=1e-6)
    with pytest.raises(ValueError, match="two non-empty vectors"):
        metrics.auroc(jnp.zeros((0,)), jnp.zeros(3))


def test_kl_by_quadrature_matches_the_closed_form_between_gaussians():
    p = gaussian(jnp.zeros(2), jnp.eye(2) * 0.5)
    q = gaussian(jnp.array([0.5, -0.3]), jnp.array([[0.8, 0.2], [0.2, 0.6]]))
    # KL(N0 || N1) = ½ [tr(S1⁻¹ S0) + (μ1-μ0)ᵀ S1⁻¹ (μ1-μ0) - d + log det S1 / det S0]
    s0, s1 = np.eye(2) * 0.5, np.array([[0.8, 0.2], [0.2, 0.6]])
    d = np.array([0.5, -0.3])
    inv1 = np.linalg.inv(s1)
    exact = 0.5 * (np.trace(inv1 @ s0) + d @ inv1 @ d - 2 + np.log(np.linalg.det(s1) / np.linalg.det(s0)))
    # The model enters only through its energy: an unnormalised shift must not matter.
    kl = metrics.kl_by_quadrature(p.log_prob, lambda x: q.energy_fn(None, x) + 123.0)
    assert float(kl) == pytest.approx(exact, rel=1e-3)
    assert float(metrics.kl_by_quadrature(p.log_prob, lambda x: p.energy_fn(None, x))) == pytest.approx(
        0.0, abs=1e-5)


def test_classifier_sample_quality():
    samples = np.array([[0.0, 0.0], [2.0, 0.0], [0.5, 0.5], [0.1, 0.2]])

    def predict_proba(x):
        return np.tile([[0.9, 0.1]], (len(x), 1))

    out = metrics.classifier_sample_quality(samples, predict_proba, 2, (-1.0, 1.0))
    assert out["sample_confidence"] == pytest.approx(0.9)
    assert out["sample_class_fractions"] == [1.0, 0.0]
    assert out["sample_in_range_fraction"] == pytest.approx(7 / 8)  # 2.0 is outside [-1.1, 1.1]


def test_the_reference_classifier_is_fitted_once_per_content_of_its_data():
    """The same rows (another array of the same values) read back the fitted judge; a changed
    row, label or seed fits another, and the judge of the changed rows is the one a fresh
    fit gives."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    judge = metrics.fit_reference_classifier(x, y)
    assert metrics.fit_reference_classifier(x.copy(), y.copy()) is judge
    moved = x.copy()
    moved[0, 0] = -moved[0, 0] + 5.0
    other = metrics.fit_reference_classifier(moved, y)
    assert other is not judge
    fresh = LogisticRegression(max_iter=2000, random_state=0).fit(moved, y)
    np.testing.assert_allclose(other.coef_, fresh.coef_)
    assert metrics.fit_reference_classifier(x, 1 - y) is not judge
    assert metrics.fit_reference_classifier(x, y, seed=1) is not judge


@pytest.mark.slow
def test_mmd_is_near_zero_for_the_same_distribution_and_grows_with_a_shift():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k1, (500, 2))
    y = jax.random.normal(k2, (500, 2))
    same = float(metrics.mmd(x, y))
    # The unbiased estimator's spread at n=500 is O(1/n) of the kernel sum (6 kernels, each ≤ 1):
    # measured |MMD²| ≤ 0.004 over 6 seeds for identical distributions, so 0.02 is 5x that;
    # a 1-sd shift gives 0.30 here, far above.
    assert abs(same) < 0.02
    shifted = float(metrics.mmd(x, jax.random.normal(k3, (500, 2)) + jnp.array([1.0, 0.0])))
    assert shifted > 10 * max(abs(same), 0.01)
    # More shift, more discrepancy.
    assert float(metrics.mmd(x, y + 2.0)) > shifted
    with pytest.raises(ValueError, match="expected at least 2 examples"):
        metrics.mmd(x[:1], y)
