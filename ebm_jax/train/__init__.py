"""Training: the state pytree, the pure train step, the fit loop, checkpoints, the sharded step."""
from ebm_jax.train.checkpoint import (CheckpointCorruptError, CheckpointMismatchError,
                                      CheckpointSaveError, Checkpointer, params_fingerprint)
from ebm_jax.train.fit import fit
from ebm_jax.train.guard import (DivergenceGuard, RollbackPolicy, TrainingDiverged,
                                 divergence_flags, scale_learning_rate, with_lr_scale)
from ebm_jax.train.sharded import shard_state, sharded_train_step, state_shardings
from ebm_jax.train.state import TrainState, init_train_state
from ebm_jax.train.step import make_train_step

__all__ = ["CheckpointCorruptError", "CheckpointMismatchError", "CheckpointSaveError", "Checkpointer", "DivergenceGuard", "RollbackPolicy",
           "TrainingDiverged", "divergence_flags", "scale_learning_rate", "with_lr_scale", "TrainState", "fit", "init_train_state", "make_train_step",
           "params_fingerprint", "shard_state", "sharded_train_step", "state_shardings"]
