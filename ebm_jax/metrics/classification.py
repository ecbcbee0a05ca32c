"""Classification metrics as pure, jit-friendly functions of logits or probabilities.

Shapes and dtypes are checked at trace time; called eagerly, the functions also check the
values (labels in ``[0, K)``, finite logits, probabilities in ``[0, 1]``) and raise a
``ValueError`` rather than return a meaningless number. Under ``jit`` values are traced and
not checked.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_jax._checks import check_int


def _is_concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def _check_labels(logits_or_probs, labels, name: str = "logits"):
    """``(logits_or_probs [N, K] float, labels [N] int)`` as arrays, or a clear error.

    Shapes and dtypes are checked always (they are static, so under ``jit`` too). Values
    are checked only where the arrays are concrete (an eager call; traced values cannot be
    inspected): labels must lie in ``[0, K)`` and ``name`` must be finite (NaN or inf
    logits make every metric meaningless).
    """
    try:
        logits_or_probs, labels = jnp.asarray(logits_or_probs), jnp.asarray(labels)
    except TypeError as err:
        raise TypeError(f"{name}/labels: expected arrays [N, K] and [N] ({err})") from None
    if logits_or_probs.ndim != 2:
        raise ValueError(f"{name} has shape {logits_or_probs.shape}: expected [N, K] "
                         "logits/probabilities")
    num, num_classes = logits_or_probs.shape
    if num == 0 or num_classes == 0:
        raise ValueError(f"{name} has shape {logits_or_probs.shape}: expected at least one "
                         "example and one class (N >= 1, K >= 1)")
    if not jnp.issubdtype(logits_or_probs.dtype, jnp.floating):
        raise TypeError(f"{name} has dtype {logits_or_probs.dtype}: expected floating-point "
                        "logits/probabilities")
    if labels.shape != logits_or_probs.shape[:1]:
        raise ValueError(f"labels have shape {labels.shape}: expected ({num},)")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels have dtype {labels.dtype}: expected integer class labels")
    if _is_concrete(logits_or_probs, labels):
        # On the host: eager jnp reductions would compile a program per op and shape.
        host_labels = np.asarray(labels)
        low, high = int(host_labels.min()), int(host_labels.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"labels are in [{low}, {high}]: expected class labels in "
                             f"[0, {num_classes}) for {name} with K={num_classes}")
        bad = int(np.sum(~np.isfinite(np.asarray(logits_or_probs))))
        if bad:
            raise ValueError(f"{name} has {bad} non-finite values (NaN or inf): expected "
                             "finite values")
    return logits_or_probs, labels


def _check_probs(probs, labels):
    probs, labels = _check_labels(probs, labels, "probs")
    if _is_concrete(probs):
        host_probs = np.asarray(probs)
        low, high = float(host_probs.min()), float(host_probs.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(f"probs are in [{low:g}, {high:g}]: expected probabilities in "
                             "[0, 1] (apply jax.nn.softmax to logits first)")
    return probs, labels


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of ``argmax(logits [N, K])`` equal to ``labels [N]``."""
    logits, labels = _check_labels(logits, labels)
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def negative_log_likelihood(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean ``-log softmax(logits)[label]`` over ``N`` examples."""
    logits, labels = _check_labels(logits, labels)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def calibration_bins(probs: jax.Array, labels: jax.Array, num_bins: int = 15):
    """Per-bin counts, mean confidence and accuracy of the top-class prediction.

    Bins split (0, 1] into ``num_bins`` equal-width intervals ``(lo, hi]``.

    Returns:
      ``(counts [num_bins], confidence [num_bins], accuracy [num_bins])``; empty
      bins have confidence and accuracy 0.
    """
    probs, labels = _check_probs(probs, labels)
    check_int("num_bins", num_bins)
    confidence = jnp.max(probs, axis=-1)
    correct = (jnp.argmax(probs, axis=-1) == labels).astype(jnp.float32)
    bin_index = jnp.clip(jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
    counts = jnp.zeros(num_bins).at[bin_index].add(1.0)
    conf_sum = jnp.zeros(num_bins).at[bin_index].add(confidence)
    acc_sum = jnp.zeros(num_bins).at[bin_index].add(correct)
    safe = jnp.maximum(counts, 1.0)
    return counts, conf_sum / safe, acc_sum / safe


def expected_calibration_error(probs: jax.Array, labels: jax.Array, num_bins: int = 15) -> jax.Array:
    """ECE: ``Σ_b (n_b / N) |acc_b - conf_b|`` over equal-width confidence bins.

    Args:
      probs: ``[N, K]`` predicted class probabilities.
      labels: ``[N]`` integer labels.
      num_bins: number of bins (15, the literature's default).

    Example::

      >>> probs = jnp.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
      >>> labels = jnp.array([0, 0, 1, 1])               # 3 of 4 right, mean confidence 0.75
      >>> round(float(expected_calibration_error(probs, labels, num_bins=1)), 4)
      0.0
    """
    counts, conf, acc = calibration_bins(probs, labels, num_bins)
    return jnp.sum(counts * jnp.abs(acc - conf)) / jnp.shape(probs)[0]


def fit_temperature(logits: jax.Array, labels: jax.Array, *, low: float = 1e-2,
                    high: float = 1e2, num: int = 121) -> jax.Array:
    """Temperature scaling (Guo et al. 2017): the ``T`` that minimises the NLL of
    ``softmax(logits / T)`` on held-out ``logits [N, K]`` and ``labels [N]``.

    Searched on a grid of ``num`` values of ``log T`` over ``[low, high]``, then on a grid of
    ``num`` values between the best point's neighbours (relative precision about
    ``(high / low) ** (2 / num**2)``, 0.1% by default); memory is one ``[N, K]`` at a time.
    ``T < 1`` sharpens an underconfident classifier, ``T > 1`` softens an overconfident one;
    accuracy does not change. Fit it on data the classifier did not train on (a validation
    split), and divide the test logits by it.

    Example::

      >>> logits = 0.2 * jnp.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
      >>> labels = jnp.array([0, 1, 0, 1])     # always right, yet only 69% confident
      >>> float(fit_temperature(logits, labels)) < 0.05     # sharpen (to the grid's edge)
      True
    """
    logits, labels = _check_labels(logits, labels)
    if not 0 < low < high:
        raise ValueError(f"low={low}, high={high}: expected 0 < low < high")
    check_int("num", num)
    if num < 3:
        raise ValueError(f"num={num}: expected at least 3 grid points")
    logits = logits.astype(jnp.float32)

    def nll(log_t):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
            logits / jnp.exp(log_t), labels))

    def best(grid):
        return jnp.argmin(jax.lax.map(nll, grid))

    coarse = jnp.linspace(jnp.log(low), jnp.log(high), num)
    i = best(coarse)
    fine = jnp.linspace(coarse[jnp.maximum(i - 1, 0)], coarse[jnp.minimum(i + 1, num - 1)], num)
    return jnp.exp(fine[best(fine)])


def classification_report(logits: jax.Array, labels: jax.Array, num_bins: int = 15) -> dict:
    """Accuracy, NLL and ECE of ``logits [N, K]`` as Python floats.

    Raises a ``ValueError`` for empty or non-finite logits and for labels outside ``[0, K)``.
    """
    logits, labels = _check_labels(logits, labels)
    check_int("num_bins", num_bins)
    values = jax.device_get(_report_values(logits, labels, num_bins))
    return {name: float(values[name]) for name in ("accuracy", "nll", "ece")}


@functools.partial(jax.jit, static_argnames="num_bins")
def _report_values(logits, labels, num_bins):
    """The report's metrics in one compiled program (the values were checked eagerly)."""
    probs = jax.nn.softmax(logits, axis=-1)
    return {"accuracy": accuracy(logits, labels),
            "nll": negative_log_likelihood(logits, labels),
            "ece": expected_calibration_error(probs, labels, num_bins)}
