"""Inpainting and denoising with an energy, and how to score them.

A **mask** marks the pixels to fill: ``1`` = missing (sampled), ``0`` = observed (held
exactly fixed). Masks have the rank of the images they go with, ``[B or 1, D...]``,
and any axis may be 1 to broadcast (a ``[1, H, W, 1]`` mask hides the same pixels,
all channels, in every image of a ``[B, H, W, C]`` batch).

* :func:`inpaint` samples the missing pixels from ``p(x_missing | x_observed)`` by
  Langevin dynamics (SGLD, or any sampler built on :func:`masked_energy`, e.g. MALA)
  over the missing pixels only: the energy is evaluated at
  ``where(mask, z, x_observed)``, so its gradient is zero on the observed pixels, and
  the observed pixels are reset after every step; they come back bit-identical.
* :func:`progressive_inpaint` fills them by progressive sampling through a diffusion's
  noise levels (recovery likelihood's and CDRL's level energies, CDRL's initializer as the
  chain start): the observed pixels at each level are the observation diffused to it.
* :func:`denoise` descends the energy (gradient descent, no noise) towards a mode, with
  the descent sampler :func:`~ebm_jax.samplers.descent`.
* :func:`reconstruction_error` scores a fill by its mean squared error over the
  masked pixels only, and the PSNR.
* :func:`half_image_mask`, :func:`box_mask` and :func:`random_pixel_mask` make masks.

Example::

  >>> mask = half_image_mask((8, 8), "bottom").reshape(1, 64)    # digits are [B, 64]
  >>> energy_fn = lambda params, x: 0.5 * jnp.sum((x - params) ** 2)   # a toy: a Gaussian
  >>> params, x_test = jnp.zeros(64), jnp.full((2, 64), 0.4)
  >>> filled = inpaint(jax.random.key(0), energy_fn, params, x_test, mask,
  ...                  num_steps=100, step_size=1.0, noise_scale=0.01, clip_range=(-1, 1))
  >>> bool(jnp.all(filled[:, :32] == x_test[:, :32]))     # observed pixels come back exactly
  True
  >>> round(float(reconstruction_error(filled, x_test, mask).mse), 2)   # filled near 0
  0.16
"""
from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import (check_bounds, check_choice, check_int, check_positive_finite,
                             check_probability, check_scalar_fn, is_traced)
from ebm_jax.energies import EnergyFn
from ebm_jax.samplers.base import Sampler, init_chains, run_chains
from ebm_jax.samplers.descent import descent
from ebm_jax.samplers.langevin import langevin
from ebm_jax.samplers.recovery import progressive_sample

__all__ = [
    "ReconstructionError",
    "box_mask",
    "denoise",
    "half_image_mask",
    "inpaint",
    "masked_energy",
    "progressive_inpaint",
    "random_pixel_mask",
    "reconstruction_error",
]


# -- validation helpers -----------------------------------------------------------------

NUM_STEPS = "a positive Python int"
RANGE = "(low, high) with low < high"


def _check_batch(x: Any, name: str) -> jax.Array:
    """``x`` as a floating-point ``[B, D...]`` array."""
    if getattr(x, "shape", None) is None:
        x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: expected a batch [B, D...] with "
                         "B >= 1 (one example is [1, D...])")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} has dtype {x.dtype}: expected a floating-point array")
    return jnp.asarray(x)


def _check_mask(mask: Any, shape: tuple, against: str, name: str = "mask") -> jax.Array:
    """A 0/1 (or bool) mask broadcastable to ``shape`` along equal rank -> bool ``shape``."""
    if getattr(mask, "shape", None) is None:
        mask = np.asarray(mask)
    m_shape = tuple(mask.shape)
    expected = "(" + ", ".join(f"{s} or 1" for s in shape) + ")"
    if len(m_shape) != len(shape) or any(m not in (1, s) for m, s in zip(m_shape, shape)):
        raise ValueError(
            f"{name} has shape {m_shape}: expected {expected} to match {against} of shape "
            f"{tuple(shape)} (same rank; an axis of 1 broadcasts; 1 = missing pixel)")
    if not is_traced(mask):
        values = np.asarray(mask)
        if values.dtype != np.bool_:
            bad = values[(values != 0) & (values != 1)]
            if bad.size:
                raise ValueError(
                    f"{name} has values other than 0 and 1 (e.g. {bad.reshape(-1)[0].item()!r}): "
                    "expected 1 = missing pixel to fill, 0 = observed pixel")
    return jnp.broadcast_to(jnp.asarray(mask).astype(bool), shape)


