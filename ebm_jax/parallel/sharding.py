"""Shardings on the 1-D data mesh: split along ``data``, replicated, and a batch placed with them.

The train state's shardings (replay buffers split, the rest replicated) and the
train step jitted with them live in :mod:`ebm_jax.train.sharded`, which knows
what a train state holds; this module knows only meshes and arrays.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ebm_jax.parallel.mesh import DATA_AXIS, check_divisible


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading axis along ``data``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assemble this process's slice of the global batch into global arrays split along ``data``.

    On one host the local batch is the global batch. On several, process ``p``
    passes rows ``p * B/P : (p+1) * B/P`` of the global batch (what
    :class:`~ebm_jax.data.Batches` and :class:`~ebm_jax.data.TFDSBatches`
    yield with ``process_index`` / ``process_count``), and each device gets its rows.

    Raises:
      MeshError: a global batch that does not divide by the device count.

    Example::

      >>> from ebm_jax.parallel import make_data_mesh
      >>> batch = shard_batch({"x": np.zeros((64, 2)), "y": np.arange(64)}, make_data_mesh(1))
      >>> batch["x"].sharding.spec == PartitionSpec("data")
      True
    """
    return _place(local_batch, data_sharding(mesh))


def _place(local_batch: dict, sharding: NamedSharding) -> dict:
    """This process's rows as global arrays with ``sharding`` (whose spec names the batch axis,
    split along ``data``)."""
    batch_axis = list(sharding.spec).index(DATA_AXIS)
    local = {name: np.asarray(value) for name, value in local_batch.items()}
    for name, value in local.items():
        check_divisible(f"batch size (of {name!r}, global)",
                        value.shape[batch_axis] * jax.process_count(), sharding.mesh)
    # One call for the whole batch: a call per array costs ~60 us each, per training step.
    return jax.make_array_from_process_local_data(sharding, local)


def stacked_data_sharding(mesh: Mesh) -> NamedSharding:
    """Split the second axis along ``data``: batches stacked for several steps ``[K, B, ...]``."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def shard_stacked_batches(local_batches: dict, mesh: Mesh) -> dict:
    """:func:`shard_batch` for ``K`` steps' batches stacked on a leading axis (``[K, B_local,
    ...]`` from each process): global arrays ``[K, B, ...]`` whose batch axis is split.

    Example::

      >>> from ebm_jax.parallel import make_data_mesh
      >>> batches = shard_stacked_batches({"x": np.zeros((4, 64, 2))}, make_data_mesh(1))
      >>> batches["x"].shape, batches["x"].sharding.spec == PartitionSpec(None, "data")
      ((4, 64, 2), True)
    """
    return _place(local_batches, stacked_data_sharding(mesh))
