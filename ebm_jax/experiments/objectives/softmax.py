"""A plain softmax classifier: the baseline JEM is compared with. It trains by cross-entropy
only (:func:`ebm_jax.losses.cross_entropy`); ``sampler`` is used only where the evaluation
reads the classifier as an EBM (class-conditional samples, purification).

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("softmax_digits").objective.kind
    'softmax'
"""
from __future__ import annotations

from dataclasses import dataclass

from ebm_jax.experiments.config import Config, DataConfig, ObjectiveConfig, section
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._classifier import (CLASSIFIER_MODELS,
                                                        CLASSIFIER_MODELS_NOTE, build_classifier,
                                                        robust_evaluation)
from ebm_jax.experiments.sampling import LangevinConfig, langevin_sampling
from ebm_jax.losses import cross_entropy


@dataclass(frozen=True)
class SoftmaxConfig(ObjectiveConfig):
    """``cross_entropy(logits_fn)``; ``sampler``: SGLD on E(x) = -logsumexp f(x) for the
    evaluation."""

    kind = "softmax"
    sampler: LangevinConfig = section(LangevinConfig)


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    params, logits_fn, energy_fn = build_classifier(config, data, rngs)
    sampling = langevin_sampling(config, data, energy_fn)
    return Pieces(params, energy_fn, logits_fn, cross_entropy(logits_fn), *sampling,
                  evaluate=robust_evaluation(data, logits_fn))


PRESETS = {
    # The same network as jem_digits, as a plain softmax classifier.
    "softmax_digits": Config(name="softmax_digits", objective=SoftmaxConfig()),
    # The baseline of jem_digits_semi: the classifier of the labelled 10% alone.
    "softmax_digits_semi": Config(name="softmax_digits_semi", objective=SoftmaxConfig(),
                                  data=DataConfig(label_fraction=0.1)),
}

OBJECTIVE = Objective(
    kind="softmax", config=SoftmaxConfig, build=build, needs_labels=True, classifier=True,
    unsupervised=False, models=CLASSIFIER_MODELS, models_note=CLASSIFIER_MODELS_NOTE,
    presets=PRESETS, is_baseline=True,
    summary="softmax classifier (cross-entropy): JEM's baseline")
