"""What several objective modules share: the energy network, the models an unconditional
energy can use, and the 2-D toy presets."""
from __future__ import annotations

import dataclasses

import numpy as np

from ebm_jax.experiments.config import (Config, DataConfig, ModelConfig, ObjectiveConfig,
                                        OptimizerConfig, RunConfig)
from ebm_jax.experiments.networks import make_network, network_shape
from ebm_jax.experiments.sampling import LangevinConfig
from ebm_jax.nets import as_energy_fn

ENERGY_MODELS = ("mlp", "conv", "wrn", "igebm_resnet")
ENERGY_MODELS_NOTE = "'resnet' is the level-conditioned network of recovery likelihood"
TOYS = ("8gaussians", "two_moons", "rings", "checkerboard", "swiss_roll", "pinwheel",
        "two_spirals")
# SGLD on the toys: temperature form (noise sqrt(2 * 0.01)), clamped to the toys' box.
TOY_SAMPLER = LangevinConfig(step_size=0.01, noise_scale=None)


def build_energy(config: Config, data, rngs):
    """``(params, energy_fn)`` of a one-output network read as ``E(x)``."""
    in_features = int(np.prod(data.x_train.shape[1:]))
    model = as_energy_fn(make_network(config.model, in_features, network_shape(data), 1, rngs))
    return model.params, model.apply


def toy_preset(toy: str, objective: ObjectiveConfig, *, batch_size: int = 256,
               **run_changes) -> Config:
    """A 2-D toy run: an MLP 128-128-128 (swish), Adam 1e-3 with cosine decay, EMA 0.999,
    6,000 steps of batch 256 unless changed."""
    run = dataclasses.replace(RunConfig(num_steps=6000, eval_every=2000, checkpoint_every=2000,
                                        num_eval_samples=2000), **run_changes)
    return Config(name=f"{objective.kind}_2d_{toy}",
                  data=DataConfig(dataset=toy, batch_size=batch_size),
                  model=ModelConfig(kind="mlp", hidden=(128, 128, 128), activation="swish"),
                  objective=objective,
                  optimizer=OptimizerConfig(schedule="cosine", ema_decay=0.999),
                  run=run)
