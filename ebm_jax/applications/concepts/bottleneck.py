"""The joint concept-bottleneck model (CBM, Koh et al. 2020): ECBM's baseline.

Concepts are predicted independently (``sigmoid(g(x))``), the class from the concept
probabilities alone (``f``), so an intervention replaces the told concepts' probabilities by
their true values and re-runs ``f``; the other concepts' predictions cannot change.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from ebm_jax._checks import check_int
from ebm_jax.nets import MLP, pure


class BottleneckModel(NamedTuple):
    """A concept-bottleneck model as pure per-example functions.

    Attributes:
      concept_logits: ``(params, x) -> [C]``.
      class_logits: ``(params, concept_probs [C]) -> [K]``.
      params: ``{"backbone", "concepts", "classifier"}``.
      num_classes, num_concepts: ``K`` and ``C``.
    """

    concept_logits: Callable[[Any, jax.Array], jax.Array]
    class_logits: Callable[[Any, jax.Array], jax.Array]
    params: Any
    num_classes: int
    num_concepts: int


def bottleneck_model(backbone_fn: Callable[[Any, jax.Array], jax.Array], backbone_params: Any,
                     rng_key: jax.Array, *, num_classes: int, num_concepts: int,
                     feature_dim: int, hidden: int = 64) -> BottleneckModel:
    """A CBM on any backbone: a linear concept layer on the features, then an MLP classifier
    (one hidden layer of ``hidden``) on the concept probabilities.

    Example::

      >>> w = jnp.ones((4, 8))
      >>> model = bottleneck_model(lambda p, x: jnp.tanh(x @ p), w, jax.random.key(0),
      ...                          num_classes=3, num_concepts=2, feature_dim=8)
      >>> probs = jax.nn.sigmoid(model.concept_logits(model.params, jnp.zeros(4)))
      >>> model.class_logits(model.params, probs).shape
      (3,)
    """
    num_classes = check_int("num_classes", num_classes, 2)
    num_concepts = check_int("num_concepts", num_concepts)
    seeds = jax.random.randint(rng_key, (2,), 0, 2**31 - 1)
    concepts = pure(MLP(feature_dim, (), num_concepts, rngs=nnx.Rngs(int(seeds[0]))))
    classifier = pure(MLP(num_concepts, (hidden,), num_classes, rngs=nnx.Rngs(int(seeds[1]))))

    def concept_logits(params, x):
        return concepts.apply(params["concepts"], backbone_fn(params["backbone"], x))

    def class_logits(params, concept_probs):
        return classifier.apply(params["classifier"], concept_probs)

    params = {"backbone": backbone_params, "concepts": concepts.params,
              "classifier": classifier.params}
    return BottleneckModel(concept_logits, class_logits, params, num_classes, num_concepts)


def bottleneck_predict(model: BottleneckModel, params: Any, x: jax.Array,
                       known=None, concepts=None) -> tuple[jax.Array, jax.Array]:
    """``(classes [B], concept_probs [B, C])`` of a batch; where ``known`` (``[B, C]`` bool)
    is set, the concept probability is replaced by the true ``concepts`` value before the
    classifier runs (an intervention).

    Example::

      >>> model = bottleneck_model(lambda p, x: x, None, jax.random.key(0), num_classes=2,
      ...                          num_concepts=3, feature_dim=3)
      >>> known = jnp.array([[True, False, False]])
      >>> _, probs = bottleneck_predict(model, model.params, jnp.zeros((1, 3)), known,
      ...                               jnp.ones((1, 3), jnp.int32))
      >>> probs.tolist()
      [[1.0, 0.5, 0.5]]
    """
    probs = jax.nn.sigmoid(jax.vmap(model.concept_logits, in_axes=(None, 0))(params, x))
    if known is not None:
        probs = jnp.where(jnp.asarray(known, bool), jnp.asarray(concepts, probs.dtype), probs)
    logits = jax.vmap(model.class_logits, in_axes=(None, 0))(params, probs)
    return jnp.argmax(logits, axis=-1), probs
