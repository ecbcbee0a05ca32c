"""The shared argument checks of ``ebm_jax/_checks.py``: what passes, what raises, and that
every message names the field, the value and what was expected."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax._checks import (check_bounds, check_choice, check_flag, check_in_range, check_int,
                             check_probability, check_scalar_fn, check_weight, is_int, is_real,
                             is_traced)


def test_is_int_and_is_real_refuse_bools():
    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(np.bool_(1))
    assert not is_int(3.0) and not is_int(np.ones(()))
    assert is_real(0.5) and is_real(np.float32(0.5)) and is_real(2) and not is_real(False)


@pytest.mark.parametrize("value, minimum, maximum, message", [
    (0, 1, None, "n=0: expected a positive int"),
    (True, 1, None, "n=True: expected a positive int"),
    (2.0, 1, None, "n=2.0: expected a positive int"),
    ("3", 1, None, "n='3': expected a positive int"),
    (-1, 0, None, "n=-1: expected an int >= 0"),
    (9, 1, 8, r"n=9: expected an int in \[1, 8\]"),
    (None, None, None, "n=None: expected an int"),
])
def test_check_int_refuses(value, minimum, maximum, message):
    with pytest.raises(ValueError, match=message):
        check_int("n", value, minimum, maximum)


def test_check_int_returns_a_python_int_and_takes_a_wording():
    out = check_int("n", np.int32(4))
    assert out == 4 and type(out) is int
    assert check_int("seed", 0, 0) == 0
    with pytest.raises(ValueError, match="n=1: expected a Python int >= 2"):
        check_int("n", 1, 2, expected="a Python int >= 2")


@pytest.mark.parametrize("value", [-0.1, 1.0, math.nan, math.inf, True, "0.5", None, [0.5]])
def test_check_in_range_refuses(value):
    with pytest.raises(ValueError, match=r"^p=.*: expected a value in \[0, 1\)$"):
        check_in_range("p", value, 0, 1, include_high=False)


def test_check_in_range_ends_and_arrays():
    assert check_in_range("p", 0, 0, 1) == 0.0
    assert check_in_range("p", np.float32(0.5), 0, 1) == 0.5
    assert check_in_range("p", jnp.asarray(0.25), 0, 1) == 0.25      # a concrete 0-d array
    with pytest.raises(ValueError, match=r"p=0: expected a value in \(0, 1\]"):
        check_in_range("p", 0, 0, 1, include_low=False)
    with pytest.raises(ValueError, match=r"expected a value in \[0, 1\]"):
        check_in_range("p", np.ones(2) / 2, 0, 1)                    # not a scalar
    with pytest.raises(ValueError, match="r=0: expected a positive finite number"):
        check_in_range("r", 0, 0, math.inf, include_low=False, expected="a positive finite number")


def test_check_probability():
    assert check_probability("w", 1) == 1.0
    for bad, kwargs in [(0.0, dict(include_zero=False)), (1.0, dict(include_one=False)),
                        (1.5, {})]:
        with pytest.raises(ValueError, match=f"w={bad}: expected a value in"):
            check_probability("w", bad, **kwargs)


@pytest.mark.parametrize("value", [(1, 1), (2, 1), (0, math.inf), (math.nan, 1), (0, 1, 2), 3,
                                   "ab", (True, 2), None])
def test_check_bounds_refuses(value):
    with pytest.raises(ValueError, match=r"r=.*: expected \(low, high\) with finite low < high"):
        check_bounds("r", value)


def test_check_bounds_passes():
    assert check_bounds("r", None, allow_none=True) is None
    assert check_bounds("r", np.array([-1, 1])) == (-1.0, 1.0)
    assert check_bounds("r", (jnp.asarray(0.0), 255)) == (0.0, 255.0)


def test_check_weight():
    check_weight("w", 0.0, 0.0)
    check_weight("w", jnp.asarray(-2.0))
    with pytest.raises(ValueError, match="w=-1.0: expected a finite number >= 0.0"):
        check_weight("w", -1.0, 0.0)
    with pytest.raises(TypeError, match="w='a' \\(str\\): expected a finite number"):
        check_weight("w", "a")


def test_check_scalar_fn():
    x = jax.ShapeDtypeStruct((3,), jnp.float32)
    out = check_scalar_fn("energy_fn", lambda p, x: jnp.sum(x) * p, 2.0, x)
    assert out.shape == () and out.dtype == jnp.float32
    with pytest.raises(ValueError, match="energy_fn=3: expected a callable"):
        check_scalar_fn("energy_fn", 3, None, x)
    with pytest.raises(ValueError, match=r"energy_fn returned \(3,\) \(dtype float32\) for one "
                                         r"example of shape \(3,\): expected a floating-point "
                                         "scalar"):
        check_scalar_fn("energy_fn", lambda p, x: x, None, x)
    with pytest.raises(ValueError, match=r"returned \(\) \(dtype int32\)"):
        check_scalar_fn("energy_fn", lambda p, x: jnp.sum(x).astype(jnp.int32), None, x)
    with pytest.raises(ValueError, match=r"energy_fn failed on one example of shape \(3,\) "
                                         r"\(TypeError: .*\): expected a per-example"):
        check_scalar_fn("energy_fn", lambda p, x: x @ jnp.ones(4), None, x)
    with pytest.raises(ValueError, match=r"log_prob\(x\) -> scalar"):
        check_scalar_fn("log_prob", lambda x: x, x, signature="log_prob(x) -> scalar")


def test_check_weight_takes_a_wording():
    with pytest.raises(ValueError, match=r"^s=-1.0: expected a number >= 0 \(finite\)$"):
        check_weight("s", -1.0, 0.0, expected="a number >= 0 (finite)")
    with pytest.raises(TypeError, match=r"s='a' \(str\): expected a number >= 0 \(finite\)"):
        check_weight("s", "a", 0.0, expected="a number >= 0 (finite)")


def test_check_choice_and_check_flag():
    assert check_choice("norm", "l2", ("linf", "l2")) == "l2"
    with pytest.raises(ValueError, match=r"objective='kl': expected one of \['ml', 'softplus'\]"):
        check_choice("objective", "kl", ["ml", "softplus"])
    assert check_flag("f", np.bool_(False)) is False
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match=f"f={bad!r}: expected True or False"):
            check_flag("f", bad)


def test_traced_values():
    seen = []

    @jax.jit
    def f(p):
        seen.append(is_traced(p))
        return check_probability("p", p, allow_traced=True)

    f(0.5)
    assert seen == [True] and not is_traced(0.5)
    with pytest.raises(ValueError, match="p=.*: expected a value in"):
        jax.jit(lambda p: check_probability("p", p))(0.5)


def test_check_scalar_fn_takes_a_hint():
    x = jax.ShapeDtypeStruct((4, 2), jnp.float32)
    with pytest.raises(ValueError, match=r"expected a floating-point scalar, .* \(use one\)$"):
        check_scalar_fn("energy_fn", lambda p, x: jnp.sum(x, -1), None, x, hint="use one")
    with pytest.raises(ValueError, match=r"(?s)failed on one example.* \(use one\)$"):
        check_scalar_fn("energy_fn", lambda p, x: x @ jnp.ones(3), None, x, hint="use one")
