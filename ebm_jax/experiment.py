"""From a :class:`~ebm_jax.config.Config` to a trained, evaluated run directory.

This is what ``ebm-jax train`` does, as importable functions: :func:`build`
assembles the pure pieces (data, network, energy, sampler, loss, optimizer),
:func:`train` runs them with checkpoints and writes the run directory, and
:func:`evaluate` computes the summary and the figures.

Run directory::

    config.json  metrics.jsonl  checkpoints/  samples.png  curves.png  summary.json
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ebm_jax import metrics, plots
from ebm_jax.config import Config, ConfigError, config_differences, config_from_dict
from ebm_jax.data import Batches, load_digits
from ebm_jax.energies import batch_energy, energy_from_logits
from ebm_jax.energies import distributions
from ebm_jax.losses import LossTransform, contrastive_divergence, cross_entropy, jem_hybrid
from ebm_jax.losses.nce import nce, nce_params
from ebm_jax.losses.recovery_likelihood import (NoiseSchedule, noise_schedule, progressive_sample,
                                                recovery_likelihood)
from ebm_jax.losses.score_matching import denoising_score_matching, sliced_score_matching
from ebm_jax.nets import (MLP, ConditionedMLP, ConditionedResNet, ConvNet, IGEBMResNet, WideResNet,
                          as_conditioned_energy_fn, as_energy_fn, pure)
from ebm_jax.samplers import Sampler, init_chains, langevin, run_chains, uniform_init
from ebm_jax.train import (Checkpointer, DivergenceGuard, RollbackPolicy, TrainState, fit,
                           init_train_state, make_train_step, with_lr_scale)
from ebm_jax.train.checkpoint import params_fingerprint

TOY_LIMIT = 4.5  # 2-D toys live in [-4.5, 4.5]^2
TOY_TRAIN_SIZE = 50_000


class Data(NamedTuple):
    """What a run trains and evaluates on.

    For the in-memory datasets (digits, 2-D toys) ``x_train`` is the whole
    training set. For tfds datasets it is the first :data:`TFDS_TRAIN_SAMPLE`
    examples (for the example batch, fitted noise and the sample judge), and
    training reads the whole split through ``train_batches``.
    """

    x_train: np.ndarray
    y_train: Optional[np.ndarray]
    x_test: np.ndarray
    y_test: Optional[np.ndarray]
    data_range: tuple
    image_shape: Optional[tuple]
    num_classes: Optional[int]
    log_prob: Optional[Callable]  # closed-form density of a 2-D toy, when there is one
    # train_batches(start_step, process_index, process_count) -> iterator of this process's
    # batches; None: batches of x_train, y_train
    train_batches: Optional[Callable] = None
    num_train: Optional[int] = None  # training examples (None: len(x_train))


class Experiment(NamedTuple):
    """The pure pieces of a run, built from its config."""

    config: Config
    data: Data
    params: Any
    energy_fn: Callable
    logits_fn: Optional[Callable]
    sampler: Sampler
    loss: LossTransform
    optimizer: optax.GradientTransformation
    # Objectives with their own generator (recovery likelihood: progressive sampling from
    # noise): generate(rng_key, params, num) -> [num, *example_shape]; None means SGLD from noise.
    generate: Optional[Callable] = None


TFDS_TRAIN_SAMPLE = 2000
TFDS_TEST_LIMIT = 10_000


def load_tfds_data(config: Config) -> Data:
    """A prepared tensorflow-datasets dataset (raises DatasetNotPreparedError, naming the
    command that prepares it, when it is not)."""
    from ebm_jax.data.tfds_source import TFDSBatches, get_spec, load_arrays, load_source

    spec = get_spec(config.dataset)
    source = load_source(config.dataset, spec.train_split, data_dir=config.data_dir)
    x_train, y_train = load_arrays(config.dataset, spec.train_split, data_dir=config.data_dir,
                                   limit=TFDS_TRAIN_SAMPLE)
    x_test, y_test = load_arrays(config.dataset, spec.test_split, data_dir=config.data_dir,
                                 limit=TFDS_TEST_LIMIT)

    def train_batches(start_step: int, process_index: int = 0, process_count: int = 1):
        return TFDSBatches(source, spec, config.batch_size, seed=config.seed,
                           start_step=start_step, dequantize=config.dequantize, flip=config.flip,
                           process_index=process_index, process_count=process_count, prefetch=2)

    return Data(x_train, y_train, x_test, y_test, (-1.0, 1.0), spec.image_shape,
                spec.num_classes, None, train_batches, len(source))


def load_data(config: Config) -> Data:
    """The embedded digits, a seeded sample of a 2-D toy density, or a tfds dataset."""
    from ebm_jax.config import TFDS_NAMES

    if config.dataset in TFDS_NAMES:
        return load_tfds_data(config)
    if config.dataset == "digits":
        d = load_digits()
        x_train, y_train = d.x_train, d.y_train
        if config.label_fraction < 1.0:
            keep = labelled_subset(y_train, config.label_fraction, seed=config.seed)
            if config.objective == "softmax":  # the baseline sees the labelled share only
                x_train, y_train = x_train[keep], y_train[keep]
            else:
                y_train = np.where(keep, y_train, -1).astype(y_train.dtype)
        return Data(x_train, y_train, d.x_test, d.y_test, d.data_range, d.image_shape,
                    d.num_classes, None)
    from ebm_jax.data.toy2d import get_toy

    toy = get_toy(config.dataset)
    key_train, key_test = jax.random.split(jax.random.PRNGKey(10_000 + config.seed))
    sample = jax.jit(toy.sample, static_argnums=1)
    x_train = np.asarray(sample(key_train, TOY_TRAIN_SIZE), np.float32)
    x_test = np.asarray(sample(key_test, 5_000), np.float32)
    return Data(x_train, None, x_test, None, (-TOY_LIMIT, TOY_LIMIT), None, None, toy.log_prob)


def labelled_subset(labels: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """A boolean mask keeping ``fraction`` of the labels, stratified (at least one per class),
    a deterministic function of ``seed``."""
    rng = np.random.default_rng(20_000 + seed)
    keep = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        index = np.flatnonzero(labels == c)
        count = max(1, int(round(fraction * len(index))))
        keep[rng.choice(index, count, replace=False)] = True
    return keep


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Adam/AdamW/SGD with optional warm-up, cosine decay and global-norm gradient clipping."""
    lr = config.learning_rate
    if config.lr_schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, config.warmup_steps,
                                                max(config.num_steps, config.warmup_steps + 1),
                                                end_value=0.01 * config.learning_rate)
    elif config.warmup_steps:
        lr = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
    if config.optimizer == "adam":
        opt = optax.adam(lr)
    elif config.optimizer == "adamw":
        opt = optax.adamw(lr, weight_decay=config.weight_decay)
    else:
        opt = optax.sgd(lr, momentum=0.9)
    if config.clip_grad_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(config.clip_grad_norm), opt)
    return with_lr_scale(opt)  # a multiplier that a rollback can lower


