"""Cross-entropy on p(y|x): the discriminative half of JEM, and the softmax baseline."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ebm_jax._checks import check_probability
from ebm_jax.energies import LogitsFn
from ebm_jax.losses.base import (LossTransform, check_examples, check_labels, check_weight,
                                 require_keys)


def cross_entropy(logits_fn: LogitsFn, *, label_smoothing: float = 0.0) -> LossTransform:
    """Mean softmax cross-entropy of ``logits_fn(params, x) -> [K]`` on ``batch["y"]``.

    Labels ``-1`` mark unlabelled examples (semi-supervised batches): they are left
    out of the mean and of the accuracy (a batch with no labels gives 0 and no
    gradient). ``batch["y"]`` must be ``[B]`` integers (checked at trace time); labels
    outside ``[-1, K)`` raise a ``ValueError`` where they are concrete (``init``, eager
    calls; under ``jit`` values cannot be inspected).

    Stateless (its state is ``()``). Info: ``accuracy`` (of the labelled examples).

    Example::

      >>> ce = cross_entropy(lambda w, x: x @ w)            # a linear classifier, 3 classes
      >>> w, batch = jnp.zeros((2, 3)), {"x": jnp.ones((4, 2)), "y": jnp.array([0, 1, 2, -1])}
      >>> value, (_, info) = ce.loss(w, (), batch, jax.random.key(0))
      >>> round(float(value), 4), round(float(info["accuracy"]), 4)   # log 3; 1 of 3 labelled
      (1.0986, 0.3333)
    """
    check_weight("label_smoothing", label_smoothing, 0.0)
    check_probability("label_smoothing", label_smoothing, include_one=False)
    batched_logits = jax.vmap(logits_fn, in_axes=(None, 0))

    def check_logits(logits, batch, x):
        if len(logits.shape) != 2:
            raise ValueError(f"cross_entropy: logits_fn returned shape {logits.shape[1:]} per "
                             "example: expected logits [K]")
        return check_labels(batch, "cross_entropy", x.shape[0], logits.shape[-1],
                            unlabelled=True)

    def init(rng_key, params, example_batch):
        require_keys(example_batch, ("x", "y"), "cross_entropy")
        x = check_examples(example_batch, "cross_entropy")
        check_logits(jax.eval_shape(batched_logits, params, x), example_batch, x)  # no compute
        return ()

    def loss(params, state, batch, rng_key):
        require_keys(batch, ("x", "y"), "cross_entropy")
        x = check_examples(batch, "cross_entropy")
        logits = batched_logits(params, x)
        num_classes = logits.shape[-1]
        labels = check_logits(logits, batch, x)
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
