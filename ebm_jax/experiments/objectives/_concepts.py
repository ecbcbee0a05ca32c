"""What the concept objectives (ECBM, the concept bottleneck) share: the backbone and their
own metrics on the test concepts."""
from __future__ import annotations

from typing import Callable, Optional

import jax.numpy as jnp
import numpy as np

from ebm_jax.applications.concepts import random_known_mask
from ebm_jax.energies import energy_from_logits
from ebm_jax.experiments.config import Config, DataConfig, ModelConfig, RunConfig
from ebm_jax.experiments.networks import make_network, network_shape
from ebm_jax.experiments.objectives import Pieces
from ebm_jax.experiments.sampling import langevin_sampling
from ebm_jax.nets import pure

CONCEPT_MODELS = ("mlp", "conv")
CONCEPT_MODELS_NOTE = "the backbone is a feature extractor: an MLP or a small ConvNet"
# The share of concepts told for the summary's intervention accuracy (the 0.5).
INTERVENTION_RATIO = 0.5


def concept_pieces(config, data, params, logits_fn, loss, predict):
    """The run's :class:`~ebm_jax.experiments.objectives.Pieces` of a concept model: its
    classifier read as an EBM, E(x) = -logsumexp f(x), with the run's SGLD settings, and its
    concept metrics from ``predict`` (:func:`concept_evaluation`)."""
    energy_fn = energy_from_logits(logits_fn)
    return Pieces(params, energy_fn, logits_fn, loss, *langevin_sampling(config, data, energy_fn),
                  evaluate=concept_evaluation(data, predict))


def digits_preset(name: str, objective):
    """A preset on the seven-segment digits: an MLP backbone 64-128-64, 2,000 steps of 64
    (what benchmarks/concepts.py trains)."""
    return Config(name=name, objective=objective,
                  data=DataConfig(dataset="seven_segment_digits", batch_size=64),
                  model=ModelConfig(hidden=(128,)),
                  run=RunConfig(num_steps=2000, eval_every=1000, checkpoint_every=1000))


def backbone(config, data, rngs, feature_dim: int):
    """The backbone ``config.model`` with ``feature_dim`` outputs, as a pure function."""
    in_features = int(np.prod(data.x_train.shape[1:]))
    return pure(make_network(config.model, in_features, network_shape(data), feature_dim, rngs))


def concept_evaluation(data, predict: Callable) -> Callable:
    """A concept model's own metrics, ``evaluate(params, rng_key, *, quick=False,
    figure=None)``, from ``predict(params, x, known, concepts) -> (classes [B],
    concepts [B, C])`` (``known`` and ``concepts`` None: the prediction without an
    intervention).

    Keys: ``concept_accuracy`` (per concept), ``overall_concept_accuracy`` (the whole vector
    right), ``concept_class_accuracy`` (the class the concept model predicts, by its own
    inference) and, unless ``quick``, ``intervention_accuracy`` (the class accuracy after
    telling half the concepts, random per example).
    """
    x = jnp.asarray(data.x_test)
    y = np.asarray(data.y_test)
    c = jnp.asarray(data.c_test)
    count = int(np.floor(INTERVENTION_RATIO * c.shape[1] + 0.5))

    def evaluate(params, rng_key, *, quick: bool = False, figure: Optional[str] = None) -> dict:
        del figure
        classes, concepts = predict(params, x, None, None)
        right = np.asarray(concepts) == np.asarray(c)
        out = {"concept_accuracy": float(right.mean()),
               "overall_concept_accuracy": float(right.all(1).mean()),
               "concept_class_accuracy": float((np.asarray(classes) == y).mean())}
        if not quick:
            known = random_known_mask(rng_key, len(y), c.shape[1], count)
            told, _ = predict(params, x, known, c)
            out["intervention_accuracy"] = float((np.asarray(told) == y).mean())
        return out

    return evaluate
