"""ECBM's gradient inference and concept interventions.

Prediction relaxes the class to free logits ``a`` (``[K]``, probabilities ``softmax(a)``) and
each concept to a pair of logits (``[C, 2]``, the probability of 1 ``softmax(·)[1]``) and
minimises the joint relaxed energy
``λ_y E(x, softmax(a)) + λ_c E(x, p) + λ_g E(p, softmax(a))`` with Adam (learning rate 0.1, a
fixed number of steps: one ``lax.scan``, vmapped over examples, under one ``jit``), from
uniform logits (zeros), as the reference code does.

An intervention tells the model some concepts: their logits are pinned at ``±5`` (the pair
``(-5, 5)`` for 1, ``(5, -5)`` for 0) and the class and the other concepts are re-inferred.
By default the pinned logits stay frozen; ``drift=True`` lets the optimiser move them, as the
reference code does. The reference re-infers from the first inference's concept logits (the
class reset to uniform) with only the global energy (weights ``(0, 0, 3)``); that is
:data:`REFERENCE_INTERVENTION_WEIGHTS`.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from ebm_jax._checks import check_int, check_positive_finite, check_weight
from ebm_jax.applications.concepts.conditionals import all_concept_vectors
from ebm_jax.applications.concepts.model import ConceptEnergyModel

INFERENCE_WEIGHTS = (3.0, 1.0, 1.0)
REFERENCE_INTERVENTION_WEIGHTS = (0.0, 0.0, 3.0)
PIN_LOGIT = 5.0


def _check_known(known, concepts, expected) -> tuple:
    known = jnp.asarray(known, bool)
    concepts = jnp.asarray(concepts)
    for name, value in (("known", known), ("concepts", concepts)):
        if tuple(value.shape) != expected:
            raise ValueError(f"{name} has shape {tuple(value.shape)}: expected {expected}, "
                             "one entry per example and concept")
    return known, concepts


class ConceptPrediction(NamedTuple):
    """The result of gradient inference for a batch.

    Attributes:
      class_logits: ``[B, K]`` relaxed class logits.
      concept_logits: ``[B, C, 2]`` relaxed concept logits.
      energy: ``[B]`` the joint relaxed energy at the end.
    """

    class_logits: jax.Array
    concept_logits: jax.Array
    energy: jax.Array

    @property
    def classes(self) -> jax.Array:
        """``[B]`` the predicted classes."""
        return jnp.argmax(self.class_logits, axis=-1)

    @property
    def concept_probs(self) -> jax.Array:
        """``[B, C]`` the probability of each concept being 1."""
        return jax.nn.softmax(self.concept_logits, axis=-1)[..., 1]

    @property
    def concepts(self) -> jax.Array:
        """``[B, C]`` the predicted concepts (0/1)."""
        return (self.concept_probs > 0.5).astype(jnp.int32)


def _check_weights(weights) -> tuple:
    weights = tuple(weights)
    if len(weights) != 3:
        raise ValueError(f"weights={weights!r}: expected three weights (class, concept, "
                         "global)")
    for name, w in zip(("class", "concept", "global"), weights):
        check_weight(f"weights ({name})", w, 0.0)
    return weights


def pinned_logits(concepts: jax.Array) -> jax.Array:
    """``[..., C, 2]``: concept values (0/1) as the pinned logit pairs ``(∓5, ±5)``."""
    return (jax.nn.one_hot(concepts, 2) - 0.5) * (2 * PIN_LOGIT)


def _infer_one(model, params, x, class_logits, concept_logits, pin_mask, pin_logits, *,
               weights, num_steps, learning_rate, drift):
    optimizer = optax.adam(learning_rate)
    weights = jnp.asarray(weights, jnp.float32)

    def concept_logits_of(free):
        return free if drift else jnp.where(pin_mask[:, None], pin_logits, free)

    def energy(logits):
        a, b = logits
        terms = model.relaxed_energies(params, x, jax.nn.softmax(a),
                                       jax.nn.softmax(concept_logits_of(b), axis=-1)[:, 1])
        return jnp.dot(weights, terms)

    def step(carry, _):
        logits, opt_state = carry
        grads = jax.grad(energy)(logits)
        updates, opt_state = optimizer.update(grads, opt_state, logits)
        return (optax.apply_updates(logits, updates), opt_state), None

    start = (class_logits, jnp.where(pin_mask[:, None], pin_logits, concept_logits))
    (logits, _), _ = jax.lax.scan(step, (start, optimizer.init(start)), None, length=num_steps)
    return logits[0], concept_logits_of(logits[1]), energy(logits)


def _run(model, params, x, class_logits, concept_logits, pin_mask, pin_logits, weights,
         num_steps, learning_rate, drift) -> ConceptPrediction:
    weights = _check_weights(weights)
    num_steps = check_int("num_steps", num_steps, 0)
    check_positive_finite("learning_rate", learning_rate)
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x has shape {tuple(x.shape)}: expected a non-empty batch [B, ...]")
    one = jax.vmap(lambda *a: _infer_one(model, params, *a, weights=weights,
                                         num_steps=num_steps, learning_rate=learning_rate,
                                         drift=drift))
    return ConceptPrediction(*one(x, class_logits, concept_logits, pin_mask, pin_logits))


def infer(model: ConceptEnergyModel, params: Any, x: jax.Array, *,
          weights: tuple = INFERENCE_WEIGHTS, num_steps: int = 100,
          learning_rate: float = 0.1) -> ConceptPrediction:
    """Predict classes and concepts of a batch ``x`` (``[B, ...]``) by gradient inference.

    Jit the call with the model closed over (``jax.jit(functools.partial(infer, model))``)
    or use :func:`concept_predictor`.

    Example::

      >>> from ebm_jax.applications.concepts.model import _tiny_model
      >>> model = _tiny_model()
      >>> out = infer(model, model.params, jnp.zeros((5, 4)), num_steps=10)
      >>> out.classes.shape, out.concepts.shape
      ((5,), (5, 3))
    """
    batch = jnp.shape(x)[0] if jnp.ndim(x) else 0
    k, c = model.num_classes, model.num_concepts
    zeros_c = jnp.zeros((batch, c, 2))
    return _run(model, params, x, jnp.zeros((batch, k)), zeros_c,
                jnp.zeros((batch, c), bool), zeros_c, weights, num_steps, learning_rate, False)


def intervene(model: ConceptEnergyModel, params: Any, x: jax.Array, start: ConceptPrediction,
              known: jax.Array, concepts: jax.Array, *,
              weights: tuple = INFERENCE_WEIGHTS, drift: bool = False, num_steps: int = 100,
              learning_rate: float = 0.1) -> ConceptPrediction:
    """Re-infer after telling the model the concepts where ``known`` (``[B, C]`` bool) is set.

    Args:
      x: ``[B, ...]`` examples.
      start: the prediction before the intervention (:func:`infer`): its concept logits
        start the re-inference; the class restarts from uniform.
      known: ``[B, C]`` which concepts are told.
      concepts: ``[B, C]`` their true values (0/1; entries where ``known`` is unset are
        ignored).
      weights: the energies' weights during re-inference (the reference code's,
        :data:`REFERENCE_INTERVENTION_WEIGHTS`, uses the global energy alone).
      drift: let the pinned logits move (the reference code's behaviour).

    Example::

      >>> from ebm_jax.applications.concepts.model import _tiny_model
      >>> model, x = _tiny_model(), jnp.zeros((2, 4))
      >>> before = infer(model, model.params, x, num_steps=5)
      >>> known = jnp.array([[True, False, False], [True, True, True]])
      >>> after = intervene(model, model.params, x, before, known, jnp.ones((2, 3), jnp.int32),
      ...                   num_steps=5)
      >>> after.concepts[1].tolist(), int(after.concepts[0, 0])
      ([1, 1, 1], 1)
    """
    known, concepts = _check_known(known, concepts, tuple(start.concept_logits.shape[:2]))
    return _run(model, params, x, jnp.zeros_like(start.class_logits), start.concept_logits,
                known, pinned_logits(concepts), weights, num_steps, learning_rate, drift)


def infer_exact(model: ConceptEnergyModel, params: Any, x: jax.Array, *,
                weights: tuple = INFERENCE_WEIGHTS, known: Optional[jax.Array] = None,
                concepts: Optional[jax.Array] = None,
                max_enumerated: int = 12) -> ConceptPrediction:
    """Exact joint inference: ``argmin_{y, c} λ_y E(x, y) + λ_c E(x, c) + λ_g E(c, y)`` over
    all ``K 2^C`` pairs, for short concept vectors; told concepts (``known``, ``[B, C]``
    bool, with their values ``concepts``) restrict the concept vectors searched.

    The global energy does not depend on ``x``, so its ``[2^C, K]`` table is computed once per
    call; each example adds ``K + 2C`` energies. The prediction's logits are max-marginals:
    ``class_logits[y] = -min_c E(y, c)``, ``concept_logits[k, v] = -min_{y, c: c_k = v} E``,
    so their argmaxes are the joint minimiser. Needs a global energy that is a density over
    concepts (``ecbm_loss(..., pseudo_likelihood_weight=1)``); the paper's, normalised over
    classes only, sends the minimiser to arbitrary concept vectors.

    Example::

      >>> from ebm_jax.applications.concepts.model import _tiny_model
      >>> model = _tiny_model()
      >>> out = infer_exact(model, model.params, jnp.zeros((2, 4)))
      >>> out.classes.shape, out.concepts.shape
      ((2,), (2, 3))
      >>> told = infer_exact(model, model.params, jnp.zeros((1, 4)), known=jnp.ones((1, 3), bool),
      ...                    concepts=jnp.array([[1, 0, 1]]))
      >>> told.concepts.tolist()
      [[1, 0, 1]]
    """
    weights = _check_weights(weights)
    num_concepts = model.num_concepts
    if num_concepts > check_int("max_enumerated", max_enumerated, 1, 20):
        raise ValueError(f"infer_exact enumerates 2^{num_concepts} concept vectors: more than "
                         f"max_enumerated={max_enumerated} concepts; use infer (gradient "
                         "inference) or raise max_enumerated")
    x = jnp.asarray(x)
    vectors = all_concept_vectors(num_concepts)                              # [V, C]
    onehot = jax.nn.one_hot(vectors, 2)                                      # [V, C, 2]
    e_global = jax.vmap(model.global_energies, in_axes=(None, 0))(
        params, vectors.astype(jnp.float32))                                 # [V, K]
    e_class = jax.vmap(model.class_energies, in_axes=(None, 0))(params, x)   # [B, K]
    e_concept = jax.vmap(model.concept_energies, in_axes=(None, 0))(params, x)   # [B, C, 2]
    e_vectors = jnp.einsum("bct,vct->bv", e_concept, onehot)                 # [B, V]
    total = (weights[0] * e_class[:, None, :] + weights[1] * e_vectors[:, :, None]
             + weights[2] * e_global[None])                                  # [B, V, K]
    if known is not None:
        known, concepts = _check_known(known, concepts, (x.shape[0], num_concepts))
        agrees = jnp.all(jnp.where(known[:, None, :], vectors[None] == concepts[:, None, :],
                                   True), axis=-1)                           # [B, V]
        total = jnp.where(agrees[:, :, None], total, jnp.inf)
    best_per_vector = total.min(axis=2)                                      # [B, V]
    concept_logits = -jnp.stack(
        [jnp.min(jnp.where(onehot[None, :, :, v] > 0, best_per_vector[:, :, None], jnp.inf),
                 axis=1) for v in (0, 1)], axis=-1)                          # [B, C, 2]
    return ConceptPrediction(-total.min(axis=1), concept_logits, total.min(axis=(1, 2)))


def random_known_mask(rng_key: jax.Array, batch: int, num_concepts: int,
                      count: int) -> jax.Array:
    """``[batch, num_concepts]`` bool with ``count`` random concepts set in every row.

    Example::

      >>> random_known_mask(jax.random.key(0), 3, 7, 2).sum(1).tolist()
      [2, 2, 2]
    """
    count = check_int("count", count, 0, num_concepts)
    scores = jax.random.uniform(rng_key, (batch, num_concepts))
    return jnp.argsort(jnp.argsort(scores, axis=1), axis=1) < count


def concept_predictor(model: ConceptEnergyModel, *, weights: tuple = INFERENCE_WEIGHTS,
                      num_steps: int = 100, learning_rate: float = 0.1,
                      intervention_weights: Optional[tuple] = None, drift: bool = False):
    """``(predict, reinfer)``: jitted :func:`infer` and :func:`intervene` with these settings
    (``intervention_weights`` defaults to ``weights``).

    Example::

      >>> from ebm_jax.applications.concepts.model import _tiny_model
      >>> model = _tiny_model()
      >>> predict, reinfer = concept_predictor(model, num_steps=5)
      >>> predict(model.params, jnp.zeros((3, 4))).classes.shape
      (3,)
    """
    reinfer_weights = weights if intervention_weights is None else intervention_weights

    @jax.jit
    def predict(params, x):
        return infer(model, params, x, weights=weights, num_steps=num_steps,
                     learning_rate=learning_rate)

    @jax.jit
    def reinfer(params, x, start, known, concepts):
        return intervene(model, params, x, start, known, concepts, weights=reinfer_weights,
                         drift=drift, num_steps=num_steps, learning_rate=learning_rate)

    return predict, reinfer
