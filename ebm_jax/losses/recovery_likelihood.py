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

Public functions: :func:`noise_schedule`, :func:`diffuse`,
:func:`recovery_langevin`, :func:`recovery_likelihood` (the loss transform)
and :func:`progressive_sample`.
"""
from __future__ import annotations

import numbers
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax.energies import EnergyFn
from ebm_jax.losses.base import LossTransform, require_keys
from ebm_jax.samplers.base import init_chains, run_chains
from ebm_jax.samplers.langevin import LangevinInfo, langevin

SCHEDULES = ("t6", "ddpm", "linear", "geometric")
CHAIN_INITS = ("rescaled", "noisy", "posterior_mean", "importance")


# --------------------------------------------------------------------------- schedule

class NoiseSchedule(NamedTuple):
    """The noise levels of a variance-preserving diffusion, as NumPy float64 arrays.

    Attributes:
      sigmas: ``[T]``: ``sigmas[t]`` is the noise std of the step from level ``t``
        to level ``t+1`` (the paper's ``σ_{t+1}``); non-decreasing, in (0, 1).
      alphas: ``[T]``: ``sqrt(1 - sigmas**2)``, the scaling of ``x_t`` in that step.
      marginal_alphas: ``[T+1]``: ``ᾱ_t = Π_{s<t} alphas[s]`` (``ᾱ_0 = 1``), so that
        ``x_t = ᾱ_t x_0 + sqrt(1 - ᾱ_t²) ε``.
      marginal_sigmas: ``[T+1]``: ``sqrt(1 - ᾱ_t²)`` (0 at level 0, increasing).

    ``T = len(sigmas)`` is the number of EBM levels ``t = 0..T-1``; level ``T`` is
    the end of the diffusion, where generation starts from ``N(0, I)`` (exact
    when ``marginal_alphas[-1] ≈ 0``).
    """

    sigmas: np.ndarray
    alphas: np.ndarray
    marginal_alphas: np.ndarray
    marginal_sigmas: np.ndarray

    @property
    def num_levels(self) -> int:
        """``T``, the number of EBM levels."""
        return len(self.sigmas)


def _ddpm_sigmas(num_levels: int) -> np.ndarray:
    """The paper's T-level schedule, subsampled from DDPM's 1000 linear betas (1e-4 .. 0.02).

    Following the reference implementation, the 1000 steps are cut at
    ``0, s, 2s, ..., (T-1) s`` and 999 with ``s = 1000 // (2 (T-1))``, and each
    level's ``σ`` is that of the composed steps between cuts. The reference
    also diffuses the data once by the first step (``σ = 0.01``) and calls that
    level 0; here level 0 is the data itself, so that first ``σ`` is dropped
    and the ``T`` remaining ones are returned.
    """
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    sqrt_alphas = np.sqrt(1.0 - betas)
    spacing = 1000 // (2 * (num_levels - 1))
    cuts = np.concatenate([np.arange(num_levels) * spacing, [999]])
    a = np.array([np.prod(sqrt_alphas[cuts[i - 1] + 1:cuts[i] + 1]) for i in range(1, len(cuts))])
    return np.sqrt(1.0 - a**2)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def noise_schedule(name_or_sigmas: Union[str, Sequence[float], np.ndarray, NoiseSchedule] = "t6",
                   *, num_levels: Optional[int] = None, sigma_min: Optional[float] = None,
                   sigma_max: Optional[float] = None) -> NoiseSchedule:
    """Build (and validate) a :class:`NoiseSchedule`.

    Noise increases with the level: ``sigmas`` must be non-decreasing, every
    value strictly inside (0, 1).

    Args:
      name_or_sigmas: one of

        * ``"t6"``: the paper's 6-level schedule (``sigmas`` ≈ 0.324, 0.516,
          0.632, 0.713, 0.773, 0.9997; marginal noise ≈ 0, 0.32, 0.59, 0.78,
          0.90, 0.96 and 0.99998 at the end);
        * ``"ddpm"``: the same construction with ``num_levels`` levels (2..501);
        * ``"linear"`` / ``"geometric"``: ``num_levels`` sigmas spaced linearly /
          geometrically from ``sigma_min`` to ``sigma_max``;
        * an explicit sequence of per-level sigmas (or a ``NoiseSchedule``, revalidated).
      num_levels: number of levels for ``"ddpm"``, ``"linear"`` and ``"geometric"``.
      sigma_min, sigma_max: the range for ``"linear"`` and ``"geometric"``.

    Example::

      >>> s = noise_schedule("t6")
      >>> s.num_levels, s.sigmas.round(3)
      (6, array([0.324, 0.516, 0.632, 0.713, 0.773, 1.   ]))
      >>> noise_schedule("geometric", num_levels=4, sigma_min=0.1, sigma_max=0.8).sigmas
      array([0.1, 0.2, 0.4, 0.8])
      >>> noise_schedule([0.5, 0.3])
      Traceback (most recent call last):
      ValueError: sigmas[1]=0.3 < sigmas[0]=0.5: ...
    """
    named = isinstance(name_or_sigmas, str)
    if not named or name_or_sigmas == "t6":
        for field, value in (("num_levels", num_levels), ("sigma_min", sigma_min),
                             ("sigma_max", sigma_max)):
            if value is not None:
                what = f"{name_or_sigmas!r}" if named else "explicit sigmas"
                raise ValueError(f"{field}={value!r}: not used by the {what} schedule; "
                                 "it is for 'ddpm', 'linear' and 'geometric'")
    if named:
        name = name_or_sigmas
        if name not in SCHEDULES:
            raise ValueError(f"schedule={name!r}: expected one of {list(SCHEDULES)} or a sequence "
                             "of per-level sigmas")
        if name == "t6":
            sigmas = _ddpm_sigmas(6)
        else:
            if not _is_int(num_levels) or num_levels < 1:
                raise ValueError(f"num_levels={num_levels!r}: expected a positive int for the "
                                 f"{name!r} schedule")
            if name == "ddpm":
                if sigma_min is not None or sigma_max is not None:
                    raise ValueError("sigma_min/sigma_max are not used by the 'ddpm' schedule")
                if not 2 <= num_levels <= 501:
                    raise ValueError(f"num_levels={num_levels!r}: the 'ddpm' schedule needs 2..501")
                sigmas = _ddpm_sigmas(num_levels)
            else:
                for field, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
                    if not isinstance(value, numbers.Real) or not 0.0 < value < 1.0:
                        raise ValueError(f"{field}={value!r}: expected a number in (0, 1) for "
                                         f"the {name!r} schedule")
                if sigma_min > sigma_max:
                    raise ValueError(f"sigma_min={sigma_min!r} > sigma_max={sigma_max!r}: noise "
                                     "increases with the level, expected sigma_min <= sigma_max")
                space = np.linspace if name == "linear" else np.geomspace
                sigmas = space(float(sigma_min), float(sigma_max), num_levels)
    else:
        if isinstance(name_or_sigmas, NoiseSchedule):
            name_or_sigmas = name_or_sigmas.sigmas
        sigmas = np.asarray(name_or_sigmas, np.float64)
        if sigmas.ndim != 1 or sigmas.size == 0:
            raise ValueError(f"sigmas has shape {sigmas.shape}: expected a non-empty 1-D sequence "
                             "of per-level noise stds")
    for t, s in enumerate(sigmas):
        if not (np.isfinite(s) and 0.0 < s < 1.0):
            raise ValueError(f"sigmas[{t}]={float(s)!r}: expected a noise std strictly inside "
                             "(0, 1)")
    for t in range(1, len(sigmas)):
        if sigmas[t] < sigmas[t - 1]:
            raise ValueError(f"sigmas[{t}]={float(sigmas[t])!r} < "
                             f"sigmas[{t - 1}]={float(sigmas[t - 1])!r}: noise "
                             "increases with the level, expected a non-decreasing sequence")
    alphas = np.sqrt(1.0 - sigmas**2)
    marginal_alphas = np.concatenate([[1.0], np.cumprod(alphas)])
    marginal_sigmas = np.sqrt(1.0 - marginal_alphas**2)
    return NoiseSchedule(sigmas, alphas, marginal_alphas, marginal_sigmas)


def _as_schedule(schedule: Any) -> NoiseSchedule:
    if isinstance(schedule, NoiseSchedule):
        return schedule
    if isinstance(schedule, (str, Sequence, np.ndarray)):
        return noise_schedule(schedule)
    raise TypeError(f"schedule={schedule!r}: expected a NoiseSchedule (from noise_schedule), "
                    "a schedule name or a sequence of sigmas")


def _f32(a: np.ndarray) -> jax.Array:
    return jnp.asarray(np.asarray(a, np.float32))


# --------------------------------------------------------------------------- diffusion

def diffuse(rng_key: jax.Array, schedule: NoiseSchedule, x0: jax.Array,
            level) -> tuple[jax.Array, jax.Array]:
    """Draw ``(x_t, x_{t+1})`` from the forward diffusion of clean data ``x0``.

    Args:
      rng_key: a PRNG key.
      schedule: a :class:`NoiseSchedule`.
      x0: clean data, any shape (a batch ``[B, ...]`` or one example).
      level: ``t`` in ``[0, T)``, a Python int or a traced int scalar (a
        concrete one is range-checked).

    Returns:
      ``x_t = ᾱ_t x0 + sqrt(1-ᾱ_t²) ε`` and ``x_{t+1} = a_t x_t + σ_t ε'``, both
      shaped like ``x0``.

    Example::

      >>> x_t, x_next = diffuse(jax.random.key(0), noise_schedule("t6"), x0, 2)
    """
    schedule = _as_schedule(schedule)
    _check_level(level, schedule.num_levels)
    k1, k2 = jax.random.split(rng_key)
    x0 = jnp.asarray(x0)
    mean_scale = _f32(schedule.marginal_alphas)[level]
    noise_scale = _f32(schedule.marginal_sigmas)[level]
    x_t = mean_scale * x0 + noise_scale * jax.random.normal(k1, x0.shape, x0.dtype)
    x_next = (_f32(schedule.alphas)[level] * x_t
              + _f32(schedule.sigmas)[level] * jax.random.normal(k2, x0.shape, x0.dtype))
    return x_t, x_next


def _check_level(level, num_levels: int) -> None:
    if isinstance(level, jax.core.Tracer):
        return
    value = np.asarray(level)
    if value.shape != () or not np.issubdtype(value.dtype, np.integer) or not (
            0 <= int(value) < num_levels):
        raise ValueError(f"level={level!r}: expected an int scalar in [0, {num_levels})")


# --------------------------------------------------------------------------- sampling

def _chain_options(num_steps, step_size_scale, chain_init, num_candidates, metropolis, grad_clip,
                   clip_range, unroll, steps_name: str = "num_langevin_steps") -> dict:
    """Validate the conditional sampler's options (before any compute) and pack them."""
    if not _is_int(num_steps) or num_steps < 1:
        raise ValueError(f"{steps_name}={num_steps!r}: expected a positive int")
    if not isinstance(step_size_scale, numbers.Real) or not (
            np.isfinite(step_size_scale) and step_size_scale > 0):
        raise ValueError(f"step_size_scale={step_size_scale!r}: expected a positive number "
                         "(the Langevin step size is step_size_scale * sigma_t**2)")
    if chain_init not in CHAIN_INITS:
        raise ValueError(f"chain_init={chain_init!r}: expected one of {list(CHAIN_INITS)}")
    if not _is_int(num_candidates) or num_candidates < 1:
        raise ValueError(f"num_candidates={num_candidates!r}: expected a positive int")
    if not isinstance(metropolis, bool):
        raise ValueError(f"metropolis={metropolis!r}: expected True or False")
    if grad_clip is not None:
        if not (isinstance(grad_clip, numbers.Real) and grad_clip > 0):
            raise ValueError(f"grad_clip={grad_clip!r}: expected a positive number or None")
        if metropolis:
            raise ValueError(f"grad_clip={grad_clip!r} with metropolis=True: clipping breaks the "
                             "Metropolis correction; expected grad_clip=None")
    if clip_range is not None:
        if len(clip_range) != 2 or not clip_range[0] < clip_range[1]:
            raise ValueError(f"clip_range={clip_range!r}: expected (low, high) with low < high")
        clip_range = (float(clip_range[0]), float(clip_range[1]))
    if not _is_int(unroll) or unroll < 1:
        raise ValueError(f"unroll={unroll!r}: expected a positive int")
    return dict(num_steps=int(num_steps), step_size_scale=float(step_size_scale),
                chain_init=chain_init, num_candidates=int(num_candidates), metropolis=metropolis,
                grad_clip=grad_clip, clip_range=clip_range, unroll=int(unroll))


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
    log_w = -energy + 0.5 * sq_norm
    log_w = jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)
    pick = jax.random.categorical(k_pick, log_w, axis=0)
    return candidates[pick, jnp.arange(mean.shape[0])]


