"""Diffusion recovery likelihood (Gao, Song, Poole, Wu & Kingma, ICLR 2021).

A sequence of EBMs ``E(x, t)``, one per noise level ``t = 0..T-1`` and all
sharing one network, is learned on increasingly noisy versions of the data.
The forward diffusion (``t`` grows with the noise; level 0 is the data)::

    x_{t+1} = sqrt(1 - σ_t²) x_t + σ_t ε,        ε ~ N(0, I),   σ_t = schedule.sigmas[t]
    x_t     = ᾱ_t x_0 + sqrt(1 - ᾱ_t²) ε,         ᾱ_t = Π_{s<t} sqrt(1 - σ_s²)

(``σ_t`` is the paper's ``σ_{t+1}``: the noise of the step *out of* level ``t``.)
``E(x, t)`` models the marginal ``-log p_t(x)`` and is trained by the
likelihood of recovering ``x_t`` from ``x_{t+1}``, a conditional EBM that is
nearly Gaussian and therefore easy to sample::

    p(x_t | x_{t+1}) ∝ exp(-E(x_t, t) - ||x_t - x̃||² / (2 σ_t² / a_t²)),
    a_t = sqrt(1 - σ_t²),  x̃ = x_{t+1} / a_t

(this is ``p_t(x_t) N(x_{t+1}; a_t x_t, σ_t² I)`` written in ``x_t``; the paper
writes it in ``y = a_t x_t``, where the quadratic is ``||y - x_{t+1}||² / 2σ_t²``).
The gradient of its log-likelihood is ``E_data[∇E(x_t, t)] - E_cond[∇E(x, t)]``,
the conditional expectation estimated with ``K`` Langevin steps (step size
``h_t = step_size_scale * σ_t²``) started at ``x̃`` or, by default, at an
importance-resampled draw (see ``chain_init``).

Generation (:func:`progressive_sample`) starts at ``x_T ~ N(0, I)`` and samples
``p(x_t | x_{t+1})`` for ``t = T-1, ..., 0``.

Choosing the conditional sampler. The defaults (``chain_init="importance"``,
``metropolis=True``, ``step_size_scale=0.05``) are what made the level-0
energy right on multi-modal 2-D toys; the paper's sampler is
``chain_init="rescaled", metropolis=False``. Measured on ``rings`` (T6, MLP
128x3): with chains started at ``x̃`` or ``a_t x_{t+1}`` the *samples* were
right but ``E(x, 0)`` was ~1 nat off in KL, because Langevin does not cross
between rings in 30 steps, so the relative ring weights of ``E(·, 0)`` get
almost no gradient and drift; importance-resampled starts pin them (KL ~0.1).
Unadjusted chains also diverged whenever the learned level-0 energy grew
sharper than ``2 / h_0``; the Metropolis correction keeps them finite. With
``T6`` the top level has ``a_5 = 0.023``, so ``chain_init="rescaled"`` starts
its chains at ``x_6 / 0.023``, far outside the data (the reference
implementation starts that level at ``x_6`` instead).

This module holds the loss transform, :func:`recovery_likelihood`. The schedules
(:func:`noise_schedule`, :func:`diffuse`) live in :mod:`ebm_jax.samplers.schedules` and the
chains (:func:`recovery_langevin`, :func:`progressive_sample`) in
:mod:`ebm_jax.samplers.recovery`; they are re-exported here.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_in_range, check_int, check_weight
from ebm_jax.energies import EnergyFn
from ebm_jax.losses.base import LossTransform, require_keys
from ebm_jax.samplers.recovery import (CHAIN_INITS, RecoveryChainOptions, RecoveryInfo,
                                       progressive_sample, recovery_chain_options,
                                       recovery_chains, recovery_langevin)
from ebm_jax.samplers.schedules import (SCHEDULES, NoiseSchedule, as_noise_schedule, diffuse,
                                        float32_array, noise_schedule)

__all__ = ["CHAIN_INITS", "SCHEDULES", "NoiseSchedule", "RecoveryChainOptions", "RecoveryInfo",
           "diffuse", "noise_schedule", "progressive_sample", "recovery_chain_options",
           "recovery_chains", "recovery_langevin", "recovery_likelihood"]


def recovery_likelihood(energy_fn: EnergyFn, schedule: Union[NoiseSchedule, str, Sequence[float]]
                        = "t6", *, num_langevin_steps: int = 30, step_size_scale: float = 0.05,
                        chain_init: str = "importance", num_candidates: int = 16,
                        metropolis: bool = True, level_weights: Optional[Sequence[float]] = None,
                        data_noise: float = 0.0,
                        split_batch: bool = False, energy_l2: float = 0.0,
                        grad_clip: Optional[float] = None,
                        clip_range: Optional[tuple[float, float]] = None,
                        per_level_info: bool = False, unroll: int = 1) -> LossTransform:
    """Diffusion recovery likelihood as a :class:`~ebm_jax.losses.LossTransform` (all levels).

    For every level ``t`` (a ``jax.vmap`` over levels, so all levels train in
    one XLA program) and every example: draw ``(x_t, x_{t+1})`` by
    :func:`diffuse`, sample ``x_s ~ p(x_t | x_{t+1})`` by
    :func:`recovery_langevin` (params and samples held constant), and take::

        L_t = mean E(x_t, t) - mean E(x_s, t)   [+ energy_l2 (mean E(x_t,t)² + mean E(x_s,t)²)]
        L   = Σ_t w_t L_t / Σ_t w_t

    whose gradient is minus the recovery log-likelihood gradient.

    Args:
      energy_fn: per-example ``energy_fn(params, x, t) -> scalar``, ``t`` an int32
        scalar level (e.g. :func:`ebm_jax.nets.conditioned.as_conditioned_energy_fn`).
      schedule: a :class:`NoiseSchedule`, a schedule name or a sequence of sigmas.
      num_langevin_steps: Langevin steps per level (the paper's K = 30).
      step_size_scale: ``b`` in the step size ``b σ_t²`` (see :func:`recovery_langevin`).
      chain_init, num_candidates: chain start, see :func:`recovery_langevin`.
      metropolis: Metropolis-adjusted chains (MALA), see :func:`recovery_langevin`.
      level_weights: ``[T]`` non-negative weights ``w_t`` (default uniform; the
        reference implementation uses ``σ_0 / σ_t``).
      split_batch: if True the batch is split into ``T`` equal parts, one per
        level (``B`` must be divisible by ``T``), which divides the cost by ``T``;
        otherwise every level sees the whole batch.
      energy_l2: weight of the energy L2 regulariser (>= 0).
      data_noise: std of Gaussian noise added to the data before the diffusion,
        so that level 0 models the slightly smoothed data. Quantised data (digits,
        images) have a degenerate level-0 density, infinitely sharp in the
        constant pixels, that no step size samples; the reference implementation
        likewise diffuses the data once (σ = 0.01) and calls that level 0.
      grad_clip, clip_range: passed to the Langevin sampler.
      per_level_info: add ``loss/level_t``, ``energy_data/level_t``,
        ``energy_sample/level_t`` (and ``acceptance_rate/level_t``) to the info.
      unroll: scan unroll factor of the chain loop.

    State: ``()``. Info: ``energy_data`` and ``energy_sample`` (means over levels
    and examples), ``sample_grad_norm`` (mean conditional-energy gradient norm
    over all chain steps), ``sample_displacement`` (mean distance a chain
    moved), ``nonfinite_steps`` (count over all chains and steps) and, with
    ``metropolis``, ``acceptance_rate``.

    Example::

      >>> energy_fn = lambda params, x, t: 0.5 * jnp.sum((x - params[t]) ** 2)
      >>> loss = recovery_likelihood(energy_fn, noise_schedule("t6"), num_langevin_steps=3,
      ...                            num_candidates=4)
      >>> params, batch = jnp.zeros((6, 2)), {"x": jnp.ones((8, 2))}
      >>> value, (state, info) = jax.jit(loss.loss)(params, loss.init(None, params, batch),
      ...                                           batch, jax.random.key(0))
      >>> value.shape, sorted(info)[:2]
      ((), ['acceptance_rate', 'energy_data'])

    With a network: ``as_conditioned_energy_fn(ConditionedMLP(2, (128,) * 3, 6, rngs=...))``
    (:mod:`ebm_jax.nets.conditioned`) and ``make_train_step(loss, optax.adam(1e-3),
    ema_decay=0.999)`` (:mod:`ebm_jax.train`).
    """
    schedule = as_noise_schedule(schedule)
    check_int("num_langevin_steps", num_langevin_steps)
    options = recovery_chain_options(num_steps=num_langevin_steps,
                                     step_size_scale=step_size_scale, chain_init=chain_init,
                                     num_candidates=num_candidates, metropolis=metropolis,
                                     grad_clip=grad_clip, clip_range=clip_range, unroll=unroll)
    num_levels = schedule.num_levels
    if level_weights is None:
        weights = np.ones(num_levels)
    else:
        weights = np.asarray(level_weights, np.float64)
        if weights.shape != (num_levels,):
            raise ValueError(f"level_weights has shape {weights.shape}: expected ({num_levels},), "
                             "one weight per level of the schedule")
        if not (np.all(np.isfinite(weights)) and np.all(weights >= 0) and weights.sum() > 0):
            raise ValueError(f"level_weights={weights.tolist()}: expected finite non-negative "
                             "weights, not all zero")
    weights = weights / weights.sum()
    check_weight("energy_l2", energy_l2, 0.0, expected="a number >= 0")
    check_in_range("data_noise", data_noise, 0, 1, include_high=False,
                   expected="a noise std in [0, 1)")
    per_example = jax.vmap(energy_fn, in_axes=(None, 0, None))

    def check_batch(batch):
        require_keys(batch, ("x",), "recovery_likelihood")
        batch_size = batch["x"].shape[0]
        if split_batch and batch_size % num_levels:
            raise ValueError(f"batch['x'] has {batch_size} examples: split_batch=True needs a "
                             f"multiple of the number of levels, {num_levels}")

    def init(rng_key, params, example_batch):
        check_batch(example_batch)
        return ()

    def loss(params, state, batch, rng_key):
        check_batch(batch)
        x = batch["x"]
        frozen = jax.lax.stop_gradient(params)

        def one_level(level, x0, key):
            k_diffuse, k_chain, k_noise = jax.random.split(key, 3)
            if data_noise:
                x0 = x0 + data_noise * jax.random.normal(k_noise, x0.shape, x0.dtype)
            x_t, x_next = diffuse(k_diffuse, schedule, x0, level)
            samples, info = recovery_chains(k_chain, energy_fn, frozen, schedule, level, x_next,
                                            options)
            samples = jax.lax.stop_gradient(samples)
            e_data = per_example(params, x_t, level)
            e_sample = per_example(params, samples, level)
            value = jnp.mean(e_data) - jnp.mean(e_sample)
            if energy_l2:
                value = value + energy_l2 * (jnp.mean(e_data**2) + jnp.mean(e_sample**2))
            stats = (jnp.mean(e_data), jnp.mean(e_sample), jnp.mean(info.langevin.grad_norm),
                     jnp.mean(info.displacement), jnp.sum(info.langevin.nonfinite),
                     jnp.mean(info.acceptance))
            return value, stats

        levels = jnp.arange(num_levels, dtype=jnp.int32)
        keys = jax.random.split(rng_key, num_levels)
        if split_batch:
            xs = x.reshape(num_levels, x.shape[0] // num_levels, *x.shape[1:])
            values, stats = jax.vmap(one_level)(levels, xs, keys)
        else:
            values, stats = jax.vmap(one_level, in_axes=(0, None, 0))(levels, x, keys)
        e_data, e_sample, grad_norm, displacement, nonfinite, acceptance = stats
        value = jnp.sum(float32_array(weights) * values)
        info = {
            "energy_data": jnp.mean(e_data),
            "energy_sample": jnp.mean(e_sample),
            "sample_grad_norm": jnp.mean(grad_norm),
            "sample_displacement": jnp.mean(displacement),
            "nonfinite_steps": jnp.sum(nonfinite),
        }
        if metropolis:
            info["acceptance_rate"] = jnp.mean(acceptance)
        if per_level_info:
            for t in range(num_levels):
                info[f"loss/level_{t}"] = values[t]
                info[f"energy_data/level_{t}"] = e_data[t]
                info[f"energy_sample/level_{t}"] = e_sample[t]
                if metropolis:
                    info[f"acceptance_rate/level_{t}"] = acceptance[t]
        return value, (state, info)

    return LossTransform(init, loss)
