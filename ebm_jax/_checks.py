"""Argument checks shared across the toolkit: one home for ints, ranges, bounds, positive
finite scalars and per-example scalar functions.

Every check raises with a message that names the field, the value that was got and what
was expected (``"num_steps=0: expected a positive int"``); ``expected=`` words it for a
caller whose field means more than its type. A leaf of the package: it imports nothing
else of ``ebm_jax``.

Which exception (as the tests pin it): the checks of a value with a set of allowed values
(:func:`check_int`, :func:`check_in_range`, :func:`check_probability`,
:func:`check_bounds`, :func:`check_choice`, :func:`check_flag`) raise ``ValueError`` for
anything outside that set, a non-number included; the checks of a number of any size
(:func:`check_positive_finite`, :func:`check_weight`) raise ``TypeError`` for a
non-number and ``ValueError`` for a number out of range. A traced value (inside ``jit``)
is left alone where its value is not needed (:func:`is_traced`).

>>> check_int("num_steps", 3)
3
>>> check_probability("reinit_prob", 0.05)
0.05
>>> check_bounds("clip_range", (-1, 1))
(-1.0, 1.0)
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
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
      >>> check_positive_finite("step_size", -1.0)
      Traceback (most recent call last):
      ...
      ValueError: step_size=-1.0: expected a positive finite number
    """
    if is_traced(value):
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


def check_weight(name: str, weight: Any, minimum: Optional[float] = None, *,
                 expected: Optional[str] = None) -> None:
    """A loss weight (or any number of any size, e.g. a noise scale) must be a finite real
    number (``>= minimum`` when given); a traced weight is left alone.

    ``expected`` words the message's expectation (default ``"a finite number"``, with
    ``" >= minimum"`` when given).

    >>> check_weight("noise_scale", -1.0, 0.0, expected="a number >= 0 (finite)")
    Traceback (most recent call last):
    ...
    ValueError: noise_scale=-1.0: expected a number >= 0 (finite)
    """
    if is_traced(weight):
        return
    if isinstance(weight, (np.ndarray, jax.Array)) and weight.shape == ():
        weight = weight.item()
    bound = "" if minimum is None else f" >= {minimum}"
    what = expected or f"a finite number{bound}"
    if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real):
        raise TypeError(f"{name}={weight!r} ({type(weight).__name__}): "
                        f"expected {expected or 'a finite number'}")
    if not math.isfinite(weight) or (minimum is not None and weight < minimum):
        raise ValueError(f"{name}={weight!r}: expected {what}")
    if abs(weight) > FLOAT32_MAX and not jax.config.jax_enable_x64:
        tail = "; it becomes inf in the loss" if expected is None else ""
        raise ValueError(f"{name}={weight!r}: expected {what} that float32 can hold "
                         f"(|{name}| <= {FLOAT32_MAX:.4g}{tail})")


def is_traced(value: Any) -> bool:
    """Whether ``value`` is a JAX tracer (an argument of a function being traced by ``jit``,
    ``vmap``, ...): its value is not known, only its shape and dtype.

    >>> seen = []
    >>> _ = jax.jit(lambda x: seen.append(is_traced(x)) or x)(1.0)
    >>> is_traced(1.0), seen
    (False, [True])
    """
    return isinstance(value, jax.core.Tracer)


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool (``True`` is an ``int`` to Python, not to us).

    >>> is_int(3), is_int(np.int32(3)), is_int(True), is_int(3.0)
    (True, True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """A Python or NumPy real number, not a bool (and not an array)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: Optional[int] = 1,
              maximum: Optional[int] = None, *, expected: Optional[str] = None) -> int:
    """``value`` as an ``int`` if it is an int (not a bool) in ``[minimum, maximum]``.

    Args:
      name: the field, for the message.
      value: what was given.
      minimum / maximum: inclusive bounds (``None``: unbounded on that side).
      expected: the message's "expected ..." (default: from the bounds, e.g.
        ``"a positive int"``, ``"an int >= 0"``, ``"an int in [1, 8]"``).

    Raises:
      ValueError: ``"{name}={value!r}: expected {expected}"``.

    >>> check_int("seed", 0, 0)
    0
    >>> check_int("num_steps", 0)
    Traceback (most recent call last):
    ...
    ValueError: num_steps=0: expected a positive int
    """
    if not is_int(value) or (minimum is not None and value < minimum) \
            or (maximum is not None and value > maximum):
        if expected is None:
            if maximum is not None:
                expected = f"an int in [{minimum}, {maximum}]"
            elif minimum == 1:
                expected = "a positive int"
            else:
                expected = "an int" if minimum is None else f"an int >= {minimum}"
        raise ValueError(f"{name}={value!r}: expected {expected}")
    return int(value)


def check_in_range(name: str, value: Any, low: float, high: float, *,
                   include_low: bool = True, include_high: bool = True,
                   expected: Optional[str] = None, allow_traced: bool = False) -> Any:
    """``value`` as a ``float`` if it is a real number (not a bool) in the interval.

    The interval is ``[low, high]``, open at an end whose ``include_*`` is False; a
    concrete 0-d array counts as its number. With ``allow_traced`` a traced value is
    returned unchecked (its value is not known at trace time).

    Raises:
      ValueError: ``"{name}={value!r}: expected {expected}"`` (default
        ``"a value in [low, high)"`` and so on).

    >>> check_in_range("ema_decay", 0.99, 0, 1, include_high=False)
    0.99
    >>> check_in_range("test_fraction", 1.0, 0, 1, include_low=False, include_high=False)
    Traceback (most recent call last):
    ...
    ValueError: test_fraction=1.0: expected a value in (0, 1)
    """
    if allow_traced and is_traced(value):
        return value
    number = _concrete_scalar(value)
    ok = is_real(number) and math.isfinite(number) \
        and (low <= number if include_low else low < number) \
        and (number <= high if include_high else number < high)
    if not ok:
        if expected is None:
            expected = (f"a value in {'[' if include_low else '('}{low:g}, "
                        f"{high:g}{']' if include_high else ')'}")
        raise ValueError(f"{name}={value!r}: expected {expected}")
    return float(number)


def check_probability(name: str, value: Any, *, include_zero: bool = True,
                      include_one: bool = True, expected: Optional[str] = None,
                      allow_traced: bool = False) -> Any:
    """``value`` as a ``float`` if it is a probability: in ``[0, 1]``, either end excludable.

    >>> check_probability("label_smoothing", 0.1, include_one=False)
    0.1
    >>> check_probability("weight", 0.0, include_zero=False, include_one=False)
    Traceback (most recent call last):
    ...
    ValueError: weight=0.0: expected a value in (0, 1)
    """
    return check_in_range(name, value, 0, 1, include_low=include_zero, include_high=include_one,
                          expected=expected, allow_traced=allow_traced)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices`` (printed as given: a tuple or a list).

    >>> check_choice("norm", "l1", ("linf", "l2"))
    Traceback (most recent call last):
    ...
    ValueError: norm='l1': expected one of ('linf', 'l2')
    """
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {choices}")
    return value


