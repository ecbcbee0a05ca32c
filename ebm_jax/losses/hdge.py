"""HDGE (Liu & Abbeel 2020): a JEM-style hybrid whose generative term is contrastive, not SGLD.

JEM reads a classifier ``f(x) -> [K]`` as ``log p(x, y) = f(x)[y] - log Z`` and trains
``log p(y|x) + log p(x)``, estimating the gradient of ``log p(x)`` with SGLD samples.
HDGE trains ``log p(y|x) + log p(x|y)`` instead, where
``log p(x|y) = f(x)[y] - log sum_x' exp f(x')[y]``, and approximates the normaliser's sum
over inputs by the batch's example and a queue of logit vectors of past examples (MoCo's
memory queue, 65,536 entries in the paper). Following the authors' code, the logit vectors
are L2-normalised (``z = f(x) / ||f(x)||``) and divided by a temperature ``tau`` (0.1);
queue entries are held constant. For example ``i`` of class ``y_i``::

    l_i = -log [ exp(z_i[y_i] / tau) / (exp(z_i[y_i] / tau) + sum_j exp(q_j[y_i] / tau)) ]

over the filled queue slots ``j`` (empty slots are masked out, not counted); with
``batch_negatives`` the batch's other examples ``z_k[y_i]`` (``k != i``, with gradient)
join the sum. The mean over labelled examples is the term; afterwards the whole batch's
normalised logits (constant) are written into the queue, first in first out. No sampling,
so no chains to diverge.

The queue is a pure ring buffer in the loss state (:class:`LogitQueue`). With
``num_shards = S`` it is ``S`` contiguous blocks and slice ``b`` of the batch is written to
block ``b`` (as :mod:`ebm_jax.samplers.replay_buffer` does); on a device mesh
:func:`~ebm_jax.train.shard_state` splits it along ``data``. The sum over the queue is
global, so the value depends on ``S`` (which example sits in which slot) but not on the
device count.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ebm_jax._checks import check_flag, check_int, check_positive_finite
from ebm_jax.energies import LogitsFn
from ebm_jax.losses.base import (LossTransform, check_examples, check_labels, check_weight,
                                 combine)
from ebm_jax.losses.classification import cross_entropy
from ebm_jax.parallel.mesh import map_blocks

EMPTY = -2   # the label of a queue slot never written (-1 marks an unlabelled example)


class LogitQueue(NamedTuple):
    """The memory queue of :func:`hdge_contrastive`.

    Attributes:
      logits: ``[queue_size, K]`` normalised logit vectors of past examples (constant).
      labels: ``[queue_size]`` int32 class of each slot's example, ``-1`` for an unlabelled
        one, :data:`EMPTY` (-2) for a slot not written yet.
      pointer: scalar int32, the next slot of each block to write.
    """

    logits: jax.Array
    labels: jax.Array
    pointer: jax.Array


class HDGEState(NamedTuple):
    """State of :func:`hdge_contrastive`: ``queue``, a :class:`LogitQueue`."""

    queue: LogitQueue


def _blocks(array, num_shards):
    return array.reshape(num_shards, array.shape[0] // num_shards, *array.shape[1:])


def enqueue(queue: LogitQueue, logits: jax.Array, labels: jax.Array, *,
            num_shards: int = 1) -> LogitQueue:
    """Write ``logits [B, K]`` and ``labels [B]`` first in first out: slice ``b`` of the batch
    (``B / num_shards`` rows) at the pointer of block ``b``, wrapping around the block.

    Example::

      >>> q = LogitQueue(jnp.zeros((4, 2)), jnp.full((4,), EMPTY, jnp.int32), jnp.int32(0))
      >>> for step in range(3):
      ...     q = enqueue(q, jnp.full((2, 2), step + 1.0), jnp.array([step, step]))
      >>> q.logits[:, 0].tolist(), q.labels.tolist(), int(q.pointer)   # step 3 overwrote 1
      ([3.0, 3.0, 2.0, 2.0], [2, 2, 1, 1], 2)
    """
    size = queue.logits.shape[0]
    block, per_slice = size // num_shards, logits.shape[0] // num_shards
    slots = (queue.pointer + jnp.arange(per_slice)) % block
    slots = jnp.broadcast_to(slots, (num_shards, per_slice))

    def write(rows, index, new):
        return rows.at[index].set(new)

    new_logits = map_blocks(write, _blocks(queue.logits, num_shards), slots,
                            _blocks(logits.astype(queue.logits.dtype), num_shards))
    new_labels = map_blocks(write, _blocks(queue.labels, num_shards), slots,
                            _blocks(labels.astype(jnp.int32), num_shards))
    return LogitQueue(new_logits.reshape(queue.logits.shape), new_labels.reshape(size),
                      (queue.pointer + per_slice) % block)


def _check_settings(queue_size, temperature, num_shards, normalize, batch_negatives):
    queue_size = check_int("queue_size", queue_size, expected="a positive int (queue entries)")
    check_positive_finite("temperature", temperature)
    num_shards = check_int("num_shards", num_shards)
    if queue_size % num_shards:
        raise ValueError(f"queue_size={queue_size} with num_shards={num_shards}: expected a "
                         "queue_size divisible by num_shards")
    check_flag("normalize", normalize)
    check_flag("batch_negatives", batch_negatives)
    return queue_size, num_shards


def _check_batch(batch, who, num_shards, queue_size):
    """``(x, y)`` of a labelled batch; every error a ValueError naming what was expected."""
    if not isinstance(batch, Mapping) or "y" not in batch or "x" not in batch:
        keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"{who}: the batch has keys {keys}: expected a dict with 'x' and "
                         "'y' (class labels; -1 for an unlabelled example): the contrastive "
                         "term normalises log p(x|y) per class")
    x = check_examples(batch, who)
    size = x.shape[0]
    if size % num_shards:
        raise ValueError(f"{who}: batch size {size} with num_shards={num_shards}: expected a "
                         "batch divisible by num_shards")
    if size > queue_size:
        raise ValueError(f"{who}: batch size {size} with queue_size={queue_size}: expected "
                         "queue_size >= the batch size (a step enqueues the whole batch)")
    return x


def _features(logits, normalize):
    if not normalize:
        return logits
    norm = jnp.sqrt(jnp.sum(jnp.square(logits), -1, keepdims=True))
    return logits / jnp.maximum(norm, 1e-12)


def _contrastive(logits, labels, queue, queue_size, temperature, normalize, batch_negatives,
                 num_shards, who):
    """``(value, new_queue, info)`` of the contrastive term on the batch's logits ``[B, K]``."""
    z = _features(logits, normalize)
    if queue.logits.shape != (queue_size, z.shape[-1]):
        raise ValueError(f"{who}: the state's queue has shape {queue.logits.shape}: "
                         f"expected ({queue_size}, {z.shape[-1]}) (from init)")
    classes = jnp.maximum(labels, 0)
    positive = jnp.take_along_axis(z, classes[:, None], 1)[:, 0] / temperature   # [B]
    # The queue's sum per class, once: [K] log-sums over the filled slots (-inf: none), read
    # at each example's class; the same value as a [B, Q] table of z_j[y_i], at K/B the cost.
    filled = queue.labels != EMPTY
    stored = jnp.where(filled[:, None], jax.lax.stop_gradient(queue.logits) / temperature,
                       -jnp.inf)
    queue_lse = jax.nn.logsumexp(stored, 0)[classes]                          # [B]
    terms = [positive[:, None], queue_lse[:, None]]
    if batch_negatives:
        others = z[:, classes].T / temperature                      # [B, B]: z_k[y_i]
        terms.append(jnp.where(jnp.eye(z.shape[0], dtype=bool), -jnp.inf, others))
    everything = jnp.concatenate(terms, 1)
    per_example = jax.nn.logsumexp(everything, 1) - positive
    negatives = jax.nn.logsumexp(everything[:, 1:], 1)                    # -inf: none
    labelled = (labels >= 0).astype(z.dtype)
    count = jnp.maximum(jnp.sum(labelled), 1.0)
    value = jnp.sum(per_example * labelled) / count
    lse = jnp.where(jnp.isfinite(negatives), negatives, 0.0)
    info = {"queue_fill": jnp.mean(filled.astype(z.dtype)),
            "positive_logit": jnp.sum(positive * labelled) / count,
            "negative_logsumexp": jnp.sum(lse * labelled) / count}
    new_queue = enqueue(queue, jax.lax.stop_gradient(z), labels, num_shards=num_shards)
    return value, new_queue, info


