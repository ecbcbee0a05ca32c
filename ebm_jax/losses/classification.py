"""Cross-entropy on p(y|x): the discriminative half of JEM, and the softmax baseline."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ebm_jax.energies import LogitsFn
from ebm_jax.losses.base import LossTransform, require_keys


def cross_entropy(logits_fn: LogitsFn, *, label_smoothing: float = 0.0) -> LossTransform:
    """Mean softmax cross-entropy of ``logits_fn(params, x) -> [K]`` on ``batch["y"]``.

    Labels ``-1`` mark unlabelled examples (semi-supervised batches): they are left
    out of the mean and of the accuracy (a batch with no labels gives 0 and no
    gradient).

    Stateless (its state is ``()``). Info: ``accuracy`` (of the labelled examples).

    Example::

      >>> ce = cross_entropy(model.apply)
      >>> value, (_, info) = ce.loss(params, (), {"x": x, "y": y}, key)
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r}: expected a value in [0, 1)")

    def init(rng_key, params, example_batch):
        require_keys(example_batch, ("x", "y"), "cross_entropy")
        return ()

    def loss(params, state, batch, rng_key):
        logits = jax.vmap(logits_fn, in_axes=(None, 0))(params, batch["x"])
        num_classes = logits.shape[-1]
        labels = batch["y"]
        labelled = (labels >= 0).astype(logits.dtype)
        targets = jax.nn.one_hot(jnp.maximum(labels, 0), num_classes)
        if label_smoothing:
            targets = optax.smooth_labels(targets, label_smoothing)
        count = jnp.maximum(jnp.sum(labelled), 1.0)
        value = jnp.sum(optax.softmax_cross_entropy(logits, targets) * labelled) / count
        correct = (jnp.argmax(logits, -1) == labels).astype(logits.dtype)
        accuracy = jnp.sum(correct * labelled) / count
        return value, (state, {"accuracy": accuracy})

    return LossTransform(init, loss)
