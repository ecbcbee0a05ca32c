"""The training loop: progress bar, metrics log, periodic evaluation, checkpoints."""
from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from typing import Callable, Iterator, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ebm_jax.parallel import any_process
from ebm_jax.train.checkpoint import Checkpointer
from ebm_jax.train.guard import (RollbackPolicy, TrainingDiverged, divergence_advice,
                                 learning_rate_scale, scale_learning_rate)
from ebm_jax.train.state import TrainState, copy_arrays

# Short names for the progress bar: the first metric of each group that is present is shown.
PROGRESS_FIELDS = (
    ("loss", ("loss",)),
    ("E_data", ("generative/energy_data", "energy_data")),
    ("E_sample", ("generative/energy_sample", "energy_sample")),
    ("acc", ("classification/accuracy", "accuracy")),
)


class MetricsWriter:
    """Append one JSON object per line to ``path`` (``metrics.jsonl``), and keep every record
    in ``history`` (what :func:`fit` returns)."""

    def __init__(self, path: Optional[str]):
        self._file = open(path, "a") if path else None
        self.history: list[dict] = []

    def write(self, record: dict) -> None:
        self.history.append(record)
        if self._file:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()


def _host_window(window: list[dict]) -> dict:
    """A window of per-step metric dicts as one host array per metric (``[steps]``): stacked on
    the device first, so a log costs one transfer per metric, not one per metric and step
    (which took 0.4 ms a step, more than a small model's whole step on an accelerator)."""
    return jax.device_get(_stack_window(window))


@jax.jit
def _stack_window(window: list[dict]) -> dict:
    # One dispatch for the whole window (a jnp.stack per metric took 1.8 ms each); compiled once
    # per window length and set of metrics.
    return jax.tree.map(lambda *values: jnp.concatenate([jnp.atleast_1d(v) for v in values]),
                        *window)


def _mean_metrics(window: dict) -> dict:
    """The means of a window from :func:`_host_window`."""
    return {k: float(np.mean(v)) for k, v in window.items()}


