"""Private argument checks shared by the samplers' constructors (errors name the field,
the value and what was expected)."""
from __future__ import annotations

import numbers

import jax
import numpy as np

from ebm_jax._checks import FLOAT32_MAX


def check_noise_scale(noise_scale, name: str = "noise_scale") -> None:
    """A concrete ``noise_scale`` must be a finite number >= 0 (a traced one is left alone)."""
    if isinstance(noise_scale, jax.core.Tracer):
        return
    if isinstance(noise_scale, (np.ndarray, jax.Array)) and noise_scale.shape == () \
            and np.issubdtype(noise_scale.dtype, np.floating):
        noise_scale = float(noise_scale)
    if isinstance(noise_scale, (bool, np.bool_)) or not isinstance(noise_scale, numbers.Real):
        raise TypeError(f"{name}={noise_scale!r} ({type(noise_scale).__name__}): expected a "
                        "number >= 0 (finite)")
    if not (np.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"{name}={noise_scale!r}: expected a number >= 0 (finite)")
    if noise_scale > FLOAT32_MAX and not jax.config.jax_enable_x64:
        raise ValueError(f"{name}={noise_scale!r}: expected a number >= 0 (finite) that "
                         f"float32 can hold (<= {FLOAT32_MAX:.4g})")


def check_clip_range(clip_range, name: str = "clip_range") -> None:
    """``clip_range`` must be a ``(low, high)`` pair of numbers with ``low < high``."""
    try:
        low, high = clip_range
    except (TypeError, ValueError):
        raise ValueError(f"{name}={clip_range!r}: expected (low, high) with low < high") \
            from None
    for bound in (low, high):
        if isinstance(bound, (np.ndarray, jax.Array)) and bound.shape == () \
                and not isinstance(bound, jax.core.Tracer):
            bound = bound.item()
        if isinstance(bound, (bool, np.bool_)) or not isinstance(bound, numbers.Real):
            raise ValueError(f"{name}={clip_range!r}: expected (low, high), two numbers "
                             "with low < high")
    if not low < high:
        raise ValueError(f"{name}={clip_range!r}: expected (low, high) with low < high")


def check_choice(name: str, value, choices: tuple) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {choices}")


def check_probability(name: str, value) -> None:
    """A concrete ``value`` must be a number in ``[0, 1]`` (a traced one is left alone)."""
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, (np.ndarray, jax.Array)) and value.shape == ():
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} ({type(value).__name__}): expected a probability "
                        "in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r}: expected a probability in [0, 1]")
