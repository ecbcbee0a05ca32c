"""Offline out-of-distribution sets built from an in-distribution image array.

Without network access there is no SVHN or CIFAR-100 to test against, so
the OOD sets are derived from the data itself, from easy to hard:

- ``uniform_noise``: i.i.d. uniform pixels over the data range;
- ``gaussian_noise``: i.i.d. Gaussian pixels with the data's mean and standard
  deviation, clipped to the range (same first two moments as the data);
- ``inverted``: ``x -> low + high - x`` (a photographic negative);
- ``vflip`` / ``hflip``: images flipped upside down / left to right (some
  digits, like 0, 1 and 8, are nearly symmetric: a hard, partly in-distribution set);
- ``reversed``: for examples that are not images (signals, sequences, feature vectors),
  each example reversed along its first axis (:func:`reversed_along`);
- ``interpolations``: midpoints of random pairs from different classes
  (smooth and in range, but off the data manifold);
- :func:`held_out_class`: train without class ``c`` and test on it (the
  hardest: real data, of a class never seen).

Every function is deterministic given its PRNG key and returns float32
NumPy arrays with the per-example shape of the input.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_bounds, check_int, check_probability

OOD_SET_NAMES = ("uniform_noise", "gaussian_noise", "inverted", "vflip", "hflip", "interpolations")
# Examples that are not images (signals, sequences, feature vectors): flips become a reversal
# of each example along its first axis (time for a signal).
VECTOR_OOD_SET_NAMES = ("uniform_noise", "gaussian_noise", "inverted", "reversed",
                        "interpolations")


class HeldOutSplit(NamedTuple):
    """A dataset split by one class.

    Attributes:
      x_in: ``[N - n_c, ...]`` examples of every other class (in-distribution).
      y_in: ``[N - n_c]`` their labels, unchanged (class ``c`` just never appears).
      x_out: ``[n_c, ...]`` the examples of class ``c`` (OOD).
    """

    x_in: np.ndarray
    y_in: np.ndarray
    x_out: np.ndarray


def _check_range(data_range) -> tuple[float, float]:
    return check_bounds("data_range", data_range)


def _check_num(num) -> int:
    return check_int("num", num)


def _check_shape(shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape={shape!r}: expected a tuple of positive ints") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"shape={shape!r}: expected a non-empty tuple of positive ints")
    return shape


def _check_images(x, image_shape=None, data_range=None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: expected a non-empty batch of examples [N, ...]")
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) < 2 or int(np.prod(image_shape)) != int(np.prod(x.shape[1:])):
            raise ValueError(f"image_shape={image_shape!r}: expected (H, W[, C]) with "
                             f"H*W*C = {int(np.prod(x.shape[1:]))}, the size of one example "
                             f"of x {x.shape}")
    if data_range is not None:
        low, high = data_range
        slack = 1e-5 * (high - low)
        lo, hi = float(x.min()), float(x.max())
        if lo < low - slack or hi > high + slack:
            raise ValueError(f"x has values in [{lo:.4g}, {hi:.4g}]: expected values within "
                             f"data_range {data_range} (rescale x or pass its range)")
    return x


def _indices(rng_key, n: int, num: int) -> np.ndarray:
    """``num`` distinct random indices of ``n`` (with replacement only when ``num > n``)."""
    return np.asarray(jax.random.choice(rng_key, n, (num,), replace=num > n))


def uniform_noise(rng_key: jax.Array, num: int, shape: Sequence[int],
                  data_range: tuple[float, float]) -> np.ndarray:
    """``[num, *shape]`` i.i.d. uniform values over ``data_range``.

    Example::

      >>> uniform_noise(jax.random.key(0), 100, (64,), (-1.0, 1.0)).shape
      (100, 64)
    """
    num, shape, (low, high) = _check_num(num), _check_shape(shape), _check_range(data_range)
    return np.asarray(jax.random.uniform(rng_key, (num, *shape), jnp.float32, low, high))


def gaussian_noise(rng_key: jax.Array, num: int, shape: Sequence[int],
                   data_range: tuple[float, float], *, mean: Optional[float] = None,
                   std: Optional[float] = None) -> np.ndarray:
    """``[num, *shape]`` i.i.d. Gaussian values clipped to ``data_range``.

    Args:
      mean: default the middle of the range.
      std: default a quarter of the range's width.

    Example::

      >>> gaussian_noise(jax.random.key(0), 100, (64,), (-1.0, 1.0), mean=-0.5, std=0.6).shape
      (100, 64)
    """
    num, shape, (low, high) = _check_num(num), _check_shape(shape), _check_range(data_range)
    mean = 0.5 * (low + high) if mean is None else float(mean)
    std = 0.25 * (high - low) if std is None else float(std)
    if not std > 0:
        raise ValueError(f"std={std!r}: expected a positive number")
    z = mean + std * jax.random.normal(rng_key, (num, *shape), jnp.float32)
    return np.asarray(jnp.clip(z, low, high))


def inverted(x, data_range: tuple[float, float]) -> np.ndarray:
    """Photographic negatives: ``low + high - x``, ``[N, ...] -> [N, ...]``.

    Example::

      >>> inverted(np.array([[-1.0, 0.5]]), (-1.0, 1.0))
      array([[ 1. , -0.5]], dtype=float32)
    """
    low, high = _check_range(data_range)
    x = _check_images(x, None, (low, high))
    return (low + high - x).astype(np.float32)


_FLIP_AXES = {"vertical": (0,), "horizontal": (1,), "both": (0, 1)}


def flipped(x, image_shape: Sequence[int], direction: str = "vertical") -> np.ndarray:
    """Images flipped upside down (``"vertical"``), left to right (``"horizontal"``) or both.

    Args:
      x: ``[N, ...]`` images, flat (``[N, H*W*C]``) or not; each is read as ``image_shape``.
      image_shape: ``(H, W)`` or ``(H, W, C)`` of one image.
      direction: ``"vertical"`` (rows reversed), ``"horizontal"`` (columns reversed) or ``"both"``.

    Returns:
      ``[N, ...]`` flipped images, in the shape of ``x``.

    Example::

      >>> from ebm_jax.data import load_digits
      >>> data = load_digits()               # 8x8 digits in [-1, 1], 1,437 train, 360 test
      >>> flipped(data.x_test, (8, 8, 1), "horizontal").shape
      (360, 64)
    """
    if direction not in _FLIP_AXES:
        raise ValueError(f"direction={direction!r}: expected one of {tuple(_FLIP_AXES)}")
    x = _check_images(x, image_shape)
    images = x.reshape(x.shape[0], *tuple(int(s) for s in image_shape))
    axes = tuple(a + 1 for a in _FLIP_AXES[direction])
    return np.flip(images, axis=axes).reshape(x.shape).astype(np.float32)


def reversed_along(x, axis: int = 0) -> np.ndarray:
    """Each example of ``x [N, ...]`` reversed along ``axis`` of the example (0: the first
    axis, time for signals ``[N, L]`` or ``[N, L, C]``); any example rank.

    Example::

      >>> reversed_along(np.array([[1.0, 2.0, 3.0]]))
      array([[3., 2., 1.]], dtype=float32)
      >>> reversed_along(np.arange(8.0).reshape(1, 2, 2, 2), axis=1)[0, 0, :, 0].tolist()
      [2.0, 0.0]
    """
    x = _check_images(x)
    rank = x.ndim - 1
    if not isinstance(axis, int) or not 0 <= axis < rank:
        raise ValueError(f"axis={axis!r}: expected an axis of the examples' shape "
                         f"{x.shape[1:]} (0 to {rank - 1})")
    return np.flip(x, axis=axis + 1).astype(np.float32)


def interpolations(rng_key: jax.Array, x, y=None, num: Optional[int] = None, *,
                   weight: float = 0.5) -> np.ndarray:
    """Blends ``(1 - weight) * x_i + weight * x_j`` of random pairs from different classes.

    Args:
      rng_key: PRNG key choosing the pairs.
      x: ``[N, ...]`` examples.
      y: ``[N]`` labels; pairs are then always from different classes. Without
        labels, pairs are of distinct examples.
      num: number of blends (default ``N``).
      weight: the blend weight in ``(0, 1)``; 0.5 gives midpoints.

    Returns:
      ``[num, ...]`` blends.

    Example::

      >>> from ebm_jax.data import load_digits
      >>> data = load_digits()               # 8x8 digits in [-1, 1], 1,437 train, 360 test
      >>> interpolations(jax.random.key(0), data.x_test, data.y_test, 200).shape
      (200, 64)
    """
    x = _check_images(x)
    n = x.shape[0]
    num = n if num is None else _check_num(num)
    check_probability("weight", weight, include_zero=False, include_one=False)
    first, second = pairs(rng_key, n, num, y, x.shape)
    return ((1.0 - weight) * x[first] + weight * x[second]).astype(np.float32)


def pairs(rng_key: jax.Array, n: int, num: int, y=None,
          x_shape: Optional[tuple] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(first, second)``: ``num`` random pairs of indices into ``n`` examples, the second of
    each a uniform draw among the examples of other classes (with labels ``y [n]``), or among
    the other ``n - 1`` examples (without). ``x_shape`` only names the examples in errors.

    Example::

      >>> first, second = pairs(jax.random.key(0), 4, 100, np.array([0, 0, 1, 1]))
      >>> bool(np.all(first // 2 != second // 2))           # always of the other class
      True
    """
    x_shape = (n,) if x_shape is None else tuple(x_shape)
    k_first, k_second = jax.random.split(rng_key)
    first = _indices(k_first, n, num)
    if y is None:
        if n < 2:
            raise ValueError(f"x has shape {x_shape}: expected at least 2 examples to pair")
        # A uniform partner among the other n - 1 examples.
        offset = np.asarray(jax.random.randint(k_second, (num,), 1, n))
        second = (first + offset) % n
    else:
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y has shape {y.shape}: expected labels ({n},) matching x {x_shape}")
        classes = np.unique(y)
        if classes.size < 2:
            raise ValueError(f"y has the single class {classes.tolist()}: expected at least two "
                             "classes to interpolate between")
        # For each first example, a uniform partner among the examples of other classes:
        # with the examples sorted by class, draw a rank among the n - n_c others and skip
        # over the block of the first example's own class.
        order = np.argsort(y, kind="stable")
        classes, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
        c = np.searchsorted(classes, y[first])
        u = np.asarray(jax.random.uniform(k_second, (num,)), np.float64)
        rank = np.minimum((u * (n - counts[c])).astype(np.int64), n - counts[c] - 1)
        rank = np.where(rank >= starts[c], rank + counts[c], rank)
        second = order[rank]
    return first, second


