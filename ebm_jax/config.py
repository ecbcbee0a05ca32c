"""Run configurations: one flat, typed, validated dataclass and the named presets.

A config is built from a preset and ``key=value`` overrides::

    config = make_config("jem_digits", ["num_steps=2000", "hidden=128,128"])

Every field is checked (type and range) before any compute; an error names
the field, the value and what was expected.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Optional

from ebm_jax.nets.patch_conv import CONV_IMPLS

TOY_NAMES = ("8gaussians", "two_moons", "rings", "checkerboard", "swiss_roll", "pinwheel",
             "two_spirals")
# Real image datasets, read through tensorflow-datasets (prepared beforehand; see ebm_jax.data.tfds_source).
TFDS_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped")
DATASETS = ("digits",) + TOY_NAMES + TFDS_NAMES
MODELS = ("mlp", "conv", "wrn", "igebm_resnet", "resnet")
IMAGE_MODELS = ("conv", "wrn", "igebm_resnet", "resnet")
DTYPES = ("float32", "bfloat16")
OBJECTIVES = ("jem", "cd", "softmax", "nce", "dsm", "ssm", "rl")
UNSUPERVISED_OBJECTIVES = ("cd", "nce", "dsm", "ssm", "rl")
RL_SCHEDULES = ("t6", "ddpm")
RL_CHAIN_INITS = ("importance", "rescaled", "noisy", "posterior_mean")
NCE_NOISES = ("gaussian", "diagonal_gaussian", "uniform")
OPTIMIZERS = ("adam", "adamw", "sgd")

# Fields that may change between a run and its resumption (they do not change what is learned).
RESUMABLE_FIELDS = frozenset({"num_steps", "eval_every", "log_every", "checkpoint_every",
                              "keep_checkpoints", "num_eval_samples", "fresh_sample_steps",
                              "data_dir", "rollback_retries"})


class ConfigError(ValueError):
    """A bad configuration value: the message names the field, the value and what is expected."""


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. See :data:`PRESETS` for the named starting points."""

    name: str = "jem_digits"
    dataset: str = "digits"
    # semi-supervised: the share of training labels kept (stratified; the rest become -1)
    label_fraction: float = 1.0
    # tfds datasets: where they are prepared (none: tfds's default), and the augmentation
    data_dir: Optional[str] = None
    dequantize: bool = True
    flip: bool = False
    # network
    model: str = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    channels: tuple[int, ...] = (32, 64)
    # how model "conv" computes its convolutions (same params and values): "auto" is
    # patches + matmul on CPU (fast SGLD input gradients), lax.conv on GPU/TPU
    conv_impl: str = "auto"
    activation: str = "swish"
    spectral_norm: bool = False
    # Wide-ResNet (model "wrn"): depth 6n+4, width multiplier
    depth: int = 28
    widen_factor: int = 10
    # IGEBM ResNet ("igebm_resnet") and the level-conditioned ResNet of recovery likelihood
    # ("resnet"): base channels
    resnet_channels: int = 128
    resnet_blocks: Optional[int] = None  # residual blocks per stage (none: the paper's)
    # compute dtype of the network; parameters, energies and SGLD stay float32
    dtype: str = "float32"
    # objective and sampler
    objective: str = "jem"
    sgld_steps: int = 20
    sgld_step_size: float = 1.0
    sgld_noise: Optional[float] = 0.01
    sgld_grad_clip: Optional[float] = None
    sgld_clamp: bool = True
    buffer_size: int = 10_000
    reinit_prob: float = 0.05
    reinit_from_data: bool = False
    per_class_buffer: bool = False
    # replay-buffer blocks (see ebm_jax.samplers.replay_buffer); none: one per device
    buffer_shards: Optional[int] = None
    energy_l2: float = 0.0
    generative_weight: float = 1.0
    cd_objective: str = "ml"
    kl_weight: float = 0.0
    entropy_weight: float = 0.0
    # noise-contrastive estimation and score matching
    nce_noise: str = "gaussian"
    nce_noise_scale: float = 1.25
    nce_ratio: float = 1.0
    dsm_sigma: float = 0.1
    # diffusion recovery likelihood (objective "rl"): the MLP becomes level-conditioned
    rl_schedule: str = "t6"
    rl_num_levels: int = 6  # for the "ddpm" schedule (t6 has 6)
    rl_langevin_steps: int = 30
    rl_step_size_scale: float = 0.05
    rl_chain_init: str = "importance"
    rl_metropolis: bool = True
    rl_data_noise: float = 0.0
    rl_split_batch: bool = True
    # optimisation
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    clip_grad_norm: Optional[float] = None
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    ema_decay: Optional[float] = None
    # divergence guard (ebm_jax.train.guard): skip blown-up steps, roll back to the last good
    # checkpoint with a new key and a scaled learning rate, at most rollback_retries times
    guard: bool = True
    guard_max_energy: float = 1e8
    guard_max_grad_norm: float = 1e8
    rollback_retries: int = 3
    rollback_lr_factor: float = 0.5
    batch_size: int = 64
    num_steps: int = 6000
    seed: int = 0
    # bookkeeping
    log_every: int = 100
    eval_every: int = 2000
    checkpoint_every: int = 2000
    keep_checkpoints: int = 3
    num_eval_samples: int = 1000
    fresh_sample_steps: int = 200

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


