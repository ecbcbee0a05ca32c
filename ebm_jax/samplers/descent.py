"""Gradient descent (or ascent) on an energy, as a kernel and a pure ``init/step`` sampler.

One step, from ``x`` with the chain's origin ``x_0`` (its starting point)::

    d   = ∇E(x)            (normalize=None: raw steps)
        | sign(∇E(x))      (normalize="sign": FGSM / L-inf steepest steps)
        | ∇E(x) / |∇E(x)|₂ (normalize="l2": L2 steepest steps)
    x'  = x - h d          (descent; x + h d with ascent=True)
    x'  = x' + s ε,        ε ~ N(0, I)                        (optional noise, s > 0)
    x'  = x_0 + Π_ε(x' - x_0)                                  (optional ball around x_0)
    x'  = clip(x', low, high)                                  (optional clamp)

``Π_ε`` projects onto the L-inf (elementwise clip) or L2 (radial shrink) ball of radius
``ε``. A step whose energy or gradient is NaN/inf leaves the position unchanged.

One sampler serves every gradient-following use of an energy in the toolkit:

* PGD attacks (:func:`~ebm_jax.metrics.pgd_attack`) and adversarial training
  (:mod:`ebm_jax.losses.adversarial`): ascent of a classification loss (descent of a target
  class's), sign or L2 steps, an epsilon ball, the data range, all through :func:`pgd_chain`;
* denoising (:func:`~ebm_jax.applications.denoise`): raw descent with a clamp;
* PGD-contrastive training: sign steps with a ball and noise;
* energy-minimisation inference ``y_hat = argmin_y E(x, y)``: descent on ``y`` with
  ``x`` a condition (``energy_fn(params, y, x)``).

As for the other samplers, :func:`descent_kernel` takes the step size (and the ball's
radius and the noise scale) as arguments, possibly traced, and :func:`descent` fixes them.
:func:`pgd_chain` is projected gradient descent/ascent as attacks run it: one chain from a
random start in the ball, ``num_steps`` kernel steps, the last position.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import (check_bounds, check_choice, check_flag, check_int,
                             check_positive_finite, check_weight)
from ebm_jax.energies import EnergyFn
from ebm_jax.samplers._gradients import (all_finite, check_floating, grad_norm,
                                         scalar_value_and_grad)
from ebm_jax.samplers.base import Sampler

NORMALIZATIONS = (None, "sign", "l2")
BALLS = (None, "linf", "l2")
PGD_NORMS = ("linf", "l2")
NON_NEGATIVE = "a number >= 0 (finite)"


class DescentState(NamedTuple):
    """One chain of :func:`descent`.

    Attributes:
      position: the current point, any shape ``[...]`` (floating point).
      origin: the chain's starting point (same shape), the centre of the epsilon ball.
    """

    position: jax.Array
    origin: jax.Array


class DescentInfo(NamedTuple):
    """Diagnostics of one step, measured at the position the step started from.

    Attributes:
      energy: scalar energy.
      grad_norm: L2 norm of the energy gradient.
      nonfinite: 1 if the energy or gradient was NaN/inf (the step then leaves the
        position unchanged), else 0.
    """

    energy: jax.Array
    grad_norm: jax.Array
    nonfinite: jax.Array


def project_to_ball(delta: jax.Array, epsilon, ball: str) -> jax.Array:
    """Project an offset ``delta`` (any shape, one example) onto the ``ball`` of radius
    ``epsilon``: an elementwise clip (``"linf"``) or a radial shrink (``"l2"``).

    Example::

      >>> project_to_ball(jnp.array([3.0, 4.0]), 1.0, "l2")
      Array([0.6, 0.8], dtype=float32)
    """
    if ball == "linf":
        return jnp.clip(delta, -epsilon, epsilon)
    norm_value = jnp.sqrt(jnp.sum(jnp.square(delta)))
    return delta * jnp.minimum(1.0, epsilon / jnp.maximum(norm_value, 1e-12))


def random_ball_offset(rng_key: jax.Array, shape, dtype, epsilon, ball: str) -> jax.Array:
    """A uniform draw from the ``ball`` (``"linf"`` or ``"l2"``) of radius ``epsilon``
    around 0, of ``shape`` (one example): PGD's random start is ``x + offset``.

    Example::

      >>> offset = random_ball_offset(jax.random.key(0), (3,), jnp.float32, 0.1, "linf")
      >>> bool(jnp.all(jnp.abs(offset) <= 0.1))
      True
    """
    if ball == "linf":
        return jax.random.uniform(rng_key, shape, dtype, -1.0, 1.0) * epsilon
    # Uniform in the L2 ball: a uniform direction and radius epsilon * U^(1/d).
    k_dir, k_rad = jax.random.split(rng_key)
    direction = jax.random.normal(k_dir, shape, dtype)
    direction = direction / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(direction))), 1e-12)
    dim = int(np.prod(shape))
    radius = epsilon * jax.random.uniform(k_rad, (), dtype) ** (1.0 / dim)
    return direction * radius


def descent_kernel(energy_fn: EnergyFn, *, normalize: Optional[str] = None,
                   ascent: bool = False, ball: Optional[str] = None,
                   clip_range: Optional[tuple[float, float]] = None,
                   noisy: bool = False) -> Callable:
    """The descent/ascent transition with the step size, radius and noise as arguments.

    Args:
      energy_fn: pure per-example ``energy_fn(params, x, *cond) -> scalar`` (any function
        to descend or ascend: an energy, a classification loss, ``E(x, y)`` in ``y``).
      normalize: ``None`` (raw gradient steps), ``"sign"`` (sign of the gradient, the
        L-inf steepest direction: FGSM) or ``"l2"`` (the gradient over its L2 norm).
      ascent: step up the gradient instead of down (attacks ascend a loss).
      ball: ``None``, ``"linf"`` or ``"l2"``: project every step onto the ball of radius
        ``epsilon`` around the chain's origin.
      clip_range: ``(low, high)``: clamp positions after every step (after the projection,
        so the result stays in the ball when the origin is in the range).
      noisy: add ``noise_scale * N(0, I)`` to every step (before the projection). Without
        it no random numbers are drawn and ``rng_key`` may be ``None``.

    Returns:
      ``kernel(rng_key, state, params, step_size, epsilon, noise_scale, *cond) ->
      (DescentState, DescentInfo)`` for one chain. ``step_size`` (``> 0``), ``epsilon``
      (``>= 0``; ignored, e.g. ``None``, without a ball) and ``noise_scale`` (``>= 0``;
      ignored without ``noisy``) may be traced scalars.

    Example::

      >>> fgsm = descent_kernel(lambda p, x: jnp.sum(p * x), normalize="sign", ascent=True,
      ...                       ball="linf")
      >>> x = jnp.zeros(3)
      >>> state, info = fgsm(None, DescentState(x, x), jnp.array([1.0, -2.0, 0.5]), 0.1, 0.05,
      ...                    None)
      >>> state.position
      Array([ 0.05, -0.05,  0.05], dtype=float32)
    """
    check_choice("normalize", normalize, NORMALIZATIONS)
    check_choice("ball", ball, BALLS)
    ascent = check_flag("ascent", ascent)
    noisy = check_flag("noisy", noisy)
    check_bounds("clip_range", clip_range, allow_none=True)
    value_and_grad = scalar_value_and_grad(energy_fn)

    def kernel(rng_key, state: DescentState, params, step_size, epsilon, noise_scale, *cond):
        x, origin = state
        check_floating(x)
        energy, grad = value_and_grad(params, x, *cond)
        finite = all_finite(energy, grad)
        norm = grad_norm(grad)
        if normalize == "sign":
            direction = jnp.sign(grad)
        elif normalize == "l2":
            direction = grad / jnp.maximum(norm, 1e-12)
        else:
            direction = grad
        new_x = x + step_size * direction if ascent else x - step_size * direction
        if noisy:
            new_x = new_x + noise_scale * jax.random.normal(rng_key, x.shape, x.dtype)
        if ball is not None:
            new_x = origin + project_to_ball(new_x - origin, epsilon, ball)
        if clip_range is not None:
            new_x = jnp.clip(new_x, clip_range[0], clip_range[1])
        new_x = jnp.where(finite, new_x, x)
        return DescentState(new_x, origin), DescentInfo(energy, norm,
                                                        (~finite).astype(jnp.int32))

    return kernel


def descent(energy_fn: EnergyFn, step_size: float, *, normalize: Optional[str] = None,
            ascent: bool = False, ball: Optional[str] = None, epsilon: Optional[float] = None,
            clip_range: Optional[tuple[float, float]] = None,
            noise_scale: Optional[float] = None) -> Sampler:
    """Build a gradient descent/ascent sampler for the per-example ``energy_fn``.

    Args:
      energy_fn: pure per-example ``energy_fn(params, x, *cond) -> scalar``.
      step_size: ``h > 0``. A Python/NumPy number is checked here; a JAX array (e.g. a
        traced sweep) is used as is.
      normalize: ``None``, ``"sign"`` or ``"l2"`` (see :func:`descent_kernel`).
      ascent: step up the gradient instead of down.
      ball: ``None``, ``"linf"`` or ``"l2"``: keep every chain within ``epsilon`` of its
        origin (where ``init`` started it).
      epsilon: the ball's radius (``>= 0``), required with ``ball`` and only with it.
      clip_range: ``(low, high)``: clamp positions after every step.
      noise_scale: if given (``>= 0``), add ``noise_scale * N(0, I)`` to every step.

    Returns:
      A :class:`~ebm_jax.samplers.Sampler`: ``init(position, params=None, *cond) ->
      DescentState`` (origin = position) and ``step(rng_key, state, params, *cond) ->
      (DescentState, DescentInfo)``. To start away from the origin (PGD's random start),
      build ``DescentState(origin + random_ball_offset(...), origin)`` directly.

    Example::

      >>> from ebm_jax.samplers import init_chains, run_chains
      >>> energy = lambda p, x: 0.5 * jnp.sum((x - p) ** 2)
      >>> sampler = descent(energy, 0.5)
      >>> states = init_chains(sampler, jnp.zeros((4, 2)), jnp.ones(2))
      >>> states, info = run_chains(jax.random.key(0), sampler, states, jnp.ones(2), 50)
      >>> bool(jnp.allclose(states.position, 1.0))
      True
    """
    check_positive_finite("step_size", step_size)
    if ball is None and epsilon is not None:
        raise ValueError(f"epsilon={epsilon!r} with ball=None: expected ball='linf' or 'l2' "
                         "(the radius is of the ball around each chain's origin)")
    if ball is not None:
        if epsilon is None:
            raise ValueError(f"epsilon=None with ball={ball!r}: expected the ball's radius, a "
                             "number >= 0")
        check_weight("epsilon", epsilon, 0.0, expected=NON_NEGATIVE)
    if noise_scale is not None:
        check_weight("noise_scale", noise_scale, 0.0, expected=NON_NEGATIVE)
    kernel = descent_kernel(energy_fn, normalize=normalize, ascent=ascent, ball=ball,
                            clip_range=clip_range, noisy=noise_scale is not None)

    def init(position, params=None, *cond) -> DescentState:
        del params, cond  # nothing is cached
        position = jnp.asarray(position)
        check_floating(position)
        return DescentState(position, position)

    def step(rng_key, state: DescentState, params, *cond):
        return kernel(rng_key, state, params, step_size, epsilon, noise_scale, *cond)

    return Sampler(init, step, support=check_bounds("clip_range", clip_range, allow_none=True))


def pgd_chain(rng_key: Optional[jax.Array], fn: Callable, params, x0: jax.Array, *cond,
              norm: str, epsilon, step_size, num_steps: int, ascent: bool = True,
              random_start: bool = True,
              clip_range: Optional[tuple[float, float]] = None) -> jax.Array:
    """Projected gradient descent (PGD, Madry et al. 2018) of ``fn`` around one example.

    The chain starts at ``clip(x0 + u)``, ``u`` uniform in the ``norm`` ball of radius
    ``epsilon`` (:func:`random_ball_offset`; at ``x0`` without ``random_start``), and takes
    ``num_steps`` steps of :func:`descent_kernel` with sign (``"linf"``) or L2-normalised
    (``"l2"``) steps up (``ascent``) or down the gradient of ``fn``, each projected onto the
    ball around ``x0`` and clamped to ``clip_range``. This is the one PGD loop of the
    toolkit: attacks (:func:`~ebm_jax.metrics.pgd_attack`) and adversarial training
    (:mod:`ebm_jax.losses.adversarial`) run it with their own ``fn``.

    Args:
      rng_key: key of the random start (``None`` is allowed without ``random_start``).
      fn: pure ``fn(params, x, *cond) -> scalar`` (a classification loss, a KL, an energy).
      params: its params; ``cond``: its other per-example arguments (a label, a target
        distribution).
      x0: one example, any shape (floating point): the ball's centre.
      norm: ``"linf"`` or ``"l2"`` (over all features of the example).
      epsilon: the ball's radius (``>= 0``); ``step_size``: the step length (``> 0``); both
        may be traced.
      num_steps: a Python int ``>= 0`` (0 returns the start).
      ascent: step up the gradient (an untargeted attack) or down (a targeted one).
      random_start: start uniformly at random in the ball, else at ``x0``.
      clip_range: ``(low, high)`` data range, or ``None``.

    Returns:
      The last position, shaped like ``x0``: ``||x - x0||_norm <= epsilon`` (up to float
      rounding) and inside ``clip_range``. Batch examples with ``jax.vmap`` (one key each).

    Example::

      >>> fn = lambda w, x: jnp.dot(w, x)                     # a linear score, pushed up
      >>> x = pgd_chain(None, fn, jnp.array([1.0, -2.0]), jnp.zeros(2), norm="linf",
      ...               epsilon=0.1, step_size=0.05, num_steps=5, random_start=False)
      >>> x
      Array([ 0.1, -0.1], dtype=float32)
    """
    norm = check_choice("norm", norm, PGD_NORMS)
    num_steps = check_int("num_steps", num_steps, 0)
    ascent = check_flag("ascent", ascent)
    random_start = check_flag("random_start", random_start)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True)
    x0 = jnp.asarray(x0)
    check_floating(x0)
    kernel = descent_kernel(fn, normalize="sign" if norm == "linf" else "l2", ascent=ascent,
                            ball=norm, clip_range=clip_range)
    epsilon = jnp.asarray(epsilon, x0.dtype)
    step_size = jnp.asarray(step_size, x0.dtype)
    if random_start:
        start = x0 + project_to_ball(random_ball_offset(rng_key, x0.shape, x0.dtype, epsilon,
                                                        norm), epsilon, norm)
    else:
        start = x0
    if clip_range is not None:
        start = jnp.clip(start, clip_range[0], clip_range[1])

    def step(_, state):
        return kernel(None, state, params, step_size, epsilon, None, *cond)[0]

    return jax.lax.fori_loop(0, num_steps, step, DescentState(start, x0)).position
