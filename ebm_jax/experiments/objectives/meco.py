"""MECO (Jiang et al., ICML 2023): the likelihood itself, its log normaliser written as the
log of an expectation over a noise distribution and tracked by a moving average. Like NCE it
never samples the model in training; unlike NCE its landscape does not flatten when the noise
is far from the data. ``sampler`` draws the pictures' samples (SGLD from noise).

Hyperparameters mirror :func:`ebm_jax.losses.meco`, with the noise chosen as for NCE (a
Gaussian fitted to the training data, widened by ``noise_scale``, or the data-range box).
The run's evaluation adds ``log_z_importance``: ``log Z`` of the evaluated energy by
importance sampling from the noise (65,536 draws); the tracked ``log u`` is the logged
``log_z``.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("meco_2d_rings").objective.rate
    0.9
"""
from __future__ import annotations

from dataclasses import dataclass

import jax

from ebm_jax.experiments.config import (POSITIVE, Config, ObjectiveConfig, one_of, section,
                                        setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._common import (ENERGY_MODELS, ENERGY_MODELS_NOTE, TOYS,
                                                    TOY_SAMPLER, build_energy, toy_preset)
from ebm_jax.experiments.objectives.nce import NOISES, make_noise
from ebm_jax.experiments.sampling import LangevinConfig, langevin_sampling
from ebm_jax.losses.meco import DEFAULT_RATE, log_z_estimate, meco

IMPORTANCE_DRAWS = 65_536  # noise draws of the evaluation's log Z estimate
RATE = (lambda v: 0 < v <= 1), "a moving-average weight in (0, 1]"


@dataclass(frozen=True)
class MECOConfig(ObjectiveConfig):
    """``meco(energy_fn, noise, noise_ratio=, rate=)`` with ``noise`` named by ``noise`` and
    ``noise_scale`` (as NCE's); ``sampler`` draws samples for evaluation."""

    kind = "meco"
    sampler: LangevinConfig = section(LangevinConfig)
    noise: str = setting("gaussian", *one_of(*NOISES))
    noise_scale: float = setting(1.25, *POSITIVE)  # widening of the fitted Gaussian
    noise_ratio: float = setting(1.0, *POSITIVE)   # noise samples per data sample
    rate: float = setting(DEFAULT_RATE, *RATE)  # γ, the new estimate's weight in u


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    settings = config.objective
    params, energy_fn = build_energy(config, data, rngs)
    noise = make_noise(settings, data)
    loss = meco(energy_fn, noise, noise_ratio=settings.noise_ratio, rate=settings.rate)
    sampling = langevin_sampling(config, data, energy_fn)

    @jax.jit
    def importance_log_z(params, rng_key):
        return log_z_estimate(energy_fn, noise, params, noise.sample(rng_key, IMPORTANCE_DRAWS))

    def evaluate(params, rng_key, *, quick=False, figure=None):
        del figure
        if quick:
            return {}
        return {"log_z_importance": float(importance_log_z(params, rng_key))}

    return Pieces(params, energy_fn, None, loss, *sampling, evaluate=evaluate)


PRESETS = {
    # The NCE presets' network, batch and budget, so the two compare.
    f"meco_2d_{toy}": toy_preset(toy, MECOConfig(sampler=TOY_SAMPLER, noise_scale=1.0),
                                 batch_size=512, num_steps=16_000, fresh_sample_steps=500,
                                 eval_every=4000, checkpoint_every=4000)
    for toy in TOYS
}
# In 64 dimensions a fitted Gaussian is far from the digits: the importance weights are
# heavy-tailed, and at γ = 0.9 the average follows each batch's underestimate until the data's
# energies run away (the guard stops it by step 400); a slow average over 16x the draws trains.
PRESETS["meco_digits"] = Config(name="meco_digits", objective=MECOConfig(
    noise_scale=1.0, noise_ratio=16.0, rate=0.01))

OBJECTIVE = Objective(
    kind="meco", config=MECOConfig, build=build, needs_labels=False, classifier=False,
    unsupervised=True, models=ENERGY_MODELS, models_note=ENERGY_MODELS_NOTE, presets=PRESETS,
    summary="maximum likelihood by compositional optimisation: log Z tracked against noise")