def build(config: Config, data: Optional[Data] = None, *, num_devices: int = 1) -> Experiment:
    """Assemble data, network, energy, sampler, loss and optimizer from ``config``.

    ``num_devices`` only sets the replay buffer's blocks when ``config.buffer_shards``
    is none (one block per device); nothing else depends on it.
    """
    data = data if data is not None else load_data(config)
    rngs = nnx.Rngs(config.seed)
    in_features = int(np.prod(data.x_train.shape[1:]))
    classifier = config.objective in ("jem", "softmax")
    if classifier and data.num_classes is None:
        raise ConfigError(f"objective={config.objective!r} needs labels: dataset={config.dataset!r} has none")
    out = data.num_classes if classifier else 1
    if config.objective == "rl":
        return _build_recovery_likelihood(config, data, rngs, in_features)
    net = make_network(config, data, out, rngs)
    if classifier:
        model = pure(net)
        logits_fn, energy_fn, params = model.apply, energy_from_logits(model.apply), model.params
    elif config.objective == "nce":
        # NCE learns the log normaliser beside the energy: params = {"energy", "log_z"}.
        model = as_energy_fn(net)
        base_energy = model.apply
        logits_fn, params = None, nce_params(model.params)

        def energy_fn(p, x):
            return base_energy(p["energy"], x)
    else:
        model = as_energy_fn(net)
        logits_fn, energy_fn, params = None, model.apply, model.params
    sampler = langevin(energy_fn, config.sgld_step_size, config.sgld_noise,
                       grad_clip=config.sgld_grad_clip,
                       clip_range=data.data_range if config.sgld_clamp else None)
    cd_options = dict(num_steps=config.sgld_steps, buffer_capacity=config.buffer_size,
                      reinit_prob=config.reinit_prob, init_fn=uniform_init(*data.data_range),
                      energy_l2=config.energy_l2,
                      buffer_shards=config.buffer_shards or num_devices)
    if config.objective == "jem":
        loss = jem_hybrid(logits_fn, sampler, generative_weight=config.generative_weight, **cd_options)
    elif config.objective == "softmax":
        loss = cross_entropy(logits_fn)
    elif config.objective == "nce":
        loss = nce(base_energy, make_noise(config, data), noise_ratio=config.nce_ratio)
    elif config.objective == "dsm":
        loss = denoising_score_matching(energy_fn, sigma=config.dsm_sigma)
    elif config.objective == "ssm":
        loss = sliced_score_matching(energy_fn)
    else:
        loss = contrastive_divergence(energy_fn, sampler, objective=config.cd_objective,
                                      kl_weight=config.kl_weight,
                                      reinit_from_data=config.reinit_from_data,
                                      entropy_weight=config.entropy_weight, **cd_options)
    return Experiment(config, data, params, energy_fn, logits_fn, sampler, loss,
                      make_optimizer(config))


