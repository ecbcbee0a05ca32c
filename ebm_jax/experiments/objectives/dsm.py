"""Denoising score matching (Vincent 2011): the energy's score matches the score of the data
smoothed by Gaussian noise of scale ``sigma``. No sampling in training; ``sampler`` draws the
pictures' samples.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("dsm_2d_rings").objective.sigma
    0.05
"""
from __future__ import annotations

from dataclasses import dataclass

from ebm_jax.experiments.config import POSITIVE, Config, ObjectiveConfig, section, setting
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._common import (ENERGY_MODELS, ENERGY_MODELS_NOTE, TOYS,
                                                    TOY_SAMPLER, build_energy, toy_preset)
from ebm_jax.experiments.sampling import LangevinConfig, langevin_sampling
from ebm_jax.losses.score_matching import denoising_score_matching


@dataclass(frozen=True)
class DSMConfig(ObjectiveConfig):
    """``denoising_score_matching(energy_fn, sigma=)``."""

    kind = "dsm"
    sampler: LangevinConfig = section(LangevinConfig)
    sigma: float = setting(0.1, *POSITIVE)


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    params, energy_fn = build_energy(config, data, rngs)
    sampling = langevin_sampling(config, data, energy_fn)
    loss = denoising_score_matching(energy_fn, sigma=config.objective.sigma)
    return Pieces(params, energy_fn, None, loss, *sampling)


PRESETS = {
    # Smaller noise on the rings (their width is 0.08): sigma=0.1 over-smooths, 0.02
    # diverges. 12,000 steps: a DSM step differentiates through the score, about twice an
    # NCE step.
    f"dsm_2d_{toy}": toy_preset(toy, DSMConfig(sampler=TOY_SAMPLER,
                                               sigma=0.05 if toy == "rings" else 0.1),
                                batch_size=512, num_steps=12_000, fresh_sample_steps=500,
                                eval_every=4000, checkpoint_every=4000)
    for toy in TOYS
}

OBJECTIVE = Objective(
    kind="dsm", config=DSMConfig, build=build, needs_labels=False, classifier=False,
    unsupervised=True, models=ENERGY_MODELS, models_note=ENERGY_MODELS_NOTE, presets=PRESETS,
    summary="denoising score matching")
