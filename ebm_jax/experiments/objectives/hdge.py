"""HDGE (Liu & Abbeel 2020): a classifier trained as p(y|x) by cross-entropy and as p(x|y) by
a contrastive loss over a queue of past examples' logits: JEM's hybrid without SGLD.

Hyperparameters mirror :func:`ebm_jax.losses.hdge`; ``sampler`` is used only where the
evaluation reads the classifier as an EBM (class-conditional samples, purification), as
for the softmax baseline.

With ``normalize`` (the default), the method's own metrics add the OOD AUROCs of
:func:`normalised_log_px`, ``logsumexp_y (f(x) / ||f(x)||)[y] / tau``: the log-density the
contrastive term trains in that form (up to a constant shared by the classes). The usual
``log p(x) = logsumexp f(x)`` of ``ebm-jax evaluate`` reads the raw logits, whose scale
only cross-entropy shapes; both are reported, neither replaces the other.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("hdge_digits", ["objective.temperature=0.2"]).objective.temperature
    0.2
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import metrics
from ebm_jax.data.ood import offline_ood_sets
from ebm_jax.experiments.config import (NON_NEGATIVE, POSITIVE, POSITIVE_INT, Config,
                                        ConfigError, ObjectiveConfig, section, setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._classifier import (CLASSIFIER_MODELS,
                                                        CLASSIFIER_MODELS_NOTE, build_classifier,
                                                        robust_evaluation)
from ebm_jax.experiments.sampling import LangevinConfig, langevin_sampling
from ebm_jax.losses import hdge


@dataclass(frozen=True)
class HDGEConfig(ObjectiveConfig):
    """``hdge(logits_fn, queue_size, temperature, generative_weight=, normalize=,
    batch_negatives=, num_shards=, shared_forward=)``; ``sampler``: SGLD on
    E(x) = -logsumexp f(x) for the evaluation. ``num_shards``: the queue's blocks (none: one
    per device). ``shared_forward``: both terms from one forward pass (false: the same loss
    through ``combine``, the network run once per term, about twice the FLOPs)."""

    kind = "hdge"
    sampler: LangevinConfig = section(LangevinConfig)
    queue_size: int = setting(65_536, *POSITIVE_INT)
    temperature: float = setting(0.1, *POSITIVE)
    generative_weight: float = setting(1.0, *NON_NEGATIVE)
    normalize: bool = setting(True)
    batch_negatives: bool = setting(False)
    num_shards: Optional[int] = setting(None, lambda v: v is None or v > 0,
                                        "a positive int or none (one per device)")
    shared_forward: bool = setting(True)


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    objective = config.objective
    params, logits_fn, energy_fn = build_classifier(config, data, rngs)
    sampling = langevin_sampling(config, data, energy_fn)
    loss = hdge(logits_fn, objective.queue_size, objective.temperature,
                generative_weight=objective.generative_weight, normalize=objective.normalize,
                batch_negatives=objective.batch_negatives,
                num_shards=objective.num_shards or num_devices,
                shared_forward=objective.shared_forward)
    robust = robust_evaluation(data, logits_fn, config.run.robust_eval_examples)
    evaluate = robust
    if objective.normalize:
        evaluate = _with_normalised_ood(robust, data, logits_fn, objective.temperature)
    return Pieces(params, energy_fn, logits_fn, loss, *sampling, evaluate=evaluate)


def normalised_log_px(logits_fn: Callable, temperature: float) -> Callable:
    """``score(params, x [B, ...]) -> [B]``: ``logsumexp_y z(x)[y] / tau`` with
    ``z = f(x) / ||f(x)||``, the log-density (up to a constant, with one normaliser shared by
    the classes) that the contrastive term trains when it normalises the logits. The
    targets' ``log p(x)`` reads the raw logits instead (``logsumexp f(x)``)."""
    batched = jax.vmap(logits_fn, (None, 0))

    def score(params, x):
        logits = batched(params, x)
        norm = jnp.maximum(jnp.linalg.norm(logits, axis=-1, keepdims=True), 1e-12)
        return jax.nn.logsumexp(logits / norm / temperature, -1)

    return score


def _with_normalised_ood(robust: Callable, data, logits_fn: Callable,
                         temperature: float) -> Callable:
    """``robust``'s metrics plus ``ood_normalised_log_px/<set>`` (AUROC of
    :func:`normalised_log_px` against the test split on each offline OOD set, drawn with the
    method's key, so the noise sets are other draws than ``ebm-jax evaluate``'s) and
    ``ood_normalised_log_px/mean``; nothing more with ``quick``."""
    score = normalised_log_px(logits_fn, temperature)
    x_test = np.asarray(data.x_test)
    y_test = None if data.y_test is None else np.asarray(data.y_test)

    def evaluate(params, rng_key, *, quick: bool = False, figure: Optional[str] = None) -> dict:
        out = robust(params, rng_key, quick=quick, figure=figure)
        if quick or not len(x_test):
            return out
        sets = offline_ood_sets(jax.random.fold_in(rng_key, 1), x_test, data.image_shape,
                                data.data_range, y=y_test)
        report = metrics.ood_report({"normalised": score}, params, x_test, sets)
        aurocs = {f"ood_normalised_log_px/{name}": float(by["normalised"]["auroc"])
                  for name, by in report.items()}
        out.update(aurocs)
        out["ood_normalised_log_px/mean"] = float(np.mean(list(aurocs.values())))
        return out

    return evaluate


def check(config: Config) -> None:
    """The queue holds at least one batch; queue and batch split into ``num_shards`` blocks."""
    objective, batch = config.objective, config.data.batch_size
    if objective.queue_size < batch:
        raise ConfigError(f"objective.queue_size={objective.queue_size} with data.batch_size="
                          f"{batch}: expected queue_size >= batch_size (a step enqueues the "
                          "whole batch)")
    shards = objective.num_shards
    if shards is None:
        return
    for name, value in (("objective.queue_size", objective.queue_size),
                        ("data.batch_size", batch)):
        if value % shards:
            raise ConfigError(f"{name}={value} with objective.num_shards={shards}: expected a "
                              "multiple of num_shards")


PRESETS = {
    # The network, data and budget of jem_digits and softmax_digits (MLP 64-256-256-10 with
    # Swish, Adam 1e-3, batch 64, 6,000 steps). The training split has 1,437 digits, so the
    # paper's 65,536-entry queue would hold each digit's logits ~45 times, most of them stale
    # by thousands of steps; 1,024 entries are the last 16 batches (~0.7 epoch).
    "hdge_digits": Config(name="hdge_digits",
                          objective=HDGEConfig(queue_size=1024, temperature=0.1)),
}

OBJECTIVE = Objective(
    kind="hdge", config=HDGEConfig, build=build, needs_labels=True, classifier=True,
    unsupervised=False, models=CLASSIFIER_MODELS, models_note=CLASSIFIER_MODELS_NOTE,
    presets=PRESETS, check=check,
    summary="HDGE hybrid: cross-entropy + contrastive log p(x|y) over a queue of past logits")
