"""Deterministic, resumable batching: the batch at step ``s`` is a pure function of ``s``.

Each epoch is a fresh permutation drawn from ``(seed, epoch)``, so resuming
at step ``s`` needs nothing but ``s`` (already in the train state): no
iterator state to save, and an interrupted run sees exactly the batches an
uninterrupted one would.
"""
from __future__ import annotations

import functools

from typing import Optional

import numpy as np

from ebm_jax._checks import check_int


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a permutation seeded by ``(seed, epoch)``, read-only.

    Kept for the epoch's batches: drawing it anew for each of them took 0.7 ms a step on the
    50,000 points of a 2-D toy (1.5 ms on a busy machine), about as long as a small train step.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    order.setflags(write=False)
    return order


def batch_indices(num_examples: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of the batch at ``step``; the last partial batch of an epoch is dropped.

    Example::

      >>> batch_indices(10, 4, 0, seed=0).shape
      (4,)
    """
    check_int("batch_size", batch_size)
    if batch_size > num_examples:
        raise ValueError(f"batch_size={batch_size} is larger than the {num_examples} examples")
    per_epoch = num_examples // batch_size
    epoch, offset = divmod(int(step), per_epoch)
    order = epoch_permutation(num_examples, seed, epoch)
    return order[offset * batch_size:(offset + 1) * batch_size]


class Batches:
    """Iterate over ``{"x", "y"}`` batches of arrays from a given step on.

    Args:
      x: ``[N, ...]`` features.
      y: ``[N]`` labels or None.
      batch_size: examples per batch.
      seed: shuffling seed.
      start_step: the step to resume from.
      process_index, process_count: on several hosts, process ``p`` yields rows
        ``p * B/P : (p+1) * B/P`` of each global batch (``batch_size`` is global).
      extras: more per-example arrays (``{name: [N, ...]}``), batched alongside under their
        names (e.g. the concepts ``"c"`` of a concept dataset).

    Example::

      >>> from ebm_jax.data import load_digits
      >>> data = load_digits()               # 8x8 digits in [-1, 1], 1,437 train, 360 test
      >>> it = Batches(data.x_train, data.y_train, 64, seed=0, start_step=100)
      >>> batch = next(it)      # the same batch step 100 of a fresh run sees
      >>> batch["x"].shape, batch["y"].shape
      ((64, 64), (64,))
    """

    def __init__(self, x: np.ndarray, y, batch_size: int, *, seed: int, start_step: int = 0,
                 process_index: int = 0, process_count: int = 1, extras: Optional[dict] = None):
        if y is not None and len(y) != len(x):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}: expected the same number")
        self.extras = dict(extras or {})
        for name, value in self.extras.items():
            if name in ("x", "y") or len(value) != len(x):
                raise ValueError(f"extras[{name!r}] has {len(value)} rows: expected a name other "
                                 f"than 'x' and 'y' and {len(x)} rows, one per example")
        batch_indices(len(x), batch_size, 0, seed)  # validates batch_size up front
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index}, process_count={process_count}: "
                             "expected 0 <= process_index < process_count")
        if batch_size % process_count:
            raise ValueError(f"batch_size={batch_size} with process_count={process_count}: "
                             "expected a global batch divisible by the number of processes")
        self.x, self.y, self.batch_size, self.seed, self.step = x, y, batch_size, seed, start_step
        local = batch_size // process_count
        self._rows = slice(process_index * local, (process_index + 1) * local)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        idx = batch_indices(len(self.x), self.batch_size, self.step, self.seed)[self._rows]
        self.step += 1
        batch = {"x": self.x[idx]}
        if self.y is not None:
            batch["y"] = self.y[idx]
        batch.update({name: value[idx] for name, value in self.extras.items()})
        return batch
