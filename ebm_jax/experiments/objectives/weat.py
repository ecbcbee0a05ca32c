"""WEAT (Mirza et al. 2024): TRADES with each example's loss weighted by
``1 / softplus(|E|)``, ``E = -logsumexp f`` of its natural or adversarial input, normalised
over the batch (:func:`ebm_jax.losses.weat`).

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("weat_digits", ["objective.energy_input=adversarial"]).objective.energy_input
    'adversarial'
"""
from __future__ import annotations

from dataclasses import dataclass

from ebm_jax.experiments.config import Config, one_of, setting
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._adversarial import INPUTS, attack_options, build_adversarial
from ebm_jax.experiments.objectives._classifier import CLASSIFIER_MODELS, CLASSIFIER_MODELS_NOTE
from ebm_jax.experiments.objectives.trades import TRADESConfig
from ebm_jax.losses import weat


@dataclass(frozen=True)
class WEATConfig(TRADESConfig):
    """``weat(logits_fn, beta=, ce_input=, energy_input=, <attack>)``: TRADES's settings and
    ``energy_input``, whose energy weighs an example (natural or adversarial)."""

    kind = "weat"
    energy_input: str = setting("natural", *one_of(*INPUTS))


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    settings = config.objective
    return build_adversarial(config, data, rngs, lambda logits_fn: weat(
        logits_fn, beta=settings.beta, ce_input=settings.ce_input,
        energy_input=settings.energy_input, **attack_options(config, data)))


PRESETS = {
    # trades_digits with the energy weights of the natural inputs.
    # Measured 3 seeds, S = 0, 1, 2 (`ebm-jax train --config weat_digits --set run.seed=S
    # --workdir DIR`; 6,000 steps on 2 shared CPU cores; robustness: PGD-20 from a random start on
    # the 360 test digits, in the [-1, 1] scale): clean accuracy 0.994 / 0.992 / 0.994
    # (TRADES's 0.992 / 0.992 / 0.994), robust L-inf 0.2 0.883 / 0.878 / 0.881 (TRADES's
    # 0.872 / 0.867 / 0.875; mean +1.0 point), robust L2 1.0 0.789 / 0.797 / 0.792, ECE 0.005 /
    # 0.008 / 0.005; train 70 / 43 / 46 s, wall 91 / 58 / 59 s.
    "weat_digits": Config(name="weat_digits", objective=WEATConfig()),
}

OBJECTIVE = Objective(
    kind="weat", config=WEATConfig, build=build, needs_labels=True, classifier=True,
    unsupervised=False, models=CLASSIFIER_MODELS, models_note=CLASSIFIER_MODELS_NOTE,
    presets=PRESETS,
    summary="WEAT: TRADES weighted by 1/softplus(|E(x)|), normalised over the batch")
