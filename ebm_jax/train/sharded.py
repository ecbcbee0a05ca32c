"""The train state on a device mesh, and the train step jitted over it.

The state is replicated except for replay buffers, whose slots (samples and
labels) are split along ``data`` (and HDGE's logit queues, split the same way);
with the loss's ``buffer_shards`` a multiple of the device count each device
holds whole buffer blocks and samples them locally (see :mod:`ebm_jax.samplers.replay_buffer`). The mesh
and the array shardings come from :mod:`ebm_jax.parallel`, a leaf that knows
nothing of train states; this module, above the samplers, knows where the
replay buffers are.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
from jax.sharding import Mesh

from ebm_jax.parallel import (check_divisible, data_sharding, replicated,
                              stacked_data_sharding)
from ebm_jax.losses.hdge import LogitQueue
from ebm_jax.samplers.replay_buffer import ReplayBuffer

_SPLIT = (ReplayBuffer, LogitQueue)   # ring buffers of rows: rows and labels split, pointer not


def state_shardings(state: Any, mesh: Mesh) -> Any:
    """The sharding of every leaf of ``state`` (same structure).

    Replay-buffer samples and labels, and the logits and labels of an HDGE queue
    (:class:`~ebm_jax.losses.LogitQueue`), are split along ``data`` (their capacity must
    divide by the device count); everything else is replicated.

    Raises:
      MeshError: a buffer capacity that does not divide by the device count.
    """
    def buffer_sharding(buffer):
        name = "buffer capacity" if isinstance(buffer, ReplayBuffer) else "HDGE queue_size"
        check_divisible(name, buffer[0].shape[0], mesh)
        return type(buffer)(data_sharding(mesh), data_sharding(mesh), replicated(mesh))

    def leaf_or_buffer(node):
        if isinstance(node, _SPLIT):
            return buffer_sharding(node)
        return replicated(mesh)

    return jax.tree.map(leaf_or_buffer, state, is_leaf=lambda n: isinstance(n, _SPLIT))


def shard_state(state: Any, mesh: Mesh) -> Any:
    """Place ``state`` on the mesh (:func:`state_shardings`): a fresh or a restored state."""
    return jax.device_put(state, state_shardings(state, mesh))


def sharded_train_step(train_step: Callable, mesh: Mesh, state: Any, *,
                       donate: bool = True, steps_per_call: int = 1,
                       compiler_options: Optional[dict] = None) -> Callable:
    """Jit ``train_step(state, batch)`` over ``mesh``: one XLA program for all devices.

    Args:
      train_step: the pure single-device step (:func:`~ebm_jax.train.make_train_step`).
      mesh: from :func:`~ebm_jax.parallel.make_data_mesh`.
      state: a state with the run's structure (only its structure and shapes are used).
      donate: donate the input state's buffers (the step returns a new state).
      steps_per_call: with ``K > 1``, one call runs ``K`` steps (a ``lax.scan``) on batches
        stacked ``[K, B, ...]`` (:func:`~ebm_jax.parallel.shard_stacked_batches`) and returns
        metrics stacked ``[K]``; :func:`~ebm_jax.train.fit` reads ``step.steps_per_call``.
      compiler_options: XLA options for the program (``jax.jit``'s), e.g.
        :func:`~ebm_jax.train.cpu_compile_options`; None: XLA's defaults.

    Returns:
      ``step(state, batch) -> (state, metrics)`` taking a state placed by
      :func:`shard_state` and a batch from :func:`~ebm_jax.parallel.shard_batch`; the new
      state keeps the same shardings, the metrics are replicated. It runs
      (and traces) under ``jax.set_mesh(mesh)``, so that library code can
      split per-example work it creates (:func:`~ebm_jax.parallel.split_along_data`);
      ``step.lower(state, batch)`` lowers it the same way.

    Example::

      >>> import optax
      >>> from ebm_jax.losses import cross_entropy
      >>> loss, optimizer = cross_entropy(lambda w, x: x @ w), optax.adam(1e-2)  # linear, 3 classes
      >>> batch = {"x": jnp.ones((8, 2)), "y": jnp.zeros(8, jnp.int32)}
      >>> from ebm_jax.parallel import make_data_mesh, shard_batch
      >>> from ebm_jax.train import init_train_state, make_train_step
      >>> state = init_train_state(jax.random.key(0), jnp.zeros((2, 3)), optimizer, loss, batch)
      >>> mesh = make_data_mesh(1)       # make_data_mesh(): every device
      >>> state = shard_state(state, mesh)
      >>> step = sharded_train_step(make_train_step(loss, optimizer), mesh, state)
      >>> state, metrics = step(state, shard_batch(batch, mesh))
      >>> int(state.step)
      1
    """
    state_sh = state_shardings(state, mesh)
    if steps_per_call == 1:
        program, batch_sh = train_step, data_sharding(mesh)
    else:
        def program(state, batches):
            return jax.lax.scan(train_step, state, batches)

        batch_sh = stacked_data_sharding(mesh)
    jitted = jax.jit(program, in_shardings=(state_sh, batch_sh),
                     out_shardings=(state_sh, replicated(mesh)),
                     donate_argnums=(0,) if donate else (),
                     compiler_options=compiler_options or None)

    def step(state, batch):
        with jax.set_mesh(mesh):
            return jitted(state, batch)

    def lower(state, batch):
        with jax.set_mesh(mesh):
            return jitted.lower(state, batch)

    step.lower = lower
    step.steps_per_call = steps_per_call
    return step
