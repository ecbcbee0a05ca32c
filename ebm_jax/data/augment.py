"""Data augmentations as pure per-example functions: ``augment(rng_key, x) -> x'``.

An augmentation takes a key first (the sampler order) and **one** example ``x`` (any
shape, floating point), and returns an array of the same shape and dtype. It is pure, so
a batch is a ``jax.vmap`` over split keys (:func:`augment_batch`), and it runs inside a
jitted loss (the invariance term of :func:`ebm_jax.losses.gedi.gedi` draws two views of
every example with it).

Factories:

* :func:`gaussian_noise`: ``x + sigma * N(0, I)`` (any shape; the toy 2-D sets).
* :func:`random_shift`: an image translated by a whole number of pixels in
  ``[-max_shift, max_shift]`` along height and width, the pixels shifted in filled with
  ``fill`` (no wrap-around). Images may be stored flattened: ``image_shape`` ``(H, W)``
  or ``(H, W, C)`` says how to read ``x``, and ``x`` comes back in the shape it came in
  (``[H*W*C]`` or ``image_shape``).
* :func:`compose`: several augmentations in order, each with its own key.
* :func:`identity`: no change (an ablation's "no augmentation").

Example::

  >>> aug = compose(random_shift(1, (8, 8), fill=-1.0), gaussian_noise(0.05))
  >>> x = jnp.zeros((4, 64))                           # four flattened 8x8 digits
  >>> views = augment_batch(aug, jax.random.key(0), x)
  >>> views.shape, views.dtype
  ((4, 64), dtype('float32'))
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_int, check_weight

__all__ = ["Augment", "augment_batch", "compose", "gaussian_noise", "identity",
           "shift_then_noise",
           "random_shift"]

Augment = Callable[[jax.Array, jax.Array], jax.Array]
"""``augment(rng_key, x) -> x'``: one example in, one example of the same shape out."""


def _check_floating(x: jax.Array, who: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{who}: x has dtype {x.dtype}: expected floating-point data "
                        "(cast it, e.g. x.astype(jnp.float32))")
    return x


def identity() -> Augment:
    """The augmentation that returns ``x`` unchanged (the key is unused).

    Example::

      >>> float(identity()(jax.random.key(0), jnp.ones(3)).sum())
      3.0
    """

    def augment(rng_key, x):
        del rng_key
        return jnp.asarray(x)

    return augment


def gaussian_noise(sigma: float) -> Augment:
    """``x + sigma * eps`` with ``eps ~ N(0, I)`` of ``x``'s shape; ``sigma >= 0``.

    Example::

      >>> aug = gaussian_noise(0.1)
      >>> x = jnp.zeros((1000, 2))
      >>> round(float(jnp.std(augment_batch(aug, jax.random.key(0), x))), 1)
      0.1
    """
    check_weight("sigma", sigma, 0.0, expected="a finite noise scale >= 0")
    sigma = float(sigma)

    def augment(rng_key, x):
        x = _check_floating(x, "gaussian_noise")
        return x + sigma * jax.random.normal(rng_key, x.shape, x.dtype)

    return augment


def _check_image_shape(image_shape) -> tuple[int, ...]:
    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) not in (2, 3) \
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"image_shape={image_shape!r}: expected (H, W) or (H, W, C) of "
                         "positive ints")
    return shape


