"""scikit-learn's bundled handwritten digits (8x8, 10 classes), offline."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ebm_jax._checks import check_probability


class ArrayDataset(NamedTuple):
    """An in-memory labelled dataset with a fixed train/test split.

    Attributes:
      x_train, x_test: ``[N, D]`` float32 features, scaled to ``data_range``.
      y_train, y_test: ``[N]`` int32 labels.
      image_shape: ``(H, W, C)`` of one example, for image networks and plots.
      num_classes: number of classes.
      data_range: ``(low, high)`` of the features.
      name: dataset name.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple
    num_classes: int
    data_range: tuple
    name: str


def load_digits(test_fraction: float = 0.2, split_seed: int = 0) -> ArrayDataset:
    """Load the 1,797 digits, scaled from [0, 16] to [-1, 1], with a fixed stratified split.

    The split depends only on ``test_fraction`` and ``split_seed``, so every
    run and every test sees the same 1,437 training and 360 test images.

    Example::

      >>> data = load_digits()
      >>> data.x_train.shape, data.x_test.shape
      ((1437, 64), (360, 64))
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    check_probability("test_fraction", test_fraction, include_zero=False, include_one=False)
    raw = sk_load_digits()
    x = (raw.data.astype(np.float32) / 8.0 - 1.0)
    y = raw.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=split_seed,
                                              stratify=y)
    return ArrayDataset(x_tr, y_tr, x_te, y_te, (8, 8, 1), 10, (-1.0, 1.0), "digits")
