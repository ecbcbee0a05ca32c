"""OOD detection: exact average precision and ROC curves, and the JEM scores of a classifier-as-EBM.

A *score* here is higher for examples that look in-distribution (the
convention of :func:`ebm_jax.metrics.auroc`). The score builders turn a
per-example classifier ``logits_fn(params, x) -> [K]`` into a pure batched
``score(params, x [B, ...]) -> [B]``:

==========================  ==========================================  ================
builder                     score                                       JEM paper name
==========================  ==========================================  ================
:func:`log_px_score`        ``logsumexp_y f(x)[y] = -E(x)``              log p(x)
:func:`max_softmax_score`   ``max_y softmax(f(x))[y]``                   max p(y|x)
:func:`grad_norm_score`     ``-||∂ log p(x) / ∂x||_2``                   approximate mass
==========================  ==========================================  ================

:func:`ood_report` evaluates several scores on an in-distribution set and any
number of OOD sets and returns AUROC and AUPR for each pair.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_int
from ebm_jax.energies._base import LogitsFn
from ebm_jax.metrics.ood import _check_score_vectors, auroc

ScoreFn = Callable[[Any, jax.Array], jax.Array]

_POSITIVES = ("in", "out")


def _ranked(scores_in: jax.Array, scores_out: jax.Array):
    """Pool the scores, sort them descending and give each example its tie group's counts.

    Returns ``(is_in [N+M], tp [N+M], fp [N+M])`` in descending-score order, where
    ``tp``/``fp`` are the numbers of in/out examples with score ``>=`` this
    example's score: the counts at the threshold of its tie group, so that tied
    scores share one ROC/PR point (as scikit-learn's distinct thresholds do).
    """
    dtype = jnp.result_type(scores_in.dtype, scores_out.dtype, jnp.float32)
    scores = jnp.concatenate([scores_in.astype(dtype), scores_out.astype(dtype)])
    is_in = jnp.concatenate([jnp.ones(scores_in.shape[0], jnp.int32),
                             jnp.zeros(scores_out.shape[0], jnp.int32)])
    order = jnp.argsort(-scores, stable=True)
    neg_sorted = -scores[order]                        # ascending
    is_in = is_in[order]
    # Index of the last element of each element's tie group.
    group_end = jnp.searchsorted(neg_sorted, neg_sorted, side="right") - 1
    tp = jnp.cumsum(is_in)[group_end]
    fp = group_end + 1 - tp
    return is_in, tp, fp


@jax.jit
def _aupr_in(scores_in: jax.Array, scores_out: jax.Array) -> jax.Array:
    is_in, tp, fp = _ranked(scores_in, scores_out)
    precision = tp / (tp + fp)
    # AP = Σ_thresholds ΔRecall · Precision; every positive contributes 1/P of recall at
    # the threshold of its tie group.
    return jnp.sum(jnp.where(is_in == 1, precision, 0.0)) / scores_in.shape[0]


def aupr(scores_in: jax.Array, scores_out: jax.Array, *, positive: str = "in") -> jax.Array:
    """Area under the precision-recall curve as average precision, exact and jit-friendly.

    Higher score = more in-distribution (as for :func:`~ebm_jax.metrics.auroc`).
    Average precision is ``Σ_t (R_t - R_{t-1}) P_t`` over the distinct score
    thresholds ``t`` (tied scores form one threshold), the step-wise area that
    ``sklearn.metrics.average_precision_score`` computes; no interpolation.
    Its value depends on which class is "positive":

    - ``positive="in"`` (AUPR-In): in-distribution examples are positives,
      ranked by descending score. Chance level is ``N / (N + M)``.
    - ``positive="out"`` (AUPR-Out): OOD examples are positives, ranked by
      descending ``-score``. Chance level is ``M / (N + M)``.

    Args:
      scores_in: ``[N]`` scores of in-distribution examples.
      scores_out: ``[M]`` scores of OOD examples.
      positive: ``"in"`` or ``"out"``.

    Returns:
      A scalar in ``(0, 1]``. O((N+M) log(N+M)) by sorting.

    Example::

      >>> float(aupr(jnp.array([2.0, 3.0]), jnp.array([0.0, 1.0])))
      1.0
      >>> float(aupr(jnp.array([1.0]), jnp.array([0.0, 2.0])))   # ranks: out, in, out
      0.5
    """
    if positive not in _POSITIVES:
        raise ValueError(f"positive={positive!r}: expected one of {_POSITIVES}")
    scores_in, scores_out = _check_score_vectors(scores_in, scores_out)
    if positive == "in":
        return _aupr_in(scores_in, scores_out)
    return _aupr_in(-scores_out, -scores_in)


@jax.jit
def _roc_curve(scores_in: jax.Array, scores_out: jax.Array) -> tuple[jax.Array, jax.Array]:
    _, tp, fp = _ranked(scores_in, scores_out)
    zero = jnp.zeros(1)
    fpr = jnp.concatenate([zero, fp / scores_out.shape[0]])
    tpr = jnp.concatenate([zero, tp / scores_in.shape[0]])
    return fpr, tpr


def roc_curve(scores_in: jax.Array, scores_out: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The ROC curve of telling in-distribution (positive, higher score) from OOD.

    The curve has a fixed length ``N + M + 1`` so that it jits: it starts at
    ``(0, 0)`` and has one point per example in order of descending score, each
    at the threshold of the example's tie group (so tied examples repeat one
    point, and a tie between in and out examples is the diagonal segment that
    the Mann-Whitney ½ counts). The trapezoidal area under it is exactly
    :func:`~ebm_jax.metrics.auroc`.

    Args:
      scores_in: ``[N]`` scores of in-distribution examples.
      scores_out: ``[M]`` scores of OOD examples.

    Returns:
      ``(fpr [N+M+1], tpr [N+M+1])``, both non-decreasing from 0 to 1.

    Example::

      >>> scores_in, scores_out = jnp.array([2.0, 3.0, 0.5]), jnp.array([0.0, 1.0])
      >>> fpr, tpr = roc_curve(scores_in, scores_out)       # plot: plots.save_roc_curves
      >>> round(float(np.trapezoid(tpr, fpr)), 4), round(float(auroc(scores_in, scores_out)), 4)
      (0.8333, 0.8333)
    """
    scores_in, scores_out = _check_score_vectors(scores_in, scores_out)
    return _roc_curve(scores_in, scores_out)


def _batched_logits(logits_fn: LogitsFn, params, x: jax.Array, name: str) -> jax.Array:
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: expected a non-empty batch [B, ...] "
                         f"for the {name} score")
    logits = jax.vmap(logits_fn, in_axes=(None, 0))(params, x)
    if logits.ndim != 2:
        raise ValueError(f"logits_fn returned shape {logits.shape[1:]} per example: "
                         "expected logits [K]")
    return logits