def _progress_postfix(record: dict) -> dict:
    postfix = {}
    for short, candidates in PROGRESS_FIELDS:
        for key in candidates:
            if key in record:
                postfix[short] = f"{record[key]:.3g}"
                break
    # The energy gap (sample minus data): near 0 or negative when samples look like data;
    # a gap that runs away is the usual first sign of a blow-up.
    if "E_data" in postfix and "E_sample" in postfix:
        gap = float(postfix["E_sample"]) - float(postfix["E_data"])
        postfix["gap"] = f"{gap:.3g}"
    if record.get("diverged"):
        postfix["diverged"] = f"{record['diverged']:.2g}"
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
        progress: bool = True, rollback: Optional[RollbackPolicy] = RollbackPolicy(),
        restart_batches: Optional[Callable[[int], Iterator[dict]]] = None
        ) -> tuple[TrainState, list[dict]]:
    """Train from ``state.step`` up to ``num_steps``; return the final state and the history.

    Args:
      train_step: a jitted ``train_step(state, batch) -> (state, metrics)``; one that runs
        several steps per call (``train_step.steps_per_call = K``, see
        :func:`~ebm_jax.train.sharded_train_step`) takes ``K`` batches stacked and returns
        ``K`` metrics stacked, and every step count below must be a multiple of ``K``.
      state: the state to start from (fresh or restored).
      batches: yields the batch for each step (for each call: ``K`` stacked), positioned at
        ``state.step``.
      num_steps: the total number of steps of the run.
      log_every: average the metrics over this many steps, write them and
        update the progress bar (the only host syncs of the loop).
      eval_fn: ``eval_fn(state) -> dict`` of scalars, run every ``eval_every``
        steps and at the end; written with an ``eval/`` prefix. An evaluation
        that raises ValueError/FloatingPointError on non-finite values (a NaN
        model) is written as ``{"step": s, "eval/error": message}`` and
        training goes on; any other exception propagates.
      checkpointer: saves every ``checkpointer.save_every`` steps, at the end,
        and on Ctrl-C: the first Ctrl-C finishes the current step, saves and
        raises ``KeyboardInterrupt`` (with several processes, at the next logging step,
        where the processes agree on it).
      metrics_path: the ``metrics.jsonl`` to append to.
      progress: show a tqdm progress bar.
      rollback: on by default, for a train step made with a ``guard`` (its
        ``diverged`` metric; the default of :func:`~ebm_jax.train.make_train_step`):
        when a logging window, or the window before a checkpoint, holds a diverged
        step, restore the last good checkpoint (a window with a diverged step is
        never saved) or, before the first checkpoint and without ``checkpointer``, the
        last good state kept in memory (a copy of the state at the last clean logging
        step); draw a new RNG key, scale the learning rate
        (when the optimizer was wrapped by :func:`~ebm_jax.train.with_lr_scale`), log
        a ``"event": "rollback"`` record naming the criteria that fired
        (``causes``; ``cause_steps``: how many steps each), the first diverged step
        (``diverged_step``) and their number (``diverged_steps``), and go on; past ``max_retries``
        log ``"event": "stopped"`` and raise
        :class:`~ebm_jax.train.guard.TrainingDiverged`, whose message names the
        causes and what to change. ``rollback=None`` opts out.
      restart_batches: ``restart_batches(step)`` returns the batches from
        ``step`` on, used after a rollback (without it the iterator goes on).

    Returns:
      ``(state, history)``: the final state and every record written (the logging
      windows' means, ``eval/`` records and events), also without ``metrics_path``.

    Example::

      >>> import optax
      >>> from ebm_jax.losses import cross_entropy
      >>> loss, optimizer = cross_entropy(lambda w, x: x @ w), optax.adam(1e-2)  # linear, 3 classes
      >>> batch = {"x": jnp.ones((8, 2)), "y": jnp.zeros(8, jnp.int32)}
      >>> import itertools
      >>> from ebm_jax.train import init_train_state, make_train_step
      >>> state = init_train_state(jax.random.key(0), jnp.zeros((2, 3)), optimizer, loss, batch)
      >>> train_step = jax.jit(make_train_step(loss, optimizer))
      >>> state, history = fit(train_step, state, itertools.repeat(batch), 20, log_every=10,
      ...                      progress=False)
      >>> int(state.step), [record["step"] for record in history]
      (20, [10, 20])
    """
    with _deferred_interrupt() as interrupt:
        writer = MetricsWriter(metrics_path)
        start = int(state.step)
        bar = tqdm(total=num_steps, initial=start, disable=not progress, dynamic_ncols=True,
                   desc="train")
        try:
            state = _loop(train_step, state, batches, num_steps, start, log_every, eval_fn, eval_every,
                          checkpointer, writer, bar, interrupt, rollback, restart_batches)
        finally:
            bar.close()
            writer.close()
    return state, writer.history


class _Divergence(NamedTuple):
    causes: list  # the guard's criteria that fired in the window, sorted
    first_step: int  # the step count after the window's first diverged step
    steps: int  # the window's diverged steps
    cause_steps: dict  # {criterion: the window's steps where it fired}


def _window_divergence(window: dict, last_step: int) -> Optional[_Divergence]:
    """The diverged steps of a window from :func:`_host_window`, if any."""
    if "diverged" not in window:
        return None
    hit = np.flatnonzero(window["diverged"] > 0)
    if not hit.size:
        return None
    cause_steps = {k.split("/", 1)[1]: int(np.sum(v > 0)) for k, v in sorted(window.items())
                   if k.startswith("diverged/") and np.any(v > 0)}
    return _Divergence(sorted(cause_steps), last_step - len(window["diverged"]) + int(hit[0]) + 1,
                       int(hit.size), cause_steps)