def _check_cond(cond: Any, batch: int) -> tuple:
    if not isinstance(cond, (tuple, list)):
        raise ValueError(f"cond is a {type(cond).__name__}: expected a tuple of per-example "
                         f"arrays with leading axis {batch}")
    out = []
    for i, c in enumerate(cond):
        c = c if getattr(c, "shape", None) is not None else np.asarray(c)
        if c.ndim < 1 or c.shape[0] != batch:
            raise ValueError(f"cond[{i}] has shape {tuple(c.shape)}: expected a leading batch "
                             f"axis of {batch} ([{batch}, ...], one per example)")
        out.append(jnp.asarray(c))
    return tuple(out)


# -- inpainting -----------------------------------------------------------------------

def masked_energy(energy_fn: EnergyFn) -> EnergyFn:
    """The energy of the missing pixels given the observed ones, for building samplers.

    ``E_c(params, z, x_observed, mask, *cond) = E(params, where(mask, z, x_observed), *cond)``:
    it depends on ``z`` only through the masked pixels, so ``∇_z E_c`` is exactly zero on
    the observed ones, and ``exp(-E_c)`` restricted to the masked pixels is
    ``p(x_missing | x_observed)`` up to a constant. Build a :class:`Sampler` on it to use
    one other than SGLD in :func:`inpaint` (``x_observed`` and ``mask`` are its conds).

    Example::

      >>> from ebm_jax.samplers import mala
      >>> energy_fn = lambda params, x: 0.5 * jnp.sum((x - params) ** 2)
      >>> x_observed, mask = jnp.ones((4, 2)), jnp.array([[1.0, 0.0]])   # fill pixel 0
      >>> sampler = mala(masked_energy(energy_fn), step_size=0.05)
      >>> filled = inpaint(jax.random.key(0), sampler, jnp.zeros(2), x_observed, mask,
      ...                  num_steps=200)
      >>> bool(jnp.all(filled[:, 1] == 1.0))
      True
    """
    if not callable(energy_fn):
        raise ValueError(f"energy_fn is a {type(energy_fn).__name__}: expected a callable "
                         "energy_fn(params, x, *cond)")

    def energy(params, z, x_observed, mask, *cond):
        return energy_fn(params, jnp.where(mask, z, x_observed), *cond)

    return energy


def _initial_fill(rng_key, init, x_observed, mask, clip_range, check_only=False):
    """The starting values (of every pixel; only the masked ones are used).

    With ``check_only`` a string ``init`` is only validated (no compute)."""
    shape = x_observed.shape
    if isinstance(init, str):
        if check_only and init in ("noise", "mean"):
            return None
        if init == "noise":
            if clip_range is None:
                return jax.random.normal(rng_key, shape, x_observed.dtype)
            return jax.random.uniform(rng_key, shape, x_observed.dtype, clip_range[0],
                                      clip_range[1])
        if init == "mean":
            axes = tuple(range(1, len(shape)))
            observed = ~mask
            total = jnp.sum(jnp.where(observed, x_observed, 0.0), axis=axes, keepdims=True)
            count = jnp.sum(observed, axis=axes, keepdims=True)
            mean = jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)
            return jnp.broadcast_to(mean, shape).astype(x_observed.dtype)
    elif getattr(init, "shape", None) is not None or isinstance(init, (list, tuple)):
        init_arr = init if getattr(init, "shape", None) is not None else np.asarray(init)
        if tuple(init_arr.shape) != tuple(shape):
            raise ValueError(f"init has shape {tuple(init_arr.shape)}: expected {tuple(shape)}, "
                             "the shape of x_observed")
        return jnp.asarray(init_arr, x_observed.dtype)
    raise ValueError(f"init={init!r}: expected 'noise', 'mean' or an array of shape "
                     f"{tuple(shape)}")