def log_px_score(logits_fn: LogitsFn) -> ScoreFn:
    """The unnormalised log-density of a classifier read as an EBM: ``logsumexp f(x) = -E(x)``.

    ``log p(x) = logsumexp_y f(x)[y] - log Z``; ``log Z`` is one constant for
    all inputs, so it does not change any ranking (AUROC, AUPR).

    Args:
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example.

    Returns:
      ``score(params, x [B, ...]) -> [B]``, pure (jit it at the call site).

    Example::

      >>> logits_fn = lambda w, x: w @ x                     # a linear classifier, 3 classes
      >>> w, x_in, x_out = jnp.eye(3), 3.0 * jnp.eye(3), jnp.zeros((3, 3))
      >>> score = jax.jit(log_px_score(logits_fn))
      >>> float(auroc(score(w, x_in), score(w, x_out)))      # confident logits vs flat ones
      1.0
    """

    def score(params, x):
        return jax.nn.logsumexp(_batched_logits(logits_fn, params, x, "log p(x)"), axis=-1)

    return score


def max_softmax_score(logits_fn: LogitsFn) -> ScoreFn:
    """The maximum class probability ``max_y p(y|x)`` (Hendrycks & Gimpel's baseline).

    Args:
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example.

    Returns:
      ``score(params, x [B, ...]) -> [B]`` in ``[1/K, 1]``.

    Example::

      >>> logits_fn = lambda w, x: w @ x                     # a linear classifier, 3 classes
      >>> w, x_in, x_out = jnp.eye(3), 3.0 * jnp.eye(3), jnp.zeros((3, 3))
      >>> max_softmax_score(logits_fn)(w, x_in).shape
      (3,)
    """

    def score(params, x):
        logits = _batched_logits(logits_fn, params, x, "max softmax")
        return jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)

    return score


