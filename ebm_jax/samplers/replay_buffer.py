"""A replay buffer of persistent chain states, as a pure pytree.

Persistent contrastive divergence (Tieleman 2008; IGEBM, JEM) starts each
training step's chains from samples of earlier steps, and with probability
``reinit_prob`` from fresh noise. The buffer is data, not an object: the
functions here take a :class:`ReplayBuffer` and return a new one.

With ``num_classes`` set, the capacity is split into equal per-class slots,
so class-conditional chains (``E(x, y)``) draw and return samples of their
own class.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

InitFn = Callable[[jax.Array, tuple], jax.Array]


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
    if not low < high:
        raise ValueError(f"uniform_init(low={low}, high={high}): expected low < high")

    def init(rng_key, shape):
        return jax.random.uniform(rng_key, shape, minval=low, maxval=high)

    return init


def init_buffer(rng_key: jax.Array, sample_shape: Sequence[int], *, capacity: int = 10_000,
                init_fn: Optional[InitFn] = None, num_classes: Optional[int] = None) -> ReplayBuffer:
    """Create a buffer filled from ``init_fn`` (default ``U(-1, 1)``).

    Args:
      rng_key: PRNG key.
      sample_shape: shape of one sample, e.g. ``(64,)``.
      capacity: number of slots (> 0; divisible by ``num_classes`` if given).
      init_fn: ``init(rng_key, shape) -> array``.
      num_classes: if given, slot ``i`` belongs to class ``i // (capacity // num_classes)``.

    Example::

      >>> buf = init_buffer(jax.random.key(0), (64,), capacity=100, num_classes=10)
      >>> buf.samples.shape, int(buf.labels[15])
      ((100, 64), 1)
    """
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity={capacity!r}: expected a positive int")
    if num_classes is not None and (num_classes < 1 or capacity % num_classes):
        raise ValueError(f"capacity={capacity} with num_classes={num_classes}: "
                         "expected capacity divisible by num_classes")
    init_fn = init_fn or uniform_init()
    samples = init_fn(rng_key, (capacity, *sample_shape))
    if num_classes is None:
        labels = jnp.zeros((capacity,), jnp.int32)
    else:
        labels = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), capacity // num_classes)
    return ReplayBuffer(samples, labels, jnp.zeros((), jnp.int32))


def sample(rng_key: jax.Array, buffer: ReplayBuffer, batch_size: int, *, reinit_prob: float = 0.05,
           init_fn: Optional[InitFn] = None, labels: Optional[jax.Array] = None,
           num_classes: Optional[int] = None):
    """Draw chain starts: stored samples, each replaced by fresh noise w.p. ``reinit_prob``.

    Args:
      rng_key: PRNG key.
      buffer: the buffer.
      batch_size: number of chains.
      reinit_prob: probability of starting a chain from ``init_fn`` instead.
      init_fn: initial distribution (default ``U(-1, 1)``).
      labels: ``[batch_size]`` classes to draw from (per-class buffers only).
      num_classes: the buffer's number of classes, required with ``labels``.

    Returns:
      ``(x0 [batch_size, *shape], labels [batch_size], indices [batch_size])``;
      pass ``indices`` to :func:`push` to write the chains' ends back.
    """
    if not 0.0 <= reinit_prob <= 1.0:
        raise ValueError(f"reinit_prob={reinit_prob!r}: expected a probability in [0, 1]")
    init_fn = init_fn or uniform_init()
    k_idx, k_reinit, k_init = jax.random.split(rng_key, 3)
    capacity = buffer.samples.shape[0]
    if labels is None:
        indices = jax.random.randint(k_idx, (batch_size,), 0, capacity)
    else:
        if num_classes is None:
            raise ValueError("labels were given without num_classes: expected the buffer's num_classes")
        if num_classes < 1 or capacity % num_classes:
            raise ValueError(f"num_classes={num_classes} does not divide the buffer's capacity "
                             f"{capacity}: expected the num_classes the buffer was made with")
        per_class = capacity // num_classes
        indices = labels * per_class + jax.random.randint(k_idx, (batch_size,), 0, per_class)
    stored = buffer.samples[indices]
    fresh = init_fn(k_init, stored.shape)
    reinit = jax.random.bernoulli(k_reinit, reinit_prob, (batch_size,))
    reinit = reinit.reshape((batch_size,) + (1,) * (stored.ndim - 1))
    return jnp.where(reinit, fresh, stored), buffer.labels[indices], indices


def push(buffer: ReplayBuffer, samples: jax.Array, indices: Optional[jax.Array] = None) -> ReplayBuffer:
    """Write ``samples [B, *shape]`` into the buffer.

    With ``indices`` (from :func:`sample`), chains return to the slots they
    came from (JEM's scheme; per-class slots keep their class). Without,
    samples go first-in-first-out at ``pointer``.
    """
    capacity = buffer.samples.shape[0]
    if samples.shape[1:] != buffer.samples.shape[1:]:
        raise ValueError(f"samples have shape {samples.shape}: expected [B, "
                         f"{', '.join(map(str, buffer.samples.shape[1:]))}] to match the buffer")
    batch = samples.shape[0]
    if indices is None and batch > capacity:
        raise ValueError(f"pushing {batch} samples without indices into a buffer of capacity "
                         f"{capacity}: expected at most {capacity}")
    if indices is None:
        indices = (buffer.pointer + jnp.arange(batch)) % capacity
        pointer = (buffer.pointer + batch) % capacity
    else:
        pointer = buffer.pointer
    return ReplayBuffer(buffer.samples.at[indices].set(samples), buffer.labels, pointer)
