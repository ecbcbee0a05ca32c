"""The joint concept-bottleneck model (Koh et al. 2020): concepts by sigmoid from the
backbone, the class from the concepts alone (:func:`ebm_jax.losses.concept_bottleneck_loss`);
ECBM's baseline. An intervention replaces the told concepts' probabilities by their values.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("cbm_digits").objective.concept_weight
    1.0
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ebm_jax.applications.concepts import bottleneck_model, bottleneck_predict
from ebm_jax.experiments.config import (NON_NEGATIVE, POSITIVE_INT, Config, ObjectiveConfig,
                                        section, setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._concepts import (CONCEPT_MODELS, CONCEPT_MODELS_NOTE,
                                                      backbone, concept_pieces,
                                                      digits_preset)
from ebm_jax.experiments.sampling import LangevinConfig
from ebm_jax.losses import concept_bottleneck_loss


@dataclass(frozen=True)
class CBMConfig(ObjectiveConfig):
    """``concept_bottleneck_loss(concept_weight=)`` on ``bottleneck_model(backbone,
    feature_dim=, hidden=)``; ``sampler``: SGLD on E(x) = -logsumexp f(x) for the
    evaluation."""

    kind = "cbm"
    sampler: LangevinConfig = section(LangevinConfig)
    feature_dim: int = setting(64, *POSITIVE_INT)
    hidden: int = setting(64, *POSITIVE_INT)
    concept_weight: float = setting(1.0, *NON_NEGATIVE)


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    objective = config.objective
    net = backbone(config, data, rngs, objective.feature_dim)
    model = bottleneck_model(net.apply, net.params, rngs.params(),
                             num_classes=data.num_classes, num_concepts=data.c_train.shape[1],
                             feature_dim=objective.feature_dim, hidden=objective.hidden)
    loss = concept_bottleneck_loss(model.concept_logits, model.class_logits,
                                   concept_weight=objective.concept_weight)

    def logits_fn(params, x):
        return model.class_logits(params, jax.nn.sigmoid(model.concept_logits(params, x)))

    @jax.jit
    def predict(params, x, known, concepts):
        classes, probs = bottleneck_predict(model, params, x, known, concepts)
        return classes, (probs > 0.5).astype(jnp.int32)

    return concept_pieces(config, data, model.params, logits_fn, loss, predict)


PRESETS = {
    # ECBM's baseline on the same data, backbone and schedule as ecbm_digits.
    "cbm_digits": digits_preset("cbm_digits", CBMConfig()),
}

OBJECTIVE = Objective(
    kind="cbm", config=CBMConfig, build=build, needs_labels=True, classifier=True,
    unsupervised=False, models=CONCEPT_MODELS, models_note=CONCEPT_MODELS_NOTE,
    presets=PRESETS, concepts=True, is_baseline=False,
    summary="joint concept-bottleneck model: ECBM's baseline")
