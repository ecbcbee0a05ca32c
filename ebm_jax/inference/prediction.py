"""Batched prediction with a classifier read as an EBM: labels, probabilities and energies for
any number of examples, in fixed-size jitted batches.

For a classifier ``f``, the label is ``argmin_y E(x, y) = argmax_y f(x)[y]``, the
probabilities are ``softmax f(x)`` and the energy is ``E(x) = -logsumexp f(x)`` (low where
the model finds ``x`` likely; a score for out-of-distribution detection).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_int


class Prediction(NamedTuple):
    """What :func:`predict` returns, as NumPy arrays.

    Attributes:
      labels: ``int32 [N]``, the most likely class.
      probs: ``float32 [N, K]``, ``softmax f(x)``.
      energy: ``float32 [N]``, ``E(x) = -logsumexp f(x)``.
    """

    labels: np.ndarray
    probs: np.ndarray
    energy: np.ndarray


@functools.lru_cache(maxsize=16)  # one jitted program per classifier, across calls
def _batch_prediction(logits_fn: Callable) -> Callable:
    def run(params, x):
        logits = jax.vmap(logits_fn, (None, 0))(params, x)
        return (jnp.argmax(logits, -1).astype(jnp.int32), jax.nn.softmax(logits, -1),
                -jax.nn.logsumexp(logits, -1))

    return jax.jit(run)


def predict(logits_fn: Callable, params, x, *, batch_size: int = 1024) -> Prediction:
    """Labels, probabilities and energies of ``x [N, ...]`` under a per-example
    ``logits_fn(params, x) -> [K]``.

    The examples go through one jitted program in batches of ``batch_size`` (the last one
    padded, so that any ``N`` compiles once), and come back as NumPy arrays.

    Example::

      >>> logits_fn = lambda w, x: x @ w                          # a linear classifier
      >>> w = jnp.array([[1.0, -1.0], [0.0, 0.0]])
      >>> out = predict(logits_fn, w, np.array([[2.0, 0.0], [-3.0, 1.0], [0.0, 5.0]]),
      ...               batch_size=2)
      >>> out.labels.tolist(), out.probs.shape, round(float(out.energy[2]), 4)
      ([0, 1, 0], (3, 2), -0.6931)
    """
    batch_size = check_int("batch_size", batch_size)
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: expected a non-empty batch of examples "
                         "[N, ...]")
    run = _batch_prediction(logits_fn)
    size = min(batch_size, x.shape[0])
    parts = []
    for start in range(0, x.shape[0], size):
        chunk = x[start:start + size]
        count = chunk.shape[0]
        if count < size:  # pad with the last example: one program for every batch
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - count, axis=0)])
        parts.append([np.asarray(a)[:count] for a in run(params, jnp.asarray(chunk))])
    labels, probs, energy = (np.concatenate(p) for p in zip(*parts))
    return Prediction(labels, probs, energy)


__all__ = ["Prediction", "predict"]
