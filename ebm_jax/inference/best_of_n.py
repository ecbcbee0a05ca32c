"""Best-of-N inference: minimise ``E(x, y)`` from ``N`` starts, keep the lowest final energy.

A non-convex energy has several basins; one descent finds the one its start lies in.
:func:`best_of_n` runs :func:`~ebm_jax.inference.minimize` from ``N`` starts at once (a
``jax.vmap``: one program for all of them) and returns the output of lowest final energy,
its index and all ``N`` results.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_int
from ebm_jax.inference._common import (check_candidates, check_energy_takes, check_floating,
                                       shape_of)
from ebm_jax.inference.minimize import (MinimizeResult, check_option_names, check_options,
                                        minimize)


class BestOfN(NamedTuple):
    """What :func:`best_of_n` returns for one input.

    Attributes:
      y: the pick, ``[*y_shape]``: the final output of lowest energy.
      energy: its scalar energy.
      index: ``int32`` scalar, the start it came from.
      results: every start's :class:`~ebm_jax.inference.MinimizeResult`, with a leading
        axis ``[n]`` (``results.y [n, *y_shape]``, ``results.energies [n, num_steps + 1]``).
    """

    y: jax.Array
    energy: jax.Array
    index: jax.Array
    results: MinimizeResult


def best_of_n(rng_key: jax.Array, energy_fn: Callable, params: Any, x: Any,
              sample_start: Union[Callable, jax.Array], n: Optional[int] = None, *cond: Any,
              **minimize_kwargs: Any) -> BestOfN:
    """Minimise ``energy_fn(params, x, y, *cond)`` from ``n`` starts and keep the best.

    Args:
      rng_key: a PRNG key: split for the starts and (with ``noise_scale``) the chains' noise.
      energy_fn: pure per-example ``energy_fn(params, x, y, *cond) -> scalar``.
      params: the energy's parameters.
      x: one input (``jax.vmap`` for a batch).
      sample_start: ``sample_start(key) -> y0`` (one start ``[*y_shape]``, drawn ``n``
        times), or the starts themselves, an array ``[n, *y_shape]``.
      n: the number of starts, ``>= 1``; with an array of starts it may be omitted (it is
        the array's length; if given, it must equal it).
      *cond: further conditions of the energy.
      **minimize_kwargs: the keywords of :func:`~ebm_jax.inference.minimize`
        (``num_steps`` and ``step_size`` required; the chains' keys come from ``rng_key``).

    Returns:
      :class:`BestOfN` ``(y, energy, index, results)``. A start whose final energy is NaN
      is never picked (unless all are).

    Raises:
      ValueError: no ``rng_key``; ``n < 1`` or not an int; starts whose length is not ``n``; a
        ``sample_start`` that is neither callable nor an array; starts the energy cannot
        take; any refusal of :func:`~ebm_jax.inference.minimize` (all before any compute).
      TypeError: a keyword that :func:`~ebm_jax.inference.minimize` does not take.

    Example: a double well whose left well is deeper; half the starts end in the right one::

      >>> energy = lambda p, x, y: (y ** 2 - 1.0) ** 2 + 0.3 * y
      >>> starts = lambda key: jax.random.uniform(key, (), minval=-2.0, maxval=2.0)
      >>> solve = jax.jit(lambda key: best_of_n(key, energy, None, None, starts, 8,
      ...                                       num_steps=100, step_size=0.05))
      >>> out = solve(jax.random.key(0))
      >>> round(float(out.y), 2), out.results.y.shape
      (-1.04, (8,))
    """
    if rng_key is None:
        raise ValueError("rng_key=None: expected a PRNG key (jax.random.key(...)), split for "
                         "the starts and the chains")
    check_option_names("best_of_n", minimize_kwargs)
    for required in ("num_steps", "step_size"):
        if required not in minimize_kwargs:
            raise TypeError(f"best_of_n needs {required}=...: a keyword of minimize")
    check_options(minimize_kwargs["num_steps"], minimize_kwargs["step_size"],
                  minimize_kwargs.get("noise_scale", 0.0), rng_key)
    if callable(sample_start):
        n = check_int("n", n, expected="a positive int (the number of starts)")
        try:  # a split key has the shape and dtype of rng_key: traced, not drawn
            one = jax.eval_shape(sample_start, rng_key)
        except (TypeError, ValueError) as err:
            raise ValueError(f"sample_start failed on one key ({type(err).__name__}: {err}): "
                             "expected sample_start(key) -> y0, one start") from err
        check_floating("sample_start(key)", one)
        check_energy_takes("sample_start(key)", energy_fn, params, x, one, *cond)
    else:
        if not hasattr(sample_start, "shape"):
            raise ValueError(f"sample_start={sample_start!r}: expected a callable "
                             "sample_start(key) -> y0 or an array of starts [n, *y_shape]")
        shape = shape_of(sample_start)
        if n is None and len(shape) > 0:
            n = shape[0]
        n = check_int("n", n, expected="a positive int (the number of starts)")
        if len(shape) == 0 or shape[0] != n:
            raise ValueError(f"sample_start has shape {shape}: expected n={n} starts "
                             f"[{n}, *y_shape]")
        check_floating("sample_start", sample_start)
        check_candidates("sample_start", energy_fn, params, x, sample_start, *cond)
    start_key, chain_key = jax.random.split(rng_key)
    if callable(sample_start):
        starts = jax.vmap(sample_start)(jax.random.split(start_key, n))
    else:
        starts = jnp.asarray(sample_start)

    def one_start(y0, key):
        return minimize(energy_fn, params, x, y0, *cond, rng_key=key, **minimize_kwargs)

    results = jax.vmap(one_start)(starts, jax.random.split(chain_key, n))
    final = jnp.where(jnp.isnan(results.energy), jnp.inf, results.energy)
    index = jnp.argmin(final).astype(jnp.int32)
    return BestOfN(results.y[index], results.energy[index], index, results)


__all__ = ["BestOfN", "best_of_n"]
