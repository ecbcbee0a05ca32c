"""Private checks shared by the inference functions over a conditional energy
``energy_fn(params, x, y, *cond) -> scalar``.

Every check traces (``jax.eval_shape``: no compute) and raises one ``ValueError`` that names
the argument, its shape and what was expected, before anything runs. They work on tracers
too (under ``jit`` or ``vmap`` only shapes are needed).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

SIGNATURE = "energy_fn(params, x, y, *cond) -> scalar"


def shape_of(value: Any) -> tuple:
    """The shape of an array, a tracer, a ``ShapeDtypeStruct``, a number or ``None`` (``()``)."""
    shape = getattr(value, "shape", None)
    return tuple(np.shape(value) if shape is None else shape)


def check_callable(name: str, fn: Any, signature: str = SIGNATURE) -> None:
    if not callable(fn):
        raise ValueError(f"{name}={fn!r}: expected a callable {signature}")


def check_energy_takes(name: str, energy_fn: Callable, params: Any, x: Any, y: Any,
                       *cond: Any, what: str = "it", given: Any = None,
                       signature: str = SIGNATURE) -> None:
    """Raise unless ``energy_fn(params, x, y, *cond)`` traces to a floating-point scalar.

    ``name`` is the argument ``y`` came from (``"y0"``), of shape ``given`` (default ``y``'s);
    ``what`` says what ``y`` is within it (``"one candidate of shape (2,)"``).
    """
    check_callable("energy_fn", energy_fn, signature)
    given = shape_of(y) if given is None else given
    head = f"{name} has shape {given} with x of shape {shape_of(x)}"
    expected = (f"expected one y that {signature} takes for one x (per example; batch with "
                "jax.vmap)")
    try:
        out = jax.eval_shape(energy_fn, params, x, y, *cond)
    except (TypeError, ValueError, IndexError) as err:
        raise ValueError(f"{head}: energy_fn failed on {what} ({type(err).__name__}: {err}): "
                         f"{expected}") from err
    if getattr(out, "shape", None) != () or not jnp.issubdtype(out.dtype, jnp.floating):
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"{head}: energy_fn returned {got} (dtype {getattr(out, 'dtype', '?')}) "
                         f"for {what}: expected a floating-point scalar; {expected}")


def check_floating(name: str, value: Any) -> None:
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name} has dtype {dtype}: expected a floating-point array (the "
                         "descent differentiates the energy with respect to it)")


def check_candidates(name: str, energy_fn: Callable, params: Any, x: Any, candidates: Any,
                     *cond: Any) -> int:
    """``candidates [M, *y_shape]``, ``M >= 1``, each row one y the energy takes: return ``M``.

    An energy that broadcasts (``y - mean`` with a scalar ``y`` and a vector ``mean``) takes
    more shapes than it means to; only the shapes it refuses or maps to a non-scalar can be
    caught here.
    """
    shape = shape_of(candidates)
    if len(shape) == 0 or shape[0] == 0:
        raise ValueError(f"{name} has shape {shape}: expected a non-empty stack of candidate "
                         "outputs [M, *y_shape] for one x (M >= 1)")
    one = jax.ShapeDtypeStruct(shape[1:], jnp.result_type(candidates))
    check_energy_takes(name, energy_fn, params, x, one, *cond, given=shape,
                       what=f"one candidate of shape {shape[1:]}")
    return shape[0]