def compute_dtype(config: Config):
    """The network's compute dtype (parameters, energies and SGLD stay float32)."""
    return jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32


def make_network(config: Config, data: Data, out: int, rngs: nnx.Rngs) -> nnx.Module:
    """The network of ``config.model`` with ``out`` outputs (K logits, or 1 for an energy)."""
    in_features = int(np.prod(data.x_train.shape[1:]))
    common = dict(activation=config.activation, spectral_norm=config.spectral_norm, rngs=rngs)
    if config.model != "mlp" and data.image_shape is None:
        raise ConfigError(f"model={config.model!r} with dataset={config.dataset!r}: expected "
                          "'mlp' (the dataset has no images)")
    if config.model in ("mlp", "conv") and config.dtype != "float32":
        raise ConfigError(f"dtype={config.dtype!r} with model={config.model!r}: expected "
                          "'float32' (reduced precision is for 'wrn', 'igebm_resnet', 'resnet')")
    if config.model == "mlp":
        return MLP(in_features, config.hidden, out, **common)
    if config.model == "conv":
        return ConvNet(data.image_shape, config.channels, out, conv_impl=config.conv_impl,
                       **common)
    dtype = compute_dtype(config)
    if config.model == "wrn":
        return WideResNet(data.image_shape, out, depth=config.depth,
                          widen_factor=config.widen_factor, dtype=dtype, **common)
    blocks = {} if config.resnet_blocks is None else {"num_blocks_per_stage": config.resnet_blocks}
    return IGEBMResNet(data.image_shape, channels=config.resnet_channels, dtype=dtype, **blocks,
                       **common)


def rl_schedule(config: Config) -> NoiseSchedule:
    """The recovery-likelihood noise schedule of ``config`` (T6, or DDPM-style with T levels)."""
    if config.rl_schedule == "t6":
        return noise_schedule("t6")
    return noise_schedule(config.rl_schedule, num_levels=config.rl_num_levels)