def held_out_class(x, y, cls: int) -> HeldOutSplit:
    """Split a labelled dataset into the examples of every class but ``cls`` and those of ``cls``.

    Train on ``x_in, y_in`` (a K-class head simply never sees class ``cls``) and
    use ``x_out`` as the OOD set: real data of an unseen class.

    Returns:
      :class:`HeldOutSplit` ``(x_in, y_in, x_out)``.

    Example::

      >>> from ebm_jax.data import load_digits
      >>> data = load_digits()               # 8x8 digits in [-1, 1], 1,437 train, 360 test
      >>> split = held_out_class(data.x_train, data.y_train, 9)
      >>> bool((split.y_in != 9).all())
      True
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or y.shape != x.shape[:1]:
        n = x.shape[0] if x.ndim else "?"
        raise ValueError(f"y has shape {y.shape}: expected labels ({n},) "
                         f"matching x {x.shape}")
    out = y == cls
    if not out.any() or out.all():
        raise ValueError(f"cls={cls!r}: expected a class present in y alongside others, "
                         f"y has classes {np.unique(y).tolist()}")
    return HeldOutSplit(x[~out], y[~out], x[out])


def offline_ood_sets(rng_key: jax.Array, x, image_shape: Optional[Sequence[int]],
                     data_range: tuple[float, float], num: Optional[int] = None,
                     y=None) -> dict[str, np.ndarray]:
    """The offline OOD sets of :data:`OOD_SET_NAMES` derived from in-distribution images, or
    of :data:`VECTOR_OOD_SET_NAMES` from examples of any other shape (``image_shape=None``:
    signals, sequences, feature vectors; each example reversed along its first axis
    instead of flipped).

    Each set has ``num`` examples (default ``N``) with the per-example shape of
    ``x``; the transformed sets (inverted, flipped) are of a random subset of
    ``x`` (with repeats only if ``num > N``). The Gaussian noise matches the
    data's mean and standard deviation (over all pixels).

    Args:
      rng_key: PRNG key; the result is a deterministic function of it.
      x: ``[N, ...]`` in-distribution examples (typically a test split) in ``data_range``.
      image_shape: ``(H, W[, C])`` of one image, or None for examples that are not images.
      data_range: ``(low, high)`` of the pixel values.
      num: examples per set.
      y: optional ``[N]`` labels so that interpolations pair different classes.

    Returns:
      ``{name: [num, ...] float32 array}`` for every name in :data:`OOD_SET_NAMES`.

    Example::

      >>> from ebm_jax.data import load_digits
      >>> data = load_digits()
      >>> sets = offline_ood_sets(jax.random.key(0), data.x_test, data.image_shape,
      ...                         data.data_range, y=data.y_test)
      >>> sorted(sets)
      ['gaussian_noise', 'hflip', 'interpolations', 'inverted', 'uniform_noise', 'vflip']
      >>> signals = np.sin(np.linspace(0, 3, 40))[None] * np.linspace(-1, 1, 30)[:, None]
      >>> sorted(offline_ood_sets(jax.random.key(0), signals, None, (-1.0, 1.0)))
      ['gaussian_noise', 'interpolations', 'inverted', 'reversed', 'uniform_noise']
    """
    low, high = _check_range(data_range)
    x = _check_images(x, image_shape, (low, high))
    n = x.shape[0]
    num = n if num is None else _check_num(num)
    keys = jax.random.split(rng_key, 4)
    shape = x.shape[1:]
    subset = x[_indices(keys[2], n, num)]
    return {
        "uniform_noise": uniform_noise(keys[0], num, shape, (low, high)),
        "gaussian_noise": gaussian_noise(keys[1], num, shape, (low, high), mean=float(x.mean()),
                                         std=max(float(x.std()), 1e-6 * (high - low))),
        "inverted": inverted(subset, (low, high)),
        **({"reversed": reversed_along(subset)} if image_shape is None else
           {"vflip": flipped(subset, image_shape, "vertical"),
            "hflip": flipped(subset, image_shape, "horizontal")}),
        "interpolations": interpolations(keys[3], x, y, num),
    }
