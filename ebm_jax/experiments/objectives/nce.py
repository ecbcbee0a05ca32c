"""Noise-contrastive estimation (Gutmann & Hyvärinen 2010): classify data against a known
noise distribution, learning the energy and its log normaliser. NCE never samples in
training; ``sampler`` draws the pictures' samples (SGLD from noise).

Hyperparameters mirror :func:`ebm_jax.losses.nce`, with the noise chosen by name: a
Gaussian fitted to the training data (full or diagonal covariance, widened by
``noise_scale``) or the uniform box of the data range.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("nce_2d_8gaussians").objective.noise
    'gaussian'
"""
from __future__ import annotations

from dataclasses import dataclass

from ebm_jax.energies import distributions
from ebm_jax.experiments.config import (POSITIVE, Config, ObjectiveConfig, one_of, section,
                                        setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._common import (ENERGY_MODELS, ENERGY_MODELS_NOTE, TOYS,
                                                    TOY_SAMPLER, build_energy, toy_preset)
from ebm_jax.experiments.sampling import LangevinConfig, langevin_sampling
from ebm_jax.losses.nce import nce, nce_params

NOISES = ("gaussian", "diagonal_gaussian", "uniform")


@dataclass(frozen=True)
class NCEConfig(ObjectiveConfig):
    """``nce(energy_fn, noise, noise_ratio=)`` with ``noise`` named by ``noise`` and
    ``noise_scale``; ``sampler`` draws samples for evaluation."""

    kind = "nce"
    sampler: LangevinConfig = section(LangevinConfig)
    noise: str = setting("gaussian", *one_of(*NOISES))
    noise_scale: float = setting(1.25, *POSITIVE)  # widening of the fitted Gaussian
    noise_ratio: float = setting(1.0, *POSITIVE)   # noise samples per data sample


def make_noise(settings: NCEConfig, data) -> distributions.NoiseDistribution:
    """NCE's noise: a Gaussian fitted to the training data (widened) or the data-range box."""
    if settings.noise == "uniform":
        low, high = data.data_range
        return distributions.uniform_box(low, high, data.x_train.shape[1:])
    covariance = "diagonal" if settings.noise == "diagonal_gaussian" else "full"
    return distributions.fit_gaussian(data.x_train, covariance, scale=settings.noise_scale)


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    settings = config.objective
    energy_params, base_energy = build_energy(config, data, rngs)

    def energy_fn(params, x):  # params = {"energy": ..., "log_z": ...}
        return base_energy(params["energy"], x)

    loss = nce(base_energy, make_noise(settings, data), noise_ratio=settings.noise_ratio)
    sampling = langevin_sampling(config, data, energy_fn)
    return Pieces(nce_params(energy_params), energy_fn, None, loss, *sampling)


PRESETS = {
    # Against a Gaussian fitted to the data; samples for the pictures come from longer
    # Langevin runs (NCE itself never samples).
    f"nce_2d_{toy}": toy_preset(toy, NCEConfig(sampler=TOY_SAMPLER, noise_scale=1.0),
                                batch_size=512, num_steps=16_000, fresh_sample_steps=500,
                                eval_every=4000, checkpoint_every=4000)
    for toy in TOYS
}

OBJECTIVE = Objective(
    kind="nce", config=NCEConfig, build=build, needs_labels=False, classifier=False,
    unsupervised=True, models=ENERGY_MODELS, models_note=ENERGY_MODELS_NOTE, presets=PRESETS,
    summary="noise-contrastive estimation against a fitted Gaussian or a uniform box")