def check_flag(name: str, value: Any) -> bool:
    """``value`` as a ``bool`` if it is one (Python or NumPy); ``1`` or ``"yes"`` is refused.

    >>> check_flag("shuffle", np.bool_(True))
    True
    >>> check_flag("shuffle", 1)
    Traceback (most recent call last):
    ...
    ValueError: shuffle=1: expected True or False
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r}: expected True or False")
    return bool(value)


def check_bounds(name: str, value: Any, *, allow_none: bool = False,
                 expected: Optional[str] = None) -> Optional[tuple[float, float]]:
    """``(low, high)`` as two floats if ``value`` is a pair of finite numbers with ``low < high``.

    ``None`` passes through with ``allow_none`` (no clamping, no range).

    Raises:
      ValueError: ``"{name}={value!r}: expected (low, high) ..."``.

    >>> check_bounds("data_range", [0, 255])
    (0.0, 255.0)
    >>> check_bounds("clip_range", (1, -1))
    Traceback (most recent call last):
    ...
    ValueError: clip_range=(1, -1): expected (low, high) with finite low < high
    """
    if value is None and allow_none:
        return None
    expected = expected or ("(low, high) with finite low < high"
                            + (", or None" if allow_none else ""))
    try:
        low, high = (_concrete_scalar(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r}: expected {expected}") from None
    if not (is_real(low) and is_real(high) and math.isfinite(low) and math.isfinite(high)
            and low < high):
        raise ValueError(f"{name}={value!r}: expected {expected}")
    return float(low), float(high)


def check_scalar_fn(name: str, fn: Callable, *args: Any,
                    signature: str = "energy_fn(params, x, *cond) -> scalar",
                    hint: Optional[str] = None) -> Any:
    """Trace ``fn(*args)`` (``jax.eval_shape``: no compute) and require a floating scalar.

    For per-example functions (an energy, a log-density) called on one example: a function
    written for a batch, or one that fails on an example of this shape, is named with the
    shape it was given before any compute. ``args`` may be arrays or
    ``jax.ShapeDtypeStruct``s; the second argument (``x`` in ``energy_fn(params, x)``), or
    the only one (``log_prob(x)``), is the example whose shape the messages give.

    ``hint`` ends the messages (default, where the output is not a scalar: ``"per example;
    batch it with jax.vmap"``), e.g. a sampler's ``"init takes one chain's position: use
    init_chains for a batch"``.

    Returns:
      the output's ``jax.ShapeDtypeStruct``.

    Raises:
      ValueError: ``fn`` is not callable, fails when traced on the example, or returns
        other than a floating-point scalar.

    >>> energy = lambda params, x: 0.5 * jnp.sum(x ** 2)
    >>> check_scalar_fn("energy_fn", energy, None, jax.ShapeDtypeStruct((2,), jnp.float32))
    ShapeDtypeStruct(shape=(), dtype=float32)
    >>> check_scalar_fn("energy_fn", lambda params, x: x, None, jnp.zeros(2))
    Traceback (most recent call last):
    ...
    ValueError: energy_fn returned (2,) (dtype float32) for one example of shape (2,): expected \
a floating-point scalar, energy_fn(params, x, *cond) -> scalar (per example; batch it with \
jax.vmap)
    """
    if not callable(fn):
        raise ValueError(f"{name}={fn!r}: expected a callable {signature}")
    example = args[1] if len(args) > 1 else (args[0] if args else None)
    shape = tuple(getattr(example, "shape", ()))
    try:
        out = jax.eval_shape(fn, *args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} failed on one example of shape {shape} "
                         f"({type(err).__name__}: {err}): expected a per-example "
                         f"{signature}" + (f" ({hint})" if hint else "")) from err
    if getattr(out, "shape", None) != () or not jnp.issubdtype(out.dtype, jnp.floating):
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"{name} returned {got} (dtype {getattr(out, 'dtype', '?')}) for one "
                         f"example of shape {shape}: expected a floating-point scalar, "
                         f"{signature} ({hint or 'per example; batch it with jax.vmap'})")
    return out


def _concrete_scalar(value: Any) -> Any:
    """A concrete 0-d NumPy/JAX array as its Python number; anything else unchanged."""
    if isinstance(value, (np.ndarray, np.generic, jax.Array)) \
            and not is_traced(value) and np.shape(value) == () \
            and np.issubdtype(np.asarray(value).dtype, np.number):
        return np.asarray(value).item()
    return value