def grad_norm_score(logits_fn: LogitsFn) -> ScoreFn:
    """JEM's "approximate mass" score: ``-||∂ log p(x) / ∂x||_2``.

    ``∂ log p(x) / ∂x = ∂ logsumexp f(x) / ∂x = -∂E(x) / ∂x`` (the normaliser
    does not depend on ``x``). In-distribution inputs sit in regions of high
    probability *mass*, near modes of the density where the gradient is
    small, while OOD inputs tend to lie on its slopes, where ``log p(x)``
    changes quickly, even when ``log p(x)`` itself is high (the failure of
    pure likelihood scores). A large gradient norm therefore signals OOD;
    the score is its **negative**, so that, like every score here, higher
    means more in-distribution and AUROC/AUPR need no sign flip
    (Grathwohl et al., 2020, "Your classifier is secretly an energy based
    model", Sec. 5.2).

    The norm is over all features of one example (flattened).

    Args:
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example.

    Returns:
      ``score(params, x [B, ...]) -> [B]``, each value ``<= 0``.

    Example::

      >>> logits_fn = lambda w, x: w @ x                     # a linear classifier, 3 classes
      >>> w, x_in, x_out = jnp.eye(3), 3.0 * jnp.eye(3), jnp.zeros((3, 3))
      >>> score = jax.jit(grad_norm_score(logits_fn))
      >>> bool((score(w, x_in) <= 0).all()), score(w, x_out).shape
      (True, (3,))
    """

    def log_px(params, x):
        logits = logits_fn(params, x)
        if logits.ndim != 1:
            raise ValueError(f"logits_fn returned shape {logits.shape} per example: "
                             "expected logits [K]")
        return jax.nn.logsumexp(logits, axis=-1)

    grad_x = jax.grad(log_px, argnums=1)

    def score(params, x):
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"x has shape {x.shape}: expected a non-empty batch [B, ...] "
                             "for the gradient-norm score")
        grads = jax.vmap(grad_x, in_axes=(None, 0))(params, x)
        return -jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1))

    return score


def _scores_in_batches(score: Callable, params, x: np.ndarray, chunk: Optional[int]) -> np.ndarray:
    """Scores of ``x`` in calls of exactly ``chunk`` examples (the last one padded), so that
    one compiled program serves every set; ``chunk=None``: one call on all of ``x``."""
    if chunk is None:
        return np.asarray(score(params, jnp.asarray(x)))
    n = x.shape[0]
    pad = -n % chunk
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    out = [np.asarray(score(params, jnp.asarray(x[i:i + chunk]))) for i in range(0, n + pad, chunk)]
    return np.concatenate(out)[:n]


def _check_finite_examples(name: str, x: np.ndarray) -> None:
    """Examples with NaN/inf give NaN scores, and AUROC/AUPR of those mean nothing."""
    if np.issubdtype(x.dtype, np.inexact):
        bad = int(np.sum(~np.isfinite(x)))
        if bad:
            raise ValueError(f"{name} has {bad} non-finite values (NaN or inf): expected finite "
                             "examples")


