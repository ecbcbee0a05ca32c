"""Samplers (``init/step``), the chain runner, step-size adaptation and the replay buffer."""
from ebm_jax.samplers import replay_buffer
from ebm_jax.samplers.adaptation import (
    AdaptationInfo,
    DualAveragingState,
    adapt_step_size,
    adapt_step_size_chains,
    dual_averaging_init,
    dual_averaging_update,
    final_step_size,
)
from ebm_jax.samplers.base import Sampler, init_chains, run_chain, run_chains
from ebm_jax.samplers.hmc import HMCInfo, HMCState, hmc, hmc_kernel
from ebm_jax.samplers.langevin import LangevinInfo, LangevinState, langevin
from ebm_jax.samplers.mala import MALAInfo, MALAState, mala, mala_kernel
from ebm_jax.samplers.replay_buffer import ReplayBuffer, init_buffer, push, sample, uniform_init

__all__ = [
    "AdaptationInfo",
    "DualAveragingState",
    "HMCInfo",
    "HMCState",
    "LangevinInfo",
    "LangevinState",
    "MALAInfo",
    "MALAState",
    "ReplayBuffer",
    "Sampler",
    "adapt_step_size",
    "adapt_step_size_chains",
    "dual_averaging_init",
    "dual_averaging_update",
    "final_step_size",
    "hmc",
    "hmc_kernel",
    "init_buffer",
    "init_chains",
    "langevin",
    "mala",
    "mala_kernel",
    "push",
    "replay_buffer",
    "run_chain",
    "run_chains",
    "sample",
    "uniform_init",
]
