"""OOD scores and curves (``ebm_jax.metrics.ood_scores``) against independent computations.

AUPR and the ROC curve are checked against scikit-learn on random and heavily
tied data, the classifier-as-EBM scores against closed forms on a linear
model (the gradient-norm score against the analytic input gradient and a
finite difference), and the report against direct calls.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from ebm_jax.metrics.ood import auroc
from ebm_jax.metrics.ood_scores import (
    aupr,
    grad_norm_score,
    log_px_score,
    max_softmax_score,
    ood_report,
    roc_curve,
)


def scores(seed, tied):
    """In scores ~ N(1, 1), out ~ N(0, 1) in float32; rounding to 0.1 makes many ties."""
    rng = np.random.default_rng(seed)
    s_in = rng.normal(1.0, 1.0, 300).astype(np.float32)
    s_out = rng.normal(0.0, 1.0, 170).astype(np.float32)
    if tied:
        s_in, s_out = np.round(s_in, 1), np.round(s_out, 1)
    return s_in, s_out


def sk_labels_scores(s_in, s_out):
    # Same float32 values as ours (ties must be the same ties), compared in float64.
    return np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out].astype(np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_aupr_matches_sklearn_average_precision_in_both_conventions(seed, tied):
    s_in, s_out = scores(seed, tied)
    labels, pooled = sk_labels_scores(s_in, s_out)
    if tied:
        assert len(np.unique(pooled)) < len(pooled) / 4  # the test really has ties
    expected_in = average_precision_score(labels, pooled)
    expected_out = average_precision_score(1 - labels, -pooled)
    assert float(aupr(s_in, s_out)) == pytest.approx(expected_in, abs=1e-6)
    assert float(aupr(s_in, s_out, positive="in")) == pytest.approx(expected_in, abs=1e-6)
    assert float(aupr(s_in, s_out, positive="out")) == pytest.approx(expected_out, abs=1e-6)
    # The two conventions differ here (the classes have different sizes).
    assert abs(expected_in - expected_out) > 0.05


@pytest.mark.slow
def test_aupr_small_cases_by_hand():
    assert float(aupr(jnp.array([2.0, 3.0]), jnp.array([0.0, 1.0]))) == 1.0
    # Ranking out(2), in(1), out(0): the only positive is found at precision 1/2.
    assert float(aupr(jnp.array([1.0]), jnp.array([0.0, 2.0]))) == pytest.approx(0.5)
    # All scores tied: one threshold, precision = prevalence, in either convention.
    assert float(aupr(jnp.zeros(3), jnp.zeros(5))) == pytest.approx(3 / 8)
    assert float(aupr(jnp.zeros(3), jnp.zeros(5), positive="out")) == pytest.approx(5 / 8)
    # Jits as a whole (no Python-side branching on values).
    assert float(jax.jit(aupr)(jnp.array([2.0, 3.0]), jnp.array([0.0, 1.0]))) == 1.0


def test_aupr_rejects_bad_input():
    with pytest.raises(ValueError, match=r"positive='ood': expected one of \('in', 'out'\)"):
        aupr(jnp.ones(3), jnp.zeros(3), positive="ood")
    with pytest.raises(ValueError, match=r"shapes \(3, 1\) and \(3,\): expected two non-empty"):
        aupr(jnp.ones((3, 1)), jnp.zeros(3))
    with pytest.raises(ValueError, match="expected two non-empty"):
        roc_curve(jnp.ones(3), jnp.zeros(0))


@pytest.mark.parametrize("tied", [False, True])
def test_roc_curve_matches_sklearn_points_and_its_area_is_the_auroc(tied):
    s_in, s_out = scores(2, tied)
    fpr, tpr = (np.asarray(a, np.float64) for a in roc_curve(s_in, s_out))
    assert fpr.shape == tpr.shape == (len(s_in) + len(s_out) + 1,)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    # Tied examples repeat one point: the distinct points are scikit-learn's, one per threshold.
    keep = np.r_[True, (np.diff(fpr) != 0) | (np.diff(tpr) != 0)]
    labels, pooled = sk_labels_scores(s_in, s_out)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, pooled, drop_intermediate=False)
    np.testing.assert_allclose(fpr[keep], sk_fpr, atol=1e-6)
    np.testing.assert_allclose(tpr[keep], sk_tpr, atol=1e-6)
    area = np.trapezoid(tpr, fpr)
    assert area == pytest.approx(roc_auc_score(labels, pooled), abs=1e-6)
    assert area == pytest.approx(float(auroc(jnp.asarray(s_in), jnp.asarray(s_out))), abs=1e-6)


# A linear classifier f(x) = W x + b on flattened inputs, with closed-form scores.
def linear_logits(params, x):
    w, b = params
    return w @ x.reshape(-1) + b


def linear_params(seed=0, k=4, d=6):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=(k, d)), jnp.float32),
            jnp.asarray(rng.normal(size=k), jnp.float32))


def test_log_px_and_max_softmax_scores_on_a_linear_model():
    params = linear_params()
    x = jnp.asarray(np.random.default_rng(1).normal(size=(7, 2, 3)), jnp.float32)  # [B, 2, 3]
    w, b = (np.asarray(p, np.float64) for p in params)
    logits = np.asarray(x, np.float64).reshape(7, -1) @ w.T + b
    lse = np.log(np.exp(logits).sum(1))
    np.testing.assert_allclose(log_px_score(linear_logits)(params, x), lse, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(max_softmax_score(linear_logits))(params, x),
                               np.exp(logits - lse[:, None]).max(1), rtol=1e-5)


def test_grad_norm_score_is_minus_the_input_gradient_norm_of_log_px():
    params = linear_params(3)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(9, 6)), jnp.float32)
    score = jax.jit(grad_norm_score(linear_logits))(params, x)
    # ∂/∂x logsumexp(Wx + b) = Wᵀ softmax(Wx + b).
    w, b = (np.asarray(p, np.float64) for p in params)
    logits = np.asarray(x, np.float64) @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    analytic = np.linalg.norm(p @ w, axis=1)
    np.testing.assert_allclose(score, -analytic, rtol=1e-4)
    assert (np.asarray(score) <= 0).all()
    # A central finite difference of log p(x) (float64 numpy) along each axis agrees too.
    def log_px(z):
        return np.log(np.exp(z @ w.T + b).sum(-1))

    h, xd = 1e-5, np.asarray(x, np.float64)
    fd = np.stack([(log_px(xd + h * e) - log_px(xd - h * e)) / (2 * h) for e in np.eye(6)], axis=1)
    np.testing.assert_allclose(score, -np.linalg.norm(fd, axis=1), rtol=1e-4)


@pytest.mark.slow
def test_grad_norm_score_is_higher_at_a_mode_than_on_a_slope():
    # One logit f(x) = -½||x||²: log p(x) = -½||x||² has its mode at 0, slopes elsewhere.
    def logits_fn(params, x):
        return -0.5 * jnp.sum(x**2)[None]

    score = grad_norm_score(logits_fn)(None, jnp.array([[0.0, 0.0], [0.1, 0.0], [3.0, 4.0]]))
    np.testing.assert_allclose(score, [0.0, -0.1, -5.0], atol=1e-6)
    assert score[0] > score[1] > score[2]  # higher = closer to a mode = more in-distribution


def test_scores_reject_bad_shapes():
    def scalar_logits(params, x):
        return jnp.sum(x)  # a scalar, not logits [K]

    for build in (log_px_score, max_softmax_score, grad_norm_score):
        with pytest.raises(ValueError, match=r"logits_fn returned shape \(\) per example: "
                                             r"expected logits \[K\]"):
            build(scalar_logits)(None, jnp.ones((3, 2)))
        with pytest.raises(ValueError, match=r"x has shape \(0, 2\): expected a non-empty batch"):
            build(linear_logits)(linear_params(d=2), jnp.ones((0, 2)))


@pytest.mark.slow
def test_ood_report_matches_direct_calls_and_batches_consistently():
    params = linear_params(5, k=3, d=4)
    rng = np.random.default_rng(6)
    x_in = rng.normal(0.0, 1.0, (50, 4)).astype(np.float32)
    sets = {"far": rng.normal(0.0, 5.0, (30, 4)).astype(np.float32),
            "same": rng.normal(0.0, 1.0, (30, 4)).astype(np.float32)}
    fns = {"log p(x)": log_px_score(linear_logits), "grad norm": grad_norm_score(linear_logits)}
    report = ood_report(fns, params, x_in, sets, batch_size=16)  # 50 = 3 x 16 + 2, 30 = 16 + 14
    assert set(report) == {"far", "same"}
    for set_name, x_out in sets.items():
        assert set(report[set_name]) == {"log p(x)", "grad norm"}
        for score_name, fn in fns.items():
            fn = jax.jit(fn)
            s_in, s_out = fn(params, jnp.asarray(x_in)), fn(params, jnp.asarray(x_out))
            entry = report[set_name][score_name]
            assert isinstance(entry["auroc"], float) and isinstance(entry["aupr"], float)
            assert entry["auroc"] == pytest.approx(float(auroc(s_in, s_out)), abs=1e-6)
            assert entry["aupr"] == pytest.approx(float(aupr(s_in, s_out)), abs=1e-6)
    # Far-away inputs have steep log p(x) under a linear model: the gradient score sees them.
    assert report["far"]["grad norm"]["auroc"] > 0.7
    assert report == ood_report(fns, params, x_in, sets, batch_size=None)


def test_ood_report_rejects_bad_input():
    params = linear_params(d=4)
    fns = {"log p(x)": log_px_score(linear_logits)}
    x_in = np.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match=r"ood_sets\['bad'\] has shape \(5, 3\): expected a "
                                         r"non-empty \[M, 4\] like x_in \(5, 4\)"):
        ood_report(fns, params, x_in, {"bad": np.zeros((5, 3))})
    with pytest.raises(ValueError, match="score_fns=.*expected a non-empty dict"):
        ood_report({}, params, x_in, {"ok": x_in})
    with pytest.raises(ValueError, match=r"score_fns\['x'\]=1: expected a callable"):
        ood_report({"x": 1}, params, x_in, {"ok": x_in})
    with pytest.raises(ValueError, match="ood_sets: expected a non-empty dict"):
        ood_report(fns, params, x_in, {})
    with pytest.raises(ValueError, match="batch_size=0: expected a positive int or None"):
        ood_report(fns, params, x_in, {"ok": x_in}, batch_size=0)
