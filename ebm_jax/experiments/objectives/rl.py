"""Diffusion recovery likelihood (Gao et al. 2021): a level-conditioned energy E(x, t)
learns each noise level's conditional p(x_t | x_{t+1}) with short MALA/Langevin chains; fresh
samples come from progressive sampling, noise level by level down to the data.

Hyperparameters mirror :func:`ebm_jax.losses.recovery_likelihood`; ``sampler`` is SGLD on the
level-0 energy, used where evaluation samples E(x) itself (inpainting, purification).

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("rl_2d_rings").objective.num_langevin_steps
    30
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebm_jax.experiments.config import (NON_NEGATIVE, POSITIVE, POSITIVE_INT, Config,
                                        ConfigError, DataConfig, ModelConfig, ObjectiveConfig,
                                        OptimizerConfig, RunConfig, one_of, section, setting)
from ebm_jax.experiments.networks import make_level_network, network_shape
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._common import TOYS, TOY_SAMPLER, toy_preset
from ebm_jax.experiments.sampling import LangevinConfig, sampler_recipe
from ebm_jax.losses.recovery_likelihood import (CHAIN_INITS, NoiseSchedule, noise_schedule,
                                                progressive_sample, recovery_likelihood)
from ebm_jax.nets import as_conditioned_energy_fn


@dataclass(frozen=True)
class RecoveryLikelihoodConfig(ObjectiveConfig):
    """``recovery_likelihood(level_energy, schedule, num_langevin_steps=, step_size_scale=,
    chain_init=, metropolis=, data_noise=, split_batch=, energy_l2=)``; ``schedule`` is
    ``"t6"`` (the paper's 6 levels) or ``"ddpm"`` with ``num_levels``."""

    kind = "rl"
    sampler: LangevinConfig = section(LangevinConfig)
    schedule: str = setting("t6", *one_of("t6", "ddpm"))
    num_levels: int = setting(6, lambda v: 2 <= v <= 501, "an int in [2, 501]")  # for "ddpm"
    num_langevin_steps: int = setting(30, *POSITIVE_INT)
    step_size_scale: float = setting(0.05, *POSITIVE)
    chain_init: str = setting("importance", *one_of(*CHAIN_INITS))
    metropolis: bool = setting(True)
    # std of the Gaussian noise that smooths level 0 (quantised data)
    data_noise: float = setting(0.0, lambda v: 0.0 <= v < 1.0, "a noise std in [0, 1)")
    split_batch: bool = setting(True)  # the batch split across levels (else every level)
    energy_l2: float = setting(0.0, *NON_NEGATIVE)


def make_schedule(settings: RecoveryLikelihoodConfig) -> NoiseSchedule:
    """The noise schedule: T6, or DDPM-style with ``num_levels`` levels."""
    if settings.schedule == "t6":
        return noise_schedule("t6")
    return noise_schedule(settings.schedule, num_levels=settings.num_levels)


def num_levels(settings: RecoveryLikelihoodConfig) -> int:
    return 6 if settings.schedule == "t6" else settings.num_levels


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    """A level-conditioned network E(x, t), the loss over all levels, and progressive
    sampling as the generator; ``energy_fn`` is the level-0 energy, the model of the data
    that every metric evaluates."""
    del num_devices
    settings = config.objective
    schedule = make_schedule(settings)
    in_features = int(np.prod(data.x_train.shape[1:]))
    net = make_level_network(config.model, in_features, network_shape(data), schedule.num_levels,
                             rngs)
    model = as_conditioned_energy_fn(net)
    level_energy = model.apply
    # The conditional chains are not confined to the data range: noisy levels live outside
    # it, and MALA rejects every proposal that leaves a box, which freezes chains that start
    # on its faces (the digits' constant pixels sit at -1).
    chain = dict(step_size_scale=settings.step_size_scale, chain_init=settings.chain_init,
                 metropolis=settings.metropolis)
    loss = recovery_likelihood(level_energy, schedule,
                               num_langevin_steps=settings.num_langevin_steps,
                               data_noise=settings.data_noise, split_batch=settings.split_batch,
                               energy_l2=settings.energy_l2, **chain)

    def energy_fn(params, x):
        return level_energy(params, x, 0)

    example_shape = data.x_train.shape[1:]

    def generate(rng_key, params, num):
        return progressive_sample(rng_key, level_energy, params, schedule, example_shape, num,
                                  num_langevin_steps=settings.num_langevin_steps, **chain)

    make_sampler = sampler_recipe(settings.sampler, data.data_range)
    return Pieces(model.params, energy_fn, None, loss, make_sampler(energy_fn), make_sampler,
                  generate, "progressive sampling")


def check(config: Config) -> None:
    settings = config.objective
    if settings.schedule == "t6" and settings.num_levels != 6:
        raise ConfigError(f"objective.num_levels={settings.num_levels} with objective.schedule="
                          "'t6': expected 6 (T6 has six levels; choose the number of levels "
                          "with schedule 'ddpm')")
    levels = num_levels(settings)
    if settings.split_batch and config.data.batch_size % levels:
        raise ConfigError(f"data.batch_size={config.data.batch_size} with "
                          "objective.split_batch=true: expected a multiple of the number of "
                          f"noise levels ({levels})")


PRESETS = {
    # T6, a level-conditioned MLP, 30 MALA steps per level from importance-resampled
    # starts; batch split across the 6 levels, 40 examples each.
    **{f"rl_2d_{toy}": toy_preset(toy, RecoveryLikelihoodConfig(sampler=TOY_SAMPLER),
                                  batch_size=240, num_steps=4000)
       for toy in TOYS},
    # On the digits, generated by progressive sampling from noise. The digits are quantised
    # (17 grey levels, constant border pixels), so level 0 models them smoothed by Gaussian
    # noise, as the paper's reference code does (with 0.01). Measured: noise 0.03 makes
    # E(x, 0) sharper than the level-0 step (curvature ~1/0.03^2 against 2/h_0 = 380), MALA
    # acceptance falls to 0 after ~1,200 steps and the energy diverges; with 0.1 acceptance
    # stays ~0.88 to the end.
    "rl_digits": Config(
        name="rl_digits", data=DataConfig(batch_size=120),
        objective=RecoveryLikelihoodConfig(data_noise=0.1),
        optimizer=OptimizerConfig(schedule="cosine", ema_decay=0.999),
        run=RunConfig(num_steps=4000, num_eval_samples=500)),
    # The paper's settings for GPU/TPU: the T6 schedule, a level-conditioned ResNet, 30
    # Langevin steps per level.
    "drl_cifar10": Config(
        name="drl_cifar10", data=DataConfig(dataset="cifar10", batch_size=120, flip=True),
        model=ModelConfig(kind="resnet", resnet_channels=128, activation="leaky_relu",
                          dtype="bfloat16"),
        objective=RecoveryLikelihoodConfig(data_noise=0.01),
        optimizer=OptimizerConfig(learning_rate=1e-4, ema_decay=0.9999),
        run=RunConfig(num_steps=240_000, eval_every=10_000, checkpoint_every=5000)),
}

OBJECTIVE = Objective(
    kind="rl", config=RecoveryLikelihoodConfig, build=build, needs_labels=False,
    classifier=False, unsupervised=True, models=("mlp", "resnet"),
    models_note="recovery likelihood needs a level-conditioned network", presets=PRESETS,
    check=check, summary="diffusion recovery likelihood, progressive sampling")
