"""Energy-minimisation inference: ``y_hat = argmin_y E(x, y)`` by gradient descent on ``y``.

For a conditional energy ``energy_fn(params, x, y, *cond) -> scalar`` (one input ``x``, one
candidate output ``y``; low energy = compatible), :func:`minimize` runs the toolkit's
descent sampler (:func:`~ebm_jax.samplers.descent`) on ``y`` with ``x`` as its condition::

    y_{k+1} = clip(y_k - h ∇_y E(x, y_k) + s ε_k),   ε_k ~ N(0, I)   (s = 0: plain descent)

for ``num_steps`` steps from a given start ``y0``, one ``lax.scan``. Everything is pure and
per example: batch over inputs (or starts) with ``jax.vmap``, compile with ``jax.jit``, and
differentiate through the whole descent with ``jax.grad`` (with respect to ``params``, ``x``,
``y0`` or a traced ``step_size``: a learned step size, or the energy-based-transformer
style of training through the inference). Call it inside ``jax.jit``: eagerly, each call
traces and compiles its scan anew.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_int, check_positive_finite, check_weight, is_traced
from ebm_jax.inference._common import check_energy_takes, check_floating
from ebm_jax.samplers.base import run_chain
from ebm_jax.samplers.descent import descent

# the keywords minimize takes besides its positional arguments (best_of_n and the latent
# functions pass them through)
OPTIONS = ("num_steps", "step_size", "noise_scale", "clip_range", "normalize", "ball",
           "epsilon", "rng_key", "unroll")


class MinimizeResult(NamedTuple):
    """What :func:`minimize` returns for one input (``jax.vmap`` adds leading axes).

    Attributes:
      y: the final output, ``[*y_shape]`` (the shape of ``y0``).
      energy: scalar ``E(x, y)`` at the final ``y``.
      energies: ``[num_steps + 1]``: the energy at ``y0`` and after every step
        (``energies[-1] == energy``).
    """

    y: jax.Array
    energy: jax.Array
    energies: jax.Array


def y_energy(energy_fn: Callable) -> Callable:
    """``energy_fn(params, x, y, *cond)`` as the sampler protocol's ``(params, y, x, *cond)``:
    the position ``y`` second, the input ``x`` first of the conditions."""

    def energy_of_y(params, y, x, *cond):
        return energy_fn(params, x, y, *cond)

    return energy_of_y


def check_options(num_steps: Any, step_size: Any, noise_scale: Any, rng_key: Any) -> tuple:
    """Check the descent's options before any compute: ``(num_steps, noisy)``."""
    num_steps = check_int("num_steps", num_steps,
                          expected="a positive Python int (the number of descent steps)")
    check_positive_finite("step_size", step_size)
    check_weight("noise_scale", noise_scale, 0.0, expected="a number >= 0 (finite)")
    noisy = is_traced(noise_scale) or float(noise_scale) > 0
    if noisy and rng_key is None:
        raise ValueError(f"rng_key=None with noise_scale={noise_scale!r}: expected a PRNG key "
                         "(jax.random.key(...)) to draw the noise from")
    return num_steps, noisy


def check_option_names(function: str, kwargs: dict) -> None:
    unknown = sorted(set(kwargs) - set(OPTIONS))
    if unknown:
        raise TypeError(f"{function} got {unknown}: expected keywords of minimize, among "
                        f"{list(OPTIONS)}")


