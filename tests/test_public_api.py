"""The public top level: ``import ebm_jax as ej; ej.X`` for every name of ``__all__``,
which is explicit and sorted, with every sampler, chain start and loss, and the replay
buffer's functions in their namespace."""
import types

import ebm_jax as ej

SAMPLERS = ["langevin", "langevin_kernel", "mala", "mala_kernel", "hmc", "hmc_kernel",
            "annealed_langevin", "annealed_sample", "descent", "descent_kernel", "init_chains",
            "run_chain", "run_chains", "sample_chain", "sample_chains", "Draws", "Sampler"]
CHAIN_STARTS = ["ChainStart", "replay_buffer_start", "data_start", "noise_start",
                "ReplayBuffer", "uniform_init"]
LOSSES = ["LossTransform", "combine", "cross_entropy", "jem_hybrid", "contrastive_divergence",
          "nce", "nce_params", "denoising_score_matching", "sliced_score_matching",
          "recovery_likelihood", "noise_schedule", "progressive_sample",
          "pgd_adversarial_training", "trades", "weat"]


def test_every_name_in_all_is_an_attribute():
    missing = [name for name in ej.__all__ if not hasattr(ej, name)]
    assert missing == []


def test_all_is_explicit_sorted_and_unique():
    assert isinstance(ej.__all__, list)
    assert ej.__all__ == sorted(ej.__all__)
    assert len(set(ej.__all__)) == len(ej.__all__)


def test_star_import_gives_exactly_all():
    namespace = {}
    exec("from ebm_jax import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == ej.__all__


def test_every_sampler_chain_start_and_loss_is_exported():
    for name in SAMPLERS + CHAIN_STARTS + LOSSES:
        assert name in ej.__all__, name
    # The same objects as in the subpackages, not copies.
    assert ej.mala is ej.samplers.mala and ej.hmc_kernel is ej.samplers.hmc_kernel
    assert ej.recovery_likelihood is ej.losses.recovery_likelihood
    assert ej.noise_schedule is ej.samplers.noise_schedule


def test_replay_buffer_functions_are_namespaced():
    assert isinstance(ej.replay_buffer, types.ModuleType) and "replay_buffer" in ej.__all__
    for name in ("init_buffer", "sample", "push", "uniform_init", "ReplayBuffer"):
        assert callable(getattr(ej.replay_buffer, name)), name
    for loose in ("init_buffer", "push", "sample"):
        assert loose not in ej.__all__ and not hasattr(ej, loose), loose