class _LastGood:
    """Where a rollback returns to: the last good checkpoint or, before the first one (or
    without a checkpointer), a copy of the state at the last clean logging step, kept on the
    device."""

    def __init__(self, checkpointer: Optional[Checkpointer], state: TrainState):
        self.checkpointer = checkpointer
        self._state = None
        self.keep(state)

    def _saved(self) -> Optional[int]:
        return None if self.checkpointer is None else self.checkpointer.latest_step()

    def keep(self, state: TrainState) -> None:
        if self._saved() is None:
            self._state = copy_arrays(state)
        else:
            self._state = None  # the checkpoints take over

    def step(self) -> int:
        saved = self._saved()
        return saved if saved is not None else int(self._state.step)

    def where(self) -> str:
        saved = self._saved()
        if saved is not None:
            return f"the last good checkpoint (step {saved}) is intact in " \
                f"{self.checkpointer.directory}"
        return f"the last good state was at step {self.step()} (no checkpoint yet)"

    def restore(self, template: TrainState) -> TrainState:
        saved = self._saved()
        if saved is not None:
            return self.checkpointer.restore(saved, template)
        return copy_arrays(self._state)  # a copy: a donating step frees what it is given


def _roll_back(state, step, last_good, rollback, retries, writer, bar, divergence):
    """Restore the last good state with a new key and a scaled learning rate."""
    causes = divergence.causes
    good = last_good.step()
    if retries > rollback.max_retries:
        writer.write({"step": step, "event": "stopped", "causes": causes,
                      "diverged_step": divergence.first_step, "diverged_steps": divergence.steps,
                      "cause_steps": divergence.cause_steps, "last_good_step": good})
        situation = (f"training diverged at step {step} ({', '.join(causes) or 'diverged'}) "
                     f"after {rollback.max_retries} rollbacks: stopped; {last_good.where()}")
        raise TrainingDiverged(f"{situation}; expected {divergence_advice(causes)}",
                               causes=causes, step=step, situation=situation)
    restored = last_good.restore(state)
    key = jax.random.fold_in(restored.rng_key, 7_919 * retries)
    restored = restored._replace(rng_key=key)
    lr_scale = learning_rate_scale(restored.opt_state)
    if rollback.lr_factor != 1.0 and lr_scale is not None:
        restored = restored._replace(
            opt_state=scale_learning_rate(restored.opt_state, rollback.lr_factor))
        lr_scale = learning_rate_scale(restored.opt_state)
    writer.write({"step": step, "event": "rollback", "to_step": good, "retry": retries,
                  "lr_scale": lr_scale, "causes": causes,
                  "diverged_step": divergence.first_step, "diverged_steps": divergence.steps,
                  "cause_steps": divergence.cause_steps})
    rate = (f", learning rate x{lr_scale:.3g}" if lr_scale is not None else
            ", learning rate kept: wrap the optimizer in with_lr_scale to lower it")
    bar.write(f"diverged at step {divergence.first_step} ({', '.join(causes)}): rolled back "
              f"to step {good} (retry {retries}/{rollback.max_retries}, new RNG key{rate})")
    bar.n = good
    bar.refresh()
    return restored, good


_NONFINITE = re.compile(r"non-?finite|\bnan\b|\binf\b|infinit", re.IGNORECASE)


def _nonfinite_cause(error: BaseException, state) -> bool:
    """Whether a ValueError/FloatingPointError of an evaluation comes from non-finite values:
    a FloatingPointError (``jax_debug_nans``), a message (of the error or of one it was raised
    from) that names NaN/inf/non-finite values, or a state whose parameters are not finite."""
    if isinstance(error, FloatingPointError):
        return True
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    if any(_NONFINITE.search(str(e)) for e in chain):
        return True
    params = [getattr(state, name, None) for name in ("params", "ema_params")]
    leaves = jax.device_get(jax.tree.leaves([p for p in params if p is not None]))
    return any(np.issubdtype(np.asarray(v).dtype, np.inexact) and not np.all(np.isfinite(v))
               for v in leaves)


