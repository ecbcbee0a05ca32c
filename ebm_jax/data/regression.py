"""Seeded regression datasets of ``(x, y)`` pairs with continuous targets, for conditional
energies ``E(x, y)`` whose prediction is ``argmin_y E(x, y)``.

- :func:`branches`: ``y = ±sqrt(1 - x²) + noise_std ε``, ``x ~ U(-1, 1)``: two answers for
  every input, where a least-squares regressor predicts their mean (0, far from both).
- :func:`reach_pairs`: the action chunks of an expert that passes an obstacle on either
  side with equal probability, given the position and the goal
  (:mod:`ebm_jax.environments.reach`), where a regressor averages the two ways.
- :func:`ball_fork_pairs`: the next frame of a ball that goes one of two ways at a fork
  (:mod:`ebm_jax.environments.ball_fork`), given the last two frames; the dataset carries
  its environment (``environment``: the test episodes and the check of a predicted frame).

Each returns a :class:`RegressionData` (float32 ``x`` and ``y`` of a train and a test split)
that is a deterministic function of ``seed``, computed with NumPy, with the exact answers
(:func:`branch_modes`) beside it.

Example::

    >>> data = branches(seed=0, num_train=500, num_test=100)
    >>> data.x_train.shape, data.y_train.shape, data.y_train.dtype
    ((500, 1), (500, 1), dtype('float32'))
    >>> modes = branch_modes(data.x_test)                  # [100, 2, 1]: both answers per x
    >>> bool(np.all(np.min(np.abs(data.y_test[:, None] - modes), axis=1) < 0.1))
    True
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_int, check_weight
from ebm_jax.environments import ball_fork, reach

BRANCHES_NOISE = 0.02


class RegressionData(NamedTuple):
    """A regression dataset.

    Attributes:
      x_train: ``float32 [N, dx]`` inputs (or ``[N, *x_shape]``); y_train: ``float32 [N, dy]``
        targets (or ``[N, *y_shape]``).
      x_test: ``float32 [M, dx]``; y_test: ``float32 [M, dy]``.
      modes: ``modes(x [N, dx]) -> [N, K, dy]``: the ``K`` noise-free answers for each input.
      x_range: ``(low, high)`` of the inputs.
      environment: for data cut from episodes of an environment
        (:mod:`ebm_jax.environments`), what its objectives check predictions with (the test
        episodes and the environment's checks); None for other data.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    modes: Callable
    x_range: tuple
    environment: Any = None


def branch_modes(x) -> np.ndarray:
    """The two answers of :func:`branches` at ``x [N, 1]``: ``[N, 2, 1]``, the upper branch
    ``+sqrt(1 - x²)`` first. Works on NumPy and JAX arrays alike (inputs are clipped into
    ``[-1, 1]``).

    Example::

      >>> branch_modes(np.array([[0.0], [0.6]]))[:, :, 0].tolist()
      [[1.0, -1.0], [0.8, -0.8]]
    """
    xp = np if isinstance(x, np.ndarray) else jnp
    upper = xp.sqrt(xp.clip(1.0 - xp.square(x), 0.0, None))
    return xp.stack([upper, -upper], axis=1)


def branches(seed: int = 0, *, num_train: int = 10_000, num_test: int = 1000,
             noise_std: float = BRANCHES_NOISE) -> RegressionData:
    """``y = s sqrt(1 - x²) + noise_std ε`` with ``x ~ U(-1, 1)``, ``s = ±1`` with equal
    probability and ``ε ~ N(0, 1)``: a two-valued answer (the upper and lower half circle).

    Args:
      seed: the dataset is a deterministic function of it.
      num_train, num_test: examples of each split (positive ints).
      noise_std: ``>= 0``, the targets' Gaussian noise.

    Returns:
      :class:`RegressionData` with ``x`` and ``y`` of shape ``[N, 1]``, ``modes`` =
      :func:`branch_modes`, ``x_range`` ``(-1, 1)``.

    Example::

      >>> a, b = branches(3, num_train=10, num_test=5), branches(3, num_train=10, num_test=5)
      >>> bool(np.array_equal(a.y_train, b.y_train)), a.x_test.shape
      (True, (5, 1))
    """
    num_train = check_int("num_train", num_train)
    num_test = check_int("num_test", num_test)
    check_weight("noise_std", noise_std, 0.0, expected="a number >= 0 (finite)")
    rng = np.random.default_rng([30_000, seed])
    size = num_train + num_test
    x = rng.uniform(-1.0, 1.0, (size, 1))
    sign = np.where(rng.random((size, 1)) < 0.5, 1.0, -1.0)
    y = sign * np.sqrt(1.0 - x ** 2) + noise_std * rng.standard_normal((size, 1))
    x, y = x.astype(np.float32), y.astype(np.float32)
    return RegressionData(x[:num_train], y[:num_train], x[num_train:], y[num_train:],
                          branch_modes, (-1.0, 1.0))


def reach_pairs(seed: int = 0, *, num_train: int = 1000, num_test: int = 200) -> RegressionData:
    """The reach task's demonstrations (:mod:`ebm_jax.environments.reach`) as a regression
    dataset: observations ``x [N, 4]`` (position, goal) and the expert's action chunks
    ``y [N, 8]`` (4 moves), ``modes`` the chunks of the expert's two ways round the obstacle
    (:func:`~ebm_jax.environments.reach.mode_chunks`, ``[N, 2, 8]``).

    Args:
      seed: the dataset is a deterministic function of it.
      num_train, num_test: demonstrated episodes of each split (about 23 pairs each).

    Example::

      >>> data = reach_pairs(0, num_train=20, num_test=5)
      >>> data.x_train.shape[1], data.y_train.shape[1], data.modes(data.x_test).shape[1:]
      (4, 8, (2, 8))
    """
    x_train, y_train, x_test, y_test = reach.demonstration_pairs(seed, num_train=num_train,
                                                                 num_test=num_test)
    return RegressionData(x_train, y_train, x_test, y_test, reach.mode_chunks, (-1.0, 1.0),
                          reach.ReachTask())


def ball_fork_pairs(seed: int = 0, *, num_train: int = 1000,
                    num_test: int = 200) -> RegressionData:
    """:func:`ebm_jax.environments.ball_fork.ball_fork` as a regression dataset: contexts
    ``x [N, 2, 12, 12]`` (the last two frames), next frames ``y [N, 12, 12]`` in ``[0, 1]``,
    ``modes`` the two true next frames (:func:`~ebm_jax.environments.ball_fork.true_next_frames`,
    ``[N, 2, 12, 12]``), and the environment of the test episodes.

    Args:
      seed: the dataset is a deterministic function of it.
      num_train, num_test: episodes of each split (10 pairs each).

    Example::

      >>> data = ball_fork_pairs(0, num_train=10, num_test=4)
      >>> data.x_train.shape, data.modes(data.x_test).shape, data.environment.rollout_steps
      ((100, 2, 12, 12), (40, 2, 12, 12), 10)
    """
    d = ball_fork.ball_fork(seed, num_train=num_train, num_test=num_test)
    return RegressionData(d.x_train, d.y_train, d.x_test, d.y_test, ball_fork.true_next_frames,
                          (0.0, 1.0), d.environment)


# A dataset here is seed -> RegressionData (environments add theirs as ball_fork_pairs does).
REGRESSION_DATASETS = {"branches": branches, "ball_fork": ball_fork_pairs,
                       "reach": reach_pairs}

__all__ = ["REGRESSION_DATASETS", "RegressionData", "ball_fork_pairs", "branch_modes",
           "branches", "reach_pairs"]