def _mala_chain(rng_key, energy, params, start, x_tilde, step_size, num_steps, clip_range,
                unroll):
    """One Metropolis-adjusted Langevin chain on ``energy(params, x, x_tilde)``.

    Proposals ``x' = x - h ∇U(x) + sqrt(2h) ε`` are accepted with probability
    ``min(1, exp(U(x) - U(x') + log q(x | x') - log q(x' | x)))``; a proposal
    with a non-finite energy or gradient, or outside ``clip_range``, is rejected
    (the latter makes the target the density restricted to the box).
    """
    value_and_grad = jax.value_and_grad(energy, argnums=1)
    u0, g0 = value_and_grad(params, start, x_tilde)

    def body(carry, key):
        x, u, g = carry
        k_noise, k_accept = jax.random.split(key)
        noise = jax.random.normal(k_noise, x.shape, x.dtype)
        proposal = x - step_size * g + jnp.sqrt(2.0 * step_size) * noise
        u_new, g_new = value_and_grad(params, proposal, x_tilde)
        log_forward = -jnp.sum(jnp.square(proposal - x + step_size * g)) / (4.0 * step_size)
        log_backward = -jnp.sum(jnp.square(x - proposal + step_size * g_new)) / (4.0 * step_size)
        log_ratio = u - u_new + log_backward - log_forward
        finite = jnp.isfinite(u_new) & jnp.all(jnp.isfinite(g_new))
        valid = finite
        if clip_range is not None:
            valid = valid & jnp.all((proposal >= clip_range[0]) & (proposal <= clip_range[1]))
        accept = valid & (jnp.log(jax.random.uniform(k_accept)) < log_ratio)
        info = LangevinInfo(u, jnp.sqrt(jnp.sum(jnp.square(g))), (~finite).astype(jnp.int32))
        new = (jnp.where(accept, proposal, x), jnp.where(accept, u_new, u),
               jnp.where(accept, g_new, g))
        return new, (info, accept)

    keys = jax.random.split(rng_key, num_steps)
    (x, _, _), (info, accepted) = jax.lax.scan(body, (start, u0, g0), keys, unroll=unroll)
    return x, info, jnp.mean(accepted.astype(jnp.float32))


