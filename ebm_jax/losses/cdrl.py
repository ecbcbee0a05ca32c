"""Cooperative diffusion recovery likelihood (CDRL; Zhu, Xie, Wu & Gao, ICLR 2024).

Diffusion recovery likelihood (:func:`~ebm_jax.losses.recovery_likelihood`) learns one EBM
per noise level of a diffusion by sampling the nearly Gaussian conditionals
``p(x_t | x_{t+1})`` with MCMC. CDRL pairs every level with an *initializer* ``g(x_{t+1}, t)``
that proposes ``x_t``; a few Langevin steps of the EBM refine the proposal, the EBM learns by
recovery likelihood against the refined samples, and the initializer regresses its proposal
onto them (the two cooperate: the better the proposal, the fewer steps the refinement needs).
As in the reference code:

* the truncated cosine log-SNR schedule (``noise_schedule("cosine")``, log-SNR 9.8 to -5.1
  over 6 levels), the data diffused once to log-SNR 9.8 (``data_noise`` ≈ 0.0074);
* one noise draw for each pair ``(x_t, x_{t+1})`` (:func:`~ebm_jax.samplers.diffuse_shared`);
* a *decoupled* energy: the network's output ``f`` is divided by the squared Langevin step
  ``s_t² = b c_t σ_t²`` (``b = 4e-4``, ``c_t = σ̄_t / σ̄_0`` the ratio of marginal noise stds),
  ``E(x, t) = -f(a_t x, t) / s_t²``, so that a chain's drift, ``∇f / 2``, does not grow with the
  step size (:func:`cdrl_scales`, :func:`decoupled_energy`);
* per-level weights ``σ_0 / σ_t`` on ``f``'s recovery-likelihood loss;
* a marginal EBM at the noisiest level (no quadratic term: ``x_T`` is not pure noise);
* 15 unadjusted Langevin steps; a final Tweedie step at sampling
  (:func:`~ebm_jax.samplers.tweedie_denoise`).

Beyond the reference, with MALA refinement (``metropolis=True``), each level's step can be
adapted during training to keep its acceptance rate at ``target_acceptance``
(``adapt_rate > 0``; the state :class:`CDRLState`), as diffusion recovery likelihood's
reference code adapts its steps: a level whose energy sharpens past its step would otherwise
stop moving its chains, and its EBM, trained against samples stuck at their proposals, runs
away.

Both networks' params live in one pytree, ``cdrl_params(energy, initializer)``, trained in one
jitted step by :func:`cdrl_optimizer` (each network its own optimizer state, clipping and
learning rate).

Example::

    >>> from ebm_jax.samplers import noise_schedule
    >>> schedule = noise_schedule("cosine")
    >>> scales = cdrl_scales(schedule)
    >>> energy_fn = decoupled_energy(lambda p, y, t: -0.5 * jnp.sum((y - p["energy"]) ** 2),
    ...                              scales)
    >>> initializer_fn = residual_initializer(lambda p, x, t: p["initializer"] * x, scales)
    >>> loss = cdrl(energy_fn, initializer_fn, schedule, scales=scales, num_langevin_steps=3)
    >>> params = cdrl_params(jnp.zeros(2), jnp.zeros(()))
    >>> batch = {"x": jnp.ones((12, 2))}
    >>> value, (state, info) = jax.jit(loss.loss)(params, loss.init(None, params, batch), batch,
    ...                                           jax.random.key(0))
    >>> sorted(info)[:3]
    ['energy_data', 'energy_sample', 'initializer_loss']
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_jax._checks import check_flag, check_in_range, check_int, check_weight
from ebm_jax.energies import EnergyFn
from ebm_jax.losses.base import LossTransform, require_keys
from ebm_jax.samplers.chain_starts import RecoveryCondition, initializer_start
from ebm_jax.samplers.recovery import (mixture_importance_chain_start, recovery_chain_options,
                                       recovery_chains)
from ebm_jax.samplers.schedules import as_noise_schedule, diffuse, diffuse_shared, float32_array

__all__ = ["CDRLScales", "CDRLState", "adapt_log_step_multipliers", "cdrl", "cdrl_optimizer",
           "cdrl_params", "cdrl_scales", "decoupled_energy", "residual_initializer"]

ENERGY_KEY, INITIALIZER_KEY = "energy", "initializer"
REFERENCE_DATA_NOISE = math.sqrt(1.0 / (1.0 + math.exp(9.8)))   # sqrt(sigmoid(-9.8)) ≈ 0.0074


class CDRLScales(NamedTuple):
    """CDRL's per-level constants, NumPy float64 ``[T]`` arrays (``T`` levels).

    Attributes:
      energy_scales: ``s_t²``, the squared Langevin step of the level in the network's input
        space: the energy is ``-f / s_t²``.
      input_scales: ``a_t``, the network's input is ``a_t x`` (``sqrt(1 - σ_t²)``; 1 at a
        marginal top level).
      step_sizes: ``h_t = s_t² / (2 a_t²)``, the same Langevin step in ``x`` (the temperature
        form: noise ``sqrt(2 h_t)``), for :func:`~ebm_jax.samplers.recovery_chains`.
      proposal_stds: the initializer's noise, the diffusion's posterior std
        ``sqrt(σ̄_t² σ_t² / σ̄_{t+1}²)`` of ``x_t`` given ``x_{t+1}`` and the data.
      loss_weights: the weight of each level's recovery-likelihood term on ``E``:
        ``(σ_0 / σ_t) s_t²``, the reference's ``σ_0 / σ_t`` on ``f``.
      data_noise: the std that diffuses the data to level 0 (a float).
      marginal_top: whether the top level is a marginal EBM (a bool).
    """

    energy_scales: np.ndarray
    input_scales: np.ndarray
    step_sizes: np.ndarray
    proposal_stds: np.ndarray
    loss_weights: np.ndarray
    data_noise: float
    marginal_top: bool


class CDRLState(NamedTuple):
    """:func:`cdrl`'s state when it adapts its steps (``adapt_rate > 0``; else ``()``).

    Attributes:
      log_step_multipliers: ``[T]`` float32, the log of each level's step multiplier
        (``<= 0``: the configured step is the largest), 0 at the start.
    """

    log_step_multipliers: jax.Array


def adapt_log_step_multipliers(log_multipliers: jax.Array, acceptance: jax.Array,
                               rate: float, target: float) -> jax.Array:
    """One Robbins-Monro step towards ``acceptance == target`` per level, capped at 0.

    ``log m_t <- min(0, log m_t + rate (a_t - target))``: a level accepting less than the
    target takes a smaller step next time, one accepting more grows back towards the
    configured step, never past it.

    Example::

      >>> new = adapt_log_step_multipliers(jnp.zeros(3), jnp.array([0.5, 0.9, 1.0]), 0.1, 0.9)
      >>> [round(float(v), 3) for v in new]
      [-0.04, 0.0, 0.0]
    """
    return jnp.minimum(0.0, log_multipliers + rate * (acceptance - target))


def cdrl_scales(schedule: Any = "cosine", *, data_noise: float = REFERENCE_DATA_NOISE,
                step_scale: float = 4e-4, per_level_c: bool = True,
                marginal_top: bool = True, decoupled: bool = True) -> CDRLScales:
    """CDRL's decoupled step sizes, input scales, proposal stds and loss weights.

    With ``σ̄_t`` the marginal noise std of level ``t`` (the data diffused by ``data_noise``
    first, so ``σ̄_0 = data_noise``) and ``σ_t`` the schedule's step out of level ``t``:
    ``s_t² = step_scale c_t σ_t²`` with ``c_t = σ̄_t / σ̄_0`` (the reference's images), or
    ``c_t = 1 / σ̄_0`` at every level with ``per_level_c=False`` (its 2-D example, with
    ``step_scale=2e-3``).

    Args:
      schedule: a :class:`~ebm_jax.samplers.NoiseSchedule` or its name (default ``"cosine"``).
      data_noise: ``σ̄_0`` in ``(0, 1)``: the reference's ``sqrt(sigmoid(-9.8))``.
      step_scale: ``b`` (> 0).
      per_level_c: ``c_t = σ̄_t / σ̄_0`` (True) or ``1 / σ̄_0`` (False).
      marginal_top: the top level is a marginal EBM on ``x_{T-1}`` (input scale 1, step
        ``s²/2``).
      decoupled: the energy is ``-f / s_t²`` (CDRL's parameterisation); with False it is
        ``-f`` itself (``energy_scales`` 1, the loss weights ``σ_0 / σ_t`` on ``E``), as in
        recovery likelihood, with the same steps.

    Example::

      >>> from ebm_jax.samplers import noise_schedule
      >>> scales = cdrl_scales(noise_schedule("cosine"))
      >>> scales.energy_scales[:2].round(6).tolist(), round(float(scales.proposal_stds[-1]), 4)
      ([2.5e-05, 0.002437], 0.9218)
    """
    schedule = as_noise_schedule(schedule)
    check_in_range("data_noise", data_noise, 0, 1, include_low=False, include_high=False,
                   expected="a noise std in (0, 1): CDRL's level 0 is the data diffused once")
    check_in_range("step_scale", step_scale, 0, math.inf, include_low=False,
                   expected="a positive number")
    per_level_c = check_flag("per_level_c", per_level_c)
    marginal_top = check_flag("marginal_top", marginal_top)
    decoupled = check_flag("decoupled", decoupled)
    # marginal stds with the data noise: x_t = sqrt(1-d²) m_t x + sqrt(1 - (1-d²) m_t²) ε
    signal = (1.0 - data_noise**2) * schedule.marginal_alphas**2
    marginal_sigmas = np.sqrt(1.0 - signal)
    if per_level_c:
        c = marginal_sigmas[:-1] / data_noise
    else:
        c = np.full(schedule.num_levels, 1.0 / data_noise)
    sigmas_sq = schedule.sigmas**2
    energy_scales = step_scale * c * sigmas_sq
    input_scales = schedule.alphas.copy()
    if marginal_top:
        input_scales[-1] = 1.0
    step_sizes = energy_scales / (2.0 * input_scales**2)
    proposal_stds = np.sqrt(marginal_sigmas[:-1]**2 * sigmas_sq / marginal_sigmas[1:]**2)
    loss_weights = schedule.sigmas[0] / schedule.sigmas * energy_scales
    if not decoupled:
        loss_weights = loss_weights / energy_scales
        energy_scales = np.ones_like(energy_scales)
    return CDRLScales(energy_scales, input_scales, step_sizes, proposal_stds, loss_weights,
                      float(data_noise), marginal_top)


def decoupled_energy(network_fn: Callable[..., jax.Array], scales: CDRLScales) -> EnergyFn:
    """``E(x, t[, label]) = -f(a_t x, t[, label]) / s_t²``: the network's output ``f`` read as
    a log-density scaled by the level's squared Langevin step (CDRL's parameterisation).

    Args:
      network_fn: per-example ``f(params, y, t[, label]) -> scalar``.
      scales: from :func:`cdrl_scales`.

    Example::

      >>> scales = cdrl_scales("cosine")
      >>> energy_fn = decoupled_energy(lambda p, y, t: -jnp.sum(y**2), scales)
      >>> bool(energy_fn(None, jnp.ones(2), 0) > 0)
      True
    """
    energy_scales = float32_array(scales.energy_scales)
    input_scales = float32_array(scales.input_scales)

    def energy_fn(params, x, level, *label):
        return -network_fn(params, input_scales[level] * x, level, *label) / energy_scales[level]

    return energy_fn


def residual_initializer(network_fn: Callable[..., jax.Array],
                         scales: CDRLScales) -> Callable[..., jax.Array]:
    """An initializer mean ``g(x_{t+1}, t) = x_{t+1} / a_t + h(x_{t+1}, t)``: the rescaled
    noisy sample plus a learned residual (CDRL's initializer is the identity at
    initialisation when ``h`` starts at zero; at a marginal top level ``a = 1``).

    Example::

      >>> g = residual_initializer(lambda p, x, t: jnp.zeros_like(x), cdrl_scales("cosine"))
      >>> g(None, jnp.ones(2), 5).tolist()                                  # the marginal top
      [1.0, 1.0]
    """
    input_scales = float32_array(scales.input_scales)

    def initializer_fn(params, x_next, level, *label):
        return x_next / input_scales[level] + network_fn(params, x_next, level, *label)

    return initializer_fn


def cdrl_params(energy_params: Any, initializer_params: Any) -> dict:
    """The one params pytree of both networks: ``{"energy": ..., "initializer": ...}``."""
    return {ENERGY_KEY: energy_params, INITIALIZER_KEY: initializer_params}


def cdrl_optimizer(energy_optimizer: optax.GradientTransformation,
                   initializer_optimizer: optax.GradientTransformation
                   ) -> optax.GradientTransformation:
    """Each network its own optimizer (and state) over :func:`cdrl_params`' pytree.

    The reference: Adam with gradients clipped to norm 1 for each network, learning rates
    1e-4 (EBM) and 1e-5 (initializer), e.g.
    ``cdrl_optimizer(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-4)), ...)``.

    Example::

      >>> tx = cdrl_optimizer(optax.adam(1e-3), optax.sgd(0.1))
      >>> params = cdrl_params(jnp.zeros(2), jnp.zeros(3))
      >>> updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
      >>> [round(float(u), 3) for u in updates["initializer"]]
      [-0.1, -0.1, -0.1]
    """
    def labels(params):
        return {key: jax.tree.map(lambda _, k=key: k, sub) for key, sub in params.items()}

    return optax.multi_transform({ENERGY_KEY: energy_optimizer,
                                  INITIALIZER_KEY: initializer_optimizer}, labels)


def cdrl(energy_fn: EnergyFn, initializer_fn: Callable[..., jax.Array],
         schedule: Any = "cosine", *, scales: Optional[CDRLScales] = None,
         num_langevin_steps: int = 15, metropolis: bool = False, shared_noise: bool = True,
         split_batch: bool = True,
         initializer_weight: float = 1.0, null_label: Optional[int] = None,
         label_drop: float = 0.1, per_level_info: bool = False,
         unroll: int = 1, adapt_rate: float = 0.0,
         target_acceptance: float = 0.9, num_candidates: int = 0) -> LossTransform:
    """CDRL as a :class:`~ebm_jax.losses.LossTransform` over both networks (all levels).

    For every level ``t`` (a ``jax.vmap`` over levels; each takes ``B / T`` examples with
    ``split_batch``): diffuse the data once by ``scales.data_noise``, draw ``(x_t, x_{t+1})``
    (one noise draw with ``shared_noise``), propose ``x̂ = g(x_{t+1}, t) + std_t n``
    (:func:`~ebm_jax.samplers.initializer_start`), refine it by ``num_langevin_steps`` of
    unadjusted Langevin on ``p(x | x_{t+1})`` with step ``scales.step_sizes[t]`` (params
    and proposal held constant) into ``x_s``, and take::

        L = Σ_t [ w_t (mean E(x_t, t) - mean E(x_s, t))                        (the EBM)
                  + λ a_t² mean ||x_s - x̂||² ] / T                           (the initializer)

    ``w_t = scales.loss_weights[t]``, ``λ = initializer_weight``. The EBM's term is minus its
    recovery log-likelihood gradient; the initializer's (summed over dimensions, in the
    network's input space ``a_t x`` as in the reference) pulls its proposal, noise included,
    onto the refined sample. Neither term reaches the other network.

    Args:
      energy_fn: per-example ``energy_fn(params, x, t[, label]) -> scalar`` reading its part of
        :func:`cdrl_params` (e.g. :func:`decoupled_energy`).
      initializer_fn: per-example ``g(params, x_next, t[, label]) -> x_t``-shaped mean (e.g.
        :func:`residual_initializer`).
      schedule: a :class:`~ebm_jax.samplers.NoiseSchedule` or its name (``"cosine"``).
      scales: :func:`cdrl_scales` of ``schedule`` (default: the reference's).
      num_langevin_steps: ``K`` (the reference's 15).
      metropolis: refine by MALA (each step accepted or rejected on the level's conditional)
        instead of the reference's unadjusted Langevin; Info then adds ``acceptance_rate``.
      shared_noise: one noise draw per pair (CDRL's variance reduction); else the diffusion's
        joint (:func:`~ebm_jax.samplers.diffuse`).
      split_batch: ``B`` split across the ``T`` levels (``B`` a multiple of ``T``); else
        every level sees the whole batch.
      initializer_weight: ``λ`` (> 0).
      null_label: the null class of classifier-free guidance: with it, ``batch["y"]`` holds
        the classes, both networks take a label, and each label is replaced by ``null_label``
        with probability ``label_drop`` (the reference: 0.1).
      per_level_info: add ``loss/level_t``, ``initializer_loss/level_t`` and (with
        ``metropolis``) ``acceptance/level_t``.
      unroll: scan unroll of the chains.
      adapt_rate: ``> 0`` adapts each level's step during training
        (:func:`adapt_log_step_multipliers` after every call, on that call's acceptance
        rates; needs ``metropolis``); 0 keeps the configured steps.
      target_acceptance: the acceptance rate in ``(0, 1)`` the adaptation keeps.
      num_candidates: 0 starts every chain at the initializer's proposal (the reference); an
        even int ``>= 2`` starts it at an importance-resampled pick among that many
        candidates, half from the initializer and half from the level's Gaussian
        (:func:`~ebm_jax.samplers.mixture_importance_start`). Chains that start at
        the proposal and move a few steps leave the relative weights of separated modes of
        ``E(·, t)`` without gradient (the proposal already puts samples in every mode, in
        its own proportions), so the level-0 energy drifts from the density while the
        samples stay right; the picks follow the EBM's own conditional and pin them. The
        initializer still regresses its own proposal onto the refined samples. Costs
        ``num_candidates`` energy evaluations per chain.

    State: ``()``, or a :class:`CDRLState` with ``adapt_rate > 0``. Info: ``energy_data``,
    ``energy_sample`` (means over levels of
    ``s_t² E``: the network's ``-f`` for a decoupled energy, on one scale at every level),
    ``initializer_loss``,
    ``refinement_distance`` (mean distance a chain moved from its proposal),
    ``sample_grad_norm``, ``nonfinite_steps``; with ``metropolis``, ``acceptance_rate``;
    with ``adapt_rate > 0``, ``step_multiplier_min`` (the smallest level's multiplier, before
    this call's update) and, with ``per_level_info``, ``step_multiplier/level_t``.
    """
    schedule = as_noise_schedule(schedule)
    scales = cdrl_scales(schedule) if scales is None else scales
    num_levels = schedule.num_levels
    if len(scales.energy_scales) != num_levels:
        raise ValueError(f"scales have {len(scales.energy_scales)} levels: expected "
                         f"{num_levels}, those of the schedule (build them with "
                         "cdrl_scales(schedule))")
    num_langevin_steps = check_int("num_langevin_steps", num_langevin_steps)
    shared_noise = check_flag("shared_noise", shared_noise)
    split_batch = check_flag("split_batch", split_batch)
    check_weight("initializer_weight", initializer_weight, 0.0, expected="a number > 0")
    if initializer_weight <= 0:
        raise ValueError(f"initializer_weight={initializer_weight!r}: expected a number > 0")
    conditional = null_label is not None
    if conditional:
        check_int("null_label", null_label, minimum=0)
        check_in_range("label_drop", label_drop, 0, 1, expected="a probability in [0, 1]")
    metropolis = check_flag("metropolis", metropolis)
    check_weight("adapt_rate", adapt_rate, 0.0, expected="a number >= 0 (0: no step adaptation)")
    adapt_rate = float(adapt_rate)
    check_in_range("target_acceptance", target_acceptance, 0, 1, include_low=False,
                   include_high=False, expected="an acceptance rate in (0, 1)")
    adapting = adapt_rate > 0
    num_candidates = check_int("num_candidates", num_candidates, minimum=0)
    if num_candidates % 2:
        raise ValueError(f"num_candidates={num_candidates!r}: expected 0 (chains start at the "
                         "initializer's proposal) or an even int >= 2 (half drawn from the "
                         "initializer, half from the level's Gaussian)")
    if adapting and not metropolis:
        raise ValueError(f"adapt_rate={adapt_rate!r} with metropolis=False: expected "
                         "metropolis=True (unadjusted Langevin accepts every step, so there is "
                         "no acceptance rate to adapt to) or adapt_rate=0")
    options = recovery_chain_options(num_steps=num_langevin_steps, metropolis=metropolis,
                                     chain_init="rescaled", step_sizes=scales.step_sizes,
                                     marginal_top=scales.marginal_top, unroll=unroll)
    start = initializer_start(initializer_fn, scales.proposal_stds)
    picks = (mixture_importance_chain_start(energy_fn, initializer_fn, schedule,
                                            scales.proposal_stds, num_candidates,
                                            marginal_top=scales.marginal_top)
             if num_candidates else None)
    weights = float32_array(scales.loss_weights)
    energy_scales = float32_array(scales.energy_scales)
    input_scales = float32_array(scales.input_scales)
    data_scale = math.sqrt(1.0 - scales.data_noise**2)
    pair = diffuse_shared if shared_noise else diffuse
    per_example = jax.vmap(energy_fn, in_axes=(None, 0, None) + ((0,) if conditional else ()))

    def check_batch(batch):
        keys = ("x", "y") if conditional else ("x",)
        require_keys(batch, keys, "cdrl")
        batch_size = batch["x"].shape[0]
        if split_batch and batch_size % num_levels:
            raise ValueError(f"batch['x'] has {batch_size} examples: split_batch=True needs a "
                             f"multiple of the number of levels, {num_levels}")

    def init(rng_key, params, example_batch):
        del rng_key, params
        check_batch(example_batch)
        return CDRLState(jnp.zeros(num_levels, jnp.float32)) if adapting else ()

    def loss(params, state, batch, rng_key):
        check_batch(batch)
        frozen = jax.lax.stop_gradient(params)

        def one_level(level, x, y, key, log_multiplier):
            k_data, k_pair, k_drop, k_start, k_chain = jax.random.split(key, 5)
            x0 = data_scale * x + scales.data_noise * jax.random.normal(k_data, x.shape, x.dtype)
            x_t, x_next = pair(k_pair, schedule, x0, level)
            labels = None
            if conditional:
                drop = jax.random.bernoulli(k_drop, label_drop, y.shape)
                labels = jnp.where(drop, null_label, y)
            condition = RecoveryCondition(x_next, level)
            proposal = start.draw(k_start, (), params, condition, labels)[0]
            extra = () if labels is None else (labels,)
            chain_start = jax.lax.stop_gradient(proposal)
            if picks is not None:
                k_chain, k_pick = jax.random.split(k_chain)
                chain_start = picks.draw(k_pick, (), frozen, condition, labels)[0]
            samples, info = recovery_chains(k_chain, energy_fn, frozen, schedule, level, x_next,
                                            options, start=chain_start,
                                            labels=labels, step_multiplier=jnp.exp(
                                                log_multiplier) if adapting else None)
            samples = jax.lax.stop_gradient(samples)
            e_data = per_example(params, x_t, level, *extra)
            e_sample = per_example(params, samples, level, *extra)
            ebm_value = weights[level] * (jnp.mean(e_data) - jnp.mean(e_sample))
            residual = (samples - proposal).reshape(samples.shape[0], -1)
            init_value = jnp.square(input_scales[level]) * jnp.mean(
                jnp.sum(jnp.square(residual), axis=-1))
            # energies in units of the level's squared step (-f for a decoupled energy), so
            # that levels of very different s_t² weigh alike in the means the guard reads
            stats = (energy_scales[level] * jnp.mean(e_data),
                     energy_scales[level] * jnp.mean(e_sample), jnp.mean(info.displacement),
                     jnp.mean(info.langevin.grad_norm), jnp.sum(info.langevin.nonfinite),
                     jnp.mean(info.acceptance))
            return ebm_value, init_value, stats

        levels = jnp.arange(num_levels, dtype=jnp.int32)
        keys = jax.random.split(rng_key, num_levels)
        x = batch["x"]
        y = batch["y"] if conditional else jnp.zeros(x.shape[0], jnp.int32)
        log_multipliers = (state.log_step_multipliers if adapting
                           else jnp.zeros(num_levels, jnp.float32))
        if split_batch:
            size = x.shape[0] // num_levels
            xs = x.reshape(num_levels, size, *x.shape[1:])
            ys = y.reshape(num_levels, size)
            ebm_values, init_values, stats = jax.vmap(one_level)(levels, xs, ys, keys,
                                                                 log_multipliers)
        else:
            ebm_values, init_values, stats = jax.vmap(
                one_level, in_axes=(0, None, None, 0, 0))(levels, x, y, keys, log_multipliers)
        e_data, e_sample, displacement, grad_norm, nonfinite, acceptance = stats
        if adapting:
            state = CDRLState(adapt_log_step_multipliers(
                log_multipliers, jax.lax.stop_gradient(acceptance), adapt_rate,
                target_acceptance))
        value = jnp.mean(ebm_values) + initializer_weight * jnp.mean(init_values)
        info = {"energy_data": jnp.mean(e_data), "energy_sample": jnp.mean(e_sample),
                "initializer_loss": jnp.mean(init_values),
                "refinement_distance": jnp.mean(displacement),
                "sample_grad_norm": jnp.mean(grad_norm), "nonfinite_steps": jnp.sum(nonfinite)}
        if metropolis:
            info["acceptance_rate"] = jnp.mean(acceptance)
        if adapting:
            info["step_multiplier_min"] = jnp.exp(jnp.min(log_multipliers))
        if per_level_info:
            for t in range(num_levels):
                info[f"loss/level_{t}"] = ebm_values[t]
                info[f"initializer_loss/level_{t}"] = init_values[t]
                if metropolis:
                    info[f"acceptance/level_{t}"] = acceptance[t]
                if adapting:
                    info[f"step_multiplier/level_{t}"] = jnp.exp(log_multipliers[t])
        return value, (state, info)

    return LossTransform(init, loss)
