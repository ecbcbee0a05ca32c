"""ECBM against the joint concept-bottleneck model on a concept dataset: training and scores.

``evaluate_method("ecbm", load_seven_segment_digits(), seed=0)`` is one row of
``benchmarks/concepts.py``.

Methods (:data:`METHODS`):

- ``"ecbm"``: ECBM with the global energy's pseudo-likelihood over concepts (weight 1) and
  exact joint inference over all ``K 2^C`` (class, concept vector) pairs at the training
  weights ``(3, 1, 1)`` (:func:`~ebm_jax.applications.concepts.inference.infer_exact`);
  told concepts restrict the search;
- ``"ecbm_gradient"``: the same model, predicted by the paper's gradient inference (Adam 0.1,
  100 steps) at the reference's inference weights ``(1, 1, 0.01)`` and re-inferred after an
  intervention at ``(1, 1, 1)`` with the told concepts frozen;
- ``"ecbm_reference"``: the reference code's settings throughout: no pseudo-likelihood,
  gradient inference at ``(1, 1, 0.01)``, re-inference through the global energy alone
  ``(0, 0, 3)`` with pinned logits drifting;
- ``"cbm"``: the joint concept-bottleneck model (concept weight 1).

Scores: ``class_accuracy``, ``concept_accuracy`` (per concept), ``overall_concept_accuracy``
(the whole vector right), ``intervention_curve`` (``[ratio, class accuracy]`` after telling
``round(ratio C)`` random concepts per example), ``one_concept_gain`` (the accuracy of the
concepts not told, after telling one concept, minus before, in points; averaged over telling
each concept in turn to every example), and for ECBM
``conditional_mae`` (mean absolute error of the enumerated ``p(c_k | y)`` against the
training frequencies; the ``[K, C]`` table itself is ``concept_marginals``).
"""
from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ebm_jax._checks import check_choice, check_int
from ebm_jax.applications.concepts.bottleneck import bottleneck_model, bottleneck_predict
from ebm_jax.applications.concepts.conditionals import concept_marginals
from ebm_jax.applications.concepts.inference import (REFERENCE_INTERVENTION_WEIGHTS,
                                                     concept_predictor, infer_exact,
                                                     random_known_mask)
from ebm_jax.applications.concepts.model import concept_energy_model
from ebm_jax.data.concepts import ConceptDataset, concept_frequencies
from ebm_jax.losses.concept_bottleneck import concept_bottleneck_loss
from ebm_jax.losses.ecbm import ecbm_loss
from ebm_jax.nets import MLP, pure
from ebm_jax.train import init_train_state, make_train_step

METHODS = ("ecbm", "ecbm_gradient", "ecbm_reference", "cbm")
INTERVENTION_RATIOS = (0.0, 0.25, 0.5, 0.75, 1.0)
# (pseudo-likelihood weight, inference, weights, re-inference weights, pinned logits drift)
ECBM_SETTINGS = {
    "ecbm": (1.0, "exact", (3.0, 1.0, 1.0), (3.0, 1.0, 1.0), False),
    "ecbm_gradient": (1.0, "gradient", (1.0, 1.0, 0.01), (1.0, 1.0, 1.0), False),
    "ecbm_reference": (0.0, "gradient", (1.0, 1.0, 0.01), REFERENCE_INTERVENTION_WEIGHTS, True)}


def train_params(loss, params: Any, data: ConceptDataset, *, num_steps: int, batch_size: int = 64,
                 learning_rate: float = 1e-3, seed: int = 0) -> Any:
    """Train ``params`` under ``loss`` with Adam on random minibatches of ``data``'s training
    split (one jitted step; batches drawn with NumPy from ``seed``)."""
    optimizer = optax.adam(learning_rate)
    rng = np.random.default_rng(seed)

    def batch():
        i = rng.integers(0, len(data.x_train), batch_size)
        return {"x": jnp.asarray(data.x_train[i]), "y": jnp.asarray(data.y_train[i]),
                "c": jnp.asarray(data.c_train[i])}

    state = init_train_state(jax.random.key(seed), params, optimizer, loss, batch())
    step = jax.jit(make_train_step(loss, optimizer, guard=None))
    for _ in range(num_steps):
        state, _ = step(state, batch())
    return state.params


def _backbone(data: ConceptDataset, seed: int, feature_dim: int):
    return pure(MLP(data.x_train.shape[1], (128,), feature_dim, rngs=nnx.Rngs(seed)))


def _counts(num_concepts: int, ratios) -> list:
    return [int(np.floor(r * num_concepts + 0.5)) for r in ratios]


def _train_ecbm(data, seed, train_steps, feature_dim, pseudo):
    backbone = _backbone(data, seed, feature_dim)
    model = concept_energy_model(backbone.apply, backbone.params, jax.random.key(seed + 1),
                                 num_classes=data.num_classes, num_concepts=data.num_concepts,
                                 feature_dim=feature_dim)
    loss = ecbm_loss(model.class_energies, model.concept_energies, model.global_energies,
                     pseudo_likelihood_weight=pseudo)
    return model, train_params(loss, model.params, data, num_steps=train_steps, seed=seed)