def inpaint(rng_key: jax.Array, sampler_or_energy: Union[Sampler, EnergyFn], params: Any,
            x_observed: jax.Array, mask: jax.Array, *, num_steps: int,
            step_size: Optional[float] = None, noise_scale: Optional[float] = None,
            temperature: Optional[float] = None, grad_clip: Optional[float] = None,
            init: Union[str, jax.Array] = "noise",
            clip_range: Optional[tuple[float, float]] = None, cond: Sequence = ()) -> jax.Array:
    """Fill the masked pixels by Langevin dynamics on ``p(x_missing | x_observed)``.

    One chain per image, vmapped; each chain is one ``lax.scan`` of ``num_steps`` steps.
    The chain's energy is :func:`masked_energy` (evaluated at
    ``where(mask, z, x_observed)``: zero gradient on observed pixels) and the observed
    pixels are reset after every step, so they are returned **bit-identical**.

    Args:
      rng_key: PRNG key.
      sampler_or_energy: either a per-example ``energy_fn(params, x, *cond)``, for which an
        SGLD sampler (:func:`~ebm_jax.samplers.langevin`) is built from ``step_size``,
        ``noise_scale``/``temperature``, ``grad_clip`` and ``clip_range``; or a
        :class:`~ebm_jax.samplers.Sampler` built on ``masked_energy(energy_fn)`` (e.g.
        ``mala(masked_energy(energy_fn), 0.05)``, unbiased at any step size), which owns
        its hyperparameters (then leave those four None).
      params: energy parameters.
      x_observed: ``[B, D...]`` images; the values at masked pixels are ignored.
      mask: ``[B or 1, D...]`` (any axis may be 1), 1 = missing pixel to fill, 0 = observed;
        bool or 0/1 numbers.
      num_steps: Langevin steps (a Python int).
      step_size: SGLD step size (required with an ``energy_fn``).
      noise_scale: SGLD noise standard deviation (decoupled form, e.g. JEM's 0.01); if
        None, the temperature form ``sqrt(2 step_size T)``: unadjusted Langevin targeting
        ``exp(-E/T)`` up to its discretisation bias, which vanishes as ``step_size -> 0``.
      temperature: ``T`` of the temperature form (default 1).
      grad_clip: clip every gradient element to ``[-grad_clip, grad_clip]`` (SGLD only).
      init: how the masked pixels start: ``"noise"`` (uniform over ``clip_range`` if
        given, else standard normal), ``"mean"`` (each image's mean observed value) or an
        array ``[B, D...]``.
      clip_range: ``(low, high)``: SGLD clamps positions to it after every step (the
        observed pixels are reset anyway); also the range of ``init="noise"``.
      cond: per-example conditioning arrays ``[B, ...]`` passed to the energy after ``x``
        (e.g. labels for a class-conditional energy).

    Returns:
      ``[B, D...]``: ``x_observed`` with the masked pixels filled.

    Example::

      >>> energy_fn = lambda params, x: 0.5 * jnp.sum((x - params) ** 2)
      >>> params, x = jnp.zeros(64), jnp.ones((2, 64))
      >>> mask = box_mask((8, 8), top=2, left=2, height=4, width=4).reshape(1, 64)
      >>> filled = inpaint(jax.random.key(0), energy_fn, params, x, mask, num_steps=50,
      ...                  step_size=1.0, noise_scale=0.01, clip_range=(-1, 1))
      >>> filled.shape == x.shape
      True
    """
    x_observed = _check_batch(x_observed, "x_observed")
    shape = tuple(x_observed.shape)
    mask = _check_mask(mask, shape, "x_observed")
    check_int("num_steps", num_steps, expected=NUM_STEPS)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True, expected=RANGE)
    cond = _check_cond(cond, shape[0])
    one_cond = tuple(c[0] for c in cond)
    if isinstance(sampler_or_energy, Sampler):
        owned = dict(step_size=step_size, noise_scale=noise_scale, temperature=temperature,
                     grad_clip=grad_clip, clip_range=clip_range)
        given = [k for k, v in owned.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} given with a Sampler: expected them only with "
                             "an energy_fn (a Sampler owns its hyperparameters)")
        sampler = sampler_or_energy
        try:
            state = jax.eval_shape(sampler.init, x_observed[0], params, x_observed[0], mask[0],
                                   *one_cond)
        except (TypeError, ValueError) as err:
            raise ValueError(
                "sampler_or_energy is a Sampler whose init(position, params, x_observed, mask, "
                f"*cond) failed ({type(err).__name__}: {err}); expected a Sampler built on "
                "masked_energy(energy_fn), e.g. mala(masked_energy(energy_fn), 0.05)") from err
        if not hasattr(state, "position") or not hasattr(state, "_replace"):
            raise ValueError(f"sampler_or_energy's state is a {type(state).__name__}: expected "
                             "a NamedTuple state with a 'position' field")
    elif callable(sampler_or_energy):
        if step_size is None:
            raise ValueError("step_size is None: expected a positive step size for the SGLD "
                             "sampler built from the energy_fn")
        check_positive_finite("step_size", step_size)
        energy = masked_energy(sampler_or_energy)
        check_scalar_fn("sampler_or_energy", energy, params, x_observed[0], x_observed[0],
                        mask[0], *one_cond)
        sampler = langevin(energy, step_size, noise_scale, temperature=temperature,
                           grad_clip=grad_clip, clip_range=clip_range)
    else:
        raise ValueError(f"sampler_or_energy is a {type(sampler_or_energy).__name__}: expected "
                         "an energy_fn(params, x, *cond) or a Sampler built on masked_energy")

    if isinstance(init, str):
        init_fill, init_array = init, None
        _initial_fill(None, init, x_observed, mask, clip_range, check_only=True)
    else:
        init_fill, init_array = None, _initial_fill(None, init, x_observed, mask, clip_range)

    def one_chain(params, key, x0_i, x_obs_i, mask_i, *cond_i):
        state = sampler.init(x0_i, params, x_obs_i, mask_i, *cond_i)

        def body(state, step_key):
            state, _ = sampler.step(step_key, state, params, x_obs_i, mask_i, *cond_i)
            # The energy does not depend on the observed pixels of z (and its gradient there
            # is 0), so resetting them keeps any cached energy/gradient valid.
            return state._replace(position=jnp.where(mask_i, state.position, x_obs_i)), None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, num_steps))
        return state.position

    @jax.jit  # one program, not one compile per eager operation (inlined under an outer jit)
    def run(rng_key, params, x_observed, mask, init_array, *cond):
        key_init, key_run = jax.random.split(rng_key)
        fill = (init_array if init_fill is None
                else _initial_fill(key_init, init_fill, x_observed, mask, clip_range))
        x0 = jnp.where(mask, fill, x_observed)
        keys = jax.random.split(key_run, x_observed.shape[0])
        in_axes = (None,) + (0,) * (4 + len(cond))
        return jax.vmap(one_chain, in_axes=in_axes)(params, keys, x0, x_observed, mask, *cond)

    return run(rng_key, params, x_observed, mask, init_array, *cond)


