"""Langevin dynamics (SGLD) as a pure ``init/step`` sampler.

One step moves down the energy gradient and adds Gaussian noise::

    x' = clip(x - step_size * clip_grad(∇E(x)) + noise_scale * ε),   ε ~ N(0, I)

The *decoupled* form sets ``step_size`` and ``noise_scale`` independently, as
JEM (step 1, noise 0.01) and IGEBM (step 10, noise 0.005) do: short-run
samplers that are not the exact Langevin diffusion. The *temperature* form
ties them, ``noise_scale = sqrt(2 * step_size * temperature)``, which is the
Euler discretisation of the Langevin diffusion targeting exp(-E/T).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax.energies import EnergyFn
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


def _check_positive(name: str, value) -> None:
    if value is None:
        return
    # numbers.Real covers Python and NumPy scalars; traced values are left to the caller.
    if isinstance(value, numbers.Real) and not value > 0:
        raise ValueError(f"{name}={value!r}: expected a positive number")


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
      A :class:`~ebm_jax.samplers.Sampler`; vmap its ``step`` over chains.

    Example::

      >>> sampler = langevin(lambda p, x: 0.5 * jnp.sum(x**2), step_size=1.0, noise_scale=0.01)
      >>> state = sampler.init(jnp.ones(3))
      >>> state, info = sampler.step(jax.random.key(0), state, None)
    """
    _check_positive("step_size", step_size)
    _check_positive("temperature", temperature)
    _check_positive("grad_clip", grad_clip)
    if noise_scale is not None and temperature is not None:
        raise ValueError("give either noise_scale (decoupled form) or temperature "
                         "(temperature form), not both")
    if noise_scale is None:
        noise_scale = (2.0 * step_size * (1.0 if temperature is None else temperature)) ** 0.5
    elif isinstance(noise_scale, numbers.Real) and noise_scale < 0:
        raise ValueError(f"noise_scale={noise_scale!r}: expected a number >= 0")
    if clip_range is not None:
        low, high = clip_range
        if not low < high:
            raise ValueError(f"clip_range={clip_range!r}: expected (low, high) with low < high")

    value_and_grad = jax.value_and_grad(energy_fn, argnums=1)

    def init(position: jax.Array, params=None, *cond) -> LangevinState:
        del params, cond  # SGLD caches nothing
        return LangevinState(jnp.asarray(position))

    def step(rng_key, state: LangevinState, params, *cond):
        x = state.position
        energy, grad = value_and_grad(params, x, *cond)
        finite = jnp.isfinite(energy) & jnp.all(jnp.isfinite(grad))
        grad_norm = jnp.sqrt(jnp.sum(jnp.square(grad)))
        if grad_clip is not None:
            grad = jnp.clip(grad, -grad_clip, grad_clip)
        noise = jax.random.normal(rng_key, x.shape, x.dtype)
        new_x = x - step_size * grad + noise_scale * noise
        if clip_range is not None:
            new_x = jnp.clip(new_x, clip_range[0], clip_range[1])
        new_x = jnp.where(finite, new_x, x)
        info = LangevinInfo(energy, grad_norm, (~finite).astype(jnp.int32))
        return LangevinState(new_x), info

    return Sampler(init, step)
