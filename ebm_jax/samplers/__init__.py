"""Samplers (``init/step``), the chain runner and the replay buffer."""
from ebm_jax.samplers import replay_buffer
from ebm_jax.samplers.base import Sampler, init_chains, run_chain, run_chains
from ebm_jax.samplers.langevin import LangevinInfo, LangevinState, langevin
from ebm_jax.samplers.replay_buffer import ReplayBuffer, init_buffer, push, sample, uniform_init

__all__ = [
    "LangevinInfo",
    "LangevinState",
    "ReplayBuffer",
    "Sampler",
    "init_buffer",
    "init_chains",
    "langevin",
    "push",
    "replay_buffer",
    "run_chain",
    "run_chains",
    "sample",
    "uniform_init",
]