# -- denoising ------------------------------------------------------------------------

def progressive_inpaint(rng_key: jax.Array, energy_fn: EnergyFn, params: Any, schedule: Any,
                        x_observed: jax.Array, mask: Any, **progressive: Any) -> jax.Array:
    """Fill the masked pixels by progressive sampling from noise, level by level.

    The replacement method of diffusion inpainting on level energies: the missing pixels start
    as noise at the top level; at each level ``t`` the observed pixels are
    ``x_observed`` diffused to ``t`` (a fresh draw), and the level's chains (from
    ``progressive``'s ``chain_start``, e.g. CDRL's initializer, or its ``chain_init``) move
    the missing ones on ``p(x_t | x_{t+1})`` of the combined point. Level 0's observed
    pixels are ``x_observed`` itself. The replacement draws each level's observation
    independently of the chain's past, so the fill is an approximation of
    ``p(x_missing | x_observed)`` (close where the levels are fine, see the test).

    Args:
      rng_key: a PRNG key.
      energy_fn: per-example level energy ``energy_fn(params, x, t[, label]) -> scalar``.
      params: its parameters (and the chain start's).
      schedule: a :class:`~ebm_jax.samplers.NoiseSchedule` or its name.
      x_observed: ``[B, D...]`` the images (masked pixels' values ignored).
      mask: ``1`` = missing, broadcastable to ``x_observed`` (the module's convention).
      **progressive: the rest of :func:`~ebm_jax.samplers.progressive_sample`'s keywords
        (``num_langevin_steps``, ``step_sizes``, ``marginal_top``, ``chain_start``,
        ``chain_init`` (not ``"importance"`` without a ``chain_start``), ``labels``, ...).

    Returns:
      ``[B, D...]`` the filled images; the observed pixels are ``x_observed``'s, bit-identical.

    Example::

      >>> energy_fn = lambda p, x, t: 0.5 * jnp.sum(x ** 2)         # every level N(0, I)
      >>> x = jnp.ones((3, 4))
      >>> filled = progressive_inpaint(jax.random.key(0), energy_fn, None, "t6", x,
      ...                              jnp.array([[0, 0, 1, 1]]), num_langevin_steps=5,
      ...                              chain_init="rescaled")
      >>> bool(jnp.all(filled[:, :2] == 1.0)), filled.shape
      (True, (3, 4))
    """
    from ebm_jax.samplers.schedules import as_noise_schedule

    x = _check_batch(x_observed, "x_observed")
    missing = _check_mask(mask, x.shape, "x_observed")
    filled = progressive_sample(rng_key, energy_fn, params, as_noise_schedule(schedule),
                                x.shape[1:], x.shape[0], observed=(x, missing), **progressive)
    return jnp.where(missing, filled, x)


