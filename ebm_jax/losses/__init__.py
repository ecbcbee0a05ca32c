"""Loss transforms: ``init/loss`` pairs ready for ``jax.value_and_grad(..., has_aux=True)``."""
from ebm_jax.losses.adversarial import (pgd_adversarial_training, trades, trades_examples,
                                        weat)
from ebm_jax.losses.base import LossTransform, WarmupState, after_warmup, combine
from ebm_jax.losses.batch_statistics import (freeze_statistics, with_batch_statistics,
                                             with_frozen_statistics)
from ebm_jax.losses.classification import cross_entropy
from ebm_jax.losses.cdrl import (CDRLScales, CDRLState, cdrl, cdrl_optimizer, cdrl_params,
                                 cdrl_scales, decoupled_energy, residual_initializer)
from ebm_jax.losses.concept_bottleneck import concept_bottleneck_loss
from ebm_jax.losses.contrastive_divergence import CDState, contrastive_divergence
from ebm_jax.losses.dat import DATState, dat, dat_energy, pgd_contrastive_samples
from ebm_jax.losses.ebt import (EBTDescent, EBTState, denoising_pairs, ebt, ebt_descent,
                                ebt_energy, ebt_params, ebt_step_size)
from ebm_jax.losses.ecbm import (concept_pseudo_likelihood, ecbm_loss, energy_cross_entropy,
                                 perturb_concept_vectors)
from ebm_jax.losses.fce import fce, fce_optimizer, fce_params
from ebm_jax.losses.flow_likelihood import flow_maximum_likelihood
from ebm_jax.losses.gedi import (gedi, invariance, symmetric_cross_entropy, uniform_prior,
                                 uniform_prior_divergence)
from ebm_jax.losses.hdge import HDGEState, LogitQueue, hdge, hdge_contrastive
from ebm_jax.losses.jem import jem_hybrid
from ebm_jax.losses.meco import MECOState, log_z_estimate, meco
from ebm_jax.losses.nce import nce, nce_params
from ebm_jax.losses.recovery_likelihood import (NoiseSchedule, noise_schedule,
                                                progressive_sample, recovery_likelihood)
from ebm_jax.losses.score_matching import denoising_score_matching, sliced_score_matching
from ebm_jax.losses.two_stage import TwoStageState, two_stage

__all__ = ["after_warmup", "cdrl", "cdrl_optimizer", "cdrl_params", "cdrl_scales", "CDRLScales",
           "CDRLState", "CDState", "combine", "concept_bottleneck_loss",
           "concept_pseudo_likelihood", "contrastive_divergence", "cross_entropy", "dat",
           "dat_energy", "DATState",
           "decoupled_energy", "denoising_pairs", "denoising_score_matching", "ebt",
           "ebt_descent", "ebt_energy", "ebt_params", "ebt_step_size", "EBTDescent", "EBTState",
           "ecbm_loss", "energy_cross_entropy", "fce", "fce_optimizer", "fce_params",
           "flow_maximum_likelihood", "freeze_statistics", "gedi", "hdge", "hdge_contrastive",
           "HDGEState", "invariance", "jem_hybrid", "log_z_estimate", "LogitQueue",
           "LossTransform", "meco", "MECOState", "nce", "nce_params", "noise_schedule",
           "NoiseSchedule", "perturb_concept_vectors", "pgd_adversarial_training",
           "pgd_contrastive_samples", "progressive_sample", "recovery_likelihood",
           "residual_initializer", "sliced_score_matching", "symmetric_cross_entropy", "trades",
           "trades_examples", "two_stage", "TwoStageState", "uniform_prior",
           "uniform_prior_divergence", "WarmupState", "weat", "with_batch_statistics",
           "with_frozen_statistics"]
