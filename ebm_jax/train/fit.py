"""The training loop: progress bar, metrics log, periodic evaluation, checkpoints."""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from typing import Callable, Iterator, Optional

import jax
import numpy as np
from tqdm.auto import tqdm

from ebm_jax.train.checkpoint import Checkpointer
from ebm_jax.train.state import TrainState

# Short names for the progress bar: the first metric of each group that is present is shown.
PROGRESS_FIELDS = (
    ("loss", ("loss",)),
    ("E_data", ("generative/energy_data", "energy_data")),
    ("E_sample", ("generative/energy_sample", "energy_sample")),
    ("acc", ("classification/accuracy", "accuracy")),
)


class MetricsWriter:
    """Append one JSON object per line to ``path`` (``metrics.jsonl``)."""

    def __init__(self, path: Optional[str]):
        self._file = open(path, "a") if path else None

    def write(self, record: dict) -> None:
        if self._file:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()


def _mean_metrics(window: list[dict]) -> dict:
    """Average a window of per-step metric dicts on the host (one device sync per log)."""
    stacked = jax.device_get(window)
    return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


def _progress_postfix(record: dict) -> dict:
    postfix = {}
    for short, candidates in PROGRESS_FIELDS:
        for key in candidates:
            if key in record:
                postfix[short] = f"{record[key]:.3g}"
                break
    postfix["it/s"] = f"{record['steps_per_s']:.0f}"
    return postfix


@contextlib.contextmanager
def _deferred_interrupt():
    """Turn the first Ctrl-C into a flag checked between steps, so a step is never cut in half.

    A second Ctrl-C interrupts at once. Outside the main thread this does nothing.
    """
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def fit(train_step: Callable[[TrainState, dict], tuple[TrainState, dict]], state: TrainState,
        batches: Iterator[dict], num_steps: int, *, log_every: int = 100,
        eval_fn: Optional[Callable[[TrainState], dict]] = None, eval_every: int = 1000,
        checkpointer: Optional[Checkpointer] = None, metrics_path: Optional[str] = None,
        progress: bool = True) -> TrainState:
    """Train from ``state.step`` up to ``num_steps``.

    Args:
      train_step: a jitted ``train_step(state, batch) -> (state, metrics)``.
      state: the state to start from (fresh or restored).
      batches: yields the batch for each step, positioned at ``state.step``.
      num_steps: the total number of steps of the run.
      log_every: average the metrics over this many steps, write them and
        update the progress bar (the only host syncs of the loop).
      eval_fn: ``eval_fn(state) -> dict`` of scalars, run every ``eval_every``
        steps and at the end; written with an ``eval/`` prefix.
      checkpointer: saves every ``checkpointer.save_every`` steps, at the end,
        and on Ctrl-C: the first Ctrl-C finishes the current step, saves and
        raises ``KeyboardInterrupt``.
      metrics_path: the ``metrics.jsonl`` to append to.
      progress: show a tqdm progress bar.

    Returns:
      The final state.

    Example::

      >>> state = fit(jax.jit(train_step), state, Batches(x, y, 64, seed=0), 1000)
    """
    writer = MetricsWriter(metrics_path)
    start = int(state.step)
    bar = tqdm(total=num_steps, initial=start, disable=not progress, dynamic_ncols=True,
               desc="train")
    with _deferred_interrupt() as interrupt:
        try:
            state = _loop(train_step, state, batches, num_steps, start, log_every, eval_fn, eval_every,
                          checkpointer, writer, bar, interrupt)
        finally:
            bar.close()
            writer.close()
    return state


def _loop(train_step, state, batches, num_steps, step, log_every, eval_fn, eval_every, checkpointer,
          writer, bar, interrupt):
    """The body of :func:`fit`; returns the final state."""
    window: list[dict] = []
    window_start = time.perf_counter()
    while step < num_steps:
        if interrupt["stop"]:
            if checkpointer is not None:
                bar.write(f"interrupted at step {step}: saving a checkpoint")
                checkpointer.save(state)
            raise KeyboardInterrupt
        state, metrics = train_step(state, next(batches))
        step += 1
        window.append(metrics)
        if step % log_every == 0 or step == num_steps:
            record = _mean_metrics(window)
            record["steps_per_s"] = len(window) / (time.perf_counter() - window_start)
            record = {"step": step, **record}
            writer.write(record)
            bar.set_postfix(_progress_postfix(record), refresh=False)
            bar.update(len(window))
            window, window_start = [], time.perf_counter()
        if eval_fn is not None and (step % eval_every == 0 or step == num_steps):
            writer.write({"step": step, **{f"eval/{k}": v for k, v in eval_fn(state).items()}})
            window_start = time.perf_counter()
        if checkpointer is not None:
            checkpointer.maybe_save(state)
    if checkpointer is not None:
        checkpointer.save(state)
    return state