def denoise(energy_fn: EnergyFn, params: Any, x_noisy: jax.Array, *, num_steps: int,
            step_size: float, clip_range: Optional[tuple[float, float]] = None,
            cond: Sequence = ()) -> jax.Array:
    """Remove noise by energy minimisation: ``x <- clip(x - step_size ∇E(x))``, no noise.

    Gradient descent towards a (local) mode of ``p(x) ∝ exp(-E(x))``, from the noisy
    image: the MAP-style denoiser of an EBM prior, run by the descent sampler
    (:func:`~ebm_jax.samplers.descent`, raw steps). One ``lax.scan`` per image, vmapped.
    A step whose energy or gradient is NaN/inf leaves that image unchanged. On a quadratic
    energy with precision ``P`` it converges for ``step_size < 2 / λ_max(P)``.

    Args:
      energy_fn: per-example ``energy_fn(params, x, *cond) -> scalar``.
      params: energy parameters.
      x_noisy: ``[B, D...]`` images.
      num_steps: gradient steps (a Python int).
      step_size: ``> 0``.
      clip_range: ``(low, high)``: clamp after every step (projected gradient descent).
      cond: per-example conditioning arrays ``[B, ...]``.

    Returns:
      ``[B, D...]`` denoised images.

    Example::

      >>> energy_fn = lambda params, x: 0.5 * jnp.sum((x - params) ** 2)
      >>> params, x = jnp.zeros(4), jnp.zeros((3, 4))
      >>> noise = jax.random.normal(jax.random.key(0), x.shape)
      >>> clean = denoise(energy_fn, params, x + 0.3 * noise, num_steps=50, step_size=0.1,
      ...                 clip_range=(-1, 1))
      >>> bool(jnp.abs(clean).max() < 0.01)     # each step shrinks the noise by 0.9
      True
    """
    if not callable(energy_fn):
        raise ValueError(f"energy_fn is a {type(energy_fn).__name__}: expected a callable "
                         "energy_fn(params, x, *cond)")
    x_noisy = _check_batch(x_noisy, "x_noisy")
    check_int("num_steps", num_steps, expected=NUM_STEPS)
    check_positive_finite("step_size", step_size)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True, expected=RANGE)
    cond = _check_cond(cond, x_noisy.shape[0])
    check_scalar_fn("energy_fn", energy_fn, params, x_noisy[0], *(c[0] for c in cond))
    sampler = descent(energy_fn, step_size, clip_range=clip_range)

    @jax.jit  # one program (inlined under an outer jit)
    def run(params, x_noisy, *cond):
        states = init_chains(sampler, x_noisy, params, *cond)
        # No noise: the key is never used.
        states, _ = run_chains(jax.random.key(0), sampler, states, params, num_steps, *cond)
        return states.position

    return run(params, x_noisy, *cond)