def _probability(v):
    return 0.0 <= v <= 1.0


# field -> (predicate, what is expected)
_CHECKS = {
    "dataset": (lambda v: v in DATASETS, f"one of {list(DATASETS)}"),
    "model": (lambda v: v in MODELS, f"one of {list(MODELS)}"),
    "objective": (lambda v: v in OBJECTIVES, f"one of {list(OBJECTIVES)}"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {list(OPTIMIZERS)}"),
    "activation": (lambda v: v in ("swish", "leaky_relu", "relu", "elu", "softplus", "tanh"),
                   "one of ['elu', 'leaky_relu', 'relu', 'softplus', 'swish', 'tanh']"),
    "hidden": (lambda v: len(v) > 0 and all(w > 0 for w in v), "a non-empty list of positive ints"),
    "channels": (lambda v: len(v) > 0 and all(w > 0 for w in v), "a non-empty list of positive ints"),
    "depth": (lambda v: v >= 10 and (v - 4) % 6 == 0, "6n+4 with n >= 1 (10, 16, 22, 28, ...)"),
    "widen_factor": (_positive, "a positive int"),
    "resnet_channels": (_positive, "a positive int"),
    "resnet_blocks": (lambda v: v is None or v > 0, "a positive int or none (the paper's)"),
    "dtype": (lambda v: v in DTYPES, f"one of {list(DTYPES)}"),
    "conv_impl": (lambda v: v in CONV_IMPLS, f"one of {list(CONV_IMPLS)}"),
    "label_fraction": (lambda v: 0.0 < v <= 1.0, "a fraction in (0, 1]"),
    "sgld_steps": (_positive, "a positive int"),
    "sgld_step_size": (_positive, "a positive number"),
    "sgld_noise": (lambda v: v is None or v >= 0, "a number >= 0, or none for the temperature form"),
    "sgld_grad_clip": (lambda v: v is None or v > 0, "a positive number or none"),
    "buffer_size": (_positive, "a positive int"),
    "buffer_shards": (lambda v: v is None or v > 0, "a positive int or none (one per device)"),
    "reinit_prob": (_probability, "a probability in [0, 1]"),
    "energy_l2": (_non_negative, "a number >= 0"),
    "generative_weight": (_non_negative, "a number >= 0"),
    "cd_objective": (lambda v: v in ("ml", "softplus", "logsumexp"),
                     "one of ['ml', 'softplus', 'logsumexp']"),
    "kl_weight": (_non_negative, "a number >= 0"),
    "entropy_weight": (_non_negative, "a number >= 0"),
    "nce_noise": (lambda v: v in NCE_NOISES, f"one of {list(NCE_NOISES)}"),
    "nce_noise_scale": (_positive, "a positive number"),
    "nce_ratio": (_positive, "a positive number"),
    "dsm_sigma": (_positive, "a positive number"),
    "rl_schedule": (lambda v: v in RL_SCHEDULES, f"one of {list(RL_SCHEDULES)}"),
    "rl_num_levels": (lambda v: 2 <= v <= 501, "an int in [2, 501]"),
    "rl_langevin_steps": (_positive, "a positive int"),
    "rl_step_size_scale": (_positive, "a positive number"),
    "rl_chain_init": (lambda v: v in RL_CHAIN_INITS, f"one of {list(RL_CHAIN_INITS)}"),
    "rl_data_noise": (lambda v: 0.0 <= v < 1.0, "a noise std in [0, 1)"),
    "learning_rate": (_positive, "a positive number"),
    "weight_decay": (_non_negative, "a number >= 0"),
    "clip_grad_norm": (lambda v: v is None or v > 0, "a positive number or none"),
    "warmup_steps": (_non_negative, "an int >= 0"),
    "lr_schedule": (lambda v: v in ("constant", "cosine"), "one of ['constant', 'cosine']"),
    "ema_decay": (lambda v: v is None or 0.0 <= v < 1.0, "a value in [0, 1) or none"),
    "guard_max_energy": (_positive, "a positive number"),
    "guard_max_grad_norm": (_positive, "a positive number"),
    "rollback_retries": (_non_negative, "an int >= 0"),
    "rollback_lr_factor": (lambda v: 0.0 < v <= 1.0, "a factor in (0, 1]"),
    "batch_size": (_positive, "a positive int"),
    "num_steps": (_positive, "a positive int"),
    "seed": (_non_negative, "an int >= 0"),
    "log_every": (_positive, "a positive int"),
    "eval_every": (_positive, "a positive int"),
    "checkpoint_every": (_positive, "a positive int"),
    "keep_checkpoints": (_positive, "a positive int"),
    "num_eval_samples": (_positive, "a positive int"),
    "fresh_sample_steps": (_positive, "a positive int"),
}


def _field_types() -> dict:
    return typing.get_type_hints(Config)


def _type_ok(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        return value is None or any(_type_ok(value, a) for a in args if a is not type(None))
    if origin is tuple:
        return isinstance(value, tuple) and all(_type_ok(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " or none"
    if origin is tuple:
        return f"a comma-separated list of {_describe(args[0])}"
    return {int: "an int", float: "a number", bool: "true or false", str: "a string"}[hint]


def validate(config: Config) -> Config:
    """Check every field's type and range, and their consistency; return the config.

    Raises:
      ConfigError: naming the first bad field, its value and what was expected.
    """
    hints = _field_types()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _type_ok(value, hints[f.name]):
            raise ConfigError(f"{f.name}={value!r}: expected {_describe(hints[f.name])}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name}={value!r}: expected a finite number")
        check = _CHECKS.get(f.name)
        if check is not None and not check[0](value):
            raise ConfigError(f"{f.name}={value!r}: expected {check[1]}")
    is_toy = config.dataset in TOY_NAMES
    if is_toy and config.objective not in UNSUPERVISED_OBJECTIVES:
        raise ConfigError(f"objective={config.objective!r} with dataset={config.dataset!r}: "
                          f"expected one of {list(UNSUPERVISED_OBJECTIVES)} (2-D toys have no labels)")
    if is_toy and config.model != "mlp":
        raise ConfigError(f"model={config.model!r} with dataset={config.dataset!r}: expected 'mlp'")
    if config.model == "resnet" and config.objective != "rl":
        raise ConfigError(f"model='resnet' with objective={config.objective!r}: expected "
                          "objective 'rl' (the level-conditioned ResNet), or 'wrn' / "
                          "'igebm_resnet' / 'conv' for other objectives")
    if config.model == "igebm_resnet" and config.objective in ("jem", "softmax"):
        raise ConfigError(f"model='igebm_resnet' with objective={config.objective!r}: expected an "
                          "unconditional objective (it has one output, the energy); classifiers "
                          "use 'wrn' or 'conv'")
    if config.label_fraction < 1.0 and config.dataset in TFDS_NAMES:
        raise ConfigError(f"label_fraction={config.label_fraction} with dataset="
                          f"{config.dataset!r}: expected 1.0 (label subsets are made for the "
                          "in-memory datasets only)")
    if config.label_fraction < 1.0 and config.objective not in ("jem", "softmax"):
        raise ConfigError(f"label_fraction={config.label_fraction} with objective="
                          f"{config.objective!r}: expected 'jem' or 'softmax' (objectives that "
                          "use labels)")
    if config.objective == "rl":
        if config.model not in ("mlp", "resnet"):
            raise ConfigError(f"model={config.model!r} with objective='rl': expected 'mlp' or "
                              "'resnet' (the level-conditioned networks)")
        levels = 6 if config.rl_schedule == "t6" else config.rl_num_levels
        if config.rl_split_batch and config.batch_size % levels:
            raise ConfigError(f"batch_size={config.batch_size} with rl_split_batch=true: expected "
                              f"a multiple of the number of noise levels ({levels})")
    if config.per_class_buffer and config.buffer_size % 10:
        raise ConfigError(f"buffer_size={config.buffer_size} with per_class_buffer=true: "
                          "expected a multiple of the number of classes (10)")
    if config.buffer_shards is not None:
        for field in ("buffer_size", "batch_size"):
            if getattr(config, field) % config.buffer_shards:
                raise ConfigError(f"{field}={getattr(config, field)} with buffer_shards="
                                  f"{config.buffer_shards}: expected a multiple of buffer_shards")
    return config


def parse_value(name: str, text: str):
    """Parse the text of a ``--set name=text`` override into the field's type."""
    hints = _field_types()
    if name not in hints:
        raise ConfigError(f"unknown config key {name!r}: expected one of {sorted(hints)}")
    hint = hints[name]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    optional = origin is typing.Union
    if optional:
        if text.strip().lower() in ("none", "null"):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if origin is tuple:
            return tuple(int(t) for t in text.split(",") if t.strip())
        if hint is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        return hint(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected {_describe(hints[name])}") from None


def _toy_preset(toy: str, objective: str = "cd", **changes) -> Config:
    base = Config(name=f"{objective}_2d_{toy}", dataset=toy, model="mlp", hidden=(128, 128, 128),
                  activation="swish", objective=objective, sgld_steps=20, sgld_step_size=0.01,
                  sgld_noise=None, sgld_clamp=True, buffer_size=10_000, reinit_prob=0.05,
                  energy_l2=0.0, learning_rate=1e-3, batch_size=256, num_steps=6000,
                  lr_schedule="cosine", ema_decay=0.999, eval_every=2000, checkpoint_every=2000,
                  num_eval_samples=2000)
    return dataclasses.replace(base, **changes)


CD_THIN_TOYS = {
    "rings": {"sgld_step_size": 0.002, "reinit_prob": 0.01, "reinit_from_data": True},
    "two_spirals": {"sgld_step_size": 0.001, "reinit_from_data": True},
}

PRESETS: dict[str, Config] = {
    # JEM hybrid on the embedded digits: the main job.
    "jem_digits": Config(),
    # The same network as a plain softmax classifier: the baseline JEM is compared with.
    "softmax_digits": Config(name="softmax_digits", objective="softmax"),
    # Semi-supervised JEM: 10% of the training labels (144 digits); the unlabelled digits enter
    # only the generative term. Its baseline is the softmax classifier of the labelled 10%.
    "jem_digits_semi": Config(name="jem_digits_semi", label_fraction=0.1),
    "softmax_digits_semi": Config(name="softmax_digits_semi", objective="softmax",
                                  label_fraction=0.1),
    # An unconditional generative EBM on the digits, trained by contrastive divergence.
    "cd_digits": Config(name="cd_digits", objective="cd", hidden=(256, 256), energy_l2=0.1),
    # CD on the thin toys (rings, spirals: width 0.08-0.1) needs a small step (step 0.01
    # spreads the sampler's stationary law to twice the width) and restarts from data (uniform
    # restarts collapse onto the inner ring; on the spirals, step 0.01 diverged: KL 1e8).
    # Rings, measured over seeds 0-2: step 0.001 learns too slowly (rings 2x too wide on seed
    # 2, KL 0.33); step 0.002 sharpens them, and rare restarts (0.01) let the few chains that
    # cross between rings set the rings' relative weights, which frequent data restarts wash
    # out (inner ring 2.5% of the mass at 0.05): KL 0.032/0.062/0.085.
    **{f"cd_2d_{toy}": _toy_preset(toy, **CD_THIN_TOYS.get(toy, {})) for toy in TOY_NAMES},
    # Noise-contrastive estimation against a widened Gaussian fitted to the data; samples for
    # the pictures come from longer Langevin runs (NCE itself never samples).
    **{f"nce_2d_{toy}": _toy_preset(toy, "nce", fresh_sample_steps=500, nce_noise_scale=1.0,
                                    batch_size=512, num_steps=16_000, lr_schedule="cosine",
                                    eval_every=4000, checkpoint_every=4000)
       for toy in TOY_NAMES},
    # Denoising score matching: no sampling during training either. Smaller noise on the
    # rings (their width is 0.08): sigma=0.1 over-smooths, 0.02 diverges.
    # 12,000 steps: a DSM step differentiates through the score, about twice an NCE step.
    **{f"dsm_2d_{toy}": _toy_preset(toy, "dsm", fresh_sample_steps=500, batch_size=512,
                                    num_steps=12_000, lr_schedule="cosine",
                                    dsm_sigma=0.05 if toy == "rings" else 0.1,
                                    eval_every=4000, checkpoint_every=4000)
       for toy in TOY_NAMES},
    # Diffusion recovery likelihood (T6, a level-conditioned MLP, 30 MALA steps per level from
    # importance-resampled starts); batch split across the 6 levels, 40 examples each.
    **{f"rl_2d_{toy}": _toy_preset(toy, "rl", batch_size=240, num_steps=4000,
                                   eval_every=2000, checkpoint_every=2000)
       for toy in TOY_NAMES},
    # Recovery likelihood on the digits, generated by progressive sampling from noise. The
    # digits are quantised (17 grey levels, constant border pixels), so level 0 models them
    # smoothed by Gaussian noise, as the paper's reference code does (with 0.01). Measured:
    # noise 0.03 makes E(x, 0) sharper than the level-0 step (curvature ~1/0.03^2 against
    # 2/h_0 = 380), MALA acceptance falls to 0 after ~1,200 steps and the energy diverges;
    # with 0.1 acceptance stays ~0.88 to the end.
    "rl_digits": Config(name="rl_digits", objective="rl", hidden=(256, 256), batch_size=120,
                        num_steps=4000, rl_data_noise=0.1, lr_schedule="cosine",
                        ema_decay=0.999, eval_every=2000, checkpoint_every=2000,
                        num_eval_samples=500),
    # The papers' settings for GPU/TPU (full size; tests shrink them with overrides).
    # JEM (Grathwohl et al. 2020): WRN-28-10 without batch norm, SGLD 20 steps of size 1 with
    # noise 0.01, replay buffer 10,000 with 5% restarts from uniform noise, Adam 1e-4, batch 64,
    # horizontal flips and small Gaussian data noise (here: dequantisation).
    **{f"jem_{name}": Config(name=f"jem_{name}", dataset=name, model="wrn", depth=28,
                             widen_factor=10, activation="leaky_relu", objective="jem",
                             sgld_steps=20, sgld_step_size=1.0, sgld_noise=0.01,
                             buffer_size=10_000, reinit_prob=0.05, learning_rate=1e-4,
                             batch_size=64, num_steps=150_000, warmup_steps=1000, flip=True,
                             dtype="bfloat16", eval_every=5000, checkpoint_every=5000,
                             num_eval_samples=1000)
       for name in ("cifar10", "cifar100", "svhn_cropped")},
    # IGEBM (Du & Mordatch 2019): its ResNet energy with spectral norm, 60 Langevin steps of
    # size 10 with noise 0.005, gradient clipping 0.01 inside the sampler, energy L2 1.0.
    "igebm_cifar10": Config(name="igebm_cifar10", dataset="cifar10", model="igebm_resnet",
                            resnet_channels=128, spectral_norm=True, activation="leaky_relu",
                            objective="cd", sgld_steps=60, sgld_step_size=10.0,
                            sgld_noise=0.005, sgld_grad_clip=0.01, buffer_size=10_000,
                            reinit_prob=0.05, energy_l2=1.0, learning_rate=1e-4,
                            batch_size=128, num_steps=100_000, flip=True, dtype="bfloat16",
                            eval_every=5000, checkpoint_every=5000),
    # Diffusion recovery likelihood (Gao et al. 2021): the T6 schedule, a level-conditioned
    # ResNet, 30 Langevin steps per level.
    "drl_cifar10": Config(name="drl_cifar10", dataset="cifar10", model="resnet",
                          resnet_channels=128, spectral_norm=False, activation="leaky_relu",
                          objective="rl", rl_schedule="t6", rl_langevin_steps=30,
                          rl_data_noise=0.01, learning_rate=1e-4, batch_size=120,
                          num_steps=240_000, flip=True, ema_decay=0.9999, dtype="bfloat16",
                          eval_every=10_000, checkpoint_every=5000),
}
PRESETS["jem_svhn"] = dataclasses.replace(PRESETS.pop("jem_svhn_cropped"), name="jem_svhn",
                                          flip=False)  # digits are not mirror-symmetric


def load_config_file(path: str) -> Config:
    """A config from a JSON file of fields (``config.json`` of a run, or a hand-written subset:
    missing fields take the defaults of :class:`Config`), validated.

    Raises:
      ConfigError: a missing or unreadable file, invalid JSON (with line and column), not an
        object, unknown keys, or a bad field (naming it, its value and what is expected).
    """
    import json

    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist: expected a preset name "
                          f"({', '.join(sorted(PRESETS)[:3])}, ...) or a JSON file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path!r} cannot be read ({error}): expected a UTF-8 "
                          "JSON file") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {path!r} is not valid JSON (line {error.lineno}, column "
                          f"{error.colno}: {error.msg})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path!r} holds a {type(values).__name__}: expected a "
                          "JSON object of config fields")
    return config_from_dict(values)


def make_config(preset: str = "jem_digits", overrides: typing.Iterable[str] = ()) -> Config:
    """Build a validated config from a preset name (or a JSON file, see
    :func:`load_config_file`) and ``key=value`` overrides.

    Example::

      >>> make_config("jem_digits", ["num_steps=100", "seed=3"]).num_steps
      100
    """
    if preset.endswith(".json") or "/" in preset:
        base = load_config_file(preset)
    elif preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)} or a "
                          "JSON file")
    else:
        base = PRESETS[preset]
    values = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, text = item.split("=", 1)
        values[key.strip()] = parse_value(key.strip(), text.strip())
    return validate(dataclasses.replace(base, **values))


def config_from_dict(values: dict) -> Config:
    """Rebuild a config saved with :meth:`Config.to_dict` (lists become tuples), validated."""
    hints = _field_types()
    unknown = sorted(set(values) - set(hints), key=str)
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}: expected a subset of {sorted(hints)}")
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return validate(Config(**converted))


def config_differences(a: Config, b: Config, ignore=RESUMABLE_FIELDS) -> dict:
    """Fields (outside ``ignore``) whose values differ: ``{name: (a_value, b_value)}``."""
    return {f.name: (getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
            if f.name not in ignore and getattr(a, f.name) != getattr(b, f.name)}


__all__ = ["Config", "ConfigError", "PRESETS", "config_differences", "config_from_dict",
           "load_config_file", "make_config", "parse_value", "validate"]
