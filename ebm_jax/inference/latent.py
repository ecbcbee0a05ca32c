"""Inference with a latent variable: ``(y_hat, z_hat) = argmin_{y, z} E(x, y, z)``.

For ``energy_fn(params, x, y, z, *cond) -> scalar``, :func:`minimize_latent` descends the
output and the latent jointly: ``(y, z)`` travel as one flat vector through the descent
sampler (which moves one array), so one step is ``(y, z) <- (y, z) - h ∇_{(y, z)} E``. A
latent that picks among several answers (a mode of a multimodal ``p(y | x)``) gives several
outputs for one input from several latent starts: :func:`latent_outputs`, a ``jax.vmap``
over ``z0``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax.inference._common import check_energy_takes, check_floating, shape_of
from ebm_jax.inference.minimize import check_option_names, check_options, minimize

SIGNATURE = "energy_fn(params, x, y, z, *cond) -> scalar"


class LatentResult(NamedTuple):
    """What :func:`minimize_latent` returns for one input and one start (``jax.vmap``, as in
    :func:`latent_outputs`, adds leading axes).

    Attributes:
      y: the final output ``[*y_shape]``.
      z: the final latent ``[*z_shape]``.
      energy: scalar ``E(x, y, z)`` there.
      energies: ``[num_steps + 1]``, at the start and after every step.
    """

    y: jax.Array
    z: jax.Array
    energy: jax.Array
    energies: jax.Array


def _check_latent(energy_fn, params, x, y0, z0, cond, kwargs, function):
    check_option_names(function, kwargs)
    for required in ("num_steps", "step_size"):
        if required not in kwargs:
            raise TypeError(f"{function} needs {required}=...: a keyword of minimize")
    check_options(kwargs["num_steps"], kwargs["step_size"], kwargs.get("noise_scale", 0.0),
                  kwargs.get("rng_key"))
    check_floating("y0", y0)
    check_floating("z0", z0)


def _check_takes(energy_fn, params, x, y0, z0, cond):
    # z0 goes where the conditions go: energy_fn(params, x, y, z, *cond)
    check_energy_takes("y0", energy_fn, params, x, y0, z0, *cond,
                       what=f"it with z0 of shape {shape_of(z0)}", signature=SIGNATURE)


def minimize_latent(energy_fn: Callable, params: Any, x: Any, y0: jax.Array, z0: jax.Array,
                    *cond: Any, **minimize_kwargs: Any) -> LatentResult:
    """Descend ``energy_fn(params, x, y, z, *cond)`` jointly in ``(y, z)`` from ``(y0, z0)``.

    Args:
      energy_fn: pure per-example ``energy_fn(params, x, y, z, *cond) -> scalar``.
      params: the energy's parameters.
      x: one input.
      y0: the output's start ``[*y_shape]``, floating point.
      z0: the latent's start ``[*z_shape]``, floating point.
      *cond: further conditions of the energy.
      **minimize_kwargs: the keywords of :func:`~ebm_jax.inference.minimize`
        (``num_steps``, ``step_size`` required; ``noise_scale``, ``rng_key``, ...). One step
        size serves both; ``clip_range`` clamps both, and a ``ball`` bounds the pair's
        offset from ``(y0, z0)`` (as one vector).

    Returns:
      :class:`LatentResult` ``(y, z, energy, energies)``.

    Raises:
      ValueError: ``y0`` or ``z0`` not floating point, or of shapes the energy cannot take
        for ``x``; any refusal of :func:`~ebm_jax.inference.minimize` (before any compute).

    Example::

      >>> energy = lambda p, x, y, z: jnp.sum((y - x - z) ** 2) + jnp.sum(z ** 2)
      >>> solve = jax.jit(lambda x, y0, z0: minimize_latent(energy, None, x, y0, z0,
      ...                                                   num_steps=60, step_size=0.2))
      >>> out = solve(jnp.ones(2), jnp.zeros(2), jnp.ones(2))
      >>> out.y.round(3).tolist(), float(jnp.abs(out.z).max()) < 1e-3
      ([1.0, 1.0], True)
    """
    y0, z0 = jnp.asarray(y0), jnp.asarray(z0)
    _check_latent(energy_fn, params, x, y0, z0, cond, minimize_kwargs, "minimize_latent")
    _check_takes(energy_fn, params, x, y0, z0, cond)
    dtype = jnp.result_type(y0, z0)
    y_shape, z_shape = shape_of(y0), shape_of(z0)
    y_size = int(np.prod(y_shape))

    def joint_energy(params, x, v, *cond):
        y = v[:y_size].reshape(y_shape).astype(y0.dtype)
        z = v[y_size:].reshape(z_shape).astype(z0.dtype)
        return energy_fn(params, x, y, z, *cond)

    v0 = jnp.concatenate([y0.ravel().astype(dtype), z0.ravel().astype(dtype)])
    out = minimize(joint_energy, params, x, v0, *cond, **minimize_kwargs)
    y = out.y[:y_size].reshape(y_shape).astype(y0.dtype)
    z = out.y[y_size:].reshape(z_shape).astype(z0.dtype)
    return LatentResult(y, z, out.energy, out.energies)


def latent_outputs(energy_fn: Callable, params: Any, x: Any, y0: jax.Array, z0s: jax.Array,
                   *cond: Any, **minimize_kwargs: Any) -> LatentResult:
    """Several outputs for one input: :func:`minimize_latent` from each latent start
    ``z0s [K, *z_shape]`` (a ``jax.vmap``), every one from the same ``y0``.

    With ``noise_scale``, ``rng_key`` is split into one key per start.

    Returns:
      :class:`LatentResult` with a leading axis ``[K]`` on every field.

    Raises:
      ValueError: ``z0s`` without a leading axis of starts, or empty; as
        :func:`minimize_latent` for one start.

    Example: ``E = (y - z)^2 + (z^2 - 1)^2`` holds two answers, ``y = ±1``::

      >>> energy = lambda p, x, y, z: (y - z) ** 2 + (z ** 2 - 1.0) ** 2
      >>> solve = jax.jit(lambda z0s: latent_outputs(energy, None, None, jnp.array(0.0), z0s,
      ...                                            num_steps=100, step_size=0.1))
      >>> out = solve(jnp.array([-0.5, 0.5]))
      >>> out.y.round(2).tolist()
      [-1.0, 1.0]
    """
    y0, z0s = jnp.asarray(y0), jnp.asarray(z0s)
    shape = shape_of(z0s)
    if len(shape) == 0 or shape[0] == 0:
        raise ValueError(f"z0s has shape {shape}: expected a non-empty stack of latent starts "
                         "[K, *z_shape] (K >= 1)")
    one = jax.ShapeDtypeStruct(shape[1:], z0s.dtype)
    _check_latent(energy_fn, params, x, y0, one, cond, minimize_kwargs, "latent_outputs")
    _check_takes(energy_fn, params, x, y0, one, cond)
    kwargs = dict(minimize_kwargs)
    key = kwargs.pop("rng_key", None)
    keys = jax.random.split(jax.random.key(0) if key is None else key, shape[0])

    def one_start(z0, k):
        return minimize_latent(energy_fn, params, x, y0, z0, *cond,
                               rng_key=None if key is None else k, **kwargs)

    return jax.vmap(one_start)(z0s, keys)


__all__ = ["LatentResult", "latent_outputs", "minimize_latent"]
