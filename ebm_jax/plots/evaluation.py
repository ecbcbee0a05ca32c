"""Evaluation plots: reliability diagrams, OOD score histograms, ROC curves, robustness curves."""
from __future__ import annotations

from typing import Mapping, Optional

import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_int
from ebm_jax.metrics.classification import calibration_bins, expected_calibration_error
from ebm_jax.metrics.ood import auroc
from ebm_jax.plots.grids import _figure


def _check_mapping(name: str, value, what: str) -> None:
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{name}={type(value).__name__} of length "
                         f"{len(value) if hasattr(value, '__len__') else '?'}: expected a "
                         f"non-empty dict {what}")


def _scores_1d(name: str, values) -> np.ndarray:
    arr = np.asarray(values, np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} has shape {arr.shape}: expected a non-empty 1-D array [N] "
                         "of scores")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has {int((~np.isfinite(arr)).sum())} NaN/inf values: "
                         "expected finite scores")
    return arr


def save_reliability_diagram(path: str, probs, labels, num_bins: int = 15, *,
                             title: Optional[str] = None) -> None:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration.

    The top panel shows each bin's accuracy as a bar and the gap to its mean
    confidence (shaded); the bottom panel the fraction of examples per bin.
    The title carries the ECE (:func:`ebm_jax.metrics.expected_calibration_error`).

    Args:
      path: PNG path.
      probs: ``[N, K]`` class probabilities (softmax of the logits, not the logits).
      labels: ``[N]`` integer labels.
      num_bins: equal-width confidence bins over ``(0, 1]``.
      title: optional title, shown before the ECE.

    Example::

      >>> logits = jax.random.normal(jax.random.key(0), (500, 10))
      >>> labels = jax.random.randint(jax.random.key(1), (500,), 0, 10)
      >>> save_reliability_diagram("reliability.png", jax.nn.softmax(logits), labels,
      ...                          title="random logits")
    """
    probs_np = np.asarray(probs, np.float64)
    labels_np = np.asarray(labels)
    if probs_np.ndim != 2 or probs_np.shape[0] == 0 or probs_np.shape[1] < 2:
        raise ValueError(f"probs has shape {probs_np.shape}: expected [N, K] class "
                         "probabilities with N >= 1 and K >= 2")
    if labels_np.shape != probs_np.shape[:1] or not np.issubdtype(labels_np.dtype, np.integer):
        raise ValueError(f"labels have shape {labels_np.shape} and dtype {labels_np.dtype}: "
                         f"expected integer labels ({probs_np.shape[0]},)")
    if (not np.isfinite(probs_np).all() or probs_np.min() < -1e-6 or probs_np.max() > 1 + 1e-6
            or np.abs(probs_np.sum(axis=1) - 1).max() > 1e-3):
        raise ValueError("probs: expected rows of probabilities in [0, 1] summing to 1 "
                         "(pass softmax(logits), not logits)")
    check_int("num_bins", num_bins)
    p, t = jnp.asarray(probs_np, jnp.float32), jnp.asarray(labels_np)
    counts, conf, acc = (np.asarray(a) for a in calibration_bins(p, t, num_bins))
    ece = float(expected_calibration_error(p, t, num_bins))
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    centres, width = 0.5 * (edges[1:] + edges[:-1]), 1.0 / num_bins
    filled = counts > 0

    plt = _figure()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centres[filled], acc[filled], width=width, edgecolor="black", color="C0",
            label="accuracy")
    gap_low, gap_high = np.minimum(acc, conf), np.maximum(acc, conf)
    top.bar(centres[filled], (gap_high - gap_low)[filled], bottom=gap_low[filled], width=width,
            color="C3", alpha=0.3, hatch="//", edgecolor="C3", label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(fontsize=8, loc="upper left")
    top.set_title(f"{title + ' — ' if title else ''}ECE {ece:.3f} ({num_bins} bins)")
    bottom.bar(centres, counts / counts.sum(), width=width, color="C7", edgecolor="black")
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("fraction")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_ood_histograms(path: str, scores: Mapping[str, object], in_scores, score_name: str, *,
                        bins: int = 40, title: Optional[str] = None) -> None:
    """Histograms of an OOD score: the in-distribution set against each OOD set.

    One panel per OOD set, each overlaid on the in-distribution histogram with
    shared bins, its AUROC in the panel title (higher score = in).

    Args:
      path: PNG path.
      scores: ``{set_name: [M] scores}`` of the OOD sets.
      in_scores: ``[N]`` scores of in-distribution examples.
      score_name: the score's name, for the x axis (for example ``"log p(x)"``).
      bins: number of shared bins per panel.
      title: optional figure title.

    Example::

      >>> from ebm_jax.metrics import log_px_score
      >>> score = jax.jit(log_px_score(lambda w, x: w @ x))  # a linear classifier, 3 classes
      >>> w, x_test = jnp.eye(3), 3.0 * jnp.eye(3)[jnp.arange(30) % 3]
      >>> noise = jax.random.normal(jax.random.key(0), (20, 3))
      >>> sets = {"flat": jnp.zeros((20, 3)), "noise": noise}
      >>> save_ood_histograms("ood.png", {k: score(w, v) for k, v in sets.items()},
      ...                     score(w, x_test), "log p(x)")
    """
    _check_mapping("scores", scores, "{set_name: [M] scores}")
    check_int("bins", bins)
    s_in = _scores_1d("in_scores", in_scores)
    sets = {name: _scores_1d(f"scores[{name!r}]", v) for name, v in scores.items()}
    plt = _figure()
    count = len(sets)
    columns = min(count, 3)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (name, s_out) in zip(axes.ravel(), sets.items()):
        edges = np.histogram_bin_edges(np.concatenate([s_in, s_out]), bins=bins)
        area = float(auroc(jnp.asarray(s_in), jnp.asarray(s_out)))
        ax.hist(s_in, bins=edges, density=True, alpha=0.5, color="C0", label=f"in (n={s_in.size})")
        ax.hist(s_out, bins=edges, density=True, alpha=0.5, color="C3",
                label=f"{name} (n={s_out.size})")
        ax.set_title(f"{name}: AUROC {area:.3f}", fontsize=10)
        ax.set_xlabel(score_name)
        ax.set_ylabel("density")
        ax.legend(fontsize=7, loc="upper right")  # "best" warns when slow
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[count:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_roc_curves(path: str, curves: Mapping[str, tuple], *, title: Optional[str] = None) -> None:
    """ROC curves (from :func:`ebm_jax.metrics.roc_curve`) on one axes, areas in the legend.

    Args:
      path: PNG path.
      curves: ``{name: (fpr [P], tpr [P])}``, each non-decreasing in ``[0, 1]``.
      title: optional axes title.

    Example::

      >>> from ebm_jax.metrics import roc_curve
      >>> s_in, s_out = jnp.array([2.0, 3.0, 0.5]), jnp.array([0.0, 1.0])
      >>> save_roc_curves("roc.png", {"log p(x)": roc_curve(s_in, s_out)})
    """
    _check_mapping("curves", curves, "{name: (fpr, tpr)}")
    checked = {}
    for name, curve in curves.items():
        try:
            fpr, tpr = (np.asarray(c, np.float64) for c in curve)
        except (TypeError, ValueError):
            raise ValueError(f"curves[{name!r}]: expected a pair (fpr, tpr) of 1-D "
                             "arrays") from None
        if fpr.ndim != 1 or fpr.shape != tpr.shape or fpr.size < 2:
            raise ValueError(f"curves[{name!r}] has fpr {fpr.shape} and tpr {tpr.shape}: expected "
                             "two 1-D arrays of the same length >= 2")
        if (np.diff(fpr) < 0).any() or (np.diff(tpr) < 0).any() or fpr.min() < 0 or fpr.max() > 1 \
                or tpr.min() < 0 or tpr.max() > 1:
            raise ValueError(f"curves[{name!r}]: expected non-decreasing fpr and tpr in [0, 1]")
        checked[name] = (fpr, tpr)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    for name, (fpr, tpr) in checked.items():
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUROC {np.trapezoid(tpr, fpr):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (OOD accepted)")
    ax.set_ylabel("true positive rate (in-distribution accepted)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_robustness_curve(path: str, curves: Mapping[str, Mapping[float, float]], norm: str, *,
                          title: Optional[str] = None) -> None:
    """Accuracy under attack against the budget ``epsilon``, one line per model.

    Args:
      path: PNG path.
      curves: ``{model_name: {eps: accuracy}}`` (from
        :func:`ebm_jax.metrics.robust_accuracy_curve`).
      norm: the attack's norm (``"linf"`` or ``"l2"``), for the x label.
      title: optional axes title.

    Example::

      >>> c0 = {0.0: 0.98, 0.05: 0.31, 0.1: 0.02}            # robust_accuracy_curve(...)
      >>> c1 = {0.0: 0.97, 0.05: 0.74, 0.1: 0.41}
      >>> save_robustness_curve("robustness.png", {"baseline": c0, "JEM + SGLD": c1}, "linf")
    """
    _check_mapping("curves", curves, "{model_name: {eps: accuracy}}")
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm={norm!r}: expected 'linf' or 'l2'")
    checked = {}
    for name, curve in curves.items():
        if not isinstance(curve, Mapping) or not curve:
            raise ValueError(f"curves[{name!r}]={curve!r}: expected a non-empty dict "
                             "{eps: accuracy}")
        eps = np.asarray(sorted(float(e) for e in curve), np.float64)
        acc = np.asarray([float(curve[e]) for e in sorted(curve, key=float)], np.float64)
        if (eps < 0).any() or not np.isfinite(acc).all() or (acc < 0).any() or (acc > 1).any():
            raise ValueError(f"curves[{name!r}]: expected budgets >= 0 and accuracies in [0, 1]")
        checked[name] = (eps, acc)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for name, (eps, acc) in checked.items():
        ax.plot(eps, acc, marker="o", lw=1.5, label=name)
    ax.set_xlabel(f"ε ({'L∞' if norm == 'linf' else 'L2'} budget)")
    ax.set_ylabel("accuracy under PGD")
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")  # "best" warns when slow
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
