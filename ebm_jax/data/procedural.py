"""Seeded classification datasets of the shapes and scales users bring, unlike the shipped
ones (digits and images in [-1, 1], 2-D toys in [-4.5, 4.5]): what the robustness matrix
trains on, and a quick way to try a setting on data of another kind.

- :func:`signals`: 1-D signals ``[N, L]`` (or ``[N, L, C]``) at unit variance, one waveform
  family per class (frequency, chirp, bursts) under noise and random phase;
- :func:`heavy_tailed_table`: tabular features ``[N, D]`` with Student-t noise (outliers many
  standard deviations out), classes separated along a few informative features;
- :func:`byte_images`: small images ``[N, H, W, 1]`` in ``[0, 255]`` (bars and blobs at
  random positions), the scale of raw pixels;
- :func:`subsample`: a small, class-balanced share of any of these (the tiny-data case).

Each returns a :class:`~ebm_jax.data.files.FileData` (float32 examples, int32 labels, a
train and a test split), a deterministic function of ``seed``, computed with NumPy.

Example::

    >>> data = signals(seed=0, num_train=300, num_test=100, length=40, num_classes=5)
    >>> data.x_train.shape, data.num_classes, round(float(data.x_train.std()), 2)
    ((300, 40), 5, 1.0)
"""
from __future__ import annotations

import numpy as np

from ebm_jax._checks import check_int
from ebm_jax.data.files import FileData

WAVEFORMS = ("sine", "chirp", "burst")


def _labels(rng: np.random.Generator, num_train: int, num_test: int,
            num_classes: int) -> np.ndarray:
    """Labels of the training then the test split, each balanced, in a random order."""
    return np.concatenate([rng.permutation(np.arange(n) % num_classes)
                           for n in (num_train, num_test)]).astype(np.int32)


def _split(x: np.ndarray, y: np.ndarray, num_train: int, name: str) -> FileData:
    return FileData(x[:num_train].astype(np.float32), y[:num_train], x[num_train:]
                    .astype(np.float32), y[num_train:], int(y.max()) + 1, None,
                    f"procedural:{name}")


def _check_sizes(num_train, num_test, num_classes) -> tuple[int, int, int]:
    num_train, num_test = check_int("num_train", num_train), check_int("num_test", num_test)
    num_classes = check_int("num_classes", num_classes)
    if num_classes < 2 or min(num_train, num_test) < num_classes:
        raise ValueError(f"num_classes={num_classes} with num_train={num_train}, num_test="
                         f"{num_test}: expected at least 2 classes and one example of each "
                         "class in each split")
    return num_train, num_test, num_classes


def signals(seed: int = 0, *, num_train: int = 4000, num_test: int = 1000, length: int = 40,
            channels: int = 0, num_classes: int = 10, waveform: str = "sine",
            noise: float = 0.6) -> FileData:
    """Noisy 1-D signals standardised to unit variance (values about -4..4).

    Class ``c`` sets the waveform's frequency (``sine``), its sweep rate (``chirp``) or the
    position of a burst (``burst``); phase, amplitude and noise vary per example.

    Args:
      length: ``L`` samples per signal.
      channels: 0 for ``[N, L]``; ``C > 0`` for ``[N, L, C]`` (each channel a phase-shifted
        copy under its own noise).
      waveform: one of :data:`WAVEFORMS`.
      noise: the standard deviation of the added white noise, relative to the waveform.
    """
    num_train, num_test, num_classes = _check_sizes(num_train, num_test, num_classes)
    length = check_int("length", length)
    if waveform not in WAVEFORMS:
        raise ValueError(f"waveform={waveform!r}: expected one of {WAVEFORMS}")
    rng = np.random.default_rng(seed)
    n = num_train + num_test
    y = _labels(rng, num_train, num_test, num_classes)
    t = np.linspace(0.0, 1.0, length)[None, :]
    depth = max(channels, 1)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)) + np.linspace(0, np.pi / 2, depth)[None, None]
    amplitude = rng.uniform(0.7, 1.3, (n, 1, 1))
    c = y[:, None, None].astype(np.float64)
    t3 = t[..., None]
    if waveform == "sine":
        wave = np.sin(2 * np.pi * (1 + c) * t3 + phase)
    elif waveform == "chirp":
        wave = np.sin(2 * np.pi * (2 * t3 + 1.5 * (1 + c) * t3 ** 2) + phase)
    else:
        centre = (c + 0.5) / num_classes
        wave = np.exp(-0.5 * ((t3 - centre) / 0.06) ** 2) * np.sin(2 * np.pi * 8 * t3 + phase)
    x = amplitude * wave + noise * rng.normal(size=(n, length, depth))
    x = (x - x.mean()) / x.std()
    return _split(x if channels else x[..., 0], y, num_train, f"signals_{waveform}")


