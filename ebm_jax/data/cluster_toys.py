"""Labelled 2-D sets for clustering: scikit-learn's two moons and two circles, standardised.

The labels say which moon or ring a point came from; clustering methods train without them
and are scored against them (NMI, Hungarian accuracy).
"""
from __future__ import annotations

import numpy as np

from ebm_jax._checks import check_choice, check_int
from ebm_jax.data.digits import ArrayDataset

CLUSTER_TOYS = ("moons", "circles")
# scikit-learn's `noise` of each set (moons: the default of its examples; circles: rings 0.5
# apart, radii 1 and 0.5, so that the rings do not touch)
CLUSTER_TOY_NOISE = {"moons": 0.1, "circles": 0.05}


def load_cluster_toy(name: str, *, seed: int = 0, num_train: int = 1000,
                     num_test: int = 500) -> ArrayDataset:
    """``num_train + num_test`` points of ``name`` (``random_state=seed``), the first
    ``num_train`` for training; both standardised with the training points' mean and standard
    deviation; ``data_range`` the training points' box widened by 0.5.

    Example::

      >>> data = load_cluster_toy("circles")
      >>> data.x_train.shape, data.num_classes, sorted(set(data.y_test.tolist()))
      ((1000, 2), 2, [0, 1])
      >>> bool(abs(data.x_train.mean()) < 1e-6)
      True
    """
    from sklearn import datasets

    check_choice("name", name, CLUSTER_TOYS)
    num_train, num_test = check_int("num_train", num_train), check_int("num_test", num_test)
    total = num_train + num_test
    if name == CLUSTER_TOYS[0]:
        x, y = datasets.make_moons(total, noise=CLUSTER_TOY_NOISE[name], random_state=seed)
    else:
        x, y = datasets.make_circles(total, noise=CLUSTER_TOY_NOISE[name], factor=0.5,
                                     random_state=seed)
    mean, std = x[:num_train].mean(0), x[:num_train].std(0)
    x = ((x - mean) / std).astype(np.float32)
    x_train, x_test = x[:num_train], x[num_train:]
    data_range = (float(x_train.min()) - 0.5, float(x_train.max()) + 0.5)
    return ArrayDataset(x_train, y[:num_train].astype(np.int32), x_test,
                        y[num_train:].astype(np.int32), (2,), 2, data_range, name)
