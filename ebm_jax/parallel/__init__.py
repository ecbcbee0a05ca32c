"""Data parallelism on a device mesh: the mesh and sharding primitives.

This is what ``jax.pmap`` did, expressed the way JAX now implements it: one
``jax.jit`` program over a 1-D mesh with a ``data`` axis. Inputs carry
``NamedSharding``s (params, optimizer state and keys replicated; the batch
and the replay buffer split along ``data``), XLA's SPMD partitioner splits
every per-example computation (vmapped SGLD chains, per-example energies)
along the same axis, and the gradient, a mean over the batch, becomes an
all-reduce. The train step itself is the single-device one, unchanged; it is
jitted over the mesh by :func:`ebm_jax.train.sharded_train_step`, which also
places the train state (:func:`ebm_jax.train.shard_state`).

Several processes (hosts) run one program through JAX's distributed runtime:
:mod:`ebm_jax.parallel.distributed` joins it and holds the few collective decisions a
training loop takes (who writes files, whether any process was interrupted).

A leaf of the package: it imports nothing else of ``ebm_jax``
(``tests/test_layering.py``).
"""
from ebm_jax.parallel.mesh import (DATA_AXIS, MeshError, check_divisible, make_data_mesh,
                                   map_blocks, split_along_data)
from ebm_jax.parallel.distributed import (DistributedError, ProcessGroup, agree, any_process,
                                          barrier, gather_to_host, is_primary, join,
                                          process_group)
from ebm_jax.parallel.sharding import (data_sharding, replicated, shard_batch,
                                      shard_stacked_batches, stacked_data_sharding)

__all__ = ["DATA_AXIS", "DistributedError", "MeshError", "ProcessGroup", "agree", "any_process",
           "barrier", "check_divisible", "data_sharding", "gather_to_host", "is_primary", "join",
           "make_data_mesh", "map_blocks", "process_group", "replicated", "shard_batch",
           "shard_stacked_batches", "split_along_data", "stacked_data_sharding"]