# -- scoring --------------------------------------------------------------------------

class ReconstructionError(NamedTuple):
    """How far a fill is from the truth, on the masked pixels only.

    Attributes:
      mse: scalar mean squared error over all the masked pixels of the batch.
      psnr: scalar ``10 log10(data_range² / mse)`` in dB (``inf`` for a perfect fill).
      mse_per_example: ``[B]`` mean squared error over each image's masked pixels (NaN for
        an image with none).
    """

    mse: jax.Array
    psnr: jax.Array
    mse_per_example: jax.Array


def reconstruction_error(x_filled: jax.Array, x_true: jax.Array, mask: jax.Array, *,
                         data_range: float = 2.0) -> ReconstructionError:
    """Mean squared error and PSNR over the masked (filled) pixels only.

    Observed pixels are ignored: they were given, so counting them would reward a sampler
    for copying its input.

    Args:
      x_filled: ``[B, D...]`` inpainted images.
      x_true: ``[B, D...]`` ground truth.
      mask: ``[B or 1, D...]`` (any axis may be 1), 1 = pixel that was filled.
      data_range: ``high - low`` of the pixel values, the PSNR peak (default 2.0: images in
        ``[-1, 1]`` as :func:`~ebm_jax.data.load_digits`; use 1.0 for ``[0, 1]``).

    Returns:
      A :class:`ReconstructionError` ``(mse, psnr, mse_per_example)``.

    Example::

      >>> x_test = jnp.zeros((2, 4))
      >>> filled = x_test.at[:, 0].set(0.1)
      >>> mask = jnp.array([[1.0, 0.0, 0.0, 0.0]])
      >>> err = reconstruction_error(filled, x_test, mask)
      >>> round(float(err.mse), 4), round(float(err.psnr), 1)
      (0.01, 26.0)
    """
    x_filled = _check_batch(x_filled, "x_filled")
    x_true = _check_batch(x_true, "x_true")
    if x_filled.shape != x_true.shape:
        raise ValueError(f"x_filled has shape {tuple(x_filled.shape)}: expected "
                         f"{tuple(x_true.shape)}, the shape of x_true")
    check_positive_finite("data_range", data_range)
    mask = _check_mask(mask, tuple(x_true.shape), "x_true")
    if not is_traced(mask) and not bool(jnp.any(mask)):
        raise ValueError("mask has no missing pixels (all 0): expected at least one masked "
                         "pixel to score")
    axes = tuple(range(1, x_true.ndim))
    sq = jnp.where(mask, jnp.square(x_filled - x_true), 0.0)
    count = jnp.sum(mask, axis=axes)
    per_example_sum = jnp.sum(sq, axis=axes)
    mse = jnp.sum(per_example_sum) / jnp.sum(count)
    psnr = 10.0 * jnp.log10(data_range**2 / mse)
    return ReconstructionError(mse, psnr, per_example_sum / count)


# -- masks ----------------------------------------------------------------------------

def _check_image_shape(image_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in image_shape)
        ok = all(int(s) == s for s in image_shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"image_shape={image_shape!r}: expected (H, W) or (H, W, C)") from err
    if not ok or len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"image_shape={image_shape!r}: expected (H, W) or (H, W, C) of "
                         "positive ints")
    return shape


_SIDES = ("top", "bottom", "left", "right")