def heavy_tailed_table(seed: int = 0, *, num_train: int = 4000, num_test: int = 1000,
                       num_features: int = 12, num_informative: int = 4, num_classes: int = 3,
                       dof: float = 2.5, separation: float = 1.5) -> FileData:
    """Tabular features with Student-t noise (``dof`` degrees of freedom: a few values tens of
    standard deviations out), on mixed scales (each column multiplied by ``10**U(-1, 2)``).

    Class means differ along the first ``num_informative`` features (by ``separation`` noise
    scales); the other features are noise.
    """
    num_train, num_test, num_classes = _check_sizes(num_train, num_test, num_classes)
    num_features = check_int("num_features", num_features)
    if not 0 < num_informative <= num_features:
        raise ValueError(f"num_informative={num_informative!r}: expected 1..num_features="
                         f"{num_features}")
    if not dof > 0:
        raise ValueError(f"dof={dof!r}: expected a positive number")
    rng = np.random.default_rng(seed)
    n = num_train + num_test
    y = _labels(rng, num_train, num_test, num_classes)
    means = np.zeros((num_classes, num_features))
    means[:, :num_informative] = separation * rng.normal(size=(num_classes, num_informative))
    x = means[y] + rng.standard_t(dof, size=(n, num_features))
    x = x * 10.0 ** rng.uniform(-1.0, 2.0, size=(1, num_features))  # mixed column scales
    return _split(x, y, num_train, "heavy_tailed_table")


def byte_images(seed: int = 0, *, num_train: int = 4000, num_test: int = 1000, size: int = 12,
                num_classes: int = 4, noise: float = 20.0) -> FileData:
    """Small grey images in ``[0, 255]`` (raw pixel scale), ``[N, size, size, 1]``.

    Classes: a horizontal bar, a vertical bar, a filled square, a ring, then diagonals
    (up to 6 classes), each at a random position and brightness, over noisy background.
    """
    num_train, num_test, num_classes = _check_sizes(num_train, num_test, num_classes)
    size = check_int("size", size)
    if num_classes > 6 or size < 8:
        raise ValueError(f"num_classes={num_classes}, size={size}: expected at most 6 "
                         "classes and size >= 8")
    rng = np.random.default_rng(seed)
    n = num_train + num_test
    y = _labels(rng, num_train, num_test, num_classes)
    rows, cols = np.mgrid[0:size, 0:size]
    x = np.empty((n, size, size))
    for i in range(n):
        r, c = rng.integers(2, size - 2, 2)
        half = size // 4
        shape = [np.abs(rows - r) <= 0,                                       # horizontal bar
                 np.abs(cols - c) <= 0,                                       # vertical bar
                 (np.abs(rows - r) <= 1) & (np.abs(cols - c) <= 1),           # square
                 np.abs(np.hypot(rows - r, cols - c) - half) < 0.8,           # ring
                 rows - r == cols - c,                                        # diagonal
                 rows - r == c - cols][y[i]]                                  # anti-diagonal
        background, ink = rng.uniform(0, 60), rng.uniform(160, 255)
        x[i] = np.where(shape, ink, background) + noise * rng.normal(size=(size, size))
    return _split(np.clip(x, 0, 255)[..., None], y, num_train, "byte_images")


def subsample(data: FileData, num_train: int, *, seed: int = 0) -> FileData:
    """A class-balanced subset of ``num_train`` training examples (the test split is kept)."""
    num_train = check_int("num_train", num_train)
    k = data.num_classes
    if num_train < k or num_train > len(data.x_train):
        raise ValueError(f"num_train={num_train}: expected {k}..{len(data.x_train)} (one "
                         "example of each class at least)")
    rng = np.random.default_rng(seed)
    per_class = np.full(k, num_train // k)
    per_class[: num_train % k] += 1
    keep = np.concatenate([rng.choice(np.flatnonzero(data.y_train == c), m, replace=False)
                           for c, m in enumerate(per_class)])
    keep = rng.permutation(keep)
    return data._replace(x_train=data.x_train[keep], y_train=data.y_train[keep],
                         path=f"{data.path}_{num_train}")


__all__ = ["WAVEFORMS", "byte_images", "heavy_tailed_table", "signals", "subsample"]