def _intervention_scores(predict_told, before_classes, before_concepts, data, seed, ratios):
    """The intervention curve and the one-concept gain of ``predict_told(known) -> (classes,
    concepts)``; the gain averages telling each concept in turn to every test example."""
    y, c = jnp.asarray(data.y_test), jnp.asarray(data.c_test)
    curve = []
    for ratio, count in zip(ratios, _counts(data.num_concepts, ratios)):
        known = random_known_mask(jax.random.key(seed + 7), len(y), data.num_concepts, count)
        classes = predict_told(known)[0] if count else before_classes
        curve.append([ratio, float(jnp.mean(classes == y))])
    gains = []
    for k in range(data.num_concepts):
        known = jnp.zeros(c.shape, bool).at[:, k].set(True)
        gains.append(_one_concept_gain(before_concepts, predict_told(known)[1], c, known))
    return {"intervention_curve": curve, "one_concept_gain": float(np.mean(gains))}


def _score_ecbm(method, model, params, data, seed, inference_steps, ratios):
    _, how, weights, reinfer_weights, drift = ECBM_SETTINGS[method]
    x, c = jnp.asarray(data.x_test), jnp.asarray(data.c_test)
    if how == "exact":
        exact = jax.jit(lambda p, x, known, c: infer_exact(model, p, x, weights=weights,
                                                           known=known, concepts=c))
        before = exact(params, x, None, None)

        def told(known):
            after = exact(params, x, known, c)
            return after.classes, after.concepts
    else:
        predict, reinfer = concept_predictor(model, weights=weights, num_steps=inference_steps,
                                             intervention_weights=reinfer_weights, drift=drift)
        before = predict(params, x)

        def told(known):
            after = reinfer(params, x, before, known, c)
            return after.classes, after.concepts

    frequencies = concept_frequencies(data.y_train, data.c_train, data.num_classes)
    marginals = np.asarray(concept_marginals(model, params))
    return {**_scores(before.classes, before.concepts, data.y_test, c),
            **_intervention_scores(told, before.classes, before.concepts, data, seed, ratios),
            "conditional_mae": float(np.nanmean(np.abs(marginals - frequencies))),
            "concept_marginals": marginals.round(4).tolist()}


def _evaluate_cbm(data, seed, train_steps, feature_dim, ratios):
    backbone = _backbone(data, seed, feature_dim)
    model = bottleneck_model(backbone.apply, backbone.params, jax.random.key(seed + 1),
                             num_classes=data.num_classes, num_concepts=data.num_concepts,
                             feature_dim=feature_dim)
    loss = concept_bottleneck_loss(model.concept_logits, model.class_logits)
    params = train_params(loss, model.params, data, num_steps=train_steps, seed=seed)
    predict = jax.jit(lambda p, x, k, c: bottleneck_predict(model, p, x, k, c))
    x, c = jnp.asarray(data.x_test), jnp.asarray(data.c_test)
    classes, probs = predict(params, x, jnp.zeros(c.shape, bool), c)
    concepts = (probs > 0.5).astype(jnp.int32)

    def told(known):
        after_classes, after_probs = predict(params, x, known, c)
        return after_classes, (after_probs > 0.5).astype(jnp.int32)

    return {**_scores(classes, concepts, data.y_test, c),
            **_intervention_scores(told, classes, concepts, data, seed, ratios),
            "conditional_mae": None}


def _scores(classes, concepts, y, c) -> dict:
    right = concepts == c
    return {"class_accuracy": float(jnp.mean(classes == y)),
            "concept_accuracy": float(jnp.mean(right)),
            "overall_concept_accuracy": float(jnp.mean(jnp.all(right, axis=1)))}


def _one_concept_gain(before, after, c, known) -> float:
    """Points of accuracy gained, after an intervention, by the concepts not told."""
    others = ~known
    accuracy = [float(jnp.sum((v == c) & others) / jnp.sum(others)) for v in (before, after)]
    return 100 * (accuracy[1] - accuracy[0])


def evaluate_methods(methods, data: ConceptDataset, *, seed: int = 0, train_steps: int = 2000,
                     feature_dim: int = 64, inference_steps: int = 100,
                     ratios=INTERVENTION_RATIOS) -> list:
    """Train and score each of ``methods`` on ``data`` (an MLP backbone
    64-128-``feature_dim``, Adam 1e-3, batches of 64, ``train_steps`` steps; ECBM methods that
    share a training objective share one trained model): one benchmark row per method, with
    ``seconds`` its training (where it trained one) and scoring time."""
    for method in methods:
        check_choice("method", method, METHODS)
    check_int("train_steps", train_steps, 0)
    trained, rows = {}, []
    for method in methods:
        start = time.perf_counter()
        if method not in ECBM_SETTINGS:      # the concept bottleneck
            row = _evaluate_cbm(data, seed, train_steps, feature_dim, ratios)
        else:
            pseudo = ECBM_SETTINGS[method][0]
            if pseudo not in trained:
                trained[pseudo] = _train_ecbm(data, seed, train_steps, feature_dim, pseudo)
            row = _score_ecbm(method, *trained[pseudo], data, seed, inference_steps, ratios)
        rows.append({"method": method, "dataset": data.name, "seed": seed, **row,
                     "seconds": time.perf_counter() - start})
    return rows


def evaluate_method(method: str, data: ConceptDataset, **kwargs) -> dict:
    """One method's row of :func:`evaluate_methods`."""
    return evaluate_methods([method], data, **kwargs)[0]
