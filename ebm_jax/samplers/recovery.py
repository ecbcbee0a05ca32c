"""Samplers of diffusion recovery likelihood: the conditional chains and generation.

Diffusion recovery likelihood (Gao et al., ICLR 2021; the loss is
:func:`~ebm_jax.losses.recovery_likelihood`) learns energies ``E(x, t)`` of the noisy
marginals of a :class:`~ebm_jax.samplers.schedules.NoiseSchedule` by sampling the nearly
Gaussian conditional EBMs::

    p(x_t | x_{t+1}) ∝ exp(-E(x_t, t) - a_t² ||x_t - x̃||² / (2 σ_t²)),   x̃ = x_{t+1} / a_t

Every chain here goes through a kernel: unadjusted chains are
:func:`~ebm_jax.samplers.langevin` (temperature form, built on
:func:`~ebm_jax.samplers.langevin_kernel`), Metropolis-adjusted ones
:func:`~ebm_jax.samplers.mala` (built on :func:`~ebm_jax.samplers.mala_kernel`), with the
quadratic term's centre ``x̃`` a per-chain condition and the step size ``b σ_t²`` a traced
scalar (the level may be traced).

* :func:`recovery_langevin` samples ``p(x_t | x_{t+1})`` for a batch of ``x_{t+1}``;
* :func:`progressive_sample` generates from noise, level ``T-1`` down to 0;
* :func:`recovery_chain_options` validates the chains' settings once (a
  :class:`RecoveryChainOptions`) and :func:`recovery_chains` runs them, for callers
  (the loss) that validate at build time and sample at trace time.

Example::

  >>> from ebm_jax.samplers import noise_schedule
  >>> schedule = noise_schedule("t6")
  >>> energy_fn = lambda p, x, t: 0.5 * jnp.sum(x**2)
  >>> x_next = jax.random.normal(jax.random.key(0), (8, 2))
  >>> run = jax.jit(lambda key, x: recovery_langevin(key, energy_fn, None, schedule, 1, x,
  ...                                                num_steps=5))
  >>> samples, info = run(jax.random.key(1), x_next)
  >>> samples.shape, info.acceptance.shape
  ((8, 2), (8,))
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import (check_bounds, check_choice, check_flag, check_in_range, check_int,
                             is_int)
from ebm_jax.energies import EnergyFn
from ebm_jax.samplers.base import init_chains, run_chains
from ebm_jax.samplers.chain_starts import ChainStart, RecoveryCondition, initializer_start
from ebm_jax.samplers.langevin import LangevinInfo, langevin
from ebm_jax.samplers.mala import mala
from ebm_jax.samplers.schedules import (NoiseSchedule, as_noise_schedule, check_level,
                                        float32_array)

CHAIN_INITS = ("rescaled", "noisy", "posterior_mean", "importance")

__all__ = ["CHAIN_INITS", "RecoveryChainOptions", "RecoveryInfo", "mixture_importance_start",
           "progressive_sample", "recovery_chain_options", "recovery_chains", "recovery_langevin",
           "tweedie_denoise"]


class RecoveryChainOptions(NamedTuple):
    """The validated settings of the conditional chains (see :func:`recovery_langevin`).

    Build with :func:`recovery_chain_options`, which checks every field.
    """

    num_steps: int
    step_size_scale: float
    chain_init: str
    num_candidates: int
    metropolis: bool
    grad_clip: Optional[float]
    clip_range: Optional[tuple[float, float]]
    unroll: int
    step_sizes: Optional[tuple[float, ...]] = None
    marginal_top: bool = False


def recovery_chain_options(*, num_steps: int = 30, step_size_scale: float = 0.05,
                           chain_init: str = "importance", num_candidates: int = 16,
                           metropolis: bool = True, grad_clip: Optional[float] = None,
                           clip_range: Optional[tuple[float, float]] = None,
                           unroll: int = 1, step_sizes: Optional[Sequence[float]] = None,
                           marginal_top: bool = False) -> RecoveryChainOptions:
    """Validate the conditional chains' settings (before any compute).

    Arguments as in :func:`recovery_langevin`. Raises ``ValueError`` naming the field,
    its value and what was expected.

    Example::

      >>> recovery_chain_options(num_steps=10, metropolis=False).num_steps
      10
    """
    num_steps = check_int("num_steps", num_steps)
    step_size_scale = check_in_range(
        "step_size_scale", step_size_scale, 0, math.inf, include_low=False,
        expected="a positive number (the Langevin step size is step_size_scale * sigma_t**2)")
    check_choice("chain_init", chain_init, list(CHAIN_INITS))
    num_candidates = check_int("num_candidates", num_candidates)
    metropolis = check_flag("metropolis", metropolis)
    if grad_clip is not None:
        check_in_range("grad_clip", grad_clip, 0, math.inf, include_low=False,
                       expected="a positive number or None")
        if metropolis:
            raise ValueError(f"grad_clip={grad_clip!r} with metropolis=True: clipping breaks the "
                             "Metropolis correction; expected grad_clip=None")
    clip_range = check_bounds("clip_range", clip_range, allow_none=True,
                              expected="(low, high) with low < high")
    unroll = check_int("unroll", unroll)
    if step_sizes is not None:
        values = np.asarray(step_sizes, np.float64)
        if values.ndim != 1 or not values.size or not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(f"step_sizes={step_sizes!r}: expected one positive finite Langevin "
                             "step size per level")
        step_sizes = tuple(float(v) for v in values)
    marginal_top = check_flag("marginal_top", marginal_top)
    return RecoveryChainOptions(num_steps, step_size_scale, chain_init, num_candidates,
                                metropolis, grad_clip, clip_range, unroll, step_sizes,
                                marginal_top)


class RecoveryInfo(NamedTuple):
    """Diagnostics of :func:`recovery_langevin`.

    Attributes:
      langevin: a :class:`~ebm_jax.samplers.LangevinInfo` for every step, fields
        ``[N, num_steps]``: the *conditional* energy (quadratic term included) and
        its gradient norm at the step's start, and whether the step was non-finite.
      acceptance: ``[N]`` fraction of accepted moves per chain (1 without
        ``metropolis``).
      displacement: ``[N]`` L2 distance from each chain's start to its end.
    """

    langevin: LangevinInfo
    acceptance: jax.Array
    displacement: jax.Array


def _importance_init(rng_key, energy_fn, params, level, mean, sigma, num_candidates):
    """SIR chain starts: ``[N, ...]`` picks among ``num_candidates`` Gaussian draws per chain."""
    k_draw, k_pick = jax.random.split(rng_key)
    candidates = mean[None] + sigma * jax.random.normal(k_draw, (num_candidates, *mean.shape),
                                                        mean.dtype)
    energy = jax.vmap(jax.vmap(energy_fn, in_axes=(None, 0, None)), in_axes=(None, 0, None))(
        params, candidates, level)
    sq_norm = jnp.sum(jnp.square(candidates.reshape(*candidates.shape[:2], -1)), axis=-1)
    return _resample(k_pick, candidates, -energy + 0.5 * sq_norm)


def _level_gaussian(schedule: NoiseSchedule, level: jax.Array, marginal_top: bool):
    """``(σ_t, a_t, a_t² / σ_t²)`` of (traced) level ``t``: the conditional's Gaussian term
    ``a_t² ||x - x̃||² / 2σ_t²`` has that precision, 0 at the top level of a marginal EBM."""
    sigma = float32_array(schedule.sigmas)[level]
    alpha = float32_array(schedule.alphas)[level]
    precision = jnp.square(alpha / sigma)
    if marginal_top:
        precision = jnp.where(level == schedule.num_levels - 1, 0.0, precision)
    return sigma, alpha, precision


def _resample(rng_key, candidates, log_w):
    """``[N, ...]``: one of the ``[M, N, ...]`` candidates per chain, drawn with probability
    ∝ ``exp(log_w [M, N])`` (non-finite weights never picked)."""
    log_w = jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)
    pick = jax.random.categorical(rng_key, log_w, axis=0)
    return candidates[pick, jnp.arange(candidates.shape[1])]


def mixture_importance_start(rng_key: jax.Array, energy_fn: EnergyFn, params: Any,
                             schedule: NoiseSchedule, level, x_next: jax.Array,
                             proposal_mean: jax.Array, proposal_std, num_candidates: int, *,
                             marginal_top: bool = False, labels: Any = None) -> jax.Array:
    """Chain starts drawn by sampling-importance-resampling from a defensive mixture.

    For each chain, ``num_candidates`` candidates: half from a learned proposal
    ``N(proposal_mean, proposal_std² I)`` (CDRL's initializer), half from the conditional's
    own Gaussian ``N(a_t x_{t+1}, σ_t² I)`` (``N(0, I)`` at a marginal top level), one picked
    with probability proportional to ``π(y) / q(y)``: ``π`` the level's conditional
    ``exp(-E(y, t) - a_t² ||y - x̃||² / 2σ_t²)``, ``q`` the equal mixture of the two Gaussians.
    The wide half lets the pick cross between the conditional's modes in proportions that
    follow the energy (what pins the relative weights of separated modes; the learned
    proposal alone is a point guess at levels where its std is small); the learned half keeps
    the pick near the modes where the proposal is good.

    Args:
      rng_key: a PRNG key.
      energy_fn: per-example ``energy_fn(params, x, t[, label]) -> scalar``.
      params: the energy's params (held constant).
      schedule: a :class:`NoiseSchedule`.
      level: ``t`` (traced int scalar).
      x_next: ``[N, ...]``.
      proposal_mean: ``[N, ...]`` the learned proposal's means.
      proposal_std: the learned proposal's std (a scalar, traced or not, > 0).
      num_candidates: candidates per chain, an even int >= 2 (half from each Gaussian).
      marginal_top: the top level is a marginal EBM (no quadratic term).
      labels: ``[N]`` classes passed to the energy, or None.

    Returns:
      ``[N, ...]`` chain starts.

    Example::

      >>> from ebm_jax.samplers import noise_schedule
      >>> starts = mixture_importance_start(
      ...     jax.random.key(0), lambda p, x, t: 0.5 * x @ x, None, noise_schedule("t6"), 0,
      ...     jnp.zeros((8, 2)), jnp.zeros((8, 2)), 0.1, 4)
      >>> starts.shape
      (8, 2)
    """
    num_candidates = check_int("num_candidates", num_candidates, minimum=2)
    if num_candidates % 2:
        raise ValueError(f"num_candidates={num_candidates!r}: expected an even int >= 2 (half "
                         "from the learned proposal, half from the level's Gaussian)")
    half = num_candidates // 2
    level = jnp.asarray(level, jnp.int32)
    sigma, alpha, precision = _level_gaussian(schedule, level, marginal_top)
    wide_mean, wide_std = alpha * x_next, sigma
    if marginal_top:
        top = level == schedule.num_levels - 1
        wide_mean = jnp.where(top, jnp.zeros_like(x_next), wide_mean)
        wide_std = jnp.where(top, 1.0, wide_std)
    proposal_std = jnp.asarray(proposal_std, x_next.dtype)
    k_learned, k_wide, k_pick = jax.random.split(rng_key, 3)
    shape = (half, *x_next.shape)
    candidates = jnp.concatenate([
        proposal_mean[None] + proposal_std * jax.random.normal(k_learned, shape, x_next.dtype),
        wide_mean[None] + wide_std * jax.random.normal(k_wide, shape, x_next.dtype)])
    flat = candidates.reshape(num_candidates, x_next.shape[0], -1)
    dim = flat.shape[-1]

    def log_normal(mean, std):
        diff = flat - mean.reshape(1, x_next.shape[0], -1)
        return -0.5 * jnp.sum(jnp.square(diff), -1) / jnp.square(std) - dim * jnp.log(std)

    log_q = jnp.logaddexp(log_normal(proposal_mean, proposal_std), log_normal(wide_mean, wide_std))
    per_chain = jax.vmap(energy_fn, in_axes=(None, 0, None) + (() if labels is None else (0,)))
    extra = () if labels is None else (labels,)
    energy = jax.vmap(lambda y: per_chain(params, y, level, *extra))(candidates)
    x_tilde = (x_next / alpha).reshape(1, x_next.shape[0], -1)
    log_pi = -energy - 0.5 * precision * jnp.sum(jnp.square(flat - x_tilde), -1)
    return _resample(k_pick, candidates, log_pi - log_q)


def mixture_importance_chain_start(energy_fn: EnergyFn, initializer_fn, schedule: NoiseSchedule,
                                   proposal_stds: Sequence[float], num_candidates: int, *,
                                   marginal_top: bool = False) -> ChainStart:
    """:func:`mixture_importance_start` as a chain start: every level's chains start at a pick
    among ``num_candidates`` candidates, half from the initializer's proposal
    ``N(g(x_{t+1}, t), proposal_stds[t]²)``, half from the level's Gaussian (how CDRL trains
    with ``num_candidates``; for generation, the proposal alone is
    :func:`~ebm_jax.samplers.initializer_start`).

    Args:
      energy_fn: per-example ``energy_fn(params, x, t[, label])``.
      initializer_fn: per-example ``initializer_fn(params, x_next, t[, label])``, the
        proposal's mean.
      schedule: a :class:`NoiseSchedule`.
      proposal_stds: ``[T]`` the proposal's std per level (> 0).
      num_candidates: an even int >= 2.
      marginal_top: the top level is a marginal EBM.

    Returns:
      A stateless :class:`~ebm_jax.samplers.ChainStart` drawing from a
      :class:`~ebm_jax.samplers.RecoveryCondition`.

    Example::

      >>> from ebm_jax.samplers import noise_schedule
      >>> start = mixture_importance_chain_start(lambda p, x, t: 0.5 * x @ x,
      ...                                        lambda p, x, t: 0.9 * x,
      ...                                        noise_schedule("t6"), [0.1] * 6, 8)
      >>> x0, _, _ = start.draw(jax.random.key(0), (), None,
      ...                       RecoveryCondition(jnp.ones((4, 2)), 2))
      >>> x0.shape
      (4, 2)
    """
    schedule = as_noise_schedule(schedule)
    num_candidates = check_int("num_candidates", num_candidates, minimum=2)
    if num_candidates % 2:
        raise ValueError(f"num_candidates={num_candidates!r}: expected an even int >= 2 (half "
                         "from the learned proposal, half from the level's Gaussian)")
    proposal_start = initializer_start(initializer_fn, proposal_stds)    # checks the stds
    stds = np.asarray(proposal_stds, np.float32)
    if stds.shape != (schedule.num_levels,) or not np.all(stds > 0):
        raise ValueError(f"proposal_stds={proposal_stds!r}: expected one std > 0 per level "
                         f"({schedule.num_levels})")
    stds = jnp.asarray(stds)

    def draw(rng_key, state, params, x, labels=None):
        del state
        if not isinstance(x, RecoveryCondition):
            raise TypeError("mixture_importance_chain_start draws from a "
                            f"RecoveryCondition(x_next, level), got {type(x).__name__}")
        x_next, level = jnp.asarray(x.x_next), x.level
        extra = () if labels is None else (labels,)
        means = jax.vmap(initializer_fn, in_axes=(None, 0, None) + ((0,) if extra else ()))(
            params, x_next, level, *extra)
        starts = mixture_importance_start(rng_key, energy_fn, params, schedule, level, x_next,
                                          means, stds[level], num_candidates,
                                          marginal_top=marginal_top, labels=labels)
        return starts, labels, None

    return ChainStart(proposal_start.init, draw, proposal_start.update)   # stateless


def recovery_langevin(rng_key: jax.Array, energy_fn: EnergyFn, params: Any,
                      schedule: NoiseSchedule, level, x_next: jax.Array, *,
                      num_steps: int = 30, step_size_scale: float = 0.05,
                      chain_init: str = "importance", num_candidates: int = 16,
                      metropolis: bool = True, grad_clip: Optional[float] = None,
                      clip_range: Optional[tuple[float, float]] = None,
                      unroll: int = 1, step_sizes: Optional[Sequence[float]] = None,
                      marginal_top: bool = False) -> tuple[jax.Array, RecoveryInfo]:
    """Sample the conditional EBM ``p(x_t | x_{t+1})``: one Langevin chain per row of ``x_next``.

    The chains run Langevin dynamics (:func:`~ebm_jax.samplers.langevin` in
    its temperature form, or its Metropolis-adjusted version, MALA) on::

        U(x) = E(x, t) + a_t² ||x - x̃||² / (2 σ_t²),    x̃ = x_{t+1} / a_t

    with step size ``h_t = step_size_scale * σ_t²`` (so each step contracts the
    quadratic term by ``1 - step_size_scale * a_t²``; the paper's step-size
    schedule is likewise proportional to ``σ²``) and noise ``sqrt(2 h_t)``.

    Args:
      rng_key: a PRNG key.
      energy_fn: per-example ``energy_fn(params, x, t) -> scalar``.
      params: energy parameters (wrap in ``jax.lax.stop_gradient`` if they are
        being differentiated elsewhere).
      schedule: a :class:`NoiseSchedule`.
      level: ``t`` in ``[0, T)``; an int or a traced int scalar.
      x_next: ``[N, ...]`` samples of ``x_{t+1}``.
      num_steps: Langevin steps ``K`` (the paper uses 30).
      step_size_scale: ``b`` in ``h_t = b σ_t²`` (> 0). Unadjusted chains need
        ``h_t`` below ``2 /`` (the largest curvature of ``U``), or they diverge:
        below 2 for the quadratic term alone, and small enough for the sharpest
        energy at level 0, whose curvature is that of the data.
      chain_init: where chains start: ``"rescaled"`` at ``x̃ = x_{t+1} / a_t`` (the
        paper, the mode of the quadratic term); ``"noisy"`` at ``x_{t+1}``;
        ``"posterior_mean"`` at ``a_t x_{t+1}``, the mean of ``p(x_t | x_{t+1})``
        for unit-Gaussian data (safer than ``x̃`` where ``σ_t`` is near 1 and
        ``x̃`` is far out); ``"importance"``: sampling-importance-resampling, one of
        ``num_candidates`` draws ``y ~ N(a_t x_{t+1}, σ_t² I)`` (the exact conditional
        for unit-Gaussian data) picked with probability ∝ ``exp(-E(y, t) + |y|²/2)``
        (the importance weight of the conditional), so that chains start in the
        conditional's modes in proportions that follow their energies. Langevin
        alone rarely crosses between separated modes in ``K`` steps, and the
        relative weights of the modes of ``E(·, t)`` are then barely learned;
        this init pins them (``num_candidates`` forward passes per chain).
      num_candidates: candidates per chain for ``chain_init="importance"``.
      metropolis: add a Metropolis-Hastings accept/reject to every step (MALA):
        exact for any step size and never diverges (a too-large step only lowers
        the acceptance rate); costs the same one energy-and-gradient per step.
      grad_clip: clip every gradient element of ``U`` (unadjusted chains only).
      clip_range: ``(low, high)``: clamp positions (unadjusted) or reject
        proposals outside the box (``metropolis``).
      unroll: scan unroll factor of the chain loop.
      step_sizes: ``[T]`` Langevin step sizes ``h_t``, one per level, in place of
        ``step_size_scale * σ_t²`` (CDRL's decoupled steps,
        :func:`~ebm_jax.losses.cdrl_scales`).
      marginal_top: the top level ``T-1`` is a marginal EBM: its chains sample ``E(x, T-1)``
        alone, without the quadratic term (CDRL's; the schedule's end is then not pure noise).

    Returns:
      ``(samples [N, ...], RecoveryInfo)``.

    Example::

      >>> from ebm_jax.samplers import diffuse, noise_schedule
      >>> schedule = noise_schedule("t6")
      >>> energy_fn = lambda params, x, t: 0.5 * jnp.sum((x - params) ** 2)
      >>> x_t, x_next = diffuse(jax.random.key(0), schedule, jnp.ones((16, 2)), 1)
      >>> run = jax.jit(lambda key, params, x: recovery_langevin(key, energy_fn, params,
      ...                                                        schedule, 1, x))
      >>> samples, info = run(jax.random.key(1), jnp.ones(2), x_next)
      >>> samples.shape, info.langevin.energy.shape
      ((16, 2), (16, 30))
    """
    schedule = as_noise_schedule(schedule)
    check_level(level, schedule.num_levels)
    options = recovery_chain_options(num_steps=num_steps, step_size_scale=step_size_scale,
                                     chain_init=chain_init, num_candidates=num_candidates,
                                     metropolis=metropolis, grad_clip=grad_clip,
                                     clip_range=clip_range, unroll=unroll, step_sizes=step_sizes,
                                     marginal_top=marginal_top)
    check_step_sizes(options, schedule)
    return recovery_chains(rng_key, energy_fn, params, schedule, level, x_next, options)


def check_step_sizes(options: RecoveryChainOptions, schedule: NoiseSchedule) -> None:
    """Raise unless ``options.step_sizes`` (if any) has one entry per level of ``schedule``."""
    if options.step_sizes is not None and len(options.step_sizes) != schedule.num_levels:
        raise ValueError(f"step_sizes has {len(options.step_sizes)} entries: expected "
                         f"{schedule.num_levels}, one per level of the schedule")


def recovery_chains(rng_key: jax.Array, energy_fn: EnergyFn, params: Any,
                    schedule: NoiseSchedule, level, x_next: jax.Array,
                    options: RecoveryChainOptions, *, start: Optional[jax.Array] = None,
                    labels: Optional[jax.Array] = None,
                    step_multiplier: Optional[jax.Array] = None
                    ) -> tuple[jax.Array, RecoveryInfo]:
    """:func:`recovery_langevin` with settings validated by :func:`recovery_chain_options`.

    ``schedule`` must be a :class:`NoiseSchedule` and ``level`` is not range-checked (it is
    usually traced): the form a loss calls at trace time.

    Args (beyond :func:`recovery_langevin`'s):
      start: ``[N, ...]`` chain starts, in place of ``options.chain_init`` (a learned
        initializer's proposals, :func:`~ebm_jax.samplers.initializer_start`).
      labels: ``[N]`` int classes: the energy is then ``energy_fn(params, x, t, label)``
        (class-conditional and guided energies); any pytree of ``[N, ...]`` arrays is passed
        to the energy the same way, one entry per chain.
      step_multiplier: a positive scalar (traced or not) multiplying the level's step size:
        a step adapted during training (CDRL's ``adapt_rate``); ``None`` for 1.

    Example::

      >>> from ebm_jax.samplers import noise_schedule
      >>> options = recovery_chain_options(num_steps=5)
      >>> samples, info = recovery_chains(jax.random.key(1), lambda p, x, t: x @ x, None,
      ...                                 noise_schedule("t6"), 1, jnp.zeros((8, 2)), options)
    """
    (num_steps, step_size_scale, chain_init, num_candidates, metropolis, grad_clip, clip_range,
     unroll, step_sizes, marginal_top) = options
    level = jnp.asarray(level, jnp.int32)
    sigma, alpha, precision = _level_gaussian(schedule, level, marginal_top)
    if step_sizes is None:
        step_size = step_size_scale * jnp.square(sigma)
    else:
        step_size = float32_array(np.asarray(step_sizes))[level]
    if step_multiplier is not None:
        step_size = step_size * step_multiplier

    def level_energy(p, x, *label):
        return energy_fn(p, x, level, *label)

    if labels is not None and chain_init == "importance" and start is None:
        raise ValueError("chain_init='importance' with labels: importance-resampled starts "
                         "score an unconditional energy; expected another chain_init or start")

    def conditional_energy(p, x, x_tilde, *label):
        return level_energy(p, x, *label) + 0.5 * precision * jnp.sum(jnp.square(x - x_tilde))

    x_next = jnp.asarray(x_next)
    x_tilde = x_next / alpha
    if start is not None:
        start = jnp.asarray(start)
        if start.shape != x_next.shape:
            raise ValueError(f"start has shape {start.shape}: expected {x_next.shape}, the "
                             "shape of x_next (one start per chain)")
    elif chain_init == "rescaled":
        start = x_tilde
    elif chain_init == "noisy":
        start = x_next
    elif chain_init == "posterior_mean":
        start = alpha * x_next
    else:
        rng_key, init_key = jax.random.split(rng_key)
        start = _importance_init(init_key, energy_fn, params, level, alpha * x_next, sigma,
                                 num_candidates)
    if clip_range is not None:
        start = jnp.clip(start, clip_range[0], clip_range[1])
    cond = (x_tilde,) if labels is None else (x_tilde, jax.tree.map(jnp.asarray, labels))
    # The step size is traced (it depends on the level), so the samplers skip their
    # positivity check; step_size_scale and step_sizes were checked by recovery_chain_options.
    if metropolis:
        # MALA on U(x | x̃); a proposal outside clip_range is rejected (the target
        # restricted to the box).
        sampler = mala(conditional_energy, step_size, clip_range=clip_range)
    else:
        sampler = langevin(conditional_energy, step_size, grad_clip=grad_clip,
                           clip_range=clip_range)
    states = init_chains(sampler, start, params, *cond)
    chains, info = run_chains(rng_key, sampler, states, params, num_steps, *cond,
                              unroll=unroll, trace=True)
    samples = chains.position
    if metropolis:
        acceptance = jnp.mean(info.is_accepted.astype(jnp.float32), axis=-1)
        info = LangevinInfo(info.energy, info.grad_norm, info.nonfinite)
    else:
        acceptance = jnp.ones(x_next.shape[0], jnp.float32)
    flat = (samples - start).reshape(samples.shape[0], -1)
    return samples, RecoveryInfo(info, acceptance, jnp.sqrt(jnp.sum(jnp.square(flat), axis=-1)))


def progressive_sample(rng_key: jax.Array, energy_fn: EnergyFn, params: Any,
                       schedule: NoiseSchedule, shape: Sequence[int], num_samples: int, *,
                       num_langevin_steps: int = 30, step_size_scale: float = 0.05,
                       chain_init: str = "importance", num_candidates: int = 16,
                       metropolis: bool = True, grad_clip: Optional[float] = None,
                       clip_range: Optional[tuple[float, float]] = None,
                       step_sizes: Optional[Sequence[float]] = None, marginal_top: bool = False,
                       chain_start: Optional[ChainStart] = None,
                       labels: Optional[jax.Array] = None,
                       observed: Optional[tuple[jax.Array, jax.Array]] = None,
                       return_trajectory: bool = False, return_proposals: bool = False,
                       unroll: int = 1):
    """Generate from noise: ``x_T ~ N(0, I)``, then ``x_t ~ p(x_t | x_{t+1})`` for ``t = T-1..0``.

    All levels run in one ``lax.scan`` (the level is traced), so the whole
    generation is one XLA program. Use the sampler settings of training.

    Args:
      rng_key: a PRNG key.
      energy_fn: per-example ``energy_fn(params, x, t) -> scalar`` (with ``labels``:
        ``energy_fn(params, x, t, label)``).
      params: energy parameters (evaluate with the EMA parameters).
      schedule: a :class:`NoiseSchedule`.
      shape: the shape of one example, e.g. ``(2,)`` or ``(64,)``.
      num_samples: ``N``.
      num_langevin_steps: Langevin steps per level (0 with a ``chain_start``: its proposals
        alone, unrefined).
      step_size_scale, chain_init, num_candidates, metropolis, grad_clip, clip_range,
        step_sizes, marginal_top, unroll: as in :func:`recovery_langevin`.
      chain_start: a :class:`~ebm_jax.samplers.ChainStart` drawing each level's chain starts
        from a :class:`~ebm_jax.samplers.RecoveryCondition` (CDRL's learned initializer,
        :func:`~ebm_jax.samplers.initializer_start`), in place of ``chain_init``.
      labels: ``[N]`` int classes for a class-conditional (or guided) energy and start.
      observed: ``(x_observed [N, *shape], missing [N, *shape] bool)`` to inpaint: at every
        level the observed entries are the observation diffused to that level (a fresh
        noise draw), the chains move the missing ones on the energy of the combined point,
        and level 0 returns the observed entries exactly (the replacement method of
        diffusion inpainting; :func:`~ebm_jax.applications.progressive_inpaint` checks
        the arguments).
      return_trajectory: also return every level's samples.
      return_proposals: also return every level's chain starts (with ``chain_start``).

    Returns:
      ``samples [N, *shape]`` (level 0), then, if asked, ``trajectory [T+1, N, *shape]``
      (``trajectory[t]`` the samples at level ``t``, ``trajectory[T]`` the initial noise,
      ``trajectory[0] == samples``) and ``proposals [T, N, *shape]`` (``proposals[t]`` the
      starts of the level-``t`` chains), as a tuple in that order.

    Jit it by closing over the static arguments::

      >>> from ebm_jax.samplers import noise_schedule
      >>> energy_fn = lambda params, x, t: 0.5 * jnp.sum((x - params) ** 2)
      >>> schedule = noise_schedule("t6")
      >>> sample = jax.jit(lambda key, params: progressive_sample(
      ...     key, energy_fn, params, schedule, (2,), 100, num_langevin_steps=5))
      >>> sample(jax.random.key(0), jnp.ones(2)).shape
      (100, 2)
    """
    schedule = as_noise_schedule(schedule)
    check_int("num_langevin_steps", num_langevin_steps, minimum=0 if chain_start is not None else 1,
              expected=None if chain_start is None else "an int >= 0")
    refine = num_langevin_steps > 0
    options = recovery_chain_options(num_steps=max(num_langevin_steps, 1),
                                     step_size_scale=step_size_scale, chain_init=chain_init,
                                     num_candidates=num_candidates, metropolis=metropolis,
                                     grad_clip=grad_clip, clip_range=clip_range, unroll=unroll,
                                     step_sizes=step_sizes, marginal_top=marginal_top)
    check_step_sizes(options, schedule)
    shape = tuple(shape)
    if not all(is_int(d) and d > 0 for d in shape):
        raise ValueError(f"shape={shape!r}: expected a tuple of positive ints "
                         "(one example's shape)")
    num_samples = check_int("num_samples", num_samples)
    if return_proposals and chain_start is None:
        raise ValueError("return_proposals=True without a chain_start: the proposals are a "
                         "learned start's draws")
    if labels is not None and jnp.shape(labels) != (num_samples,):
        raise ValueError(f"labels has shape {jnp.shape(labels)}: expected ({num_samples},), one "
                         "class per sample")
    num_levels = schedule.num_levels
    k_init, k_levels = jax.random.split(rng_key)
    x_end = jax.random.normal(k_init, (num_samples, *shape), jnp.float32)
    chain_energy = energy_fn
    if observed is not None:
        x_observed, missing = observed
        x_observed = jnp.asarray(x_observed, jnp.float32)
        if x_observed.shape != (num_samples, *shape):
            raise ValueError(f"observed[0] has shape {x_observed.shape}: expected "
                             f"{(num_samples, *shape)}, one observation per sample")
        missing = jnp.broadcast_to(jnp.asarray(missing, bool), x_observed.shape)
        if chain_start is None and chain_init == "importance":
            raise ValueError("observed with chain_init='importance': importance-resampled "
                             "starts score the whole point; expected another chain_init or "
                             "a chain_start")
        mean_scales = float32_array(schedule.marginal_alphas)
        noise_scales = float32_array(schedule.marginal_sigmas)

        def diffused_observation(key, level):
            noise = jax.random.normal(key, x_observed.shape, jnp.float32)
            return mean_scales[level] * x_observed + noise_scales[level] * noise

        def combined_energy(p, z, level, at):        # the energy of the combined point
            observed_z, missing_z, *label = at
            return energy_fn(p, jnp.where(missing_z, z, observed_z), level, *label)

        chain_energy = combined_energy

        k_init, k_top = jax.random.split(k_init)
        x_end = jnp.where(missing, x_end, diffused_observation(k_top, num_levels))

    def body(x, inputs):
        level, key = inputs
        start = None
        if chain_start is not None:
            key, k_start = jax.random.split(key)
            start = chain_start.draw(k_start, (), params, RecoveryCondition(x, level), labels)[0]
        chain_labels = labels
        if observed is not None:
            key, k_observed = jax.random.split(key)
            x_observed_t = diffused_observation(k_observed, level)
            chain_labels = (x_observed_t, missing) + (() if labels is None else (labels,))
        if refine:
            x, _ = recovery_chains(key, chain_energy, params, schedule, level, x, options,
                                   start=start, labels=chain_labels)
        else:
            x = start
        if observed is not None:
            x = jnp.where(missing, x, x_observed_t)
        return x, (x, x if start is None else start)

    levels = jnp.arange(num_levels - 1, -1, -1, dtype=jnp.int32)
    samples, (path, starts) = jax.lax.scan(body, x_end,
                                           (levels, jax.random.split(k_levels, num_levels)))
    out = [samples]
    if return_trajectory:
        out.append(jnp.concatenate([path[::-1], x_end[None]], axis=0))
    if return_proposals:
        out.append(starts[::-1])
    return out[0] if len(out) == 1 else tuple(out)


def tweedie_denoise(energy_fn: EnergyFn, params: Any, x: jax.Array, noise_std: float, *,
                    level: int = 0, labels: Optional[jax.Array] = None) -> jax.Array:
    """Tweedie's posterior mean of clean data from ``x = sqrt(1 - s²) x_clean + s ε``.

    ``E[x_clean | x] = (x + s² ∇ log p(x)) / sqrt(1 - s²)`` with ``log p(x) = -E(x, level)``
    the model's density of the noisy data, here the level-``level`` energy. CDRL ends its
    generation with this step at level 0 (its data diffused once, ``s ≈ 0.0074``). The score
    is the sampler's: the density the chains sample, ``exp(-E)``. (CDRL's reference code
    divides its network's output by half the step size its chains use, a score twice this
    one.)

    Args:
      energy_fn: per-example ``energy_fn(params, x, t[, label]) -> scalar``.
      params: its parameters.
      x: ``[N, ...]`` noisy samples.
      noise_std: ``s`` in ``[0, 1)``.
      level: the energy's level.
      labels: ``[N]`` classes for a class-conditional energy.

    Returns:
      ``[N, ...]`` denoised samples.

    Example::

      >>> s, var = 0.1, 0.99 * 0.25 + 0.01        # clean N(0, 0.5²), noisy N(0, var)
      >>> energy_fn = lambda p, x, t: 0.5 * jnp.sum(x**2) / var
      >>> denoised = tweedie_denoise(energy_fn, None, jnp.ones((1, 1)), s)
      >>> round(float(denoised[0, 0]), 4), round(0.99**0.5 * 0.25 / var, 4)   # E[x | x_noisy]
      (0.966, 0.966)
    """
    check_in_range("noise_std", noise_std, 0, 1, include_high=False,
                   expected="a noise std in [0, 1)")
    extra = () if labels is None else (jnp.asarray(labels),)

    def score(x_one, *label):
        return -jax.grad(energy_fn, argnums=1)(params, x_one, level, *label)

    grads = jax.vmap(score)(jnp.asarray(x), *extra)
    return (x + noise_std**2 * grads) / math.sqrt(1.0 - noise_std**2)
