"""The 1-D device mesh of data parallelism and the checks that go with it."""
from __future__ import annotations

from typing import Optional

import jax
from jax.sharding import Mesh, PartitionSpec

DATA_AXIS = "data"


class MeshError(ValueError):
    """A mesh that cannot be built, or a size that does not split over it."""


def make_data_mesh(num_devices: Optional[int] = None, *, devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over the first ``num_devices`` devices.

    Args:
      num_devices: how many devices (default: all of them, over every process).
      devices: the devices to choose from (default ``jax.devices()``).

    The axis type is ``Auto``: XLA propagates shardings through the unchanged
    single-device code (explicit-sharding mode would reject vmaps over arrays
    of mixed sharding, which the toolkit's per-example code is full of).

    Raises:
      MeshError: ``num_devices`` is not a positive int, or is more than are present.

    Example::

      >>> mesh = make_data_mesh()        # every device
      >>> mesh = make_data_mesh(1)       # the first one
      >>> dict(mesh.shape)
      {'data': 1}
    """
    available = list(devices if devices is not None else jax.devices())
    if num_devices is None:
        num_devices = len(available)
    if not isinstance(num_devices, int) or isinstance(num_devices, bool) or num_devices < 1:
        raise MeshError(f"devices={num_devices!r}: expected a positive int")
    if num_devices > len(available):
        kind = available[0].platform if available else "none"
        raise MeshError(f"devices={num_devices}: expected at most the {len(available)} "
                        f"{kind} device(s) present")
    return jax.make_mesh((num_devices,), (DATA_AXIS,), devices=available[:num_devices],
                         axis_types=(jax.sharding.AxisType.Auto,))


def check_divisible(field: str, value: int, mesh: Mesh) -> int:
    """Raise :class:`MeshError` unless ``value`` splits evenly over the mesh's ``data`` axis.

    Example::

      >>> check_divisible("batch_size", 64, make_data_mesh(1))
      64
    """
    size = mesh.shape[DATA_AXIS]
    if value % size:
        raise MeshError(f"{field}={value} does not divide over {size} devices: expected a "
                        f"multiple of {size} (or choose the device count with --devices)")
    return value


def split_along_data(tree):
    """Ask XLA to split every leaf's leading axis along the ambient mesh's ``data`` axis.

    Per-example work created inside a step (SGLD chains started from a
    replay buffer, noise draws) has no sharded input to inherit a split from,
    and XLA may then run all of it on every device. Library code marks such
    arrays with this function; it does nothing outside a mesh (one device, or
    a step not run by :func:`~ebm_jax.train.sharded_train_step`) and on
    leaves whose leading axis does not divide by the device count.

    Example::

      >>> x0 = jnp.zeros((8, 2))           # e.g. chain starts drawn inside a loss
      >>> split_along_data(x0) is x0       # outside a mesh: unchanged
      True
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA_AXIS not in mesh.axis_names:
        return tree
    size = mesh.shape[DATA_AXIS]

    def constrain(leaf):
        if getattr(leaf, "ndim", 0) == 0 or leaf.shape[0] % size:
            return leaf
        return jax.lax.with_sharding_constraint(leaf, PartitionSpec(DATA_AXIS))

    return jax.tree.map(constrain, tree)


def map_blocks(fn, *blocks):
    """``jax.vmap(fn)(*blocks)`` over a leading block axis, each device mapping its own blocks.

    Under a mesh whose ``data`` size divides the number of blocks this is a
    ``jax.shard_map``: per-device code that never looks at another device's
    blocks (XLA's partitioner, left to itself, moves the indices of a vmapped
    gather between devices). Elsewhere it is the plain vmap, so results are
    the same on any number of devices.

    Example::

      >>> blocks = jnp.arange(12.0).reshape(3, 4)            # 3 blocks of 4 rows
      >>> map_blocks(lambda block, i: block[i], blocks, jnp.array([0, 1, 3]))
      Array([ 0.,  5., 11.], dtype=float32)
    """
    mesh = jax.sharding.get_abstract_mesh()
    mapped = jax.vmap(fn)
    if mesh.empty or DATA_AXIS not in mesh.axis_names:
        return mapped(*blocks)
    if jax.tree.leaves(blocks)[0].shape[0] % mesh.shape[DATA_AXIS]:
        return mapped(*blocks)
    spec = PartitionSpec(DATA_AXIS)
    return jax.shard_map(mapped, in_specs=spec, out_specs=spec)(*blocks)
