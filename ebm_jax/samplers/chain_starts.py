"""Where a loss's sampling chains start: one protocol for replay buffers, data and noise.

A chain start is a NamedTuple of three pure functions (the optax pattern)::

    state = start.init(rng_key, sample_shape)
    x0, labels, handle = start.draw(rng_key, state, params, x, labels)
    state = start.update(state, samples, handle)

* ``init`` makes the start's state (a :class:`~ebm_jax.samplers.ReplayBuffer` for a
  replay buffer; ``()`` for stateless starts). It lives in the loss's state, so it is
  checkpointed and resumed with the run.
* ``draw`` returns ``B`` chain starts ``x0 [B, *sample_shape]`` for a batch of data
  ``x [B, *sample_shape]``; ``labels`` is ``None`` or the ``[B]`` int classes the loss
  wants its chains conditioned on (class-conditional energies), and the labels returned
  are the ones the chains must use. ``params`` are the params the loss is called with, so
  that a learned start (a generator network whose params sit in the same pytree, e.g.
  ``params["generator"]``) draws from its current params; the starts here ignore them.
  ``handle`` is anything ``update`` needs (the buffer's slot indices).
* ``update`` records the chains' end points (a replay buffer writes them back to the
  slots they came from); stateless starts return the state unchanged.

Factories:

* :func:`replay_buffer_start` (persistent CD; IGEBM, JEM): chains resume from a replay
  buffer of earlier chains, each restarted with probability ``reinit_prob`` from noise
  (``init_fn``) or from the batch's data. This is the default of
  :func:`~ebm_jax.losses.contrastive_divergence`: capacity 10,000, 5% ``U(-1, 1)`` restarts.
* :func:`data_start` (Hinton's CD-k): every chain starts at a data point of the batch.
* :func:`noise_start`: every chain starts from fresh noise (short-run MCMC, Nijkamp et al.).
* :func:`pool_start` (DAT, Yin et al. 2025): every chain starts at a random example of a
  fixed pool (out-of-distribution images, :func:`ebm_jax.data.ood_pool`).
* :func:`initializer_start` (CDRL, Zhu et al. 2024): a learned generator. For the chains
  of a noise level (``x`` is then a :class:`RecoveryCondition`, the noisier sample and the
  level), a network proposes the cleaner sample and the chains refine the proposal.

Example::

  >>> start = replay_buffer_start(capacity=100, reinit_prob=0.05)
  >>> buffer = start.init(jax.random.key(0), (2,))
  >>> x0, labels, slots = start.draw(jax.random.key(1), buffer, None, jnp.zeros((8, 2)), None)
  >>> buffer = start.update(buffer, x0 + 0.1, slots)
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_flag, check_int, check_probability
from ebm_jax.samplers import replay_buffer as rb
from ebm_jax.samplers.replay_buffer import PROBABILITY, InitFn, uniform_init

__all__ = ["ChainStart", "RecoveryCondition", "data_start", "follow_support",
           "initializer_start", "noise_start", "pool_start", "replay_buffer_start"]


class ChainStart(NamedTuple):
    """Where chains start: ``init(rng_key, sample_shape) -> state``,
    ``draw(rng_key, state, params, x, labels) -> (x0, labels, handle)`` and
    ``update(state, samples, handle) -> state`` (see the module docstring).

    ``adopt_support``, set by the factories here when their noise law was left to its
    default, returns the same start drawing its noise from ``U(low, high)``: a loss gives it
    its sampler's box (:func:`follow_support`), so that chains start and restart where the
    sampler keeps them rather than in ``U(-1, 1)`` whatever the data's range.
    """

    init: Callable[..., Any]
    draw: Callable[..., tuple[Any, Any, Any]]
    update: Callable[..., Any]
    adopt_support: Optional[Callable[[tuple[float, float]], "ChainStart"]] = None


def follow_support(start: ChainStart, sampler) -> ChainStart:
    """``start`` drawing its noise from ``U(sampler.support)`` when its noise law was left to
    its default and the sampler keeps its chains in a box; otherwise ``start`` unchanged.
    :func:`~ebm_jax.losses.contrastive_divergence` (and so JEM) calls it.

    Example::

      >>> from ebm_jax.samplers import langevin
      >>> sampler = langevin(lambda p, x: 0.5 * x @ x, 1.0, 0.01, clip_range=(-5.0, 5.0))
      >>> start = follow_support(replay_buffer_start(capacity=1000), sampler)
      >>> buffer = start.init(jax.random.key(0), (2,))
      >>> bool(buffer.samples.min() < -4.0), bool(buffer.samples.max() > 4.0)  # U(-5, 5)
      (True, True)
      >>> start = follow_support(replay_buffer_start(capacity=1000, init_fn=uniform_init()),
      ...                        sampler)                                 # given: kept
      >>> float(abs(start.init(jax.random.key(0), (2,)).samples).max()) <= 1.0
      True
    """
    support = getattr(sampler, "support", None)
    if start.adopt_support is None or support is None:
        return start
    return start.adopt_support(tuple(support))


def _check_init_fn(init_fn) -> InitFn:
    if init_fn is None:
        return uniform_init()
    if not callable(init_fn):
        raise ValueError(f"init_fn={init_fn!r}: expected None or a callable "
                         "init_fn(rng_key, shape) -> array")
    return init_fn


def _permuted_rows(rng_key: jax.Array, x: jax.Array) -> jax.Array:
    """The rows of ``x`` in a random order."""
    return x[jax.random.permutation(rng_key, x.shape[0])]


def replay_buffer_start(capacity: int = 10_000, reinit_prob: float = 0.05, *,
                        init_fn: Optional[InitFn] = None, restart_from_data: bool = False,
                        num_classes: Optional[int] = None, num_shards: int = 1) -> ChainStart:
    """Chains resume from a replay buffer; each restarts w.p. ``reinit_prob``.

    Args:
      capacity: number of stored chains (divisible by ``num_classes * num_shards``).
      reinit_prob: probability in ``[0, 1]`` that a chain restarts instead of resuming.
      init_fn: ``init_fn(rng_key, shape) -> array``: fills the buffer at ``init`` and draws
        the noise restarts. Default ``U(-1, 1)``, or ``U(sampler's clip range)`` once a loss
        adopts its sampler's box (:func:`follow_support`); pass one to fix it.
      restart_from_data: restart chains at rows of the batch's data (a random permutation of
        ``x``) instead of from ``init_fn``; on multi-modal toys this keeps every mode
        populated where uniform restarts let mass collapse onto one.
      num_classes: split the capacity into per-class slots (class-conditional chains draw
        from and return to slots of their class); ``draw`` then needs ``labels``. A
        class-conditional loss must use the same number of classes.
      num_shards: split the buffer and the batch into this many blocks, chain slice ``b``
        drawing from block ``b`` only (see :mod:`~ebm_jax.samplers.replay_buffer`): a
        multiple of the device count keeps buffer sampling on each device; results depend
        on this number, not on the devices.

    Returns:
      A :class:`ChainStart` whose state is a :class:`~ebm_jax.samplers.ReplayBuffer` and
      whose ``handle`` is the ``[B]`` slot indices the chains came from.

    Example::

      >>> start = replay_buffer_start(capacity=1000, reinit_prob=0.05, num_classes=10)
      >>> buffer = start.init(jax.random.key(0), (64,))
      >>> labels = jnp.arange(8) % 10
      >>> x0, labels, slots = start.draw(jax.random.key(1), buffer, None, jnp.zeros((8, 64)),
      ...                                labels)
    """
    capacity = check_int("capacity", capacity)
    check_probability("reinit_prob", reinit_prob, expected=PROBABILITY, allow_traced=True)
    adopt_support = None
    if init_fn is None:  # the default law: a loss may swap in its sampler's box
        def adopt_support(support):
            return replay_buffer_start(capacity, reinit_prob, init_fn=uniform_init(*support),
                                       restart_from_data=restart_from_data,
                                       num_classes=num_classes, num_shards=num_shards)
    init_fn = _check_init_fn(init_fn)
    restart_from_data = check_flag("restart_from_data", restart_from_data)
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes)
    num_shards = check_int("num_shards", num_shards)
    blocks = num_shards * (num_classes or 1)
    if capacity % blocks:
        raise ValueError(f"capacity={capacity} with num_shards={num_shards} and num_classes="
                         f"{num_classes}: expected capacity divisible by {blocks} "
                         "(num_shards x num_classes)")

    def init(rng_key, sample_shape: Sequence[int]) -> rb.ReplayBuffer:
        return rb.init_buffer(rng_key, sample_shape, capacity=capacity, init_fn=init_fn,
                              num_classes=num_classes, num_shards=num_shards)

    def draw(rng_key, buffer: rb.ReplayBuffer, params, x, labels=None):
        del params  # a replay buffer has no params
        if (labels is None) != (num_classes is None):
            raise ValueError(
                f"labels {'were not given' if labels is None else 'were given'} to a replay "
                f"buffer with num_classes={num_classes}: expected labels exactly when the "
                "buffer has per-class slots (build replay_buffer_start(num_classes=K) for a "
                "class-conditional loss with K classes)")
        restart_fn = ((lambda key, shape: _permuted_rows(key, x)) if restart_from_data
                      else init_fn)
        return rb.sample(rng_key, buffer, x.shape[0], reinit_prob=reinit_prob,
                         init_fn=restart_fn, labels=labels, num_classes=num_classes,
                         num_shards=num_shards)

    def update(buffer: rb.ReplayBuffer, samples, indices) -> rb.ReplayBuffer:
        return rb.push(buffer, samples, indices, num_shards=num_shards)

    return ChainStart(init, draw, update, adopt_support)


def data_start(*, shuffle: bool = False) -> ChainStart:
    """Every chain starts at a data point of the batch (Hinton's CD-k).

    Args:
      shuffle: start chain ``i`` at a random row of the batch (a permutation) instead of
        at row ``i``. Labels are passed through unchanged either way.

    Returns:
      A stateless :class:`ChainStart` (state ``()``, handle ``None``).

    Example::

      >>> start = data_start()
      >>> x = jnp.arange(6.0).reshape(3, 2)
      >>> x0, _, _ = start.draw(jax.random.key(0), start.init(None, (2,)), None, x, None)
      >>> bool(jnp.all(x0 == x))
      True
    """
    shuffle = check_flag("shuffle", shuffle)

    def init(rng_key, sample_shape):
        del rng_key, sample_shape
        return ()

    def draw(rng_key, state, params, x, labels=None):
        del state, params
        return (_permuted_rows(rng_key, x) if shuffle else x), labels, None

    def update(state, samples, handle):
        del samples, handle
        return state

    return ChainStart(init, draw, update)


def noise_start(init_fn: Optional[InitFn] = None) -> ChainStart:
    """Every chain starts from fresh noise ``init_fn(rng_key, x.shape)`` (default
    ``U(-1, 1)``, or the sampler's box once a loss adopts it: :func:`follow_support`):
    short-run, non-persistent chains.

    Returns:
      A stateless :class:`ChainStart` (state ``()``, handle ``None``).

    Example::

      >>> start = noise_start(uniform_init(0.0, 1.0))
      >>> x0, _, _ = start.draw(jax.random.key(0), (), None, jnp.zeros((4, 2)), None)
      >>> x0.shape
      (4, 2)
    """
    adopt_support = None
    if init_fn is None:  # the default law: a loss may swap in its sampler's box
        def adopt_support(support):
            return noise_start(uniform_init(*support))
    init_fn = _check_init_fn(init_fn)

    def init(rng_key, sample_shape):
        del rng_key, sample_shape
        return ()

    def draw(rng_key, state, params, x, labels=None):
        del state, params
        return init_fn(rng_key, x.shape), labels, None

    def update(state, samples, handle):
        del samples, handle
        return state

    return ChainStart(init, draw, update, adopt_support)


def pool_start(pool) -> ChainStart:
    """Every chain starts at a random example of ``pool`` ``[N, *sample_shape]`` (drawn with
    replacement, fresh each call); labels are passed through (chains conditioned on the
    batch's labels start from the same pool).

    The pool is a constant of the traced step: keep it to what fits beside the model (the
    digits' OOD pool is a few hundred KB).

    Raises:
      ValueError: an empty pool, or (at ``init``) one whose examples are not of the
        sample shape.

    Example::

      >>> start = pool_start(jnp.arange(10.0).reshape(5, 2))
      >>> x0, _, _ = start.draw(jax.random.key(0), start.init(None, (2,)), None,
      ...                       jnp.zeros((3, 2)), None)
      >>> x0.shape, bool(jnp.all(x0[:, 1] - x0[:, 0] == 1.0))   # rows of the pool
      ((3, 2), True)
    """
    pool = jax.numpy.asarray(pool)
    if pool.ndim < 2 or pool.shape[0] == 0:
        raise ValueError(f"pool has shape {pool.shape}: expected [N, *sample_shape] with N >= 1")

    def init(rng_key, sample_shape):
        del rng_key
        if tuple(pool.shape[1:]) != tuple(sample_shape):
            raise ValueError(f"pool has examples of shape {tuple(pool.shape[1:])}: expected "
                             f"{tuple(sample_shape)}, the shape of the data")
        return ()

    def draw(rng_key, state, params, x, labels=None):
        del state, params
        rows = jax.random.randint(rng_key, (x.shape[0],), 0, pool.shape[0])
        return pool[rows].astype(x.dtype), labels, None

    def update(state, samples, handle):
        del samples, handle
        return state

    return ChainStart(init, draw, update)


class RecoveryCondition(NamedTuple):
    """What the chains of one noise level are conditioned on, passed as ``x`` to a chain
    start's ``draw`` by the recovery-likelihood losses and samplers.

    Attributes:
      x_next: ``[B, ...]`` the noisier samples ``x_{t+1}``.
      level: the level ``t`` of the samples to draw (an int scalar, often traced).
    """

    x_next: Any
    level: Any


def initializer_start(initializer_fn: Callable[..., Any],
                      proposal_stds: Sequence[float]) -> ChainStart:
    """Chains start at a learned initializer's proposal (CDRL's cooperative start).

    The proposal for ``x_t`` given ``x_{t+1}`` is ``g(x_{t+1}, t) + proposal_stds[t] n``,
    ``n ~ N(0, I)``, with ``g = initializer_fn(params, x_next, t[, label])`` a per-example
    mean; the chains of the level then refine it. ``params`` are the params the loss or the
    sampler is called with (the initializer reads its own part, e.g.
    ``params["initializer"]``), so the draw is differentiable in them: a loss that regresses
    the proposal onto the refined samples (:func:`~ebm_jax.losses.cdrl`) trains ``g`` through
    it.

    Args:
      initializer_fn: ``(params, x_next [...], level[, label]) -> [...]`` the mean of ``x_t``.
      proposal_stds: ``[T]`` the noise std added at each level (CDRL: the diffusion's
        posterior std, :func:`~ebm_jax.losses.cdrl_scales`).

    Returns:
      A stateless :class:`ChainStart` whose ``draw`` takes ``x`` as a
      :class:`RecoveryCondition`.

    Example::

      >>> start = initializer_start(lambda p, x, t: p * x, [0.0, 0.5])
      >>> condition = RecoveryCondition(jnp.ones((4, 2)), 0)
      >>> x0, _, _ = start.draw(jax.random.key(0), (), 2.0, condition, None)
      >>> x0.tolist()[0]
      [2.0, 2.0]
    """
    stds = np.asarray(proposal_stds, np.float64)
    if stds.ndim != 1 or not stds.size or not np.all(np.isfinite(stds) & (stds >= 0)):
        raise ValueError(f"proposal_stds={proposal_stds!r}: expected one finite std >= 0 per "
                         "level")
    stds = jnp.asarray(stds.astype(np.float32))

    def init(rng_key, sample_shape):
        del rng_key, sample_shape
        return ()

    def draw(rng_key, state, params, x, labels=None):
        del state
        if not isinstance(x, RecoveryCondition):
            raise TypeError(f"initializer_start draws from a RecoveryCondition(x_next, level), "
                            f"got {type(x).__name__}")
        x_next, level = jnp.asarray(x.x_next), x.level
        if labels is None:
            mean = jax.vmap(initializer_fn, in_axes=(None, 0, None))(params, x_next, level)
        else:
            mean = jax.vmap(initializer_fn, in_axes=(None, 0, None, 0))(
                params, x_next, level, labels)
        noise = jax.random.normal(rng_key, x_next.shape, x_next.dtype)
        return mean + stds[level] * noise, labels, None

    def update(state, samples, handle):
        del samples, handle
        return state

    return ChainStart(init, draw, update)
