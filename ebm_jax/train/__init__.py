"""Training: the state pytree, the pure train step, the fit loop, checkpoints, the sharded step."""
from ebm_jax.train.checkpoint import (CheckpointCorruptError, CheckpointMismatchError,
                                      CheckpointSaveError, Checkpointer, params_fingerprint)
from ebm_jax.train.compile_options import CPU_COMPILE_MODES, cpu_compile_options
from ebm_jax.train.fit import fit
from ebm_jax.train.guard import (CAUSE_ADVICE, CAUSE_REMEDIES, DivergenceGuard, GuardStats,
                                 Remedy, RollbackPolicy, TrainingDiverged, divergence_advice,
                                 divergence_flags, init_guard_stats, relative_flags,
                                 scale_learning_rate, with_lr_scale)
from ebm_jax.train.setup import Training, setup_training
from ebm_jax.train.sharded import shard_state, sharded_train_step, state_shardings
from ebm_jax.train.state import TrainState, init_train_state
from ebm_jax.train.step import make_train_step

__all__ = ["CAUSE_ADVICE", "CAUSE_REMEDIES", "CheckpointCorruptError", "CheckpointMismatchError",
           "CheckpointSaveError", "Checkpointer", "CPU_COMPILE_MODES",
           "DivergenceGuard", "GuardStats",
           "Remedy", "RollbackPolicy", "TrainState", "Training", "TrainingDiverged",
           "divergence_advice", "divergence_flags",
           "cpu_compile_options", "fit", "init_guard_stats", "init_train_state", "make_train_step",
           "params_fingerprint", "relative_flags", "scale_learning_rate", "setup_training",
           "shard_state", "sharded_train_step", "state_shardings", "with_lr_scale"]