def _build_recovery_likelihood(config: Config, data: Data, rngs: nnx.Rngs,
                               in_features: int) -> Experiment:
    """Recovery likelihood: a level-conditioned MLP E(x, t), the loss over all levels, and
    progressive sampling as the generator. ``energy_fn`` is the level-0 energy, the model of
    the data that every metric evaluates."""
    schedule = rl_schedule(config)
    if config.model == "resnet":
        if data.image_shape is None:
            raise ConfigError(f"model='resnet' with dataset={config.dataset!r}: expected an "
                              "image dataset, or model 'mlp'")
        blocks = ({} if config.resnet_blocks is None
                  else {"num_blocks_per_stage": config.resnet_blocks})
        net = ConditionedResNet(data.image_shape, schedule.num_levels, **blocks,
                                channels=config.resnet_channels, activation=config.activation,
                                spectral_norm=config.spectral_norm, dtype=compute_dtype(config),
                                rngs=rngs)
    else:
        net = ConditionedMLP(in_features, config.hidden, schedule.num_levels,
                             activation=config.activation, spectral_norm=config.spectral_norm,
                             rngs=rngs)
    model = as_conditioned_energy_fn(net)
    level_energy = model.apply
    clip_range = data.data_range if config.sgld_clamp else None
    # The conditional chains are not confined to the data range: noisy levels live outside it,
    # and MALA rejects every proposal that leaves a box, which freezes chains that start on
    # its faces (the digits' constant pixels sit at -1).
    chain = dict(step_size_scale=config.rl_step_size_scale, chain_init=config.rl_chain_init,
                 metropolis=config.rl_metropolis)
    loss = recovery_likelihood(level_energy, schedule, num_langevin_steps=config.rl_langevin_steps,
                               data_noise=config.rl_data_noise, split_batch=config.rl_split_batch,
                               energy_l2=config.energy_l2, **chain)

    def energy_fn(params, x):
        return level_energy(params, x, 0)

    example_shape = data.x_train.shape[1:]

    def generate(rng_key, params, num):
        return progressive_sample(rng_key, level_energy, params, schedule, example_shape, num,
                                  num_langevin_steps=config.rl_langevin_steps, **chain)

    sampler = langevin(energy_fn, config.sgld_step_size, config.sgld_noise,
                       grad_clip=config.sgld_grad_clip, clip_range=clip_range)
    return Experiment(config, data, model.params, energy_fn, None, sampler, loss,
                      make_optimizer(config), generate)


def make_noise(config: Config, data: Data) -> distributions.NoiseDistribution:
    """NCE's noise: a Gaussian fitted to the training data (widened) or the data-range box."""
    if config.nce_noise == "uniform":
        low, high = data.data_range
        return distributions.uniform_box(low, high, data.x_train.shape[1:])
    covariance = "diagonal" if config.nce_noise == "diagonal_gaussian" else "full"
    return distributions.fit_gaussian(data.x_train, covariance, scale=config.nce_noise_scale)


def initial_state(exp: Experiment) -> TrainState:
    """The state at step 0 for ``exp`` (also the template that checkpoints restore into)."""
    data = exp.data
    example = {"x": data.x_train[:exp.config.batch_size]}
    if data.y_train is not None:
        example["y"] = data.y_train[:exp.config.batch_size]
    # A copy of the params: a donated train step frees the state's arrays, and exp.params must
    # stay usable (another state, a restore template).
    params = jax.tree.map(jnp.copy, exp.params)
    return init_train_state(jax.random.PRNGKey(exp.config.seed), params, exp.optimizer,
                            exp.loss, example)


def find_buffer(loss_state: Any):
    """The replay buffer inside a loss state, or None (losses without one)."""
    from ebm_jax.losses import CDState

    if isinstance(loss_state, CDState):
        return loss_state.buffer
    if isinstance(loss_state, dict):
        for value in loss_state.values():
            found = find_buffer(value)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- workdir