def _cross_entropy(logits, labels):
    """``(value, accuracy)``: :func:`~ebm_jax.losses.cross_entropy`'s mean over labelled
    examples (no label smoothing), from logits already computed."""
    labelled = (labels >= 0).astype(logits.dtype)
    count = jnp.maximum(jnp.sum(labelled), 1.0)
    targets = jax.nn.one_hot(jnp.maximum(labels, 0), logits.shape[-1])
    value = jnp.sum(optax.softmax_cross_entropy(logits, targets) * labelled) / count
    correct = (jnp.argmax(logits, -1) == labels).astype(logits.dtype)
    return value, jnp.sum(correct * labelled) / count


def hdge_contrastive(logits_fn: LogitsFn, queue_size: int = 65_536, temperature: float = 0.1,
                     *, normalize: bool = True, batch_negatives: bool = False,
                     num_shards: int = 1) -> LossTransform:
    """HDGE's generative term: ``-log p(x|y)`` normalised over a queue of past logits.

    Args:
      logits_fn: per-example logits ``logits_fn(params, x) -> [K]``.
      queue_size: queue entries (the paper: 65,536); at least the batch size.
      temperature: ``tau`` (the paper: 0.1).
      normalize: L2-normalise logit vectors before dividing by ``tau`` (the authors' code).
      batch_negatives: the batch's other examples join the normaliser (with gradient).
      num_shards: the queue's blocks (see the module docstring; one per device on a mesh).

    Shapes: ``batch["x"] [B, ...]``, ``batch["y"] [B]`` int (``-1``: unlabelled, left out of
    the mean but enqueued); state :class:`HDGEState` with a ``[queue_size, K]`` queue.
    Info: ``queue_fill`` (share of slots written before this step), ``positive_logit``
    (mean ``z_i[y_i] / tau``), ``negative_logsumexp`` (mean log-sum over the negatives;
    ``-inf``-free: an empty normaliser counts 0).

    Example::

      >>> term = hdge_contrastive(lambda w, x: x @ w, queue_size=8)   # linear, 3 classes
      >>> w, x = jnp.eye(2, 3), jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
      >>> batch = {"x": x, "y": jnp.array([0, 1, 0, 1])}          # logits point at their class
      >>> state = term.init(jax.random.key(0), w, batch)
      >>> value, (state, info) = term.loss(w, state, batch, jax.random.key(1))
      >>> float(value), float(info["queue_fill"])     # nothing to contrast with yet
      (0.0, 0.0)
      >>> value, (state, info) = term.loss(w, state, batch, jax.random.key(1))
      >>> round(float(value), 4), float(info["queue_fill"])
      (1.0986, 0.5)

    With ``z_i[y_i] = 1`` and two queue entries of each class equal to it (the rest
    at 0), each example's term is ``log(3 + 2 exp(-10))``.
    """
    queue_size, num_shards = _check_settings(queue_size, temperature, num_shards, normalize,
                                             batch_negatives)
    batched_logits = jax.vmap(logits_fn, in_axes=(None, 0))
    who = "hdge"

    def init(rng_key, params, example_batch):
        del rng_key
        x = _check_batch(example_batch, who, num_shards, queue_size)
        shape = jax.eval_shape(batched_logits, params, x)     # no compute
        if len(shape.shape) != 2:
            raise ValueError(f"{who}: logits_fn returned shape {shape.shape[1:]} per example: "
                             "expected logits [K]")
        check_labels(example_batch, who, x.shape[0], shape.shape[-1], unlabelled=True)
        return HDGEState(LogitQueue(jnp.zeros((queue_size, shape.shape[-1]), shape.dtype),
                                    jnp.full((queue_size,), EMPTY, jnp.int32),
                                    jnp.zeros((), jnp.int32)))

    def loss(params, state, batch, rng_key):
        del rng_key
        x = _check_batch(batch, who, num_shards, queue_size)
        logits = batched_logits(params, x)                            # [B, K]
        labels = check_labels(batch, who, x.shape[0], logits.shape[-1], unlabelled=True)
        value, queue, info = _contrastive(logits, labels, state.queue, queue_size, temperature,
                                          normalize, batch_negatives, num_shards, who)
        return value, (HDGEState(queue), info)

    return LossTransform(init, loss)


