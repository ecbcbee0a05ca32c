"""The joint concept-bottleneck model's loss (Koh et al. 2020), ECBM's baseline.

A concept-bottleneck model predicts concept logits from the input, squashes them with a
sigmoid and classifies from the concept probabilities alone. Trained jointly::

    L = mean_b CE(f(σ(g(x))), y) + λ mean_b Σ_k BCE(g_k(x), c_k)

Batches are ``{"x": [B, ...], "y": [B], "c": [B, C]}``.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from ebm_jax._checks import check_weight
from ebm_jax.losses.base import LossTransform
from ebm_jax.losses.ecbm import check_concept_batch


def concept_bottleneck_loss(concept_logits_fn: Callable[[Any, jax.Array], jax.Array],
                            class_logits_fn: Callable[[Any, jax.Array], jax.Array], *,
                            concept_weight: float = 1.0) -> LossTransform:
    """The joint bottleneck's loss transform (state ``()``).

    Args:
      concept_logits_fn: ``(params, x) -> [C]`` concept logits.
      class_logits_fn: ``(params, concept_probs [C]) -> [K]`` class logits from the
        bottleneck alone.
      concept_weight: ``λ`` (>= 0), the concept term's weight.

    Info: ``class_loss``, ``concept_loss`` (summed over concepts), ``class_accuracy``,
    ``concept_accuracy``.

    Example::

      >>> loss = concept_bottleneck_loss(lambda p, x: x @ p["g"], lambda p, c: c @ p["f"])
      >>> params = {"g": jnp.zeros((4, 3)), "f": jnp.zeros((3, 2))}
      >>> batch = {"x": jnp.ones((8, 4)), "y": jnp.zeros(8, jnp.int32),
      ...          "c": jnp.ones((8, 3), jnp.int32)}
      >>> value, _ = loss.loss(params, (), batch, jax.random.key(0))
      >>> round(float(value), 4)            # log 2 + 3 log 2
      2.7726
    """
    check_weight("concept_weight", concept_weight, 0.0)

    def check(batch):
        return check_concept_batch(batch, "concept_bottleneck_loss")

    def init(rng_key, params, example_batch):
        check(example_batch)
        return ()

    def loss(params, state, batch, rng_key):
        x, y, c = check(batch)
        concept_logits = jax.vmap(concept_logits_fn, in_axes=(None, 0))(params, x)
        class_logits = jax.vmap(class_logits_fn, in_axes=(None, 0))(
            params, jax.nn.sigmoid(concept_logits))
        class_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits, y))
        concept_loss = jnp.sum(jnp.mean(optax.sigmoid_binary_cross_entropy(
            concept_logits, c.astype(jnp.float32)), axis=0))
        info = {"class_loss": class_loss, "concept_loss": concept_loss,
                "class_accuracy": jnp.mean(jnp.argmax(class_logits, -1) == y),
                "concept_accuracy": jnp.mean((concept_logits > 0) == (c > 0))}
        return class_loss + concept_weight * concept_loss, (state, info)

    return LossTransform(init, loss)