def minimize(energy_fn: Callable, params: Any, x: Any, y0: jax.Array, *cond: Any,
             num_steps: int, step_size: Any, noise_scale: Any = 0.0,
             clip_range: Optional[tuple[float, float]] = None, normalize: Optional[str] = None,
             ball: Optional[str] = None, epsilon: Any = None,
             rng_key: Optional[jax.Array] = None, unroll: int = 1) -> MinimizeResult:
    """Descend ``energy_fn(params, x, y, *cond)`` in ``y`` from ``y0``, for one input ``x``.

    The steps are those of the descent sampler (:func:`~ebm_jax.samplers.descent`, run by
    :func:`~ebm_jax.samplers.run_chain`): ``y <- clip(y - step_size * ∇_y E + noise_scale *
    N(0, I))``. A step whose energy or gradient is not finite leaves ``y`` where it was.

    Args:
      energy_fn: pure per-example ``energy_fn(params, x, y, *cond) -> scalar`` (low =
        compatible).
      params: the energy's parameters (any pytree).
      x: one input (any shape; ``jax.vmap`` for a batch).
      y0: the start, ``[*y_shape]``, floating point: one output that ``energy_fn`` takes.
      *cond: further conditions, passed to every energy call after ``y``.
      num_steps: the number of steps, a positive Python int (the scan length).
      step_size: ``h > 0``; a Python number is checked, a JAX value (traced, e.g. a learned
        step size under ``jax.grad``) is used as is.
      noise_scale: ``s >= 0``: Langevin-style noise added to every step (``rng_key``
        required when it is not the constant 0).
      clip_range: ``(low, high)``: clamp ``y`` after every step (``y0`` is taken as given).
      normalize: ``None`` (raw gradient steps), ``"sign"`` or ``"l2"`` (see
        :func:`~ebm_jax.samplers.descent_kernel`).
      ball, epsilon: ``"linf"`` or ``"l2"`` with its radius: keep ``y`` within ``epsilon``
        of ``y0`` (a projection after every step).
      rng_key: a PRNG key for the noise; unused (may be None) without it.
      unroll: ``lax.scan``'s unroll factor.

    Returns:
      :class:`MinimizeResult` ``(y, energy, energies)``: the final ``y``, its energy, and the
      energies at ``y0`` and after each step ``[num_steps + 1]``.

    Raises:
      ValueError: ``num_steps`` not a positive int; a non-positive Python ``step_size``; a
        negative ``noise_scale``; noise without ``rng_key``; ``y0`` not floating point, or of
        a shape the energy cannot take for ``x`` to a scalar (``jax.eval_shape``: checked
        before any compute).

    Example::

      >>> A = jnp.array([[2.0, 0.0], [0.0, -1.0]])
      >>> energy = lambda A, x, y: 0.5 * jnp.sum((y - A @ x) ** 2)
      >>> out = minimize(energy, A, jnp.array([1.0, 1.0]), jnp.zeros(2), num_steps=40,
      ...                step_size=0.5)
      >>> out.y.round(4).tolist(), out.energies.shape
      ([2.0, -1.0], (41,))

    A batch of inputs (each from its own start) is a ``jax.vmap``, compiled once::

      >>> xs = jnp.array([[1.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
      >>> solve = jax.jit(jax.vmap(lambda x, y0: minimize(energy, A, x, y0, num_steps=40,
      ...                                                 step_size=0.5)))
      >>> solve(xs, jnp.zeros((3, 2))).y.round(4).tolist()
      [[2.0, -1.0], [0.0, -2.0], [6.0, 0.0]]
    """
    num_steps, noisy = check_options(num_steps, step_size, noise_scale, rng_key)
    y0 = jnp.asarray(y0)
    check_floating("y0", y0)
    check_energy_takes("y0", energy_fn, params, x, y0, *cond)
    # An array step size or noise scale of another float dtype (a float64 learned step size
    # under x64) would change the position's dtype along the scan: take y0's.
    step_size, noise_scale = (jnp.asarray(v).astype(y0.dtype) if hasattr(v, "dtype") else v
                              for v in (step_size, noise_scale))
    sampler = descent(y_energy(energy_fn), step_size, normalize=normalize, ball=ball,
                      epsilon=epsilon, clip_range=clip_range,
                      noise_scale=noise_scale if noisy else None)
    # Without noise no random number is drawn: run_chain only splits this key.
    key = jax.random.key(0) if rng_key is None else rng_key
    state, info = run_chain(key, sampler, sampler.init(y0), params, num_steps, x, *cond,
                            unroll=unroll, trace=True)
    energy = jnp.asarray(energy_fn(params, x, state.position, *cond)).astype(info.energy.dtype)
    return MinimizeResult(state.position, energy,
                          jnp.concatenate([info.energy, energy[None]]))


__all__ = ["MinimizeResult", "minimize"]
