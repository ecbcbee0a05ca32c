"""A ball on small frames that reaches a fork and goes one of two ways at random: a next-frame
task whose answer is bimodal at the fork (a world model that predicts the mean draws two
half balls, neither of which is a frame).

One episode is :data:`EPISODE_LENGTH` frames ``[H, W] = [12, 12]`` (background 0, the ball one
pixel at 1). The ball enters at a side column (left or right, at random) on a row drawn from
:data:`START_ROWS` and moves one column a step across the frame. When it has made
:data:`FORK_STEP` steps (the fork, at the same column for every episode of a side), it turns
up or down with equal probability: :data:`TURN_STEPS` diagonal steps (one row and one column
each), then straight on in its new lane. Nothing else is random, so given the last two frames
(the position and the velocity: :data:`CONTEXT_LENGTH`) the next frame is one frame, except
at the fork, where it is one of two.

* :func:`episodes`: ``[N, EPISODE_LENGTH, H, W]`` seeded episodes.
* :func:`context_pairs`: every ``(context [C, H, W], next frame [H, W])`` of episodes, and the
  step of each (:func:`fork_mask` keeps those at the fork).
* :func:`true_next_frames`: the two true next frames of contexts (the same frame twice away
  from the fork), decoded from the contexts themselves.
* :func:`valid_frames`: the environment's check: a frame is valid if every pixel is within
  :data:`PIXEL_TOLERANCE` of one true next frame.
* :func:`rollout_validity`: which frames of autoregressive rollouts are valid.
* :func:`ball_fork`: a train and a test split of pairs (a
  :class:`~ebm_jax.data.RegressionData` via :mod:`ebm_jax.data.regression`'s registry).

Example::

    >>> frames = episodes(0, 4)
    >>> frames.shape, float(frames[0, 0].sum())          # one ball per frame
    ((4, 12, 12, 12), 1.0)
    >>> contexts, targets, steps = context_pairs(frames)
    >>> contexts.shape, targets.shape, int(fork_mask(steps).sum())
    ((40, 2, 12, 12), (40, 12, 12), 4)
    >>> bool(valid_frames(contexts, targets).all())
    True
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ebm_jax._checks import check_int

FRAME_SHAPE = (12, 12)
EPISODE_LENGTH = 12          # frames: the ball crosses the 12 columns
CONTEXT_LENGTH = 2           # frames a prediction sees: the position and the velocity
FORK_STEP = 5                # the step at which the ball is at the fork
TURN_STEPS = 2               # diagonal steps after the fork, then straight on
START_ROWS = (2, 3, 4, 5, 6, 7, 8, 9)   # rows +- TURN_STEPS stay inside the frame
ROLLOUT_STEPS = EPISODE_LENGTH - CONTEXT_LENGTH   # 10: from the first context to the end
# A frame is valid when every pixel is within 0.25 of one true next frame: the ball's pixel
# above 0.75, every other below 0.25, so the frame reads as one ball at one place with a
# margin. The mean of the two continuations (0.5 at both places) is 0.25 outside the nearest
# of them: rejected whatever the side of 0.5 a regressor's estimate of the 50/50 split falls.
PIXEL_TOLERANCE = 0.25
SEED_TAG = 17_000            # numpy's default_rng([SEED_TAG, seed])

__all__ = ["BallForkEnvironment", "CONTEXT_LENGTH", "EPISODE_LENGTH", "FORK_STEP",
           "FRAME_SHAPE", "PIXEL_TOLERANCE", "ROLLOUT_STEPS", "START_ROWS", "TURN_STEPS",
           "ball_fork", "ball_positions", "context_pairs", "environment", "episodes",
           "fork_mask", "rollout_validity", "true_next_frames", "valid_frames"]


def _paths(rows: np.ndarray, sides: np.ndarray, turns: np.ndarray) -> tuple:
    """Rows and columns ``[N, EPISODE_LENGTH]`` of episodes starting on ``rows``, from the
    left (``sides`` +1) or the right (-1), turning down (``turns`` +1) or up (-1)."""
    t = np.arange(EPISODE_LENGTH)
    cols = np.where(sides[:, None] > 0, t, FRAME_SHAPE[1] - 1 - t)
    offset = np.clip(t - FORK_STEP, 0, TURN_STEPS)
    return rows[:, None] + turns[:, None] * offset, cols


def _draw(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Frames ``[*rows.shape, H, W]`` with one ball at ``(rows, cols)``."""
    frames = np.zeros(rows.shape + FRAME_SHAPE, np.float32)
    index = np.indices(rows.shape)
    frames[(*index, rows, cols)] = 1.0
    return frames


