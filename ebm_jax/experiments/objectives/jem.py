"""JEM (Grathwohl et al. 2020): a classifier trained as p(y|x) and as the EBM
E(x) = -logsumexp f(x), by cross-entropy plus persistent contrastive divergence.

Hyperparameters mirror :func:`ebm_jax.losses.jem_hybrid` (and the contrastive-divergence
options it passes on); ``sampler`` and ``chain_start`` are the SGLD chains' settings.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("jem_digits", ["objective.num_steps=10"]).objective.num_steps
    10
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ebm_jax.experiments.config import (NON_NEGATIVE, OPTIONAL_NON_NEGATIVE, POSITIVE_INT,
                                        Config, DataConfig, ModelConfig, ObjectiveConfig,
                                        OptimizerConfig, RunConfig, energy_l2_of, section, setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._classifier import (CLASSIFIER_MODELS,
                                                        CLASSIFIER_MODELS_NOTE, build_classifier,
                                                        robust_evaluation)
from ebm_jax.experiments.sampling import (LangevinConfig, ReplayBufferConfig, make_chain_start,
                                          check_chain_start, langevin_sampling)
from ebm_jax.losses import jem_hybrid


@dataclass(frozen=True)
class JEMConfig(ObjectiveConfig):
    """``jem_hybrid(logits_fn, sampler, num_steps=, generative_weight=, energy_l2=,
    <chain start>)``."""

    kind = "jem"
    sampler: LangevinConfig = section(LangevinConfig)
    chain_start: ReplayBufferConfig = section(ReplayBufferConfig)
    num_steps: int = setting(20, *POSITIVE_INT)  # SGLD steps per training step
    generative_weight: float = setting(1.0, *NON_NEGATIVE)
    energy_l2: Optional[float] = setting(None, *OPTIONAL_NON_NEGATIVE)


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    objective = config.objective
    params, logits_fn, energy_fn = build_classifier(config, data, rngs)
    sampling = langevin_sampling(config, data, energy_fn)
    loss = jem_hybrid(logits_fn, sampling.sampler, num_steps=objective.num_steps,
                      generative_weight=objective.generative_weight,
                      energy_l2=energy_l2_of(config),
                      chain_start=make_chain_start(objective.chain_start, data.data_range,
                                                   num_devices))
    return Pieces(params, energy_fn, logits_fn, loss, *sampling,
                  evaluate=robust_evaluation(data, logits_fn,
                                             config.run.robust_eval_examples))


def check(config: Config) -> None:
    check_chain_start(config, config.objective.chain_start)


def _paper(dataset: str, flip: bool = True) -> Config:
    """JEM's settings for GPU/TPU: WRN-28-10 without batch norm, SGLD 20 steps of size 1 with
    noise 0.01, replay buffer 10,000 with 5% restarts from uniform noise, Adam 1e-4, batch 64,
    horizontal flips and small Gaussian data noise (here: dequantisation)."""
    name = "svhn" if dataset == "svhn_cropped" else dataset
    return Config(name=f"jem_{name}",
                  data=DataConfig(dataset=dataset, batch_size=64, flip=flip),
                  model=ModelConfig(kind="wrn", depth=28, widen_factor=10,
                                    activation="leaky_relu", dtype="bfloat16"),
                  objective=JEMConfig(),
                  optimizer=OptimizerConfig(learning_rate=1e-4, warmup_steps=1000),
                  run=RunConfig(num_steps=150_000, eval_every=5000, checkpoint_every=5000,
                                num_eval_samples=1000))


PRESETS = {
    # The JEM hybrid on the embedded digits: the main job.
    "jem_digits": Config(objective=JEMConfig()),
    # Semi-supervised: 10% of the training labels (144 digits); the unlabelled digits enter
    # only the generative term. Its baseline is softmax_digits_semi.
    "jem_digits_semi": Config(name="jem_digits_semi", data=DataConfig(label_fraction=0.1),
                              objective=JEMConfig()),
    # The paper's settings for GPU/TPU (full size; tests shrink them with overrides).
    "jem_cifar10": _paper("cifar10"),
    "jem_cifar100": _paper("cifar100"),
    "jem_svhn": _paper("svhn_cropped", flip=False),  # digits are not mirror-symmetric
}

OBJECTIVE = Objective(
    kind="jem", config=JEMConfig, build=build, needs_labels=True, classifier=True,
    unsupervised=False, models=CLASSIFIER_MODELS, models_note=CLASSIFIER_MODELS_NOTE,
    presets=PRESETS, check=check, keeps_unlabelled=True,
    # 0.1 read reinit_from_data for CD only: JEM runs of 0.1 restarted from noise
    flat_inert=("reinit_from_data",),
    summary="JEM hybrid: cross-entropy + persistent CD on E(x) = -logsumexp f(x)")
