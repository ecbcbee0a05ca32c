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
import numpy as np

from ebm_jax.energies import EnergyFn
from ebm_jax.samplers.base import Sampler
from ebm_jax._checks import FLOAT32_MAX, check_positive_finite


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


def _check_noise_scale(noise_scale) -> None:
    """A concrete ``noise_scale`` must be a finite number >= 0 (a traced one is left alone)."""
    if isinstance(noise_scale, jax.core.Tracer):
        return
    if isinstance(noise_scale, (np.ndarray, jax.Array)) and noise_scale.shape == () \
            and np.issubdtype(noise_scale.dtype, np.floating):
        noise_scale = float(noise_scale)
    if isinstance(noise_scale, (bool, np.bool_)) or not isinstance(noise_scale, numbers.Real):
        raise TypeError(f"noise_scale={noise_scale!r} ({type(noise_scale).__name__}): expected a "
                        "number >= 0 (finite)")
    if not (np.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale={noise_scale!r}: expected a number >= 0 (finite)")
    if noise_scale > FLOAT32_MAX and not jax.config.jax_enable_x64:
        raise ValueError(f"noise_scale={noise_scale!r}: expected a number >= 0 (finite) that "
                         f"float32 can hold (<= {FLOAT32_MAX:.4g})")


def _check_clip_range(clip_range) -> None:
    """``clip_range`` must be a ``(low, high)`` pair of numbers with ``low < high``."""
    try:
        low, high = clip_range
    except (TypeError, ValueError):
        raise ValueError(f"clip_range={clip_range!r}: expected (low, high) with low < high") \
            from None
    for bound in (low, high):
        if isinstance(bound, (np.ndarray, jax.Array)) and bound.shape == () \
                and not isinstance(bound, jax.core.Tracer):
            bound = bound.item()
        if isinstance(bound, (bool, np.bool_)) or not isinstance(bound, numbers.Real):
            raise ValueError(f"clip_range={clip_range!r}: expected (low, high), two numbers "
                             "with low < high")
    if not low < high:
        raise ValueError(f"clip_range={clip_range!r}: expected (low, high) with low < high")


def _check_floating(position) -> None:
    """The sampler differentiates the energy with respect to the position (static check)."""
    if not jnp.issubdtype(jnp.result_type(position), jnp.floating):
        raise ValueError(f"position has dtype {jnp.result_type(position)}: expected a "
                         "floating-point array (the sampler differentiates the energy with "
                         "respect to it)")


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
    check_positive_finite("step_size", step_size, POSITIVE)
    if temperature is not None:
        check_positive_finite("temperature", temperature, POSITIVE)
    if grad_clip is not None:
        check_positive_finite("grad_clip", grad_clip, POSITIVE)
    if noise_scale is not None and temperature is not None:
        raise ValueError("give either noise_scale (decoupled form) or temperature "
                         "(temperature form), not both")
    if noise_scale is None:
        noise_scale = (2.0 * step_size * (1.0 if temperature is None else temperature)) ** 0.5
    else:
        _check_noise_scale(noise_scale)
    if clip_range is not None:
        _check_clip_range(clip_range)

    def scalar_energy(params, x, *cond):
        energy = energy_fn(params, x, *cond)
        if jnp.shape(energy) != ():
            raise ValueError(
                f"position has shape {tuple(x.shape)}: energy_fn returned shape "
                f"{jnp.shape(energy)} for it; expected a scalar (one chain's position per "
                "state: use init_chains/run_chains for a batch)")
        return energy

    value_and_grad = jax.value_and_grad(scalar_energy, argnums=1)

    def init(position: jax.Array, params=None, *cond) -> LangevinState:
        del params, cond  # SGLD caches nothing
        position = jnp.asarray(position)
        _check_floating(position)
        return LangevinState(position)

    def step(rng_key, state: LangevinState, params, *cond):
        x = state.position
        _check_floating(x)
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