def _evaluate(eval_fn, state, step, bar) -> dict:
    """The ``eval/`` record of ``eval_fn(state)``. An evaluation that fails on non-finite values
    (a blown-up model) gives an ``eval/error`` record and a line instead of ending the run:
    the guard and rollbacks deal with divergence. Any other error propagates."""
    try:
        results = eval_fn(state)
    except (ValueError, FloatingPointError) as error:
        if not _nonfinite_cause(error, state):
            raise
        message = f"{type(error).__name__}: {error}"
        bar.write(f"evaluation at step {step} failed on non-finite values, training goes on: "
                  f"{message}")
        return {"step": step, "eval/error": message}
    return {"step": step, **{f"eval/{k}": v for k, v in results.items()}}


def _stop_requested(interrupt: dict, step: int, log_every: int, several: bool) -> bool:
    """Whether a Ctrl-C asks to stop before this step. With ``several`` processes they must stop
    at the same step (the checkpoint is written by all of them): the flags are compared at
    logging steps only, one small collective each, so a Ctrl-C takes effect at the next one."""
    if not several:
        return interrupt["stop"]
    return step % log_every == 0 and any_process(interrupt["stop"])


def _check_steps_per_call(train_step, start: int, num_steps: int, log_every: int,
                          eval_every: Optional[int], checkpointer: Optional[Checkpointer]) -> int:
    """A train step's ``steps_per_call`` (1 unless set, see
    :func:`~ebm_jax.train.sharded_train_step`), after checking that every step count the loop
    stops at is a multiple of it."""
    per_call = getattr(train_step, "steps_per_call", 1)
    counts = {"the start step": start, "num_steps": num_steps, "log_every": log_every}
    if eval_every is not None:
        counts["eval_every"] = eval_every
    if checkpointer is not None:
        counts["save_every"] = checkpointer.save_every
    for name, value in counts.items():
        if value % per_call:
            raise ValueError(f"{name}={value} with a train step of steps_per_call={per_call}: "
                             "expected a multiple of steps_per_call")
    return per_call


def _loop(train_step, state, batches, num_steps, step, log_every, eval_fn, eval_every, checkpointer,
          writer, bar, interrupt, rollback=None, restart_batches=None):
    """The body of :func:`fit`; returns the final state."""
    per_call = _check_steps_per_call(train_step, step, num_steps, log_every,
                                     eval_every if eval_fn is not None else None, checkpointer)
    window: list[dict] = []
    window_start = time.perf_counter()
    retries = 0
    last_good = _LastGood(checkpointer, state) if rollback is not None else None
    several = jax.process_count() > 1
    while step < num_steps:
        if _stop_requested(interrupt, step, log_every, several):
            if checkpointer is not None:
                bar.write(f"interrupted at step {step}: saving a checkpoint")
                checkpointer.save(state)
            raise KeyboardInterrupt
        state, metrics = train_step(state, next(batches))
        step += per_call
        window.append(metrics)
        at_log = step % log_every == 0 or step == num_steps
        at_save = checkpointer is not None and step % checkpointer.save_every == 0
        host = _host_window(window) if at_log or (at_save and rollback is not None) else None
        divergence = (_window_divergence(host, step)
                      if rollback is not None and host is not None else None)
        if divergence is not None:
            retries += 1
            state, step = _roll_back(state, step, last_good, rollback, retries, writer, bar,
                                     divergence)
            if restart_batches is not None:
                batches = restart_batches(step)
            window, window_start = [], time.perf_counter()
            continue
        if at_log:
            record = _mean_metrics(host)
            window_steps = len(window) * per_call
            record["steps_per_s"] = window_steps / (time.perf_counter() - window_start)
            record = {"step": step, **record}
            writer.write(record)
            bar.set_postfix(_progress_postfix(record), refresh=False)
            bar.update(window_steps)
            window, window_start = [], time.perf_counter()
            if last_good is not None and "diverged" in metrics:  # a guarded step
                last_good.keep(state)
        if eval_fn is not None and (step % eval_every == 0 or step == num_steps):
            writer.write(_evaluate(eval_fn, state, step, bar))
            window_start = time.perf_counter()
        if at_save:
            checkpointer.maybe_save(state)
    if checkpointer is not None:
        checkpointer.save(state)
    return state
