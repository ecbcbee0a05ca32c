"""Sliced score matching (Song et al. 2019): score matching with random projections of the
Hessian trace, so no noise scale to choose. No sampling in training.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("cd_2d_8gaussians", ["objective=ssm"]).objective.num_projections
    1
"""
from __future__ import annotations

from dataclasses import dataclass

from ebm_jax.experiments.config import POSITIVE_INT, Config, ObjectiveConfig, section, setting
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._common import (ENERGY_MODELS, ENERGY_MODELS_NOTE,
                                                    build_energy)
from ebm_jax.experiments.sampling import LangevinConfig, langevin_sampling
from ebm_jax.losses.score_matching import sliced_score_matching


@dataclass(frozen=True)
class SSMConfig(ObjectiveConfig):
    """``sliced_score_matching(energy_fn, num_projections=)``."""

    kind = "ssm"
    sampler: LangevinConfig = section(LangevinConfig)
    num_projections: int = setting(1, *POSITIVE_INT)


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    params, energy_fn = build_energy(config, data, rngs)
    sampling = langevin_sampling(config, data, energy_fn)
    loss = sliced_score_matching(energy_fn, num_projections=config.objective.num_projections)
    return Pieces(params, energy_fn, None, loss, *sampling)


OBJECTIVE = Objective(
    kind="ssm", config=SSMConfig, build=build, needs_labels=False, classifier=False,
    unsupervised=True, models=ENERGY_MODELS, models_note=ENERGY_MODELS_NOTE, presets={},
    summary="sliced score matching")