def half_image_mask(image_shape: Sequence[int], side: str = "bottom") -> np.ndarray:
    """A mask hiding one half of every image: ``side`` is the half to fill.

    ``"top"``/``"bottom"`` hide ``H // 2`` rows, ``"left"``/``"right"`` ``W // 2`` columns
    (all channels).

    Args:
      image_shape: ``(H, W)`` or ``(H, W, C)``.
      side: ``"top"``, ``"bottom"``, ``"left"`` or ``"right"``.

    Returns:
      ``[1, *image_shape]`` float32 NumPy array of 0/1 (1 = missing), which broadcasts over
      a batch; ``.reshape(1, -1)`` for flattened images.

    Example::

      >>> half_image_mask((4, 4), "bottom")[0]
      array([[0., 0., 0., 0.],
             [0., 0., 0., 0.],
             [1., 1., 1., 1.],
             [1., 1., 1., 1.]], dtype=float32)
    """
    shape = _check_image_shape(image_shape)
    check_choice("side", side, _SIDES)
    h, w = shape[:2]
    mask = np.zeros(shape, np.float32)
    if side == "top":
        mask[: h // 2] = 1.0
    elif side == "bottom":
        mask[h - h // 2:] = 1.0
    elif side == "left":
        mask[:, : w // 2] = 1.0
    else:
        mask[:, w - w // 2:] = 1.0
    return mask[None]


def box_mask(image_shape: Sequence[int], top: int, left: int, height: int,
             width: int) -> np.ndarray:
    """A mask hiding the rectangle ``[top, top + height) x [left, left + width)`` (all channels).

    Args:
      image_shape: ``(H, W)`` or ``(H, W, C)``.
      top, left: the rectangle's upper-left pixel (``>= 0``).
      height, width: its size (``>= 1``); it must lie inside the image.

    Returns:
      ``[1, *image_shape]`` float32 NumPy array of 0/1 (1 = missing).

    Example::

      >>> float(box_mask((8, 8), top=2, left=2, height=4, width=4).sum())
      16.0
    """
    shape = _check_image_shape(image_shape)
    h, w = shape[:2]
    for name, value, low in (("top", top, 0), ("left", left, 0), ("height", height, 1),
                             ("width", width, 1)):
        check_int(name, value, low, expected=f"an int >= {low}")
    if top + height > h or left + width > w:
        raise ValueError(f"box rows [{top}, {top + height}) x columns [{left}, {left + width}): "
                         f"expected it inside the {h} x {w} image")
    mask = np.zeros(shape, np.float32)
    mask[top:top + height, left:left + width] = 1.0
    return mask[None]


def random_pixel_mask(rng_key: jax.Array, shape: Sequence[int], fraction: float) -> jax.Array:
    """A random mask hiding exactly ``round(fraction * D)`` entries of each example.

    Each example (row of the leading axis) gets its own uniformly random set of
    ``k = round(fraction * prod(shape[1:]))`` missing entries. To hide whole pixels of
    ``[B, H, W, C]`` images, draw ``shape=(B, H, W, 1)``: masks broadcast over channels.

    Args:
      rng_key: PRNG key.
      shape: ``(B, D...)`` (static).
      fraction: in ``[0, 1]``, the fraction of entries to hide.

    Returns:
      ``shape`` float32 array of 0/1 (1 = missing). Jittable with static shape/fraction.

    Example::

      >>> m = random_pixel_mask(jax.random.key(0), (2, 8, 8), 0.25)
      >>> m.sum(axis=(1, 2))
      Array([16., 16.], dtype=float32)
    """
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"shape={shape!r}: expected a tuple of ints (B, D...)") from err
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape={shape!r}: expected (B, D...) of positive ints, a batch axis "
                         "first")
    check_probability("fraction", fraction, expected="a number in [0, 1]")
    return _random_pixel_mask(rng_key, shape, int(round(fraction * math.prod(shape[1:]))))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _random_pixel_mask(rng_key, shape, k):
    u = jax.random.uniform(rng_key, (shape[0], math.prod(shape[1:])))
    ranks = jnp.argsort(jnp.argsort(u, axis=1), axis=1)
    return (ranks < k).astype(jnp.float32).reshape(shape)
