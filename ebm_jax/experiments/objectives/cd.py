"""Persistent contrastive divergence with a replay buffer (IGEBM and its successors): an
unconditional energy trained by maximum likelihood with short-run SGLD chains.

Hyperparameters mirror :func:`ebm_jax.losses.contrastive_divergence`; ``sampler`` and
``chain_start`` are the chains' settings.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("cd_2d_rings").objective.chain_start.reinit_from_data
    True
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ebm_jax.experiments.config import (NON_NEGATIVE, OPTIONAL_NON_NEGATIVE, POSITIVE_INT,
                                        Config, DataConfig, ModelConfig, ObjectiveConfig,
                                        OptimizerConfig, RunConfig, energy_l2_of, one_of, section, setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._common import (ENERGY_MODELS, ENERGY_MODELS_NOTE, TOYS,
                                                    TOY_SAMPLER, build_energy, toy_preset)
from ebm_jax.experiments.sampling import (LangevinConfig, ReplayBufferConfig, make_chain_start,
                                          check_chain_start, langevin_sampling)
from ebm_jax.losses import contrastive_divergence
from ebm_jax.losses.contrastive_divergence import OBJECTIVES as CD_OBJECTIVES


@dataclass(frozen=True)
class CDConfig(ObjectiveConfig):
    """``contrastive_divergence(energy_fn, sampler, num_steps=, objective=, kl_weight=,
    entropy_weight=, energy_l2=, <chain start>)``."""

    kind = "cd"
    sampler: LangevinConfig = section(LangevinConfig)
    chain_start: ReplayBufferConfig = section(ReplayBufferConfig)
    num_steps: int = setting(20, *POSITIVE_INT)  # SGLD steps per training step
    objective: str = setting("ml", *one_of(*CD_OBJECTIVES))
    kl_weight: float = setting(0.0, *NON_NEGATIVE)
    entropy_weight: float = setting(0.0, *NON_NEGATIVE)
    energy_l2: Optional[float] = setting(None, *OPTIONAL_NON_NEGATIVE)


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    objective = config.objective
    params, energy_fn = build_energy(config, data, rngs)
    sampling = langevin_sampling(config, data, energy_fn)
    loss = contrastive_divergence(
        energy_fn, sampling.sampler, num_steps=objective.num_steps,
        objective=objective.objective,
        kl_weight=objective.kl_weight, entropy_weight=objective.entropy_weight,
        energy_l2=energy_l2_of(config),
        chain_start=make_chain_start(objective.chain_start, data.data_range, num_devices))
    return Pieces(params, energy_fn, None, loss, *sampling)


def check(config: Config) -> None:
    check_chain_start(config, config.objective.chain_start)


# CD on the thin toys (rings, spirals: width 0.08-0.1) needs a small step (step 0.01 spreads
# the sampler's stationary law to twice the width) and restarts from data (uniform restarts
# collapse onto the inner ring; on the spirals, step 0.01 diverged: KL 1e8). Rings, measured
# over seeds 0-2: step 0.001 learns too slowly (rings 2x too wide on seed 2, KL 0.33); step
# 0.002 sharpens them, and rare restarts (0.01) let the few chains that cross between rings
# set the rings' relative weights, which frequent data restarts wash out (inner ring 2.5% of
# the mass at 0.05): KL 0.032/0.062/0.085.
_THIN_TOYS = {
    "rings": (0.002, ReplayBufferConfig(reinit_prob=0.01, reinit_from_data=True)),
    "two_spirals": (0.001, ReplayBufferConfig(reinit_from_data=True)),
}


def _toy(toy: str) -> Config:
    step_size, start = _THIN_TOYS.get(toy, (TOY_SAMPLER.step_size, ReplayBufferConfig()))
    sampler = dataclasses.replace(TOY_SAMPLER, step_size=step_size)
    return toy_preset(toy, CDConfig(sampler=sampler, chain_start=start))


PRESETS = {
    # An unconditional generative EBM on the digits.
    "cd_digits": Config(name="cd_digits", objective=CDConfig(energy_l2=0.1)),
    **{f"cd_2d_{toy}": _toy(toy) for toy in TOYS},
    # IGEBM (Du & Mordatch 2019): its ResNet energy with spectral norm, 60 Langevin steps of
    # size 10 with noise 0.005, gradient clipping 0.01 inside the sampler, energy L2 1.0.
    "igebm_cifar10": Config(
        name="igebm_cifar10", data=DataConfig(dataset="cifar10", batch_size=128, flip=True),
        model=ModelConfig(kind="igebm_resnet", resnet_channels=128, spectral_norm=True,
                          activation="leaky_relu", dtype="bfloat16"),
        objective=CDConfig(sampler=LangevinConfig(step_size=10.0, noise_scale=0.005,
                                                  grad_clip=0.01),
                           num_steps=60, energy_l2=1.0),
        optimizer=OptimizerConfig(learning_rate=1e-4),
        run=RunConfig(num_steps=100_000, eval_every=5000, checkpoint_every=5000)),
}

OBJECTIVE = Objective(
    kind="cd", config=CDConfig, build=build, needs_labels=False, classifier=False,
    unsupervised=True, models=ENERGY_MODELS, models_note=ENERGY_MODELS_NOTE, presets=PRESETS,
    check=check, summary="persistent contrastive divergence with a replay buffer")
