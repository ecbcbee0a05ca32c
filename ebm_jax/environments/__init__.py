"""Procedural environments for sequential decisions (seeded, NumPy and ``jax.numpy``): tasks
with a simulator that scores a policy, and the expert demonstrations to learn it from."""
from ebm_jax.environments import reach

__all__ = ["reach"]