def episodes(seed: int, num: int) -> np.ndarray:
    """``float32 [num, EPISODE_LENGTH, H, W]``: seeded episodes (start row, side and turn
    drawn independently and uniformly), a deterministic function of ``seed``.

    Example::

      >>> bool(np.array_equal(episodes(3, 5), episodes(3, 5)))
      True
    """
    num = check_int("num", num)
    rng = np.random.default_rng([SEED_TAG, seed])
    rows = rng.choice(np.asarray(START_ROWS), num)
    sides = rng.choice(np.array([1, -1]), num)
    turns = rng.choice(np.array([1, -1]), num)
    return _draw(*_paths(rows, sides, turns))


def context_pairs(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``(context, next frame)`` of episodes ``[N, T, H, W]``: ``contexts [M, C, H, W]``,
    ``targets [M, H, W]`` and ``steps [M]`` (the step of each context's last frame), episode
    by episode, ``M = N (T - C)``."""
    frames = np.asarray(frames)
    num, length = frames.shape[:2]
    starts = np.arange(length - CONTEXT_LENGTH)
    window = starts[:, None] + np.arange(CONTEXT_LENGTH)
    contexts = frames[:, window].reshape(-1, CONTEXT_LENGTH, *frames.shape[2:])
    targets = frames[:, starts + CONTEXT_LENGTH].reshape(-1, *frames.shape[2:])
    steps = np.tile(starts + CONTEXT_LENGTH - 1, num)
    return contexts, targets, steps


def fork_mask(steps: np.ndarray) -> np.ndarray:
    """``bool [M]``: the contexts whose next frame is the fork's (two answers)."""
    return np.asarray(steps) == FORK_STEP


def ball_positions(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` of the brightest pixel of frames ``[..., H, W]``."""
    frames = np.asarray(frames)
    flat = np.argmax(frames.reshape(*frames.shape[:-2], -1), axis=-1)
    return np.divmod(flat, FRAME_SHAPE[1])


def true_next_frames(contexts: np.ndarray) -> np.ndarray:
    """``float32 [M, 2, H, W]``: the two true next frames of contexts ``[M, C, H, W]`` (the
    same frame twice away from the fork), from the ball's last two positions (the brightest
    pixels). A context at the end of the frame has no next frame: both are blank.

    Example::

      >>> contexts, _, steps = context_pairs(episodes(0, 1))
      >>> answers = true_next_frames(contexts[fork_mask(steps)])
      >>> [ball_positions(a)[0].tolist() for a in answers]          # one row down, one up
      [[4, 2]]
    """
    rows, cols = ball_positions(np.asarray(contexts)[:, -2:])       # [M, 2]
    side = np.sign(cols[:, 1] - cols[:, 0])
    step = np.where(side > 0, cols[:, 1], FRAME_SHAPE[1] - 1 - cols[:, 1])
    drift = rows[:, 1] - rows[:, 0]
    turning = (step > FORK_STEP) & (step < FORK_STEP + TURN_STEPS)
    at_fork = step == FORK_STEP
    down = rows[:, 1] + np.where(at_fork, 1, np.where(turning, drift, 0))
    up = rows[:, 1] + np.where(at_fork, -1, np.where(turning, drift, 0))
    next_rows = np.stack([down, up], 1)
    next_cols = np.broadcast_to((cols[:, 1] + side)[:, None], next_rows.shape)
    inside = ((next_rows >= 0) & (next_rows < FRAME_SHAPE[0]) & (next_cols >= 0)
              & (next_cols < FRAME_SHAPE[1]))
    frames = _draw(np.clip(next_rows, 0, FRAME_SHAPE[0] - 1),
                   np.clip(next_cols, 0, FRAME_SHAPE[1] - 1))
    return frames * inside[..., None, None]


def valid_frames(contexts: np.ndarray, frames: np.ndarray, *,
                 tolerance: float = PIXEL_TOLERANCE) -> np.ndarray:
    """``bool [M]``: each frame ``[M, H, W]`` (or flat ``[M, H W]``) is within ``tolerance`` of
    one of its context's true next frames at every pixel (one ball, on one of the true
    paths; see :data:`PIXEL_TOLERANCE`). Non-finite frames are invalid.

    Example: both continuations at the fork pass, their mean does not::

      >>> contexts, _, steps = context_pairs(episodes(0, 1))
      >>> fork = contexts[fork_mask(steps)]
      >>> a, b = true_next_frames(fork)[0]
      >>> valid_frames(np.stack([fork[0]] * 3), np.stack([a, b, (a + b) / 2])).tolist()
      [True, True, False]
    """
    frames = np.asarray(frames, np.float32).reshape(-1, 1, *FRAME_SHAPE)
    gap = np.abs(frames - true_next_frames(contexts)).reshape(frames.shape[0], 2, -1)
    return np.all(np.isfinite(frames.reshape(frames.shape[0], -1)), axis=1) \
        & np.any(np.all(gap < tolerance, axis=-1), axis=1)


def rollout_validity(contexts: np.ndarray, rollouts: np.ndarray) -> np.ndarray:
    """``bool [E, T]``: which frames of rollouts ``[E, T, H, W]`` (predicted one after the
    other from the contexts ``[E, C, H, W]``, each prediction seeing the previous
    predictions) are valid given the frames before them. An episode's rollout is valid
    when its row is all True."""
    contexts, rollouts = np.asarray(contexts), np.asarray(rollouts)
    seen = np.concatenate([contexts, rollouts], axis=1)
    steps = rollouts.shape[1]
    return np.stack([valid_frames(seen[:, t:t + CONTEXT_LENGTH], rollouts[:, t])
                     for t in range(steps)], axis=1)


class BallForkEnvironment(NamedTuple):
    """The environment a dataset of :func:`ball_fork` carries for its checks.

    Attributes:
      frame_shape: ``(H, W)``; context_length: frames in a context; rollout_steps: frames a
      rollout predicts from an episode's first context.
      test_episodes: ``float32 [E, EPISODE_LENGTH, H, W]``, the test split's episodes.
      context_pairs, true_next_frames, valid_frames, rollout_validity, fork_mask: this
      module's functions.
    """

    frame_shape: tuple
    context_length: int
    rollout_steps: int
    test_episodes: np.ndarray
    context_pairs: Callable
    true_next_frames: Callable
    valid_frames: Callable
    rollout_validity: Callable
    fork_mask: Callable


def environment(test_episodes: np.ndarray) -> BallForkEnvironment:
    """The :class:`BallForkEnvironment` of a test split's episodes."""
    return BallForkEnvironment(FRAME_SHAPE, CONTEXT_LENGTH, ROLLOUT_STEPS,
                               np.asarray(test_episodes), context_pairs, true_next_frames,
                               valid_frames, rollout_validity, fork_mask)


class BallForkData(NamedTuple):
    """Pairs of :func:`ball_fork` (float32): ``x_train [N, C, H, W]`` contexts, ``y_train
    [N, H, W]`` next frames, ``steps_train [N]``, the same for the test split, and the
    :class:`BallForkEnvironment` of the test episodes."""

    x_train: np.ndarray
    y_train: np.ndarray
    steps_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    steps_test: np.ndarray
    environment: BallForkEnvironment


def ball_fork(seed: int = 0, *, num_train: int = 1000, num_test: int = 200) -> BallForkData:
    """``num_train`` and ``num_test`` episodes (independent draws of ``seed``) cut into
    ``(context, next frame)`` pairs (:data:`ROLLOUT_STEPS` per episode).

    Example::

      >>> data = ball_fork(0, num_train=20, num_test=5)
      >>> data.x_train.shape, data.y_test.shape, data.environment.test_episodes.shape
      ((200, 2, 12, 12), (50, 12, 12), (5, 12, 12, 12))
    """
    num_train = check_int("num_train", num_train)
    num_test = check_int("num_test", num_test)
    frames = episodes(seed, num_train + num_test)
    train, test = context_pairs(frames[:num_train]), context_pairs(frames[num_train:])
    return BallForkData(*train, *test, environment(frames[num_train:]))
