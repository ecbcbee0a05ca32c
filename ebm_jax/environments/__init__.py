"""Procedural environments for sequential decisions, shipped with the package (seeded, NumPy
and ``jax.numpy``, nothing to download): episodes or expert demonstrations, the true next
states, and each environment's checks or simulator.

- :mod:`~ebm_jax.environments.ball_fork`: a ball on 12x12 frames that reaches a fork and
  goes one of two ways at random (a next-frame task, bimodal at the fork).
- :mod:`~ebm_jax.environments.reach`: a 2-D point that reaches a goal round an obstacle, from
  demonstrations that pass it on either side (bimodal actions), with a simulator that scores
  a policy.
"""
from ebm_jax.environments import ball_fork, reach

__all__ = ["ball_fork", "reach"]
