"""TRADES (Zhang et al. 2019): cross-entropy on clean inputs plus ``beta`` times the KL from
the clean prediction to the prediction at the KL's PGD maximiser
(:func:`ebm_jax.losses.trades`), read as the EBM E(x) = -logsumexp f(x) by the evaluation.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("trades_digits", ["objective.beta=1"]).objective.beta
    1.0
"""
from __future__ import annotations

from dataclasses import dataclass

from ebm_jax.experiments.config import NON_NEGATIVE, Config, one_of, setting
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._adversarial import (INPUTS, AttackConfig, attack_options,
                                                         build_adversarial)
from ebm_jax.experiments.objectives._classifier import CLASSIFIER_MODELS, CLASSIFIER_MODELS_NOTE
from ebm_jax.losses import trades


@dataclass(frozen=True)
class TRADESConfig(AttackConfig):
    """``trades(logits_fn, beta=, ce_input=, <attack>)``: ``beta`` weighs the KL term;
    ``ce_input``: the cross-entropy of the natural (TRADES) or the adversarial inputs."""

    kind = "trades"
    beta: float = setting(6.0, *NON_NEGATIVE)
    ce_input: str = setting("natural", *one_of(*INPUTS))


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    settings = config.objective
    return build_adversarial(config, data, rngs, lambda logits_fn: trades(
        logits_fn, beta=settings.beta, ce_input=settings.ce_input,
        **attack_options(config, data)))


PRESETS = {
    # The network of softmax_digits and jem_digits; the KL's PGD-10 at L-inf 0.2, beta 6.
    # Measured 3 seeds, S = 0, 1, 2 (`python benchmarks/adversarial.py`, the same runs as
    # `ebm-jax train --config trades_digits --set run.seed=S`; 6,000 steps on 2 CPU cores; PGD-20
    # from a random start on the 360 test digits, in the [-1, 1] scale):
    # clean accuracy 0.994 / 0.989 / 0.992, robust L-inf 0.2 0.878 / 0.878 / 0.883, robust
    # L2 1.0 0.797 / 0.778 / 0.775; wall 67-75 s.
    "trades_digits": Config(name="trades_digits", objective=TRADESConfig()),
}

OBJECTIVE = Objective(
    kind="trades", config=TRADESConfig, build=build, needs_labels=True, classifier=True,
    unsupervised=False, models=CLASSIFIER_MODELS, models_note=CLASSIFIER_MODELS_NOTE,
    presets=PRESETS,
    summary="TRADES: cross-entropy + beta KL(p(x) || p(x_adv)) at the KL's PGD maximiser")