def recovery_langevin(rng_key: jax.Array, energy_fn: EnergyFn, params: Any,
                      schedule: NoiseSchedule, level, x_next: jax.Array, *,
                      num_steps: int = 30, step_size_scale: float = 0.05,
                      chain_init: str = "importance", num_candidates: int = 16,
                      metropolis: bool = True, grad_clip: Optional[float] = None,
                      clip_range: Optional[tuple[float, float]] = None,
                      unroll: int = 1) -> tuple[jax.Array, RecoveryInfo]:
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

    Returns:
      ``(samples [N, ...], RecoveryInfo)``.

    Example::

      >>> schedule = noise_schedule("t6")
      >>> x_t, x_next = diffuse(jax.random.key(0), schedule, data, 1)
      >>> samples, info = recovery_langevin(jax.random.key(1), energy_fn, params, schedule, 1,
      ...                                   x_next)
    """
    schedule = _as_schedule(schedule)
    _check_level(level, schedule.num_levels)
    opts = _chain_options(num_steps, step_size_scale, chain_init, num_candidates, metropolis,
                          grad_clip, clip_range, unroll, "num_steps")
    return _recovery_chains(rng_key, energy_fn, params, schedule, level, x_next, **opts)


def _recovery_chains(rng_key, energy_fn, params, schedule, level, x_next, *, num_steps,
                     step_size_scale, chain_init, num_candidates, metropolis, grad_clip,
                     clip_range, unroll):
    """:func:`recovery_langevin` after validation (options as checked by :func:`_chain_options`)."""
    level = jnp.asarray(level, jnp.int32)
    sigma = _f32(schedule.sigmas)[level]
    alpha = _f32(schedule.alphas)[level]
    precision = jnp.square(alpha / sigma)
    step_size = step_size_scale * jnp.square(sigma)

    def conditional_energy(p, x, x_tilde):
        return energy_fn(p, x, level) + 0.5 * precision * jnp.sum(jnp.square(x - x_tilde))

    x_next = jnp.asarray(x_next)
    x_tilde = x_next / alpha
    if chain_init == "rescaled":
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
    if metropolis:
        keys = jax.random.split(rng_key, x_next.shape[0])
        samples, info, acceptance = jax.vmap(
            lambda k, x0, xt: _mala_chain(k, conditional_energy, params, x0, xt, step_size,
                                          num_steps, clip_range, unroll))(keys, start, x_tilde)
    else:
        # The step size is traced (it depends on the level), so langevin skips its positivity
        # check; step_size_scale was checked by _chain_options.
        sampler = langevin(conditional_energy, step_size, grad_clip=grad_clip,
                           clip_range=clip_range)
        states = init_chains(sampler, start, params, x_tilde)
        chains, info = run_chains(rng_key, sampler, states, params, num_steps, x_tilde,
                                  unroll=unroll, trace=True)
        samples = chains.position
        acceptance = jnp.ones(x_next.shape[0], jnp.float32)
    flat = (samples - start).reshape(samples.shape[0], -1)
    return samples, RecoveryInfo(info, acceptance, jnp.sqrt(jnp.sum(jnp.square(flat), axis=-1)))


def progressive_sample(rng_key: jax.Array, energy_fn: EnergyFn, params: Any,
                       schedule: NoiseSchedule, shape: Sequence[int], num_samples: int, *,
                       num_langevin_steps: int = 30, step_size_scale: float = 0.05,
                       chain_init: str = "importance", num_candidates: int = 16,
                       metropolis: bool = True, grad_clip: Optional[float] = None,
                       clip_range: Optional[tuple[float, float]] = None,
                       return_trajectory: bool = False, unroll: int = 1):
    """Generate from noise: ``x_T ~ N(0, I)``, then ``x_t ~ p(x_t | x_{t+1})`` for ``t = T-1..0``.

    All levels run in one ``lax.scan`` (the level is traced), so the whole
    generation is one XLA program. Use the sampler settings of training.

    Args:
      rng_key: a PRNG key.
      energy_fn: per-example ``energy_fn(params, x, t) -> scalar``.
      params: energy parameters (evaluate with the EMA parameters).
      schedule: a :class:`NoiseSchedule`.
      shape: the shape of one example, e.g. ``(2,)`` or ``(64,)``.
      num_samples: ``N``.
      num_langevin_steps: Langevin steps per level.
      step_size_scale, chain_init, num_candidates, metropolis, grad_clip, clip_range, unroll:
        as in :func:`recovery_langevin`.
      return_trajectory: also return every level's samples.

    Returns:
      ``samples [N, *shape]`` (level 0), or ``(samples, trajectory)`` with
      ``trajectory [T+1, N, *shape]``, ``trajectory[t]`` the samples at level
      ``t`` (``trajectory[T]`` the initial noise, ``trajectory[0] == samples``).

    Jit it by closing over the static arguments::

      >>> sample = jax.jit(lambda key, params: progressive_sample(
      ...     key, energy_fn, params, schedule, (2,), 1000))
      >>> x = sample(jax.random.key(0), ema_params)       # [1000, 2]
    """
    schedule = _as_schedule(schedule)
    opts = _chain_options(num_langevin_steps, step_size_scale, chain_init, num_candidates,
                          metropolis, grad_clip, clip_range, unroll)
    shape = tuple(shape)
    if not all(_is_int(d) and d > 0 for d in shape):
        raise ValueError(f"shape={shape!r}: expected a tuple of positive ints "
                         "(one example's shape)")
    if not _is_int(num_samples) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r}: expected a positive int")
    num_levels = schedule.num_levels
    k_init, k_levels = jax.random.split(rng_key)
    x_end = jax.random.normal(k_init, (num_samples, *shape), jnp.float32)

    def body(x, inputs):
        level, key = inputs
        x, _ = _recovery_chains(key, energy_fn, params, schedule, level, x, **opts)
        return x, x

    levels = jnp.arange(num_levels - 1, -1, -1, dtype=jnp.int32)
    samples, path = jax.lax.scan(body, x_end, (levels, jax.random.split(k_levels, num_levels)))
    if not return_trajectory:
        return samples
    trajectory = jnp.concatenate([path[::-1], x_end[None]], axis=0)
    return samples, trajectory


# --------------------------------------------------------------------------- the loss

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

      >>> model = as_conditioned_energy_fn(ConditionedMLP(2, (128,) * 3, 6, rngs=nnx.Rngs(0)))
      >>> loss = recovery_likelihood(model.apply, noise_schedule("t6"), num_langevin_steps=30)
      >>> train_step = jax.jit(make_train_step(loss, optax.adam(1e-3), ema_decay=0.999))
    """
    schedule = _as_schedule(schedule)
    opts = _chain_options(num_langevin_steps, step_size_scale, chain_init, num_candidates,
                          metropolis, grad_clip, clip_range, unroll)
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
    if not isinstance(energy_l2, numbers.Real) or energy_l2 < 0:
        raise ValueError(f"energy_l2={energy_l2!r}: expected a number >= 0")
    if not isinstance(data_noise, numbers.Real) or not 0.0 <= data_noise < 1.0:
        raise ValueError(f"data_noise={data_noise!r}: expected a noise std in [0, 1)")
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
            samples, info = _recovery_chains(k_chain, energy_fn, frozen, schedule, level, x_next,
                                             **opts)
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
        value = jnp.sum(_f32(weights) * values)
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
