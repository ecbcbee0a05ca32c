"""A replay buffer of persistent chain states, as a pure pytree.

Persistent contrastive divergence (Tieleman 2008; IGEBM, JEM) starts each
training step's chains from samples of earlier steps, and with probability
``reinit_prob`` from fresh noise. The buffer is data, not an object: the
functions here take a :class:`ReplayBuffer` and return a new one.

With ``num_classes`` set, the capacity is split into equal per-class slots,
so class-conditional chains (``E(x, y)``) draw and return samples of their
own class.

Data parallelism: with ``num_shards = S`` the buffer is ``S`` contiguous
blocks and the batch ``S`` contiguous slices; slice ``b`` of the chains draws
from, and returns to, block ``b`` only. Laid out along a device mesh's
``data`` axis (S a multiple of the device count), every device samples its
own blocks with no communication: the blockwise gather is a ``vmap`` over
blocks, which XLA partitions along the block axis. The result depends on
``S``, not on the device count, so a run on 1 device with ``S = 8``
reproduces a run on 8 devices.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_int, check_probability, is_int, is_real, is_traced
from ebm_jax.parallel.mesh import map_blocks

InitFn = Callable[[jax.Array, tuple], jax.Array]
PROBABILITY = "a probability in [0, 1]"


class ReplayBuffer(NamedTuple):
    """Stored chain states.

    Attributes:
      samples: ``[capacity, *shape]``.
      labels: ``[capacity]`` int32 class of each slot (0 without classes).
      pointer: scalar int32, next slot written by :func:`push` without indices.
    """

    samples: jax.Array
    labels: jax.Array
    pointer: jax.Array


def uniform_init(low: float = -1.0, high: float = 1.0) -> InitFn:
    """Initial distribution ``U(low, high)`` per element: ``init(rng_key, shape) -> array``."""
    if not (is_real(low) and is_real(high) and math.isfinite(low) and math.isfinite(high)
            and low < high):
        raise ValueError(f"uniform_init(low={low!r}, high={high!r}): expected finite numbers "
                         "with low < high")

    def init(rng_key, shape):
        return jax.random.uniform(rng_key, shape, minval=low, maxval=high)

    return init


def _check_sample_shape(sample_shape) -> tuple[int, ...]:
    if isinstance(sample_shape, (int, str)) or is_int(sample_shape) \
            or not hasattr(sample_shape, "__iter__"):
        raise TypeError(f"sample_shape={sample_shape!r}: expected a tuple of ints >= 0, e.g. (64,)")
    shape = tuple(sample_shape)
    for d in shape:
        if not is_int(d) or d < 0:
            raise ValueError(f"sample_shape={shape!r}: expected a tuple of ints >= 0")
    return tuple(int(d) for d in shape)


def _check_buffer(buffer) -> None:
    if not all(hasattr(buffer, field) for field in ReplayBuffer._fields):
        raise TypeError(f"buffer is a {type(buffer).__name__}: expected a ReplayBuffer "
                        "(from init_buffer) with fields samples, labels and pointer")


def _check_index_vector(name: str, values, length: int, upper: int, what: str) -> jax.Array:
    """``values`` as a ``[length]`` int array; concrete values must lie in ``[0, upper)``.

    Shapes and dtypes are static (checked under jit too); the range is checked only when the
    values are concrete (an eager call): under jit they are traced and cannot be inspected.
    """
    values = jnp.asarray(values)
    if values.shape != (length,):
        raise ValueError(f"{name} has shape {tuple(values.shape)}: expected ({length},), one "
                         f"{what} per row")
    if not jnp.issubdtype(values.dtype, jnp.integer):
        raise TypeError(f"{name} has dtype {values.dtype}: expected an integer {what} per row")
    if length and not is_traced(values):
        low, high = int(jnp.min(values)), int(jnp.max(values))
        if low < 0 or high >= upper:
            raise ValueError(f"{name} has values in [{low}, {high}]: expected every {what} "
                             f"in [0, {upper})")
    return values


def _check_shards(capacity: int, num_shards: int, num_classes: Optional[int]) -> int:
    num_shards = check_int("num_shards", num_shards)
    per_block = num_shards * (num_classes or 1)
    if capacity % per_block:
        raise ValueError(f"capacity={capacity} with num_shards={num_shards} and num_classes="
                         f"{num_classes}: expected capacity divisible by {per_block} "
                         "(num_shards x num_classes)")
    return capacity // num_shards


def init_buffer(rng_key: jax.Array, sample_shape: Sequence[int], *, capacity: int = 10_000,
                init_fn: Optional[InitFn] = None, num_classes: Optional[int] = None,
                num_shards: int = 1) -> ReplayBuffer:
    """Create a buffer filled from ``init_fn`` (default ``U(-1, 1)``).

    Args:
      rng_key: PRNG key.
      sample_shape: shape of one sample, e.g. ``(64,)``.
      capacity: number of slots (> 0; divisible by ``num_classes * num_shards``).
      init_fn: ``init(rng_key, shape) -> array``.
      num_classes: if given, each block's slots are split into equal per-class
        runs: slot ``j`` of a block belongs to class ``j // (block_size // num_classes)``.
      num_shards: number of blocks (see the module docstring); 1 is one global block.

    Example::

      >>> buf = init_buffer(jax.random.key(0), (64,), capacity=100, num_classes=10)
      >>> buf.samples.shape, int(buf.labels[15])
      ((100, 64), 1)
    """
    capacity = check_int("capacity", capacity)
    if num_classes is not None and (not is_int(num_classes) or num_classes < 1):
        raise ValueError(f"capacity={capacity} with num_classes={num_classes!r}: expected "
                         "num_classes a positive int dividing the capacity")
    sample_shape = _check_sample_shape(sample_shape)
    if num_classes is not None and capacity % num_classes:
        raise ValueError(f"capacity={capacity} with num_classes={num_classes}: "
                         "expected capacity divisible by num_classes")
    block = _check_shards(capacity, num_shards, num_classes)
    init_fn = init_fn or uniform_init()
    samples = init_fn(rng_key, (capacity, *sample_shape))
    if num_classes is None:
        labels = jnp.zeros((capacity,), jnp.int32)
    else:
        per_block = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), block // num_classes)
        labels = jnp.tile(per_block, num_shards)
    return ReplayBuffer(samples, labels, jnp.zeros((), jnp.int32))


def _blocks(array: jax.Array, num_shards: int) -> jax.Array:
    """``[S * n, ...] -> [S, n, ...]``."""
    return array.reshape(num_shards, array.shape[0] // num_shards, *array.shape[1:])


def _unblock(array: jax.Array) -> jax.Array:
    return array.reshape(array.shape[0] * array.shape[1], *array.shape[2:])


def sample(rng_key: jax.Array, buffer: ReplayBuffer, batch_size: int, *, reinit_prob: float = 0.05,
           init_fn: Optional[InitFn] = None, labels: Optional[jax.Array] = None,
           num_classes: Optional[int] = None, num_shards: int = 1):
    """Draw chain starts: stored samples, each replaced by fresh noise w.p. ``reinit_prob``.

    Args:
      rng_key: PRNG key.
      buffer: the buffer.
      batch_size: number of chains.
      reinit_prob: probability of starting a chain from ``init_fn`` instead.
      init_fn: initial distribution (default ``U(-1, 1)``).
      labels: ``[batch_size]`` classes to draw from (per-class buffers only).
      num_classes: the buffer's number of classes, required with ``labels``.
      num_shards: the buffer's number of blocks (``batch_size`` must divide by it);
        chain ``i`` draws from block ``i // (batch_size // num_shards)``.

    Returns:
      ``(x0 [batch_size, *shape], labels [batch_size], indices [batch_size])``;
      ``indices`` are global slot numbers: pass them to :func:`push` (with the
      same ``num_shards``) to write the chains' ends back.
    """
    _check_buffer(buffer)
    batch_size = check_int("batch_size", batch_size, 0)
    check_probability("reinit_prob", reinit_prob, expected=PROBABILITY, allow_traced=True)
    capacity = buffer.samples.shape[0]
    if labels is not None:
        if num_classes is None:
            raise ValueError("labels were given without num_classes: expected the buffer's num_classes")
        num_classes = check_int("num_classes", num_classes)
        if capacity % num_classes:
            raise ValueError(f"num_classes={num_classes} does not divide the buffer's capacity "
                             f"{capacity}: expected the num_classes the buffer was made with")
    block = _check_shards(capacity, num_shards, num_classes if labels is not None else None)
    if batch_size % num_shards:
        raise ValueError(f"batch_size={batch_size} with num_shards={num_shards}: expected a "
                         "batch divisible by the buffer's number of blocks")
    if labels is not None:
        labels = _check_index_vector("labels", labels, batch_size, num_classes, "class label")
    init_fn = init_fn or uniform_init()
    k_idx, k_reinit, k_init = jax.random.split(rng_key, 3)
    per_slice = batch_size // num_shards
    offsets = jax.random.randint(k_idx, (num_shards, per_slice), 0,
                                 block if labels is None else block // num_classes)
    if labels is not None:
        offsets = _blocks(labels, num_shards) * (block // num_classes) + offsets
    # [S, b] slots within each block; one gather per block. Under a mesh each device gathers
    # from the blocks it holds.
    local = offsets
    stored, stored_labels = map_blocks(lambda rows, row_labels, i: (rows[i], row_labels[i]),
                                       _blocks(buffer.samples, num_shards),
                                       _blocks(buffer.labels, num_shards), local)
    stored, stored_labels = _unblock(stored), _unblock(stored_labels)
    indices = _unblock(local + block * jnp.arange(num_shards)[:, None])
    fresh = init_fn(k_init, stored.shape)
    reinit = jax.random.bernoulli(k_reinit, reinit_prob, (batch_size,))
    reinit = reinit.reshape((batch_size,) + (1,) * (stored.ndim - 1))
    return jnp.where(reinit, fresh, stored), stored_labels, indices


def push(buffer: ReplayBuffer, samples: jax.Array, indices: Optional[jax.Array] = None, *,
         num_shards: int = 1) -> ReplayBuffer:
    """Write ``samples [B, *shape]`` into the buffer.

    With ``indices`` (from :func:`sample`), chains return to the slots they
    came from (JEM's scheme; per-class slots keep their class). Without,
    samples go first-in-first-out at ``pointer``; with ``num_shards`` blocks,
    slice ``b`` of the batch goes first-in-first-out into block ``b``.
    """
    _check_buffer(buffer)
    samples = jnp.asarray(samples)
    capacity = buffer.samples.shape[0]
    if samples.ndim < 1 or samples.shape[1:] != buffer.samples.shape[1:]:
        raise ValueError(f"samples have shape {samples.shape}: expected [B, "
                         f"{', '.join(map(str, buffer.samples.shape[1:]))}] to match the buffer")
    block = _check_shards(capacity, num_shards, None)
    batch = samples.shape[0]
    if batch % num_shards:
        raise ValueError(f"pushing {batch} samples into num_shards={num_shards} blocks: expected "
                         "a batch divisible by the number of blocks")
    per_slice = batch // num_shards
    if indices is not None:
        indices = _check_index_vector("indices", indices, batch, capacity, "slot index")
    if indices is None and per_slice > block:
        raise ValueError(f"pushing {batch} samples without indices into a buffer of capacity "
                         f"{capacity}: expected at most {capacity}")
    if indices is None:
        local = jnp.broadcast_to((buffer.pointer + jnp.arange(per_slice)) % block,
                                 (num_shards, per_slice))
        pointer = (buffer.pointer + per_slice) % block
    else:
        local = _blocks(indices, num_shards) - block * jnp.arange(num_shards)[:, None]
        pointer = buffer.pointer
    written = map_blocks(lambda rows, i, new: rows.at[i].set(new),
                         _blocks(buffer.samples, num_shards), local, _blocks(samples, num_shards))
    return ReplayBuffer(_unblock(written), buffer.labels, pointer)
