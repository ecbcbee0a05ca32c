"""A pool of out-of-distribution images to start contrastive chains from (DAT, Yin et al.
2025: PGD ascent on a class logit from OOD images makes the contrastive samples, and from
held-out OOD seeds the generations), built procedurally from the in-distribution images and
a seed: nothing downloaded.

Five kinds, in equal shares (:data:`POOL_KINDS`), from far off the data to near it:

- ``blurred_noise``: uniform noise smoothed by a Gaussian blur and stretched back over the
  data range (blobs at the scale of strokes, not pixel noise);
- ``mixtures``: two digits of different classes drawn over each other (the pixelwise max);
- ``interpolations``: blends ``(1 - w) x_i + w x_j`` of digits of different classes,
  ``w ~ U(0.3, 0.7)``;
- ``shifted``: digits moved by 2 to 3 pixels along each axis (the background fills in);
- ``inverted``: photographic negatives ``low + high - x``.

:func:`ood_pool` builds one pool; a user's own pool is any ``[N, *example_shape]`` array in
the data range (``check_pool``). Build the pool that trains from the training images and the
generation seeds from the test images with another key, so the seeds are held out.

Example::

    >>> from ebm_jax.data import load_digits
    >>> data = load_digits()
    >>> pool = ood_pool(jax.random.key(0), data.x_train, data.image_shape, data.data_range,
    ...                 num=500, y=data.y_train)
    >>> pool.shape, bool(pool.min() >= -1.0 and pool.max() <= 1.0)
    ((500, 64), True)
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from ebm_jax.data.ood import _check_images, _check_num, _indices, interpolations, inverted, pairs

POOL_KINDS = ("blurred_noise", "mixtures", "interpolations", "shifted", "inverted")
BLUR_SIGMA = 1.0          # pixels: the blur of the noise (strokes of 8x8 digits are ~1-2 px)
SHIFT_PIXELS = (2, 3)     # the shifts' smallest and largest size along each axis
BLEND_WEIGHTS = (0.3, 0.7)


def _hwc(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(H, W, C)`` of an image shape ``(H, W[, C])``."""
    h, w, *c = (int(s) for s in image_shape)
    return h, w, (c[0] if c else 1)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian blur of ``[N, H, W, C]`` images, edges reflected."""
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    for axis in (1, 2):
        pad = [(0, 0)] * images.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(images, pad, mode="reflect")
        size = images.shape[axis]
        images = sum(w * np.take(padded, np.arange(k, k + size), axis=axis)
                     for k, w in enumerate(kernel))
    return images


def blurred_noise(rng_key: jax.Array, num: int, image_shape: Sequence[int],
                  data_range: tuple[float, float], *, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """``[num, H*W*C]``: uniform noise blurred by a Gaussian of ``sigma`` pixels, each image
    stretched back to span ``data_range`` (a blur alone would shrink it toward the middle).

    Example::

      >>> noise = blurred_noise(jax.random.key(0), 4, (8, 8), (-1.0, 1.0))
      >>> noise.shape, float(noise.min()), float(noise.max())
      ((4, 64), -1.0, 1.0)
    """
    num = _check_num(num)
    h, w, c = _hwc(image_shape)
    low, high = data_range
    noise = np.asarray(jax.random.uniform(rng_key, (num, h, w, c)), np.float64)
    smooth = _blur(noise, sigma).reshape(num, -1)
    lo, hi = smooth.min(axis=1, keepdims=True), smooth.max(axis=1, keepdims=True)
    unit = (smooth - lo) / np.maximum(hi - lo, 1e-12)
    return (low + (high - low) * unit).astype(np.float32)


def mixtures(rng_key: jax.Array, x, num: int, *, y=None) -> np.ndarray:
    """``[num, ...]``: pairs of examples drawn over each other, the pixelwise max (for
    images with a dark background, both digits' strokes in one image); pairs of different
    classes when ``y`` is given.

    Example::

      >>> a, b = np.array([[-1.0, 1.0, -1.0]]), np.array([[1.0, -1.0, -1.0]])
      >>> mixtures(jax.random.key(0), np.concatenate([a, b]), 1).tolist()
      [[1.0, 1.0, -1.0]]
    """
    x = _check_images(x)
    first, second = pairs(rng_key, x.shape[0], _check_num(num), y, x.shape)
    return np.maximum(x[first], x[second]).astype(np.float32)


def shifted(rng_key: jax.Array, x, image_shape: Sequence[int], data_range: tuple[float, float],
            num: int, *, pixels: tuple[int, int] = SHIFT_PIXELS) -> np.ndarray:
    """``[num, H*W*C]``: random examples moved by ``pixels[0]..pixels[1]`` pixels along each
    axis (either direction), the uncovered border filled with the background ``low``.

    Example::

      >>> x = -np.ones((1, 16)); x[0, 5] = 1.0                # one lit pixel at (1, 1)
      >>> moved = shifted(jax.random.key(0), x, (4, 4), (-1.0, 1.0), 1, pixels=(1, 1))
      >>> int(np.argmax(moved[0])) in (0, 2, 8, 10)           # one pixel diagonally away
      True
    """
    x = _check_images(x, image_shape)
    h, w, c = _hwc(image_shape)
    num, (low, _) = _check_num(num), data_range
    k_pick, k_size, k_sign = jax.random.split(rng_key, 3)
    images = x[_indices(k_pick, x.shape[0], num)].reshape(num, h, w, c)
    sizes = np.asarray(jax.random.randint(k_size, (num, 2), pixels[0], pixels[1] + 1))
    signs = np.where(np.asarray(jax.random.bernoulli(k_sign, 0.5, (num, 2))), 1, -1)
    moves = sizes * signs
    out = np.full_like(images, low)
    for i, (dy, dx) in enumerate(moves):
        src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
        src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
        out[i, dst_y, dst_x] = images[i, src_y, src_x]
    return out.reshape(num, -1).astype(np.float32)


def ood_pool(rng_key: jax.Array, x, image_shape: Sequence[int], data_range: tuple[float, float],
             num: int, *, y=None, kinds: Sequence[str] = POOL_KINDS) -> np.ndarray:
    """``[num, *x.shape[1:]]`` float32: OOD images of ``kinds`` in equal shares (the first
    kinds take the remainder), shuffled, a deterministic function of ``rng_key``.

    Args:
      rng_key: PRNG key.
      x: ``[N, ...]`` in-distribution images in ``data_range`` (the training split for the
        training pool, the test split for held-out generation seeds).
      image_shape: ``(H, W[, C])`` of one image.
      data_range: ``(low, high)``.
      num: the pool's size.
      y: ``[N]`` labels (mixtures and interpolations then pair different classes).
      kinds: a subset of :data:`POOL_KINDS`.

    Raises:
      ValueError: an unknown kind, images out of range or of another size, ``num < 1``.
    """
    x = _check_images(x, image_shape, data_range)
    num = _check_num(num)
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in POOL_KINDS]
    if not kinds or unknown:
        raise ValueError(f"kinds={kinds!r}: expected a non-empty subset of {list(POOL_KINDS)}")
    shares = [num // len(kinds) + (i < num % len(kinds)) for i in range(len(kinds))]
    keys = jax.random.split(rng_key, len(kinds) + 1)
    flat = x.reshape(x.shape[0], -1)
    parts = []
    for kind, share, key in zip(kinds, shares, keys[1:]):
        if share == 0:
            continue
        if kind == "blurred_noise":
            part = blurred_noise(key, share, image_shape, data_range)
        elif kind == "mixtures":
            part = mixtures(key, flat, share, y=y)
        elif kind == "interpolations":
            k_pairs, k_weight = jax.random.split(key)
            weight = float(jax.random.uniform(k_weight, (), minval=BLEND_WEIGHTS[0],
                                              maxval=BLEND_WEIGHTS[1]))
            part = interpolations(k_pairs, flat, y, share, weight=weight)
        elif kind == "shifted":
            part = shifted(key, flat, image_shape, data_range, share)
        else:
            part = inverted(flat[_indices(key, flat.shape[0], share)], data_range)
        parts.append(part.reshape(share, -1))
    pool = np.concatenate(parts)[np.asarray(jax.random.permutation(keys[0], num))]
    return pool.reshape(num, *x.shape[1:]).astype(np.float32)


def check_pool(pool, example_shape: Sequence[int], data_range: tuple[float, float],
               name: str = "ood_pool") -> np.ndarray:
    """A user's pool ``[N, *example_shape]`` as float32, checked: finite, of the examples'
    shape, within ``data_range``.

    Example::

      >>> check_pool(np.zeros((3, 64)), (64,), (-1.0, 1.0)).shape
      (3, 64)
    """
    pool = np.asarray(pool, np.float32)
    shape = tuple(int(s) for s in example_shape)
    if pool.ndim != len(shape) + 1 or pool.shape[1:] != shape or pool.shape[0] == 0:
        dims = ", ".join(map(str, shape))
        raise ValueError(f"{name} has shape {pool.shape}: expected [N, {dims}], OOD examples of "
                         "the data's shape")
    if not np.all(np.isfinite(pool)):
        raise ValueError(f"{name} has non-finite values: expected finite images")
    low, high = data_range
    if pool.min() < low - 1e-5 or pool.max() > high + 1e-5:
        raise ValueError(f"{name} has values in [{pool.min():.4g}, {pool.max():.4g}]: expected "
                         f"values within the data range {tuple(data_range)}")
    return pool
