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
    # Measured 3 seeds, S = 0, 1, 2 (`python benchmarks/adversarial.py`, the same runs as
    # `ebm-jax train --config weat_digits --set run.seed=S`; 6,000 steps on 2 CPU cores; PGD-20
    # from a random start on the 360 test digits, in the [-1, 1] scale):
    # clean accuracy 0.994 / 0.994 / 0.994, robust L-inf 0.2 0.886 / 0.844 / 0.889
    # (TRADES's 0.878 / 0.878 / 0.883; seed 1 was 0.878 at steps 2,000 and 4,000: robust
    # overfitting), robust L2 1.0 0.794 / 0.717 / 0.778; wall 65-75 s.
    "weat_digits": Config(name="weat_digits", objective=WEATConfig()),
}

OBJECTIVE = Objective(
    kind="weat", config=WEATConfig, build=build, needs_labels=True, classifier=True,
    unsupervised=False, models=CLASSIFIER_MODELS, models_note=CLASSIFIER_MODELS_NOTE,
    presets=PRESETS,
    summary="WEAT: TRADES weighted by 1/softplus(|E(x)|), normalised over the batch")
