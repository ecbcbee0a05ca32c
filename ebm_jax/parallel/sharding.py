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
    sharding = data_sharding(mesh)
    out = {}
    for name, value in local_batch.items():
        value = np.asarray(value)
        check_divisible(f"batch size (of {name!r}, global)", value.shape[0] * jax.process_count(),
                        mesh)
        out[name] = jax.make_array_from_process_local_data(sharding, value)
    return out
