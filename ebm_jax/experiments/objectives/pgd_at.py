"""PGD adversarial training (Madry et al. 2018): a classifier trained on the cross-entropy of
its own PGD examples (:func:`ebm_jax.losses.pgd_adversarial_training`), read as the EBM
E(x) = -logsumexp f(x) by the evaluation.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("at_digits", ["objective.epsilon=0.1"]).objective.epsilon
    0.1
"""
from __future__ import annotations

from dataclasses import dataclass

from ebm_jax.experiments.config import Config
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._adversarial import (AttackConfig, attack_options,
                                                         build_adversarial)
from ebm_jax.experiments.objectives._classifier import CLASSIFIER_MODELS, CLASSIFIER_MODELS_NOTE
from ebm_jax.losses import pgd_adversarial_training


@dataclass(frozen=True)
class PGDATConfig(AttackConfig):
    """``pgd_adversarial_training(logits_fn, epsilon=, num_steps=, norm=, step_size=,
    random_start=)``, clamped to the data range."""

    kind = "pgd_at"


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    return build_adversarial(config, data, rngs, lambda logits_fn: pgd_adversarial_training(
        logits_fn, **attack_options(config, data)))


PRESETS = {
    # The network of softmax_digits and jem_digits, trained on PGD-10 examples at L-inf 0.2.
    # Measured 3 seeds, S = 0, 1, 2 (`python benchmarks/adversarial.py`, the same runs as
    # `ebm-jax train --config at_digits --set run.seed=S`; 6,000 steps on 2 CPU cores; PGD-20
    # from a random start on the 360 test digits, in the [-1, 1] scale):
    # clean accuracy 0.989 / 0.989 / 0.992, robust L-inf 0.2 0.867 / 0.864 / 0.867 (JEM's
    # 0.619 / 0.578 / 0.650), robust L2 1.0 0.783 / 0.786 / 0.772; wall 68-71 s.
    "at_digits": Config(name="at_digits", objective=PGDATConfig()),
}

OBJECTIVE = Objective(
    kind="pgd_at", config=PGDATConfig, build=build, needs_labels=True, classifier=True,
    unsupervised=False, models=CLASSIFIER_MODELS, models_note=CLASSIFIER_MODELS_NOTE,
    presets=PRESETS,
    summary="PGD adversarial training (Madry): cross-entropy on PGD examples")
