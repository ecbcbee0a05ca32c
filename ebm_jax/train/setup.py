"""One call that sets up a guarded run as the command line does: the state, the jitted step
with the divergence guard, checkpoints (resuming from the latest) and rollback.

``make_train_step`` and ``fit`` are already guarded by default; :func:`setup_training` adds
what they cannot know: a learning-rate multiplier that a rollback can lower, a checkpoint
directory with exact resume, and batches positioned at the restored step.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator, NamedTuple, Optional, Union

import jax
import optax

from ebm_jax.losses.base import LossTransform
from ebm_jax.train.checkpoint import Checkpointer
from ebm_jax.train.fit import fit
from ebm_jax.train.guard import (DivergenceGuard, RollbackPolicy, learning_rate_scale,
                                 with_lr_scale)
from ebm_jax.train.state import TrainState, init_train_state
from ebm_jax.train.step import make_train_step

# batches(step) -> the batches from ``step`` on; or an iterator positioned at the state's step
BatchSource = Union[Callable[[int], Iterator[dict]], Iterator[dict]]


class Training(NamedTuple):
    """A run set up by :func:`setup_training`.

    Attributes:
      state: the state to start from (step 0, or the latest checkpoint's).
      train_step: the jitted, guarded, donating ``train_step(state, batch)``.
      checkpointer: the run's :class:`~ebm_jax.train.Checkpointer`, or None without
        a workdir (rollbacks then return to the last good state kept in memory).
      rollback: the :class:`~ebm_jax.train.RollbackPolicy`.
      metrics_path: ``<workdir>/metrics.jsonl``, or None.
    """

    state: TrainState
    train_step: Callable
    checkpointer: Optional[Checkpointer]
    rollback: Optional[RollbackPolicy]
    metrics_path: Optional[str]

    def fit(self, batches: BatchSource, num_steps: int, **options) -> tuple[TrainState,
                                                                            list[dict]]:
        """:func:`~ebm_jax.train.fit` from ``self.state`` with the run's checkpoints,
        rollback and metrics file. ``batches`` is ``batches(step)`` (then a rollback or a
        resume restarts the data at the right step) or an iterator positioned at
        ``self.state.step``; ``options`` go to ``fit`` (``log_every``, ``eval_fn``, ...)."""
        start = int(self.state.step)
        restart = batches if callable(batches) else None
        stream = batches(start) if callable(batches) else batches
        options = {"checkpointer": self.checkpointer, "rollback": self.rollback,
                   "metrics_path": self.metrics_path, "restart_batches": restart, **options}
        return fit(self.train_step, self.state, stream, num_steps, **options)


def setup_training(loss: LossTransform, optimizer: optax.GradientTransformation, params: Any,
                   example_batch: dict, *, rng_key: jax.Array, workdir: Optional[str] = None,
                   guard: Optional[DivergenceGuard] = DivergenceGuard(),
                   rollback: Optional[RollbackPolicy] = RollbackPolicy(),
                   ema_decay: Optional[float] = None, save_every: int = 1000,
                   max_to_keep: int = 3, resume: bool = True,
                   compiler_options: Optional[dict] = None) -> Training:
    """Set up a guarded run in one call (what ``ebm-jax train`` does around the step).

    Args:
      loss, optimizer, params: the loss transform, any optax optimizer (wrapped by
        :func:`~ebm_jax.train.with_lr_scale` unless it already is, so that a rollback
        can halve the rate) and the initial parameters.
      example_batch: a batch with the training shapes (only shapes are used).
      rng_key: the run's PRNG key.
      workdir: where ``checkpoints/`` and ``metrics.jsonl`` go; None keeps nothing on disk.
      guard, rollback: the divergence guard and what to do when it fires (None: off).
      ema_decay: keep an exponential moving average of the parameters.
      save_every, max_to_keep: the checkpoint period and how many to keep.
      resume: start from the latest checkpoint in ``workdir`` when there is one.
      compiler_options: XLA options for the step's program (``jax.jit``'s), e.g.
        :func:`~ebm_jax.train.cpu_compile_options` (what ``ebm-jax train`` uses on CPU);
        None: XLA's defaults.

    Example::

      >>> import itertools
      >>> from ebm_jax.losses import cross_entropy
      >>> loss = cross_entropy(lambda w, x: x @ w)                     # linear, 3 classes
      >>> batch = {"x": jnp.ones((8, 2)), "y": jnp.zeros(8, jnp.int32)}
      >>> run = setup_training(loss, optax.adam(1e-2), jnp.zeros((2, 3)), batch,
      ...                      rng_key=jax.random.key(0))
      >>> state, history = run.fit(lambda step: itertools.repeat(batch), 50, log_every=25,
      ...                          progress=False)
      >>> int(state.step), [r["diverged"] for r in history]             # guarded steps
      (50, [0.0, 0.0])
    """
    if learning_rate_scale(optimizer.init(params)) is None:
        optimizer = with_lr_scale(optimizer)
    state = init_train_state(rng_key, params, optimizer, loss, example_batch)
    checkpointer = metrics_path = None
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"),
                                    max_to_keep=max_to_keep, save_every=save_every)
        metrics_path = os.path.join(workdir, "metrics.jsonl")
        if resume:
            restored = checkpointer.restore_latest(state)
            if restored is not None:
                state = restored
    train_step = jax.jit(make_train_step(loss, optimizer, ema_decay=ema_decay, guard=guard),
                         donate_argnums=0, compiler_options=compiler_options or None)
    return Training(state, train_step, checkpointer, rollback, metrics_path)


__all__ = ["BatchSource", "Training", "setup_training"]