def prepare_workdir(config: Config, workdir: str, *, resume: bool, overwrite: bool) -> Checkpointer:
    """Check that ``workdir`` may take this run, before any compute; write ``config.json``.

    Raises:
      ConfigError: the workdir holds another run (a different config), or a
        run of this config while neither ``resume`` nor ``overwrite`` is set.
    """
    config_path = os.path.join(workdir, "config.json")
    ckpt_dir = os.path.join(workdir, "checkpoints")
    has_run = os.path.exists(config_path) or (os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir))
    if has_run and overwrite:
        for name in ("checkpoints", "metrics.jsonl", "summary.json", "config.json", "samples.png",
                     "curves.png", "landscape.png"):
            path = os.path.join(workdir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    elif has_run:
        if os.path.exists(config_path):
            with open(config_path) as f:
                saved = config_from_dict(json.load(f))
            diff = config_differences(saved, config)
            if diff:
                listed = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
                raise ConfigError(f"workdir {workdir!r} holds a run with a different config ({listed}): "
                                  "expected the same config, another --workdir, or --overwrite")
        if not resume:
            raise ConfigError(f"workdir {workdir!r} already holds a run: expected --resume to continue "
                              "it, --overwrite to start over, or another --workdir")
    os.makedirs(workdir, exist_ok=True)
    with open(config_path, "w") as f:
        json.dump(config.to_dict(), f, indent=2)
    return Checkpointer(ckpt_dir, max_to_keep=config.keep_checkpoints,
                        save_every=config.checkpoint_every)


# --------------------------------------------------------------------------- evaluation


def fresh_samples(exp: Experiment, params: Any, rng_key: jax.Array, num: int) -> np.ndarray:
    """``num`` samples from noise: the objective's own generator when it has one (progressive
    sampling for recovery likelihood), else ``fresh_sample_steps`` SGLD steps from uniform noise."""
    if exp.generate is not None:
        return np.asarray(jax.jit(exp.generate, static_argnums=2)(rng_key, params, num))
    x0 = uniform_init(*exp.data.data_range)(rng_key, (num, *exp.data.x_train.shape[1:]))
    states = init_chains(exp.sampler, x0, params)
    run = jax.jit(lambda k, s, p: run_chains(k, exp.sampler, s, p, exp.config.fresh_sample_steps)[0])
    return np.asarray(run(jax.random.fold_in(rng_key, 1), states, params).position)


def evaluate(exp: Experiment, state: TrainState, *, workdir: Optional[str] = None) -> dict:
    """Summary metrics of a trained state; with ``workdir``, also write ``samples.png``.

    Keys (where they apply): ``test_accuracy``, ``nll``, ``ece`` (15 bins),
    ``energy_data_mean``, ``energy_noise_mean``, ``auroc_uniform_noise``,
    ``sample_confidence``, ``sample_class_fractions``, ``sample_in_range_fraction``,
    ``kl_nats`` (2-D toys with a closed-form density), ``mmd`` (2-D toys: model
    samples vs true samples), ``steps``, ``params_fingerprint``.
    Everything is measured with ``state.ema_params`` (the raw params when the
    run keeps no moving average); the fingerprint is of the raw params.
    """
    cfg, data, params = exp.config, exp.data, state.ema_params
    key = jax.random.PRNGKey(cfg.seed + 7919)
    k_noise, k_pick, k_fresh = jax.random.split(key, 3)
    summary: dict[str, Any] = {"steps": int(state.step)}
    if exp.logits_fn is not None:
        logits = jax.jit(jax.vmap(exp.logits_fn, (None, 0)))(params, data.x_test)
        report = metrics.classification_report(logits, jnp.asarray(data.y_test))
        summary.update(test_accuracy=report["accuracy"], nll=report["nll"], ece=report["ece"])
    energy = jax.jit(batch_energy(exp.energy_fn))
    noise = uniform_init(*data.data_range)(k_noise, (1000, *data.x_test.shape[1:]))
    e_data, e_noise = energy(params, data.x_test), energy(params, noise)
    summary.update(energy_data_mean=float(e_data.mean()), energy_noise_mean=float(e_noise.mean()),
                   auroc_uniform_noise=float(metrics.auroc(-e_data, -e_noise)))

    buffer = find_buffer(state.loss_state)
    num = cfg.num_eval_samples
    num_fresh = 100 if data.image_shape else 2000
    if buffer is not None:
        pick = jax.random.choice(k_pick, buffer.samples.shape[0], (min(num, buffer.samples.shape[0]),),
                                 replace=False)
        samples = np.asarray(buffer.samples[pick])
        fresh = fresh_samples(exp, params, k_fresh, num_fresh)
    else:  # one draw serves both roles (a second draw of another size would compile again)
        fresh = fresh_samples(exp, params, k_fresh, max(num, num_fresh))
        samples = fresh[:num]
    source = "replay buffer" if buffer is not None else _generator_name(exp)
    fresh_panel = {} if buffer is None else {f"fresh from noise: {_generator_name(exp)}": fresh}

    if data.num_classes is not None:
        labelled = data.y_train >= 0  # the judge learns from the labelled training rows
        judge = metrics.fit_reference_classifier(data.x_train[labelled], data.y_train[labelled],
                                                 seed=cfg.seed)
        summary.update(metrics.classifier_sample_quality(samples, judge.predict_proba,
                                                         data.num_classes, data.data_range))
    if data.log_prob is not None:
        summary["kl_nats"] = float(metrics.kl_by_quadrature(
            data.log_prob, lambda x: exp.energy_fn(params, x), limit=TOY_LIMIT))
    if data.image_shape is None:  # 2-D toys: compare samples with true samples
        summary["mmd"] = float(metrics.mmd(samples[:2000], data.x_test[:2000]))
    summary["params_fingerprint"] = params_fingerprint(state.params)

    if workdir is not None:
        path = os.path.join(workdir, "samples.png")
        if data.image_shape is not None:
            panels = {f"{source} (100 of {len(samples)})": samples[:100]}
            panels.update({k: v[:100] for k, v in fresh_panel.items()})
            plots.save_image_grids(path, panels, data.image_shape, value_range=data.data_range)
        else:
            plots.save_scatter(path, {"data": data.x_test[:2000], source: samples[:2000],
                                      **fresh_panel})
            plots.save_energy_landscape(os.path.join(workdir, "landscape.png"),
                                        lambda x: exp.energy_fn(params, x), true_log_prob=data.log_prob,
                                        samples=samples[:2000], limit=TOY_LIMIT)
    return summary


def _generator_name(exp: Experiment) -> str:
    if exp.generate is not None:
        return "progressive sampling"
    return f"{exp.config.fresh_sample_steps} SGLD steps from noise"


CURVE_PANELS = (
    ("loss", "classification/loss", "generative/loss"),
    ("energy_data", "energy_sample", "generative/energy_data", "generative/energy_sample"),
    ("classification/accuracy", "accuracy", "eval/test_accuracy"),
    ("eval/ece", "eval/auroc_uniform_noise"),
)


def _quick_eval_fn(exp: Experiment) -> Callable[[TrainState], dict]:
    """Cheap periodic evaluation during training: test accuracy/ECE, data and noise energies.

    A model whose logits or energies are not finite (a run that blew up) gets NaN metrics
    rather than an error from the metric functions, so the evaluation never ends the run.
    """
    data = exp.data
    energy = jax.jit(batch_energy(exp.energy_fn))
    noise = uniform_init(*data.data_range)(jax.random.PRNGKey(1), (500, *data.x_test.shape[1:]))
    logits = jax.jit(jax.vmap(exp.logits_fn, (None, 0))) if exp.logits_fn else None

    def finite(*arrays) -> bool:
        return all(bool(jnp.all(jnp.isfinite(a))) for a in arrays)

    def eval_fn(state):
        out = {}
        params = state.ema_params
        if logits is not None:
            z = logits(params, data.x_test)
            if finite(z):
                report = metrics.classification_report(z, jnp.asarray(data.y_test))
                out.update(test_accuracy=report["accuracy"], ece=report["ece"])
            else:
                out.update(test_accuracy=math.nan, ece=math.nan)
        e_data, e_noise = energy(params, data.x_test), energy(params, noise)
        out["auroc_uniform_noise"] = (float(metrics.auroc(-e_data, -e_noise))
                                      if finite(e_data, e_noise) else math.nan)
        return out

    return eval_fn


def global_batches(exp: Experiment, mesh, start_step: int):
    """The run's batches from ``start_step`` on, as global arrays split over ``mesh``; each
    process reads only its slice (tfds sources or the in-memory arrays)."""
    from ebm_jax.parallel import shard_batch

    process = (jax.process_index(), jax.process_count())
    if exp.data.train_batches is not None:
        local = exp.data.train_batches(start_step, *process)
    else:
        local = Batches(exp.data.x_train, exp.data.y_train, exp.config.batch_size,
                        seed=exp.config.seed, start_step=start_step, process_index=process[0],
                        process_count=process[1])
    return (shard_batch(batch, mesh) for batch in local)


def device_mesh(config: Config, devices: Optional[int] = None):
    """The data-parallel mesh of a run, after checking that its sizes split over it.

    Raises:
      ConfigError: more devices than present, or a batch or replay buffer that
        does not divide by the device count (naming the field).
    """
    from ebm_jax.parallel import MeshError, make_data_mesh

    try:
        mesh = make_data_mesh(devices)
    except MeshError as error:
        raise ConfigError(str(error)) from None
    n = mesh.shape["data"]
    sizes = {"batch_size": config.batch_size}
    if config.objective in ("jem", "cd"):
        sizes["buffer_size"] = config.buffer_size
        sizes["buffer_shards"] = config.buffer_shards or n
    for field, value in sizes.items():
        if value % n:
            raise ConfigError(f"{field}={value} does not divide over {n} devices: expected a "
                              f"multiple of {n}, or choose the device count with --devices")
    return mesh


def train(config: Config, workdir: str, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, devices: Optional[int] = None) -> dict:
    """Train ``config`` in ``workdir`` (resuming from its latest checkpoint with ``resume``).

    Training is data parallel over ``devices`` devices (default: all of them,
    see :mod:`ebm_jax.parallel`): parameters replicated, batches and replay
    buffers split along the mesh's ``data`` axis.

    Writes ``config.json``, ``metrics.jsonl``, ``checkpoints/``, ``samples.png``,
    ``curves.png`` and ``summary.json``; returns the summary.

    Example::

      >>> summary = train(make_config("jem_digits", ["num_steps=500"]), "runs/quick")
    """
    from ebm_jax.train import shard_state, sharded_train_step

    started = time.perf_counter()
    mesh = device_mesh(config, devices)
    num_devices = mesh.shape["data"]
    checkpointer = prepare_workdir(config, workdir, resume=resume, overwrite=overwrite)
    try:
        exp = build(config, num_devices=num_devices)
        n_train = exp.data.num_train or exp.data.x_train.shape[0]
        if config.batch_size > n_train:
            raise ConfigError(f"batch_size={config.batch_size}: expected at most the {n_train} "
                              f"training examples of {config.dataset!r}")
        state = shard_state(initial_state(exp), mesh)
        if resume:
            restored = checkpointer.restore_latest(state)  # into the template's shardings
            if restored is not None:
                state = restored
                print(f"resumed from step {int(state.step)} in {checkpointer.directory}")
        batches = global_batches(exp, mesh, int(state.step))
        guard = (DivergenceGuard(config.guard_max_energy, config.guard_max_grad_norm)
                 if config.guard else None)
        train_step = sharded_train_step(
            make_train_step(exp.loss, exp.optimizer, ema_decay=config.ema_decay, guard=guard),
            mesh, state)
        metrics_path = os.path.join(workdir, "metrics.jsonl")
        train_started = time.perf_counter()
        first_step = int(state.step)
        state = fit(train_step, state, batches, config.num_steps, log_every=config.log_every,
                    eval_fn=_quick_eval_fn(exp), eval_every=config.eval_every,
                    checkpointer=checkpointer, metrics_path=metrics_path, progress=progress,
                    rollback=(RollbackPolicy(config.rollback_retries, config.rollback_lr_factor)
                              if config.guard else None),
                    restart_batches=lambda step: global_batches(exp, mesh, step))
        train_seconds = time.perf_counter() - train_started
        summary = evaluate(exp, state, workdir=workdir)
        summary.update(train_seconds=train_seconds,
                       train_steps_per_s=(int(state.step) - first_step) / max(train_seconds, 1e-9),
                       wall_seconds=time.perf_counter() - started, config=config.name,
                       seed=config.seed, devices=num_devices)
        plots.save_curves(os.path.join(workdir, "curves.png"), plots.read_metrics(metrics_path),
                          CURVE_PANELS)
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(_finite(summary), f, indent=2)
        return summary
    finally:
        checkpointer.close()


def _finite(summary: dict) -> dict:
    """JSON has no NaN: write non-finite floats as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
