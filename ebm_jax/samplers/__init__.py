"""Kernels and samplers (``init/step``), the chain runner, chain starts, the replay buffer,
noise schedules, recovery-likelihood chains and step-size adaptation."""
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
from ebm_jax.samplers.chain_starts import (ChainStart, data_start, follow_support, noise_start,
                                           pool_start, replay_buffer_start)
from ebm_jax.samplers.descent import (DescentInfo, DescentState, descent, descent_kernel,
                                      pgd_chain, project_to_ball, random_ball_offset)
from ebm_jax.samplers.diagnostics import ChainSummary, chain_summary, effective_sample_size, split_rhat
from ebm_jax.samplers.hmc import HMCInfo, HMCState, hmc, hmc_kernel
from ebm_jax.samplers.langevin import (LangevinInfo, LangevinState, langevin, langevin_kernel,
                                       temperature_noise_scale)
from ebm_jax.samplers.mala import MALAInfo, MALAState, mala, mala_kernel
from ebm_jax.samplers.recovery import (RecoveryChainOptions, RecoveryInfo, progressive_sample,
                                       recovery_chain_options, recovery_chains, recovery_langevin)
from ebm_jax.samplers.replay_buffer import ReplayBuffer, init_buffer, push, sample, uniform_init
from ebm_jax.samplers.schedules import NoiseSchedule, diffuse, noise_schedule

__all__ = [
    "AdaptationInfo",
    "AnnealedInfo",
    "AnnealedSampler",
    "AnnealedState",
    "AnnealingSchedule",
    "ChainStart",
    "ChainSummary",
    "DescentInfo",
    "DescentState",
    "DualAveragingState",
    "HMCInfo",
    "HMCState",
    "LangevinInfo",
    "LangevinState",
    "MALAInfo",
    "MALAState",
    "NoiseSchedule",
    "RecoveryChainOptions",
    "RecoveryInfo",
    "ReplayBuffer",
    "Sampler",
    "adapt_step_size",
    "adapt_step_size_chains",
    "annealed_langevin",
    "annealed_sample",
    "chain_summary",
    "data_start",
    "descent",
    "descent_kernel",
    "diffuse",
    "dual_averaging_init",
    "dual_averaging_update",
    "effective_sample_size",
    "final_step_size",
    "follow_support",
    "from_blackjax",
    "hmc",
    "hmc_kernel",
    "init_buffer",
    "init_chains",
    "langevin",
    "langevin_kernel",
    "mala",
    "mala_kernel",
    "noise_schedule",
    "noise_start",
    "pgd_chain",
    "pool_start",
    "progressive_sample",
    "project_to_ball",
    "push",
    "random_ball_offset",
    "recovery_chain_options",
    "recovery_chains",
    "recovery_langevin",
    "replay_buffer",
    "replay_buffer_start",
    "run_chain",
    "run_chains",
    "sample",
    "song_ermon_step_sizes",
    "split_rhat",
    "temperature_noise_scale",
    "uniform_init",
]
