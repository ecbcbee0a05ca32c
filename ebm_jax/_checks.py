"""Argument checks shared across the toolkit (samplers, energies, composition)."""
from __future__ import annotations

import numbers
from typing import Any

import jax
import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32


def check_positive_finite(name: str, value: Any,
                          expected: str = "a positive finite number") -> None:
    """Raise if a concrete scalar (Python, NumPy or JAX) is not a positive finite number
    that float32 can hold (unless x64 is on).

    A traced JAX value (e.g. a step size under adaptation, inside ``jit``) is only checked
    to be a scalar: its value is not known at trace time. Anything that is not a number
    (``None``, a string) raises a ``TypeError`` naming ``name``.

    Example::

      >>> check_positive_finite("step_size", 0.1)       # passes
      >>> check_positive_finite("step_size", -1.0)      # ValueError: step_size=-1.0: ...
    """
    if isinstance(value, jax.core.Tracer):
        if value.shape != ():
            raise ValueError(f"{name} has shape {value.shape}: expected a scalar")
        return
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r}: expected {expected}")
    if isinstance(value, (np.ndarray, jax.Array)):
        if value.shape != ():
            raise ValueError(f"{name} has shape {value.shape}: expected a scalar")
        if not np.issubdtype(value.dtype, np.number) \
                or np.issubdtype(value.dtype, np.complexfloating):
            raise TypeError(f"{name} has dtype {value.dtype}: expected {expected}")
        value = np.asarray(value)[()]
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} ({type(value).__name__}): expected {expected}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r}: expected {expected}")
    if not FLOAT32_TINY <= value <= FLOAT32_MAX and not jax.config.jax_enable_x64:
        raise ValueError(f"{name}={value!r}: expected {expected} that float32 can hold "
                         f"(in [{FLOAT32_TINY:.4g}, {FLOAT32_MAX:.4g}]; it becomes 0 or inf "
                         "in float32 arithmetic)")