def hdge(logits_fn: LogitsFn, queue_size: int = 65_536, temperature: float = 0.1, *,
         classification_weight: float = 1.0, generative_weight: float = 1.0,
         normalize: bool = True, batch_negatives: bool = False, num_shards: int = 1,
         shared_forward: bool = True) -> LossTransform:
    """HDGE's hybrid: cross-entropy on ``p(y|x)`` plus the contrastive ``-log p(x|y)``.

    The value is that of ``combine(classification=(classification_weight,
    cross_entropy(logits_fn)), generative=(generative_weight, hdge_contrastive(logits_fn,
    ...)))``, with the same state, info keys and gradient; the arguments past the weights
    are :func:`hdge_contrastive`'s. Both terms read the same logits ``f(x)``, so with
    ``shared_forward`` (the default) the batch's logits are computed once and both terms
    are taken from them: one forward and one backward pass through the network a step, as
    cross-entropy alone. ``combine`` cannot share them (each term calls ``logits_fn``), and
    XLA does not merge the two backward passes, so ``shared_forward=False`` (the
    ``combine`` above, literally) costs about twice cross-entropy's network FLOPs; it is
    kept for composing the terms differently (e.g. ``hdge_contrastive`` added to another
    hybrid through ``combine``). Every bad setting, and a batch without labels, raises a
    ``ValueError`` naming the field, the value and what was expected, before any compute.

    Info keys are ``classification/loss``, ``classification/accuracy``, ``generative/loss``
    and ``generative/...`` (:func:`hdge_contrastive`'s); the state is
    ``{"classification": (), "generative": HDGEState}``.

    Example::

      >>> loss = hdge(lambda w, x: x @ w, queue_size=16, temperature=0.1)  # linear, 3 classes
      >>> w, batch = jnp.zeros((2, 3)), {"x": jnp.ones((8, 2)), "y": jnp.arange(8) % 3}
      >>> state = loss.init(jax.random.key(0), w, batch)
      >>> value, (state, info) = jax.jit(loss.loss)(w, state, batch, jax.random.key(1))
      >>> state["generative"].queue.logits.shape, float(info["generative/queue_fill"])
      ((16, 3), 0.0)
    """
    check_weight("classification_weight", classification_weight, 0.0)
    check_weight("generative_weight", generative_weight, 0.0)
    queue_size, num_shards = _check_settings(queue_size, temperature, num_shards, normalize,
                                             batch_negatives)
    check_flag("shared_forward", shared_forward)
    who = "hdge"
    contrastive = hdge_contrastive(logits_fn, queue_size, temperature, normalize=normalize,
                                   batch_negatives=batch_negatives, num_shards=num_shards)
    hybrid = combine(classification=(classification_weight, cross_entropy(logits_fn)),
                     generative=(generative_weight, contrastive))
    batched_logits = jax.vmap(logits_fn, in_axes=(None, 0))

    def init(rng_key, params, example_batch):
        _check_batch(example_batch, who, num_shards, queue_size)   # before cross_entropy's
        return hybrid.init(rng_key, params, example_batch)

    def loss(params, state, batch, rng_key):
        x = _check_batch(batch, who, num_shards, queue_size)
        if not shared_forward:
            return hybrid.loss(params, state, batch, rng_key)
        logits = batched_logits(params, x)                            # once, for both terms
        if len(logits.shape) != 2:
            raise ValueError(f"{who}: logits_fn returned shape {logits.shape[1:]} per example: "
                             "expected logits [K]")
        labels = check_labels(batch, who, x.shape[0], logits.shape[-1], unlabelled=True)
        ce, accuracy = _cross_entropy(logits, labels)
        generative, queue, term_info = _contrastive(
            logits, labels, state["generative"].queue, queue_size, temperature, normalize,
            batch_negatives, num_shards, who)
        value = classification_weight * ce + generative_weight * generative
        info = {"classification/loss": ce, "classification/accuracy": accuracy,
                "generative/loss": generative}
        info.update({f"generative/{k}": v for k, v in term_info.items()})
        return value, ({"classification": state["classification"],
                        "generative": HDGEState(queue)}, info)

    return LossTransform(init, loss)
