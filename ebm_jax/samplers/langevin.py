"""Langevin dynamics (SGLD) as a kernel and a pure ``init/step`` sampler.

One step moves down the energy gradient and adds Gaussian noise::

    x' = clip(x - step_size * clip_grad(∇E(x)) + noise_scale * ε),   ε ~ N(0, I)

The *decoupled* form sets ``step_size`` and ``noise_scale`` independently, as
JEM (step 1, noise 0.01) and IGEBM (step 10, noise 0.005) do: short-run
samplers that are not the exact Langevin diffusion. The *temperature* form
ties them, ``noise_scale = sqrt(2 * step_size * temperature)``, which is the
Euler discretisation of the Langevin diffusion targeting exp(-E/T).

Two levels, as in blackjax:

* :func:`langevin_kernel` builds ``kernel(rng_key, state, params, step_size, noise_scale,
  *cond)``, with the step size and noise scale arguments (possibly traced): what annealed
  Langevin (per-level step sizes), the recovery-likelihood chains (a step size that
  depends on the level) and step-size adaptation drive;
* :func:`langevin` fixes them and returns a :class:`~ebm_jax.samplers.Sampler`.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_bounds, check_positive_finite, check_weight
from ebm_jax.energies import EnergyFn
from ebm_jax.samplers._gradients import (all_finite, check_floating, grad_norm,
                                         scalar_value_and_grad)
from ebm_jax.samplers.base import Sampler


class LangevinState(NamedTuple):
    """The position of one chain. ``position``: one example, any shape."""

    position: jax.Array


class LangevinInfo(NamedTuple):
    """Diagnostics of one step, measured at the position the step started from.

    Attributes:
      energy: scalar energy.
      grad_norm: L2 norm of the (unclipped) energy gradient.
      nonfinite: 1 if the energy or gradient was NaN/inf, else 0 (that step
        leaves the position unchanged rather than propagating NaNs).
    """

    energy: jax.Array
    grad_norm: jax.Array
    nonfinite: jax.Array


POSITIVE = "a positive number (finite)"
NON_NEGATIVE = "a number >= 0 (finite)"


def temperature_noise_scale(step_size, temperature: Optional[float] = None):
    """The temperature form's noise, ``sqrt(2 * step_size * T)`` (``T`` defaults to 1).

    Works on Python numbers and (traced) JAX scalars alike.

    Example::

      >>> temperature_noise_scale(0.02)
      0.2
    """
    return (2.0 * step_size * (1.0 if temperature is None else temperature)) ** 0.5


def langevin_kernel(energy_fn: EnergyFn, *, grad_clip: Optional[float] = None,
                    clip_range: Optional[tuple[float, float]] = None) -> Callable:
    """The SGLD transition with the step size and the noise scale as arguments.

    Args:
      energy_fn: pure per-example energy ``energy_fn(params, x, *cond) -> scalar``.
      grad_clip: if given, clip every gradient element to ``[-grad_clip, grad_clip]``
        (IGEBM's stabiliser).
      clip_range: if given, ``(low, high)``: clamp positions after every step.

    Returns:
      ``kernel(rng_key, state, params, step_size, noise_scale, *cond) -> (LangevinState,
      LangevinInfo)`` for one chain; ``step_size`` (``h > 0``) and ``noise_scale`` (``s >= 0``)
      may be traced scalars: ``x' = clip(x - h clip_grad(∇E(x)) + s ε)``. Use
      ``noise_scale = temperature_noise_scale(step_size, T)`` for the temperature form.
      A step whose energy or gradient is NaN/inf leaves the position unchanged.

    Example::

      >>> kernel = langevin_kernel(lambda p, x: 0.5 * jnp.sum(x**2))
      >>> state = LangevinState(jnp.ones(3))
      >>> state, info = kernel(jax.random.key(0), state, None, 0.1, temperature_noise_scale(0.1))
      >>> info.energy.shape
      ()
    """
    if grad_clip is not None:
        check_positive_finite("grad_clip", grad_clip, POSITIVE)
    check_bounds("clip_range", clip_range, allow_none=True)
    value_and_grad = scalar_value_and_grad(energy_fn)

    def kernel(rng_key, state: LangevinState, params, step_size, noise_scale, *cond):
        x = state.position
        check_floating(x)
        energy, grad = value_and_grad(params, x, *cond)
        finite = all_finite(energy, grad)
        norm = grad_norm(grad)
        if grad_clip is not None:
            grad = jnp.clip(grad, -grad_clip, grad_clip)
        noise = jax.random.normal(rng_key, x.shape, x.dtype)
        new_x = x - step_size * grad + noise_scale * noise
        if clip_range is not None:
            new_x = jnp.clip(new_x, clip_range[0], clip_range[1])
        new_x = jnp.where(finite, new_x, x)
        info = LangevinInfo(energy, norm, (~finite).astype(jnp.int32))
        return LangevinState(new_x), info

    return kernel


def langevin(energy_fn: EnergyFn, step_size: float, noise_scale: Optional[float] = None, *,
             temperature: Optional[float] = None, grad_clip: Optional[float] = None,
             clip_range: Optional[tuple[float, float]] = None) -> Sampler:
    """Build an SGLD sampler for the per-example ``energy_fn(params, x, *cond)``.

    Args:
      energy_fn: pure per-example energy.
      step_size: gradient step size (> 0).
      noise_scale: standard deviation of the added noise (>= 0). If omitted,
        the temperature form is used: ``sqrt(2 * step_size * temperature)``.
      temperature: the temperature of the temperature form (default 1);
        only valid when ``noise_scale`` is omitted.
      grad_clip: if given, clip every gradient element to ``[-grad_clip, grad_clip]``
        (IGEBM's stabiliser).
      clip_range: if given, ``(low, high)``: clamp positions to the data range
        after every step.

    Returns:
      A :class:`~ebm_jax.samplers.Sampler` built on :func:`langevin_kernel`; vmap its
      ``step`` over chains.

    Example::

      >>> sampler = langevin(lambda p, x: 0.5 * jnp.sum(x**2), step_size=1.0, noise_scale=0.01)
      >>> state = sampler.init(jnp.ones(3))
      >>> state, info = sampler.step(jax.random.key(0), state, None)
    """
    check_positive_finite("step_size", step_size, POSITIVE)
    if temperature is not None:
        check_positive_finite("temperature", temperature, POSITIVE)
    if grad_clip is not None:
        check_positive_finite("grad_clip", grad_clip, POSITIVE)
    if noise_scale is not None and temperature is not None:
        raise ValueError("give either noise_scale (decoupled form) or temperature "
                         "(temperature form), not both")
    if noise_scale is None:
        noise_scale = temperature_noise_scale(step_size, temperature)
    else:
        check_weight("noise_scale", noise_scale, 0.0, expected=NON_NEGATIVE)
    check_bounds("clip_range", clip_range, allow_none=True)
    kernel = langevin_kernel(energy_fn, grad_clip=grad_clip, clip_range=clip_range)

    def init(position: jax.Array, params=None, *cond) -> LangevinState:
        del params, cond  # SGLD caches nothing
        position = jnp.asarray(position)
        check_floating(position)
        return LangevinState(position)

    def step(rng_key, state: LangevinState, params, *cond):
        return kernel(rng_key, state, params, step_size, noise_scale, *cond)

    return Sampler(init, step, support=check_bounds("clip_range", clip_range, allow_none=True))