def random_shift(max_shift: int, image_shape: Sequence[int], *, fill: float = 0.0) -> Augment:
    """Translate an image by ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]``.

    Pixels moved out of the frame are dropped; pixels moved in take the value ``fill``
    (e.g. ``-1.0`` for :func:`~ebm_jax.data.digits.load_digits`, whose background is -1).

    Args:
      max_shift: the largest shift in pixels (>= 0, smaller than ``H`` and ``W``).
      image_shape: ``(H, W)`` or ``(H, W, C)``: how to read an example ``x``, which may
        be that shape or flattened (``[H*W*C]``); it is returned in the shape it came in.
      fill: the value of the pixels shifted in.

    Example::

      >>> aug = random_shift(1, (3, 3), fill=0.0)
      >>> x = jnp.arange(1.0, 10.0)                 # a flattened 3x3 image
      >>> shifted = aug(jax.random.key(3), x)
      >>> shifted.shape, bool(jnp.isin(shifted, jnp.append(x, 0.0)).all())
      ((9,), True)
    """
    shape = _check_image_shape(image_shape)
    max_shift = check_int("max_shift", max_shift, minimum=0,
                          expected="an int >= 0 (pixels)")
    height, width = shape[0], shape[1]
    if max_shift >= min(height, width):
        raise ValueError(f"max_shift={max_shift} with image_shape={shape}: expected a shift "
                         f"smaller than the image's height and width ({min(height, width)})")
    check_weight("fill", fill)
    size = 1
    for d in shape:
        size *= d
    image = shape if len(shape) == 3 else (*shape, 1)

    def augment(rng_key, x):
        x = _check_floating(x, "random_shift")
        if x.size != size or x.shape not in ((size,), shape):
            raise ValueError(f"random_shift: x has shape {tuple(x.shape)}: expected one image "
                             f"of shape {shape} or flattened ({size},)")
        if max_shift == 0:
            return x
        img = x.reshape(image)
        pad = ((max_shift, max_shift), (max_shift, max_shift), (0, 0))
        padded = jnp.pad(img, pad, constant_values=jnp.asarray(fill, x.dtype))
        offsets = jax.random.randint(rng_key, (2,), 0, 2 * max_shift + 1)
        out = jax.lax.dynamic_slice(padded, (offsets[0], offsets[1], 0), image)
        return out.reshape(x.shape)

    return augment


def compose(*augments: Augment) -> Augment:
    """Apply ``augments`` in order, each with its own key (split from the one given).

    Example::

      >>> aug = compose(gaussian_noise(0.0), identity())
      >>> aug(jax.random.key(0), jnp.ones(2)).tolist()
      [1.0, 1.0]
    """
    if not augments:
        raise ValueError("compose() got no augmentations: expected at least one "
                         "augment(rng_key, x) function")
    for i, aug in enumerate(augments):
        if not callable(aug):
            raise ValueError(f"compose: argument {i} is a {type(aug).__name__}: expected an "
                             "augment(rng_key, x) function, e.g. gaussian_noise(0.1)")

    def augment(rng_key, x):
        keys = jax.random.split(rng_key, len(augments))
        for key, aug in zip(keys, augments):
            x = aug(key, x)
        return x

    return augment


def shift_then_noise(noise: float, *, max_shift: int = 0,
                     image_shape: Optional[Sequence[int]] = None,
                     fill: float = 0.0) -> Augment:
    """GEDI's augmentation: random shifts of up to ``max_shift`` pixels (images only: with
    ``image_shape`` and ``max_shift > 0``; emptied pixels take ``fill``), then Gaussian noise
    of standard deviation ``noise``.

    Example::

      >>> aug = shift_then_noise(0.0, max_shift=1, image_shape=(2, 2), fill=-1.0)
      >>> set(aug(jax.random.key(3), jnp.ones(4)).tolist()) <= {-1.0, 1.0}
      True
    """
    parts = []
    if max_shift and image_shape is not None:
        parts.append(random_shift(max_shift, image_shape, fill=fill))
    parts.append(gaussian_noise(noise))
    return compose(*parts)


def augment_batch(augment: Augment, rng_key: jax.Array, x: jax.Array) -> jax.Array:
    """``augment`` applied to every example of ``x [B, ...]``, one key each (a ``vmap``).

    Example::

      >>> views = augment_batch(gaussian_noise(1.0), jax.random.key(0), jnp.zeros((2, 3)))
      >>> views.shape, bool((views[0] != views[1]).any())      # independent noise per row
      ((2, 3), True)
    """
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"augment_batch: x has shape {tuple(x.shape)}: expected a non-empty "
                         "batch [B, ...]")
    keys = jax.random.split(rng_key, x.shape[0])
    return jax.vmap(augment)(keys, x)
