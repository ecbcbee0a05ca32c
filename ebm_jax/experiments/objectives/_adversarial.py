"""What the adversarial-training objectives (``pgd_at``, ``trades``, ``weat``) share: the
attack's settings, mirroring :mod:`ebm_jax.losses.adversarial`, and the build of a classifier
trained on its attacks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ebm_jax.experiments.config import (OPTIONAL_POSITIVE, POSITIVE_INT, Config,
                                        ObjectiveConfig, one_of, section, setting)
from ebm_jax.experiments.objectives import Pieces
from ebm_jax.experiments.objectives._classifier import build_classifier, robust_evaluation
from ebm_jax.experiments.sampling import LangevinConfig, langevin_sampling

INPUTS = ("natural", "adversarial")


@dataclass(frozen=True)
class AttackConfig(ObjectiveConfig):
    """The training attack: PGD of ``num_steps`` steps (``step_size``, none: ``2.5 epsilon /
    num_steps``) from a random start in the ``norm`` ball of radius ``epsilon`` (data units:
    the digits live in [-1, 1]), clamped to the data range; ``sampler``: SGLD on
    E(x) = -logsumexp f(x) for the evaluation (samples, purification)."""

    sampler: LangevinConfig = section(LangevinConfig)
    norm: str = setting("linf", *one_of("linf", "l2"))
    epsilon: float = setting(0.2, lambda v: v > 0, "a positive number (the ball's radius)")
    num_steps: int = setting(10, *POSITIVE_INT)  # PGD steps per training step
    step_size: Optional[float] = setting(None, *OPTIONAL_POSITIVE)
    random_start: bool = setting(True)


def attack_options(config: Config, data) -> dict:
    """The loss factories' attack keywords of ``config.objective``, clamped to the data range."""
    settings = config.objective
    return dict(epsilon=settings.epsilon, num_steps=settings.num_steps, norm=settings.norm,
                step_size=settings.step_size, random_start=settings.random_start,
                clip_range=data.data_range)


def build_adversarial(config: Config, data, rngs, make_loss: Callable) -> Pieces:
    """A classifier trained by ``make_loss(logits_fn) -> LossTransform``, with the run's SGLD
    sampling of E(x) and the classifiers' robustness metrics."""
    params, logits_fn, energy_fn = build_classifier(config, data, rngs)
    sampling = langevin_sampling(config, data, energy_fn)
    return Pieces(params, energy_fn, logits_fn, make_loss(logits_fn), *sampling,
                  evaluate=robust_evaluation(data, logits_fn,
                                             config.run.robust_eval_examples))
