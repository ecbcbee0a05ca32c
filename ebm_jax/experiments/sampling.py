"""Settings sections shared by the objectives that sample: the Langevin sampler and the replay
buffer its chains start from, and the functions that turn them into the library's pieces.

An objective nests these sections in its hyperparameters
(``objective.sampler.step_size``, ``objective.chain_start.capacity``); the run's sampler
is built once, here, and evaluation reuses it (:func:`sampler_recipe`) instead of rebuilding
one from config fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

import jax

from ebm_jax.energies import EnergyFn
from ebm_jax.experiments.config import (OPTIONAL_POSITIVE, POSITIVE, POSITIVE_INT, PROBABILITY,
                                        Config, ConfigError, setting)
from ebm_jax.samplers import (ChainStart, Sampler, init_chains, langevin, replay_buffer_start,
                              run_chains, uniform_init)

SamplerRecipe = Callable[[EnergyFn], Sampler]
# generate(rng_key, params, num) -> [num, *example_shape]
Generator = Callable[[jax.Array, Any, int], jax.Array]


@dataclass(frozen=True)
class LangevinConfig:
    """SGLD (:func:`ebm_jax.samplers.langevin`): ``step_size``, ``noise_scale`` (none: the
    temperature form ``sqrt(2 step_size)``), per-element gradient clipping, and clamping
    the chains to the data range."""

    step_size: float = setting(1.0, *POSITIVE)
    noise_scale: Optional[float] = setting(0.01, lambda v: v is None or v >= 0,
                                           "a number >= 0, or none for the temperature form")
    grad_clip: Optional[float] = setting(None, *OPTIONAL_POSITIVE)
    clamp: bool = setting(True)


@dataclass(frozen=True)
class ReplayBufferConfig:
    """Where persistent chains start: a replay buffer of ``capacity`` samples; each chain
    restarts with probability ``reinit_prob``, from uniform noise over the data range or, with
    ``reinit_from_data``, from the batch's data. ``num_shards`` splits the buffer into blocks
    (none: one per device; see :mod:`ebm_jax.samplers.replay_buffer`)."""

    capacity: int = setting(10_000, *POSITIVE_INT)
    reinit_prob: float = setting(0.05, *PROBABILITY)
    reinit_from_data: bool = setting(False)
    num_shards: Optional[int] = setting(None, lambda v: v is None or v > 0,
                                        "a positive int or none (one per device)")


def sampler_recipe(settings: LangevinConfig, data_range: tuple) -> SamplerRecipe:
    """``make(energy_fn) -> Sampler``: the run's sampler settings on any energy (the model's,
    a class-conditional one, a masked one for inpainting)."""
    clip_range = data_range if settings.clamp else None

    def make(energy_fn: EnergyFn) -> Sampler:
        return langevin(energy_fn, settings.step_size, settings.noise_scale,
                        grad_clip=settings.grad_clip, clip_range=clip_range)

    return make


def make_chain_start(settings: ReplayBufferConfig, data_range: tuple,
                     num_devices: int) -> ChainStart:
    """The replay-buffer chain start of these settings: noise restarts uniform over
    ``data_range``, one buffer block per device unless ``num_shards`` says otherwise."""
    return replay_buffer_start(settings.capacity, settings.reinit_prob,
                               init_fn=uniform_init(*data_range),
                               restart_from_data=settings.reinit_from_data,
                               num_shards=settings.num_shards or num_devices)


def check_chain_start(config: Config, settings: ReplayBufferConfig) -> None:
    """The buffer and the batch split into ``num_shards`` blocks."""
    shards = settings.num_shards
    if shards is None:
        return
    for name, value in (("objective.chain_start.capacity", settings.capacity),
                        ("data.batch_size", config.data.batch_size)):
        if value % shards:
            raise ConfigError(f"{name}={value} with objective.chain_start.num_shards={shards}: "
                              "expected a multiple of num_shards")


def generator_from_noise(sampler: Sampler, data_range: tuple, example_shape: tuple,
                         num_steps: int) -> Generator:
    """``generate(rng_key, params, num)``: ``num_steps`` steps of ``sampler`` from uniform noise
    over ``data_range``, ``num`` chains of ``example_shape``."""

    def generate(rng_key, params, num):
        x0 = uniform_init(*data_range)(rng_key, (num, *example_shape))
        states = init_chains(sampler, x0, params)
        states, _ = run_chains(jax.random.fold_in(rng_key, 1), sampler, states, params,
                               num_steps)
        return states.position

    return generate


class RunSampling(NamedTuple):
    """The sampling pieces of a run, in :class:`~ebm_jax.experiments.objectives.Pieces`' order."""

    sampler: Sampler
    make_sampler: SamplerRecipe
    generate: Generator


def langevin_sampling(config: Config, data: Any, energy_fn: EnergyFn) -> RunSampling:
    """The run's SGLD settings (``config.objective.sampler``) on ``energy_fn``, the same
    settings as a recipe for other energies, and fresh samples drawn by
    ``config.run.fresh_sample_steps`` of its steps from uniform noise over the data range."""
    make_sampler = sampler_recipe(config.objective.sampler, data.data_range)
    sampler = make_sampler(energy_fn)
    generate = generator_from_noise(sampler, data.data_range, data.x_train.shape[1:],
                                    config.run.fresh_sample_steps)
    return RunSampling(sampler, make_sampler, generate)


__all__ = ["LangevinConfig", "ReplayBufferConfig", "RunSampling", "check_chain_start",
           "generator_from_noise", "langevin_sampling", "make_chain_start", "sampler_recipe"]
