"""Datasets with human-readable binary concepts beside the class: the seven-segment digits.

A concept dataset carries, for every example, a class ``y`` and a binary concept vector ``c``
(``[C]`` of 0/1), which concept-bottleneck models predict on the way to the class. The shipped
one needs no download: scikit-learn's bundled 8x8 digits, each class annotated with the
segments of its seven-segment display code (``a`` top, ``b`` top right, ``c`` bottom right,
``d`` bottom, ``e`` bottom left, ``f`` top left, ``g`` middle), with instance-level label noise
in training only. Users bring their own concept matrix through :func:`concept_dataset`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from ebm_jax._checks import check_probability
from ebm_jax.data.digits import load_digits

SEGMENT_NAMES = ("top", "top_right", "bottom_right", "bottom", "bottom_left", "top_left",
                 "middle")
# Rows are the digits 0-9, columns the segments a-g of SEGMENT_NAMES; every row is unique.
SEVEN_SEGMENT_CODES = np.array([
    [1, 1, 1, 1, 1, 1, 0],   # 0
    [0, 1, 1, 0, 0, 0, 0],   # 1
    [1, 1, 0, 1, 1, 0, 1],   # 2
    [1, 1, 1, 1, 0, 0, 1],   # 3
    [0, 1, 1, 0, 0, 1, 1],   # 4
    [1, 0, 1, 1, 0, 1, 1],   # 5
    [1, 0, 1, 1, 1, 1, 1],   # 6
    [1, 1, 1, 0, 0, 0, 0],   # 7
    [1, 1, 1, 1, 1, 1, 1],   # 8
    [1, 1, 1, 1, 0, 1, 1],   # 9
], dtype=np.int32)


class ConceptDataset(NamedTuple):
    """An in-memory dataset of examples, classes and binary concepts, split in two.

    Attributes:
      x_train, x_test: ``[N, D]`` float32 features.
      y_train, y_test: ``[N]`` int32 classes in ``[0, num_classes)``.
      c_train, c_test: ``[N, C]`` int32 concepts in {0, 1}.
      concept_names: ``C`` names.
      num_classes: number of classes.
      image_shape: ``(H, W, C)`` of one example for image data, else None.
      name: dataset name.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    c_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    c_test: np.ndarray
    concept_names: tuple
    num_classes: int
    image_shape: Optional[tuple]
    name: str

    @property
    def num_concepts(self) -> int:
        return self.c_train.shape[1]


def flip_concepts(rng: np.random.Generator, concepts: np.ndarray, rate: float) -> np.ndarray:
    """Flip each entry of ``concepts`` (``[N, C]`` of 0/1) independently with probability
    ``rate``: instance-level concept-label noise.

    Example::

      >>> noisy = flip_concepts(np.random.default_rng(0), np.zeros((1000, 7), np.int32), 0.05)
      >>> bool(0.04 < noisy.mean() < 0.06)
      True
    """
    check_probability("rate", rate)
    flips = rng.random(concepts.shape) < rate
    return np.where(flips, 1 - concepts, concepts).astype(np.int32)


def _check_split(name: str, x, y, c, num_classes: Optional[int]) -> tuple:
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    c = np.asarray(c)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x_{name} has shape {x.shape}: expected [N, D] with N >= 1")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_{name} has shape {y.shape} and dtype {y.dtype}: expected "
                         f"({x.shape[0]},) integer classes, one per row of x_{name}")
    if c.ndim != 2 or c.shape[0] != x.shape[0] or c.shape[1] == 0:
        raise ValueError(f"c_{name} has shape {c.shape}: expected [{x.shape[0]}, C] with "
                         "C >= 1, one concept vector per row of x_" + name)
    if not np.isin(c, (0, 1)).all():
        raise ValueError(f"c_{name} has values {sorted(set(np.unique(c).tolist()))[:6]}: "
                         "expected binary concepts in {0, 1}")
    if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"y_{name} has classes in [{y.min()}, {y.max()}]: expected classes "
                         f"in [0, {num_classes})")
    return x, y.astype(np.int32), c.astype(np.int32)


