"""Procedural environments for sequential decisions, shipped with the package (seeded, NumPy,
nothing to download): episodes, the true next states, and each environment's checks.

- :mod:`~ebm_jax.environments.ball_fork`: a ball on 12x12 frames that reaches a fork and
  goes one of two ways at random (a next-frame task, bimodal at the fork).
"""
from ebm_jax.environments import ball_fork

__all__ = ["ball_fork"]
