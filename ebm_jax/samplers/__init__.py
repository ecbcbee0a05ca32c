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
from ebm_jax.samplers.annealed import (
    AnnealedInfo,
    AnnealedSampler,
    AnnealedState,
    AnnealingSchedule,
    annealed_langevin,
    annealed_sample,
    song_ermon_step_sizes,
)
from ebm_jax.samplers.base import Sampler, init_chains, run_chain, run_chains
from ebm_jax.samplers.blackjax_adapter import from_blackjax
from ebm_jax.samplers.diagnostics import ChainSummary, chain_summary, effective_sample_size, split_rhat
from ebm_jax.samplers.hmc import HMCInfo, HMCState, hmc, hmc_kernel
from ebm_jax.samplers.langevin import LangevinInfo, LangevinState, langevin
from ebm_jax.samplers.mala import MALAInfo, MALAState, mala, mala_kernel
from ebm_jax.samplers.replay_buffer import ReplayBuffer, init_buffer, push, sample, uniform_init

__all__ = [
    "AdaptationInfo",
    "AnnealedInfo",
    "AnnealedSampler",
    "AnnealedState",
    "AnnealingSchedule",
    "ChainSummary",
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
    "annealed_langevin",
    "annealed_sample",
    "chain_summary",
    "dual_averaging_init",
    "dual_averaging_update",
    "effective_sample_size",
    "final_step_size",
    "from_blackjax",
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
    "song_ermon_step_sizes",
    "split_rhat",
    "uniform_init",
]