def concept_dataset(x_train, y_train, c_train, x_test, y_test, c_test, *,
                    concept_names: Optional[Sequence[str]] = None,
                    num_classes: Optional[int] = None, name: str = "concepts",
                    image_shape: Optional[tuple] = None) -> ConceptDataset:
    """A :class:`ConceptDataset` from your own arrays: features, classes and a binary concept
    matrix per split, checked (shapes, binary concepts, class range) before anything runs.

    Example::

      >>> x, y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
      >>> c = np.array([[0, 1], [1, 0], [0, 1], [1, 1]])
      >>> data = concept_dataset(x, y, c, x, y, c, concept_names=["red", "round"])
      >>> data.num_concepts, data.num_classes
      (2, 2)
    """
    x_train, y_train, c_train = _check_split("train", x_train, y_train, c_train, num_classes)
    x_test, y_test, c_test = _check_split("test", x_test, y_test, c_test, num_classes)
    if x_test.shape[1] != x_train.shape[1] or c_test.shape[1] != c_train.shape[1]:
        raise ValueError(f"the test split has {x_test.shape[1]} features and "
                         f"{c_test.shape[1]} concepts: expected those of the training split "
                         f"({x_train.shape[1]} and {c_train.shape[1]})")
    num_concepts = c_train.shape[1]
    names = tuple(concept_names) if concept_names is not None else tuple(
        f"concept_{k}" for k in range(num_concepts))
    if len(names) != num_concepts:
        raise ValueError(f"concept_names has {len(names)} names: expected {num_concepts}, "
                         "one per concept column")
    if num_classes is None:
        num_classes = int(max(y_train.max(), y_test.max())) + 1
    return ConceptDataset(x_train, y_train, c_train, x_test, y_test, c_test, names,
                          int(num_classes), image_shape, name)


def load_seven_segment_digits(noise: float = 0.05, *, test_fraction: float = 0.2,
                              split_seed: int = 0, noise_seed: int = 0) -> ConceptDataset:
    """The bundled digits (features in [-1, 1], 1,437 training and 360 test images) with each
    class's seven-segment code as its 7 concepts; a share ``noise`` of the training concept
    labels flipped, instance by instance (test concepts are the clean codes).

    Example::

      >>> data = load_seven_segment_digits()
      >>> data.c_train.shape, data.concept_names[:2]
      ((1437, 7), ('top', 'top_right'))
      >>> bool((data.c_test == SEVEN_SEGMENT_CODES[data.y_test]).all())
      True
    """
    check_probability("noise", noise, include_one=False)
    digits = load_digits(test_fraction=test_fraction, split_seed=split_seed)
    c_train = flip_concepts(np.random.default_rng(noise_seed),
                            SEVEN_SEGMENT_CODES[digits.y_train], noise)
    return ConceptDataset(digits.x_train, digits.y_train, c_train, digits.x_test, digits.y_test,
                          SEVEN_SEGMENT_CODES[digits.y_test], SEGMENT_NAMES, 10,
                          digits.image_shape, "seven_segment_digits")


def concept_frequencies(y: np.ndarray, c: np.ndarray, num_classes: int) -> np.ndarray:
    """``[K, C]``: the empirical ``p(c_k = 1 | y)`` of labelled data (NaN for an absent class).

    Example::

      >>> concept_frequencies(np.array([0, 0, 1]), np.array([[1, 0], [1, 1], [0, 0]]), 2)
      array([[1. , 0.5],
             [0. , 0. ]])
    """
    y, c = np.asarray(y), np.asarray(c, np.float64)
    out = np.full((num_classes, c.shape[1]), np.nan)
    for k in range(num_classes):
        if (y == k).any():
            out[k] = c[y == k].mean(0)
    return out
