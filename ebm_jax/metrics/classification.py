"""Classification metrics as pure, jit-friendly functions of logits or probabilities."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _check_labels(logits_or_probs: jax.Array, labels: jax.Array) -> None:
    if logits_or_probs.ndim != 2:
        raise ValueError(f"expected [N, K] logits/probabilities, got shape {logits_or_probs.shape}")
    if labels.shape != logits_or_probs.shape[:1]:
        raise ValueError(f"labels have shape {labels.shape}: expected ({logits_or_probs.shape[0]},)")


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of ``argmax(logits [N, K])`` equal to ``labels [N]``."""
    _check_labels(logits, labels)
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def negative_log_likelihood(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean ``-log softmax(logits)[label]`` over ``N`` examples."""
    _check_labels(logits, labels)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def calibration_bins(probs: jax.Array, labels: jax.Array, num_bins: int = 15):
    """Per-bin counts, mean confidence and accuracy of the top-class prediction.

    Bins split (0, 1] into ``num_bins`` equal-width intervals ``(lo, hi]``.

    Returns:
      ``(counts [num_bins], confidence [num_bins], accuracy [num_bins])``; empty
      bins have confidence and accuracy 0.
    """
    _check_labels(probs, labels)
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins={num_bins!r}: expected a positive int")
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

      >>> expected_calibration_error(jax.nn.softmax(logits), labels)
    """
    counts, conf, acc = calibration_bins(probs, labels, num_bins)
    return jnp.sum(counts * jnp.abs(acc - conf)) / probs.shape[0]


def classification_report(logits: jax.Array, labels: jax.Array, num_bins: int = 15) -> dict:
    """Accuracy, NLL and ECE of ``logits [N, K]`` as Python floats."""
    probs = jax.nn.softmax(logits, axis=-1)
    return {
        "accuracy": float(accuracy(logits, labels)),
        "nll": float(negative_log_likelihood(logits, labels)),
        "ece": float(expected_calibration_error(probs, labels, num_bins)),
    }
