"""DAT, dual adversarial training (Yin et al. 2025): a robust classifier whose energy
``E(x) = -logsumexp f(x)`` is learned from PGD-contrastive samples instead of SGLD.

One run, two stages (:func:`~ebm_jax.losses.two_stage`):

1. ``stage1_steps`` of PGD adversarial training, batch norm's statistics updating
   (:func:`~ebm_jax.losses.with_batch_statistics`; ``model.batch_norm=true``);
2. DAT (:func:`~ebm_jax.losses.dat`): on one half of the batch, the energy's binary
   cross-entropy of real images against contrastive samples climbed by ``T`` PGD steps on
   ``f(x)[y]`` from an out-of-distribution pool, ``T`` growing with the real-vs-contrastive
   AUROC (:func:`~ebm_jax.losses.dat_energy`); on the other half, PGD adversarial training;
   every statistic of batch norm frozen (``freeze_statistics``; the ablation ``false`` keeps
   them updating from the clean batch).

The pool (``ood_pool``): ``"procedural"`` (:func:`~ebm_jax.data.ood_pool` of the training
images: blurred noise, mixtures and interpolations of two classes, shifted and inverted
images) or the path of the user's ``.npz`` (its array ``x``, or its only array, ``[N,
*example shape]`` within the data range; its last fifth is held out as generation seeds).
Generation is the same ascent from *held-out* seeds (a procedural pool of the test images,
another key): ``generate`` climbs ``sample_steps`` steps, and the run's evaluation sweeps
``sweep_steps`` and keeps the count of the best Fréchet distance on the digit yardstick
(``ascent_*`` summary keys), as DAT chooses its step count by the best FID.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("dat_digits", ["objective.freeze_statistics=false"]).model.batch_norm
    True
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_jax.data.ood_pool import check_pool, ood_pool
from ebm_jax.energies import energy_from_logits
from ebm_jax.experiments.config import (NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, WIDTHS, Config,
                                        ConfigError, DataConfig, ModelConfig, OptimizerConfig,
                                        RunConfig, setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._adversarial import AttackConfig, attack_options
from ebm_jax.experiments.objectives._classifier import (CLASSIFIER_MODELS,
                                                        CLASSIFIER_MODELS_NOTE,
                                                        classifier_model, robust_evaluation)
from ebm_jax.experiments.sampling import langevin_sampling
from ebm_jax.losses import (dat, dat_energy, pgd_adversarial_training, pgd_contrastive_samples,
                            two_stage, with_batch_statistics, with_frozen_statistics)
from ebm_jax.nets import with_running_statistics
from ebm_jax.samplers import pool_start

PROCEDURAL = "procedural"
HELD_OUT_FRACTION = 0.2     # of a user's pool: the generation seeds
POOL_KEY, SEEDS_KEY = 101, 202   # folded into the run's seed: the pools' draws


@dataclass(frozen=True)
class DATConfig(AttackConfig):
    """``dat(dat_energy(logits_fn, pool_start(pool), step_size=contrastive_step_size,
    initial_steps=, max_steps=, auroc_target=, auroc_images=), pgd_adversarial_training(
    logits_fn, <attack>), energy_weight=)`` after ``stage1_steps`` of the adversarial term
    alone (see the module docstring)."""

    kind = "dat"
    # the contrastive samples' ascent: L2 length of a step, and the curriculum of T
    contrastive_step_size: float = setting(0.1, *POSITIVE)
    initial_steps: int = setting(0, *NON_NEGATIVE_INT)
    max_steps: int = setting(50, *NON_NEGATIVE_INT)
    auroc_target: float = setting(0.8, lambda v: 0.5 < v <= 1.0, "a number in (0.5, 1]")
    auroc_images: int = setting(1000, *POSITIVE_INT)
    energy_weight: float = setting(1.0, *POSITIVE)
    # stage 1: adversarial training alone, batch norm's statistics updating (0: none)
    stage1_steps: int = setting(1500, *NON_NEGATIVE_INT)
    # stage 2: batch norm's statistics frozen (false: still updating, the ablation)
    freeze_statistics: bool = setting(True)
    # the learning rate of stage 2, as a share of optimizer.learning_rate (DAT fine-tunes)
    stage2_learning_rate: float = setting(0.1, lambda v: 0.0 < v <= 1.0, "a factor in (0, 1]")
    statistics_update_rate: float = setting(0.1, lambda v: 0.0 < v <= 1.0,
                                            "a number in (0, 1] (PyTorch's momentum 0.1)")
    # where contrastive chains start: "procedural" or the path of an .npz of OOD examples
    ood_pool: str = setting(PROCEDURAL, lambda v: v == PROCEDURAL or v.lower().endswith(".npz"),
                            f"{PROCEDURAL!r} or the path of an .npz file")
    pool_size: int = setting(5000, *POSITIVE_INT)   # the procedural pool's images
    # generation: ascent steps of `generate`; the counts the evaluation sweeps; its seeds
    sample_steps: int = setting(300, *NON_NEGATIVE_INT)
    sweep_steps: tuple[int, ...] = setting((50, 100, 200, 300, 400, 600), *WIDTHS)
    generation_seeds: int = setting(1000, lambda v: v >= 10, "an int >= 10")


def check(config: Config) -> None:
    settings, run = config.objective, config.run
    if config.data.batch_size % 2:
        raise ConfigError(f"data.batch_size={config.data.batch_size} with objective='dat': "
                          "expected an even number (half for the energy term, half for the "
                          "adversarial term)")
    if settings.initial_steps > settings.max_steps:
        raise ConfigError(f"objective.initial_steps={settings.initial_steps}: expected at most "
                          f"objective.max_steps={settings.max_steps}")
    if settings.stage1_steps >= run.num_steps:
        raise ConfigError(f"objective.stage1_steps={settings.stage1_steps} with run.num_steps="
                          f"{run.num_steps}: expected fewer steps than the run (the DAT stage "
                          "would never start)")
    if settings.ood_pool != PROCEDURAL and not os.path.isfile(settings.ood_pool):
        raise ConfigError(f"objective.ood_pool={settings.ood_pool!r}: no such file; expected "
                          f"{PROCEDURAL!r} or the path of an .npz of OOD examples")


def _user_pool(path: str, data) -> np.ndarray:
    with np.load(path) as arrays:
        names = list(arrays.files)
        if "x" not in names and len(names) != 1:
            raise ConfigError(f"objective.ood_pool={path!r} holds arrays {names}: expected one "
                              "named 'x' or a single array")
        pool = arrays["x" if "x" in names else names[0]]
    try:
        return check_pool(pool, data.x_train.shape[1:], data.data_range,
                          f"objective.ood_pool={path!r}")
    except ValueError as error:
        raise ConfigError(str(error)) from None


def pools(config: Config, data) -> tuple[np.ndarray, np.ndarray]:
    """``(training pool, held-out generation seeds)`` of a run (see the module docstring)."""
    settings = config.objective
    if settings.ood_pool != PROCEDURAL:
        pool = _user_pool(settings.ood_pool, data)
        held_out = max(1, int(round(HELD_OUT_FRACTION * len(pool))))
        if len(pool) - held_out < 1:
            raise ConfigError(f"objective.ood_pool={settings.ood_pool!r} holds {len(pool)} "
                              "examples: expected at least 2 (a fifth is held out)")
        return pool[:-held_out], pool[-held_out:]
    if data.image_shape is None:
        raise ConfigError(f"objective.ood_pool={PROCEDURAL!r} with data.dataset="
                          f"{config.data.dataset!r}: expected images (the procedural pool "
                          "blurs, shifts and mixes images); give an .npz of OOD examples")
    train = ood_pool(jax.random.fold_in(jax.random.PRNGKey(config.run.seed), POOL_KEY),
                     data.x_train, data.image_shape, data.data_range, settings.pool_size,
                     y=data.y_train)
    return train, held_out_seeds(config.run.seed, data, settings.generation_seeds)


def held_out_seeds(seed: int, data, num: int) -> np.ndarray:
    """``[num, ...]``: the procedural OOD pool of the *test* images that a run of ``seed``
    generates from (any classifier's generations can be compared from the same seeds)."""
    return ood_pool(jax.random.fold_in(jax.random.PRNGKey(seed), SEEDS_KEY), data.x_test,
                    data.image_shape, data.data_range, num, y=data.y_test)


def balanced_labels(num: int, num_classes: int) -> jax.Array:
    """``[num]`` int32: 0, 1, ..., K-1, 0, 1, ... (class-conditional generation)."""
    return jnp.arange(num, dtype=jnp.int32) % num_classes


def ascent_generator(logits_fn, seeds: np.ndarray, num_classes: int, num_steps: int,
                     step_size: float, clip_range):
    """``generate(rng_key, params, num) -> [num, ...]``: ``num_steps`` PGD ascent steps on
    ``f(x)[y]`` (labels cycling through the classes) from seeds drawn from ``seeds``."""
    seeds = jnp.asarray(seeds)

    def generate(rng_key, params, num):
        x0 = seeds[jax.random.randint(rng_key, (num,), 0, seeds.shape[0])]
        return pgd_contrastive_samples(logits_fn, params, x0, balanced_labels(num, num_classes),
                                       num_steps, step_size=step_size, clip_range=clip_range)

    return generate


def ascent_yardstick(logits_fn, params, data, seeds: np.ndarray, steps, *,
                     step_size: float = 0.1, figure: Optional[str] = None) -> dict:
    """Digits generated by PGD ascent on ``f(x)[y]`` from ``seeds`` (labels cycling through
    the classes) for every count in ``steps``
    (:func:`~ebm_jax.applications.generate_by_ascent`), the count of the best Fréchet
    distance kept: ``{ascent_best_steps, ascent_frechet_by_steps, ascent_<yardstick key>,
    ascent_diversity}``, any classifier's (DAT's evaluation, and its benchmark's baselines);
    with ``figure``, the seeds and every count's first 30 digits drawn there."""
    from ebm_jax.applications.conditional import generate_by_ascent
    from ebm_jax.metrics.digit_yardstick import YARDSTICK_KEYS, digit_diversity, score_digits

    labels = balanced_labels(len(seeds), data.num_classes)

    def frechet(x):
        return score_digits(x)["frechet_distance"] if np.all(np.isfinite(x)) else math.inf

    sweep = generate_by_ascent(logits_fn, params, seeds, labels, steps, frechet,
                               step_size=step_size, clip_range=data.data_range)
    best = sweep.samples[sweep.best_steps]
    out = {"ascent_best_steps": sweep.best_steps,
           "ascent_frechet_by_steps": {str(t): s for t, s in sweep.scores.items()}}
    if np.all(np.isfinite(best)):
        scores = score_digits(best)
        out.update({f"ascent_{k}": scores[k] for k in YARDSTICK_KEYS})
        out["ascent_diversity"] = digit_diversity(best, np.asarray(labels)).ratio
    if figure is not None:
        from ebm_jax import plots

        grids = {"held-out OOD seeds": seeds[:30],
                 **{f"ascent, {t} steps" + (" (best FD)" if t == sweep.best_steps else ""):
                    x[:30] for t, x in sweep.samples.items()}}
        plots.save_image_grids(figure, grids, data.image_shape, value_range=data.data_range)
    return out


def generation_evaluation(config: Config, data, logits_fn, seeds: np.ndarray):
    """``evaluate(params, rng_key, *, quick, figure) -> {ascent_*}``: :func:`ascent_yardstick`
    over ``sweep_steps`` from the held-out seeds, on the digits (the yardstick's data;
    nothing elsewhere or with ``quick``)."""
    settings = config.objective

    def evaluate(params, rng_key, *, quick: bool = False,
                 figure: Optional[str] = None) -> dict:
        del rng_key  # the seeds are fixed: every count starts from the same ones
        if quick or config.data.dataset != "digits":
            return {}
        return ascent_yardstick(logits_fn, params, data, seeds, settings.sweep_steps,
                                step_size=settings.contrastive_step_size, figure=figure)

    return evaluate


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    settings = config.objective
    model = classifier_model(config, data, rngs)
    logits_fn, energy_fn = model.apply, energy_from_logits(model.apply)
    train_pool, seeds = pools(config, data)
    adversarial = pgd_adversarial_training(logits_fn, **attack_options(config, data))
    energy = dat_energy(logits_fn, pool_start(train_pool),
                        step_size=settings.contrastive_step_size, clip_range=data.data_range,
                        initial_steps=settings.initial_steps, max_steps=settings.max_steps,
                        auroc_target=settings.auroc_target, auroc_images=settings.auroc_images)
    second = dat(energy, adversarial, energy_weight=settings.energy_weight)
    first = adversarial
    if config.model.batch_norm:
        first = with_batch_statistics(adversarial, model.apply_batch)
        second = (with_frozen_statistics(second) if settings.freeze_statistics
                  else with_batch_statistics(second, model.apply_batch))
    loss = (two_stage(first, second, switch_step=settings.stage1_steps)
            if settings.stage1_steps else second)
    sampler, make_sampler, _ = langevin_sampling(config, data, energy_fn)
    generate = ascent_generator(logits_fn, seeds, data.num_classes, settings.sample_steps,
                                settings.contrastive_step_size, data.data_range)
    robust = robust_evaluation(data, logits_fn, config.run.robust_eval_examples)
    generation = generation_evaluation(config, data, logits_fn, seeds)

    def evaluate(params, rng_key, *, quick: bool = False, figure: Optional[str] = None):
        return {**robust(params, rng_key, quick=quick),
                **generation(params, rng_key, quick=quick, figure=figure)}

    return Pieces(model.params, energy_fn, logits_fn, loss, sampler, make_sampler, generate,
                  generator_name=f"PGD ascent from OOD seeds, {settings.sample_steps} steps",
                  evaluate=evaluate, wrap_optimizer=stage_optimizer(config))


def stage_optimizer(config: Config):
    """``wrap(optimizer)``: the optimizer's updates times ``stage2_learning_rate`` from step
    ``stage1_steps`` on (the optimizer's own count); with batch norm, the running statistics
    on their running average instead (:func:`~ebm_jax.nets.with_running_statistics`)."""
    settings = config.objective
    switch, factor = settings.stage1_steps, settings.stage2_learning_rate

    def wrap(optimizer):
        scaled = optax.chain(optimizer, optax.scale_by_schedule(
            lambda count: jnp.where(count < switch, 1.0, factor)))
        if not config.model.batch_norm:
            return scaled
        return with_running_statistics(scaled, update_rate=settings.statistics_update_rate)

    return wrap


PRESETS = {
    # The MLP 256-256 of at_digits with batch norm: 1,500 steps of PGD-AT at Adam 1e-3
    # (statistics updating), then 4,500 of DAT at 1e-4 (statistics frozen), batch 2 x 64.
    # Measured 3 seeds, S = 0, 1, 2 (`python benchmarks/adversarial.py`, the same runs as
    # `ebm-jax train --config dat_digits --set run.seed=S`; 2 CPU cores): clean accuracy
    # 0.997 / 0.994 / 0.994, robust L-inf 0.2 0.856 / 0.867 / 0.864 (stage 1's 0.864 / 0.867 /
    # 0.850), FD of the generations 1.25 / 1.38 / 1.67 at 300 / 200 / 300 ascent steps
    # (PGD-AT's 8.77 / 6.94 / 8.87), T = 50 by step ~2,400, no rollback; wall 201-232 s.
    "dat_digits": Config(
        name="dat_digits", data=DataConfig(batch_size=128),
        model=ModelConfig(batch_norm=True), objective=DATConfig(),
        run=RunConfig(num_steps=6000)),
    # For GPU/TPU, not measured here: WRN-28-10 with batch norm (bfloat16 compute), PGD-AT at
    # Madry's L-inf 8/255 (16/255 in the [-1, 1] scale), 10 steps of 4/255, SGD 0.1 with
    # momentum 0.9 for 40,000 steps (about 100 epochs of 2 x 64), then DAT at 0.01 for
    # 20,000 with the statistics frozen; a procedural pool of 2,000 OOD images.
    "dat_cifar10": Config(
        name="dat_cifar10", data=DataConfig(dataset="cifar10", batch_size=128, flip=True),
        model=ModelConfig(kind="wrn", depth=28, widen_factor=10, activation="relu",
                          batch_norm=True, dtype="bfloat16"),
        objective=DATConfig(epsilon=16 / 255, step_size=4 / 255, stage1_steps=40_000,
                            pool_size=2000),
        optimizer=OptimizerConfig(kind="sgd", learning_rate=0.1),
        run=RunConfig(num_steps=60_000, eval_every=5000, checkpoint_every=5000,
                      num_eval_samples=1000)),
}

OBJECTIVE = Objective(
    kind="dat", config=DATConfig, build=build, needs_labels=True, classifier=True,
    unsupervised=False, models=CLASSIFIER_MODELS, models_note=CLASSIFIER_MODELS_NOTE,
    presets=PRESETS, check=check, batch_norm=True,
    summary="DAT: PGD-contrastive energy + adversarial training, batch norm frozen")
