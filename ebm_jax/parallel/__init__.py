"""Data parallelism on a device mesh: params replicated, batches and replay buffers sharded.

This is what ``jax.pmap`` did, expressed the way JAX now implements it: one
``jax.jit`` program over a 1-D mesh with a ``data`` axis. Inputs carry
``NamedSharding``s (params, optimizer state and keys replicated; the batch
and the replay buffer split along ``data``), XLA's SPMD partitioner splits
every per-example computation (vmapped SGLD chains, per-example energies)
along the same axis, and the gradient, a mean over the batch, becomes an
all-reduce. The train step itself is the single-device one, unchanged.
"""
from ebm_jax.parallel.mesh import (DATA_AXIS, MeshError, check_divisible, make_data_mesh,
                                   split_along_data)
from ebm_jax.parallel.sharding import (
    data_sharding,
    replicated,
    shard_batch,
    shard_state,
    sharded_train_step,
    state_shardings,
)

__all__ = ["DATA_AXIS", "MeshError", "check_divisible", "data_sharding", "make_data_mesh",
           "replicated", "shard_batch", "shard_state", "sharded_train_step", "split_along_data",
           "state_shardings"]