def ood_report(score_fns: Mapping[str, ScoreFn], params, x_in, ood_sets: Mapping[str, Any], *,
               batch_size: Optional[int] = 1000) -> dict:
    """AUROC and AUPR-In of every score on every OOD set against the in-distribution set.

    Every score is jitted once and evaluated on ``x_in`` once.

    Args:
      score_fns: ``{score_name: score(params, x [B, ...]) -> [B]}``, higher = in
        (for example ``{"log p(x)": log_px_score(f), "grad norm": grad_norm_score(f)}``).
      params: the classifier's params, passed to every score.
      x_in: ``[N, ...]`` in-distribution examples (a held-out test set).
      ood_sets: ``{set_name: [M, ...] examples}`` with the same per-example
        shape as ``x_in`` (for example :func:`ebm_jax.data.offline_ood_sets`).
      batch_size: examples per score call (bounds memory; smaller sets and the last
        batch are padded to it, so that every score compiles once); ``None``: each
        set in one call.

    Returns:
      ``{set_name: {score_name: {"auroc": float, "aupr": float}}}``; ``"aupr"`` is
      AUPR-In (in-distribution positive, :func:`aupr` with ``positive="in"``).

    Example::

      >>> logits_fn = lambda w, x: w @ x                     # a linear classifier, 3 classes
      >>> x_in = 3.0 * jnp.eye(3)[jnp.arange(30) % 3]        # confident logits
      >>> ood_sets = {"flat": jnp.zeros((20, 3)), "mixed": jnp.ones((20, 3))}
      >>> report = ood_report({"log p(x)": log_px_score(logits_fn)}, jnp.eye(3), x_in, ood_sets)
      >>> report["flat"]["log p(x)"]
      {'auroc': 1.0, 'aupr': 1.0}
    """
    if not isinstance(score_fns, Mapping) or not score_fns:
        raise ValueError(f"score_fns={score_fns!r}: expected a non-empty dict "
                         "{name: score(params, x) -> [B]}")
    for name, fn in score_fns.items():
        if not callable(fn):
            raise ValueError(f"score_fns[{name!r}]={fn!r}: expected a callable "
                             "score(params, x) -> [B]")
    if not isinstance(ood_sets, Mapping) or not ood_sets:
        raise ValueError("ood_sets: expected a non-empty dict {name: [M, ...] examples}, "
                         f"got {type(ood_sets).__name__} of length "
                         f"{len(ood_sets) if hasattr(ood_sets, '__len__') else '?'}")
    if batch_size is not None:
        check_int("batch_size", batch_size, expected="a positive int or None")
    x_in = np.asarray(x_in)
    if x_in.ndim < 1 or x_in.shape[0] == 0:
        raise ValueError(f"x_in has shape {x_in.shape}: expected a non-empty batch [N, ...]")
    _check_finite_examples("x_in", x_in)
    sets = {name: np.asarray(x) for name, x in ood_sets.items()}
    for name, x in sets.items():
        if x.ndim != x_in.ndim or x.shape[1:] != x_in.shape[1:] or x.shape[0] == 0:
            raise ValueError(f"ood_sets[{name!r}] has shape {x.shape}: expected a non-empty "
                             f"[M, {', '.join(map(str, x_in.shape[1:]))}] like x_in {x_in.shape}")
        _check_finite_examples(f"ood_sets[{name!r}]", x)

    # One chunk size for every set: each score compiles once.
    largest = max(x_in.shape[0], *(x.shape[0] for x in sets.values()))
    chunk = None if batch_size is None else min(batch_size, largest)
    report: dict = {name: {} for name in sets}
    for score_name, fn in score_fns.items():
        score = jax.jit(fn)
        s_in = jnp.asarray(_scores_in_batches(score, params, x_in, chunk))
        for set_name, x in sets.items():
            s_out = jnp.asarray(_scores_in_batches(score, params, x, chunk))
            report[set_name][score_name] = {"auroc": float(auroc(s_in, s_out)),
                                            "aupr": float(aupr(s_in, s_out))}
    return report
