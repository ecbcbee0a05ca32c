"""The run configuration: nested, typed, frozen dataclasses, checked before any compute.

A :class:`Config` has six sections::

    Config(name, data=DataConfig, model=ModelConfig, objective=<one registered kind>,
           optimizer=OptimizerConfig, guard=GuardConfig, run=RunConfig)

``objective`` is the hyperparameter dataclass of one learning method (see
:mod:`ebm_jax.experiments.objectives`): it mirrors the method's loss factory and
nests its sampler's and chain start's settings. Every field carries its own check
(:func:`setting`); :func:`validate` walks the tree and the objective's own
cross-field checks, and every error names the dotted field, the value and what was
expected::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("jem_digits", ["objective.sampler.step_size=0.5"]).objective.sampler.step_size
    0.5
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Optional

from ebm_jax.data.cluster_toys import CLUSTER_TOYS
from ebm_jax.data.files import is_data_file
from ebm_jax.data.regression import REGRESSION_DATASETS
from ebm_jax.nets.patch_conv import CONV_IMPLS


class ConfigError(ValueError):
    """A bad configuration value: the message names the field, the value and what is expected."""


def setting(default: Any, check: Optional[Callable[[Any], bool]] = None,
            expected: Optional[str] = None) -> Any:
    """A dataclass field with its range check: ``check(value)`` is true for good values, and
    ``expected`` says what a good value is (it ends the error message)."""
    if isinstance(default, (list, dict)):
        raise TypeError("settings are immutable: use a tuple")
    return dataclasses.field(default=default, metadata={"check": check, "expected": expected})


def section(cls) -> Any:
    """A nested section field whose default is ``cls()``."""
    return dataclasses.field(default_factory=cls)


def one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), f"one of {list(choices)}"


POSITIVE = (lambda v: v > 0), "a positive number"
POSITIVE_INT = (lambda v: v > 0), "a positive int"
NON_NEGATIVE = (lambda v: v >= 0), "a number >= 0"
NON_NEGATIVE_INT = (lambda v: v >= 0), "an int >= 0"
PROBABILITY = (lambda v: 0.0 <= v <= 1.0), "a probability in [0, 1]"
OPTIONAL_POSITIVE = (lambda v: v is None or v > 0), "a positive number or none"
WIDTHS = (lambda v: len(v) > 0 and all(w > 0 for w in v)), "a non-empty list of positive ints"

TOY_NAMES = ("8gaussians", "two_moons", "rings", "checkerboard", "swiss_roll", "pinwheel",
             "two_spirals", "labelled_8gaussians")
# Real image datasets, read through tensorflow-datasets (prepared beforehand; see
# ebm_jax.data.tfds_source).
TFDS_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped")
# (x, y) pairs with continuous targets, for conditional energies E(x, y) (ebm_jax.data.regression)
REGRESSION_NAMES = tuple(REGRESSION_DATASETS)
# Labelled data with binary concepts per example (ebm_jax.data.concepts), for concept models.
CONCEPT_NAMES = ("seven_segment_digits",)
# Labelled 2-D sets for clustering (ebm_jax.data.cluster_toys), standardised.
CLUSTER_NAMES = CLUSTER_TOYS
DATASETS = (("digits",) + CONCEPT_NAMES + TOY_NAMES + CLUSTER_NAMES + REGRESSION_NAMES
            + TFDS_NAMES)
MODELS = ("mlp", "conv", "wrn", "igebm_resnet", "resnet")
ACTIVATIONS = ("swish", "leaky_relu", "relu", "elu", "softplus", "tanh")


@dataclass(frozen=True)
class DataConfig:
    """What the run learns from, and how it is batched."""

    # a shipped dataset, or the path of the user's own .npz or .csv (ebm_jax.data.files)
    dataset: str = setting("digits", lambda v: v in DATASETS or is_data_file(v),
                           f"one of {list(DATASETS)}, or the path of an .npz or .csv file")
    # the user's .csv: the label column (none: unlabelled). A file without a test split
    # holds out test_fraction of its examples (stratified by label, seeded by run.seed).
    target: Optional[str] = setting(None)
    test_fraction: float = setting(0.2, lambda v: 0.0 < v < 1.0, "a fraction in (0, 1)")
    # the user's file: the training values' range and standard deviation, measured when the
    # run starts and written into config.json (the sampler's clamp and chain starts follow
    # the range); set either to override the measurement
    value_range: Optional[tuple[float, ...]] = setting(
        None, lambda v: v is None or (len(v) == 2 and v[0] < v[1]),
        "none, or low,high with low < high")
    scale: Optional[float] = setting(None, *OPTIONAL_POSITIVE)
    # the user's file: bring its values to the scale the presets' sampler step and noise are
    # tuned for (ebm_jax.data.files.normalization): "standard" (unit variance), "robust"
    # (median and IQR, for heavy tails; the sampler's box spans the central 99%), "auto"
    # (robust when the tails are heavy, else standard), "range" (onto [-1, 1]), or "none"
    # (the file's units); the sampler's clamp and chain restarts cover the mapped box
    normalize: str = setting("auto", *one_of("auto", "standard", "robust", "range", "none"))
    # semi-supervised: the share of training labels kept (stratified; the rest become -1)
    label_fraction: float = setting(1.0, lambda v: 0.0 < v <= 1.0, "a fraction in (0, 1]")
    # tfds datasets: where they are prepared (none: tfds's default), and the augmentation
    data_dir: Optional[str] = setting(None)
    dequantize: bool = setting(True)
    flip: bool = setting(False)
    batch_size: int = setting(64, *POSITIVE_INT)


@dataclass(frozen=True)
class ModelConfig:
    """The network. ``kind``: an MLP, a small ConvNet, a Wide-ResNet, IGEBM's ResNet, or the
    level-conditioned ResNet of recovery likelihood (``resnet``)."""

    kind: str = setting("mlp", *one_of(*MODELS))
    hidden: tuple[int, ...] = setting((256, 256), *WIDTHS)
    channels: tuple[int, ...] = setting((32, 64), *WIDTHS)
    # "conv": one kernel size for every layer or one per layer (square on images, along the
    # signal on 1-D data), and strides per layer (none: 1, then 2s)
    kernel_sizes: tuple[int, ...] = setting((3,), *WIDTHS)
    strides: Optional[tuple[int, ...]] = setting(
        None, lambda v: v is None or (len(v) > 0 and all(t > 0 for t in v)),
        "none or a list of positive ints, one per layer")
    # how "conv" computes its convolutions (same params and values): "auto" is patches +
    # matmul on CPU (fast SGLD input gradients), lax.conv on GPU/TPU
    conv_impl: str = setting("auto", *one_of(*CONV_IMPLS))
    activation: str = setting("swish", *one_of(*ACTIVATIONS))
    spectral_norm: bool = setting(False)
    # Wide-ResNet: depth 6n+4, width multiplier
    depth: int = setting(28, lambda v: v >= 10 and (v - 4) % 6 == 0,
                         "6n+4 with n >= 1 (10, 16, 22, 28, ...)")
    widen_factor: int = setting(10, *POSITIVE_INT)
    # IGEBM ResNet and the level-conditioned ResNet: base channels, blocks per stage
    resnet_channels: int = setting(128, *POSITIVE_INT)
    resnet_blocks: Optional[int] = setting(None, lambda v: v is None or v > 0,
                                           "a positive int or none (the paper's)")
    # compute dtype; parameters, energies and chains stay float32
    dtype: str = setting("float32", *one_of("float32", "bfloat16"))
    # "mlp" and "wrn": batch norm after every hidden layer / before every activation, its
    # running statistics params (ebm_jax.nets.batch_norm); for objectives that train them
    batch_norm: bool = setting(False)


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam / AdamW / SGD with warm-up, a schedule, clipping and a moving average."""

    kind: str = setting("adam", *one_of("adam", "adamw", "sgd"))
    learning_rate: float = setting(1e-3, *POSITIVE)
    weight_decay: float = setting(0.0, *NON_NEGATIVE)
    clip_grad_norm: Optional[float] = setting(None, *OPTIONAL_POSITIVE)
    warmup_steps: int = setting(0, *NON_NEGATIVE_INT)
    schedule: str = setting("constant", *one_of("constant", "cosine"))
    ema_decay: Optional[float] = setting(None, lambda v: v is None or 0.0 <= v < 1.0,
                                         "a value in [0, 1) or none")


@dataclass(frozen=True)
class GuardConfig:
    """The divergence guard (:mod:`ebm_jax.train.guard`): skip blown-up steps, roll back to the
    last good checkpoint with a new key and a scaled learning rate, at most
    ``rollback_retries`` times."""

    enabled: bool = setting(True)
    max_energy: float = setting(1e8, *POSITIVE)
    max_grad_norm: float = setting(1e8, *POSITIVE)
    rollback_retries: int = setting(3, *NON_NEGATIVE_INT)
    rollback_lr_factor: float = setting(0.5, lambda v: 0.0 < v <= 1.0, "a factor in (0, 1]")


@dataclass(frozen=True)
class RunConfig:
    """Length, seed and bookkeeping of a run."""

    num_steps: int = setting(6000, *POSITIVE_INT)
    seed: int = setting(0, *NON_NEGATIVE_INT)
    log_every: int = setting(100, *POSITIVE_INT)
    eval_every: int = setting(2000, *POSITIVE_INT)
    checkpoint_every: int = setting(2000, *POSITIVE_INT)
    keep_checkpoints: int = setting(3, *POSITIVE_INT)
    num_eval_samples: int = setting(1000, *POSITIVE_INT)
    # chain steps of the generator that evaluation draws fresh samples with
    fresh_sample_steps: int = setting(200, *POSITIVE_INT)
    # test examples a classifier's robustness evaluation attacks (PGD-20 at L-inf 0.2 and
    # L2 1.0, two compiled programs); 0 skips it
    robust_eval_examples: int = setting(1000, *NON_NEGATIVE_INT)
    # train steps per call of the compiled program (a lax.scan over that many batches): the
    # host's per-step work (placing a batch, dispatching the step) is paid once per call, which
    # a fast step on an accelerator needs; the step counts above must be multiples of it. The
    # same run with another value agrees to float rounding, not to the bit.
    steps_per_call: int = setting(1, *POSITIVE_INT)
    # how XLA:CPU compiles the train step (ebm_jax.train.CPU_COMPILE_MODES): "xla" its
    # defaults, "o2" LLVM at -O2 (about two thirds of the compile time, same step speed),
    # "fast" -O2 and the older loop emitters (about half, steps 3-14% slower); ignored off
    # CPU. Like steps_per_call, it changes values by float rounding only; a run saved before
    # the setting existed resumes with "xla".
    cpu_compile: str = setting("o2", *one_of("xla", "o2", "fast"))


@dataclass(frozen=True)
class ObjectiveConfig:
    """Base of every objective's hyperparameters; ``kind`` is the registered name."""

    kind: ClassVar[str] = ""


def _default_objective() -> ObjectiveConfig:
    from ebm_jax.experiments.objectives import get_objective

    return get_objective("jem").config()


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. See :mod:`ebm_jax.experiments.presets`."""

    name: str = setting("jem_digits")
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    objective: ObjectiveConfig = dataclasses.field(default_factory=_default_objective)
    optimizer: OptimizerConfig = section(OptimizerConfig)
    guard: GuardConfig = section(GuardConfig)
    run: RunConfig = section(RunConfig)

    def to_dict(self) -> dict:
        """Nested plain values (JSON-ready); the objective carries its ``kind``."""
        return to_dict(self)


# Fields that may change between a run and its resumption (they do not change what is learned).
RESUMABLE_FIELDS = frozenset({"run.num_steps", "run.eval_every", "run.log_every",
                              "run.checkpoint_every", "run.keep_checkpoints",
                              "run.num_eval_samples", "run.fresh_sample_steps",
                              "run.robust_eval_examples", "run.steps_per_call",
                              "run.cpu_compile", "data.data_dir",
                              "guard.rollback_retries"})


def to_dict(node: Any) -> Any:
    if dataclasses.is_dataclass(node):
        out = {"kind": node.kind} if isinstance(node, ObjectiveConfig) else {}
        out.update({f.name: to_dict(getattr(node, f.name)) for f in dataclasses.fields(node)})
        return out
    return list(node) if isinstance(node, tuple) else node


# --------------------------------------------------------------------------- types


def _type_ok(value: Any, hint: Any) -> bool:
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


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " or none"
    if origin is tuple:
        return f"a comma-separated list of {_describe(args[0])}"
    if dataclasses.is_dataclass(hint):
        return f"a {hint.__name__} section"
    return {int: "an int", float: "a number", bool: "true or false", str: "a string"}[hint]


def field_types(cls: type) -> dict:
    """``{field name: type}`` of a config dataclass's fields (annotations resolved; class
    variables such as an objective's ``kind`` are not fields)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


# --------------------------------------------------------------------------- validation


def _check_fields(node: Any, prefix: str) -> None:
    hints = field_types(type(node))
    for f in dataclasses.fields(node):
        path, value, hint = prefix + f.name, getattr(node, f.name), hints[f.name]
        if _is_section(hint):
            if not isinstance(value, hint):
                raise ConfigError(f"{path}={value!r}: expected {_describe(hint)}")
            _check_fields(value, path + ".")
            continue
        if not _type_ok(value, hint):
            raise ConfigError(f"{path}={value!r}: expected {_describe(hint)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}={value!r}: expected a finite number")
        check, expected = f.metadata.get("check"), f.metadata.get("expected")
        if check is not None and not check(value):
            raise ConfigError(f"{path}={value!r}: expected {expected}")


def validate(config: Config) -> Config:
    """Check every field's type and range, then the cross-field rules; return the config.

    Raises:
      ConfigError: naming the first bad field (dotted), its value and what was expected.
    """
    from ebm_jax.experiments.objectives import get_objective, objective_kinds

    objective = get_objective(getattr(config.objective, "kind", None))
    _check_fields(config, "")
    data, model = config.data, config.model
    kind = objective.kind
    is_toy = data.dataset in TOY_NAMES
    is_plane = is_toy or data.dataset in CLUSTER_NAMES
    is_regression = data.dataset in REGRESSION_NAMES
    if is_toy and objective.needs_labels:
        raise ConfigError(f"objective={kind!r} with data.dataset={data.dataset!r}: expected an "
                          "objective that needs no labels (the 2-D toys are for generative "
                          "learning; labelled_8gaussians' labels serve class-conditional "
                          "generation)")
    if is_regression and not objective.regression:
        raise ConfigError(f"objective={kind!r} with data.dataset={data.dataset!r}: expected an "
                          "objective that learns a conditional energy E(x, y) from continuous "
                          f"targets (the dataset holds (x, y) pairs), one of "
                          f"{[k for k in objective_kinds() if get_objective(k).regression]}")
    if objective.concepts != (data.dataset in CONCEPT_NAMES):
        expected = (f"a concept dataset, one of {list(CONCEPT_NAMES)}" if objective.concepts
                    else "an objective that learns concepts, one of "
                    f"{[k for k in objective_kinds() if get_objective(k).concepts]}")
        raise ConfigError(f"objective={kind!r} with data.dataset={data.dataset!r}: expected "
                          f"{expected}")
    if (is_plane or is_regression) and model.kind != "mlp":
        raise ConfigError(f"model.kind={model.kind!r} with data.dataset={data.dataset!r}: "
                          "expected 'mlp'")
    if model.batch_norm and not objective.batch_norm:
        raise ConfigError(f"model.batch_norm=True with objective={kind!r}: expected false (its "
                          "training does not update batch norm's statistics; objectives that "
                          f"do: {[k for k in objective_kinds() if get_objective(k).batch_norm]})")
    if model.batch_norm and model.kind not in ("mlp", "wrn"):
        raise ConfigError(f"model.batch_norm=True with model.kind={model.kind!r}: expected "
                          "model.kind 'mlp' or 'wrn' (the networks with batch norm)")
    if model.kind not in objective.models:
        raise ConfigError(f"model.kind={model.kind!r} with objective={kind!r}: expected one of "
                          f"{list(objective.models)} ({objective.models_note})")
    for name in ("kernel_sizes", "strides"):
        value = getattr(model, name)
        if value is not None and len(value) not in (1, len(model.channels)):
            raise ConfigError(f"model.{name}={list(value)}: expected one value for every layer "
                              f"or one per layer of model.channels={list(model.channels)}")
    if model.kind in ("mlp", "conv") and model.dtype != "float32":
        raise ConfigError(f"model.dtype={model.dtype!r} with model.kind={model.kind!r}: expected "
                          "'float32' (reduced precision is for 'wrn', 'igebm_resnet', 'resnet')")
    if data.target is not None and not data.dataset.lower().endswith(".csv"):
        raise ConfigError(f"data.target={data.target!r} with data.dataset={data.dataset!r}: "
                          "expected none (a label column is named for a .csv only)")
    if data.label_fraction < 1.0 and data.dataset in TFDS_NAMES:
        raise ConfigError(f"data.label_fraction={data.label_fraction} with data.dataset="
                          f"{data.dataset!r}: expected 1.0 (label subsets are made for the "
                          "in-memory datasets only)")
    if data.label_fraction < 1.0 and not objective.needs_labels:
        raise ConfigError(f"data.label_fraction={data.label_fraction} with objective={kind!r}: "
                          "expected an objective that uses labels")
    run = config.run
    for name in ("num_steps", "log_every", "eval_every", "checkpoint_every"):
        if getattr(run, name) % run.steps_per_call:
            raise ConfigError(f"run.{name}={getattr(run, name)} with run.steps_per_call="
                              f"{run.steps_per_call}: expected a multiple of "
                              "run.steps_per_call (each call runs that many steps)")
    objective.check(config)
    return config


# --------------------------------------------------------------------------- building


def _parse_text(path: str, text: str, hint: Any) -> Any:
    """The value of ``--set path=text`` for a field of type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if text.strip().lower() in ("none", "null"):
            return None
        inner = next(a for a in args if a is not type(None))
        return _parse_text(path, text, inner)
    try:
        if origin is tuple:
            return tuple(args[0](t) for t in text.split(",") if t.strip())
        if hint is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        return hint(text)
    except ValueError:
        raise ConfigError(f"{path}={text!r}: expected {_describe(hint)}") from None


def _field_names(node: Any, prefix: str = "") -> list[str]:
    names = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            names.extend(_field_names(value, prefix + f.name + "."))
        else:
            names.append(prefix + f.name)
    return names


def field_names(config: Config) -> list[str]:
    """Every dotted field of ``config`` (the objective's own fields included)."""
    return ["objective"] + _field_names(config)


def _replace_path(node: Any, parts: list[str], full: str, make_value: Callable) -> Any:
    """``node`` with the field at ``parts`` set to ``make_value(hint)``."""
    names = {f.name for f in dataclasses.fields(node)}
    if parts[0] not in names:
        prefix = full[:len(full) - len(".".join(parts))]
        known = [prefix + n for n in sorted(names)]
        raise ConfigError(f"unknown config key {full!r}: expected one of {known}")
    hint = field_types(type(node))[parts[0]]
    child = getattr(node, parts[0])
    if len(parts) == 1:
        if dataclasses.is_dataclass(child):
            examples = ", ".join(full + "." + n for n in _field_names(child)[:4])
            raise ConfigError(f"{full!r} is a section: expected one of its fields "
                              f"({examples}, ...)")
        return dataclasses.replace(node, **{parts[0]: make_value(hint)})
    if not dataclasses.is_dataclass(child):
        raise ConfigError(f"unknown config key {full!r}: {full[:-len('.'.join(parts[1:])) - 1]!r} "
                          "is a field, not a section")
    return dataclasses.replace(node, **{parts[0]: _replace_path(child, parts[1:], full,
                                                                make_value)})


def override(config: Config, key: str, text: str) -> Config:
    """``config`` with one ``--set key=text`` applied (not yet validated).

    ``objective=KIND`` switches to that objective's defaults; any other key is a dotted
    field (``objective.sampler.step_size``, ``run.num_steps``, ...).
    """
    from ebm_jax.experiments.objectives import get_objective

    key, text = key.strip(), text.strip()
    if key in ("objective", "objective.kind"):
        return dataclasses.replace(config, objective=get_objective(text).config())
    return _replace_path(config, key.split("."), key, lambda hint: _parse_text(key, text, hint))


# An objective's ``energy_l2`` left at none: 0 on the shipped data its presets are tuned on;
# on a user's file, where nothing is known of the energy's scale, this penalty (measured on
# the robustness matrix: it let JEM train on heavy-tailed features, where it otherwise blew
# up, and changed nothing on signals).
USER_FILE_ENERGY_L2 = 0.1
OPTIONAL_NON_NEGATIVE = ((lambda v: v is None or v >= 0),
                         "a number >= 0, or none (0.1 on a user's file, 0 on shipped data)")


def energy_l2_of(config: Config) -> float:
    """The objective's ``energy_l2``, or for none the derived value (see above)."""
    value = getattr(config.objective, "energy_l2", None)
    if value is not None:
        return value
    return USER_FILE_ENERGY_L2 if is_data_file(config.data.dataset) else 0.0


def resolve_energy_l2(config: Config) -> Config:
    """``config`` with an ``objective.energy_l2`` of none replaced by :func:`energy_l2_of`."""
    if getattr(config.objective, "energy_l2", 0.0) is not None:
        return config
    objective = dataclasses.replace(config.objective, energy_l2=energy_l2_of(config))
    return dataclasses.replace(config, objective=objective)


def apply_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """Apply ``key=value`` overrides in order, then validate. An ``objective.energy_l2`` left
    at none is resolved here for a shipped dataset (0), and when the run starts for a user's
    file (:func:`~ebm_jax.experiments.data.with_measured_data`), which logs it as derived."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. run.num_steps=100)")
        key, text = item.split("=", 1)
        config = override(config, key, text)
    if not is_data_file(config.data.dataset):
        config = resolve_energy_l2(config)
    return validate(config)


def _from_values(cls: type, values: dict, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}={values!r}: expected an object of "
                          f"{cls.__name__} fields")
    hints = field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names) - ({"kind"} if issubclass(cls, ObjectiveConfig)
                                                  else set()), key=str)
    if unknown:
        raise ConfigError(f"unknown config keys {[prefix + k for k in unknown]}: expected a "
                          f"subset of {[prefix + n for n in names]}")
    kwargs = {}
    for name in names:
        if name not in values:
            continue
        value, hint = values[name], hints[name]
        if name == "objective" and cls is Config:
            value = objective_from_dict(value)
        elif _is_section(hint):
            value = _from_values(hint, value, prefix + name + ".")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def objective_from_dict(values: Any) -> ObjectiveConfig:
    """An objective section from ``{"kind": ..., field: value, ...}`` (missing fields: its
    defaults)."""
    from ebm_jax.experiments.objectives import get_objective

    if not isinstance(values, dict):
        raise ConfigError(f"objective={values!r}: expected an object with a 'kind'")
    objective = get_objective(values.get("kind", "jem"))
    return _from_values(objective.config, {k: v for k, v in values.items() if k != "kind"},
                        "objective.")


def config_from_dict(values: dict) -> Config:
    """A validated config from nested values (``Config.to_dict``, or a subset: missing fields
    take their defaults). A flat dict written by ebm_jax 0.1 is migrated first
    (:mod:`ebm_jax.experiments.migration`)."""
    from ebm_jax.experiments.migration import is_flat, migrate_flat

    if not isinstance(values, dict):
        raise ConfigError(f"config={values!r}: expected an object of config fields")
    if is_flat(values):
        values = migrate_flat(values)
    return validate(_from_values(Config, values, ""))


def flatten(config: Config) -> dict:
    """``{dotted field: value}`` of every leaf field (the objective as ``objective.kind``)."""
    out = {"objective.kind": config.objective.kind}
    for name in _field_names(config):
        node = config
        for part in name.split("."):
            node = getattr(node, part)
        out[name] = node
    return out


def config_differences(a: Config, b: Config, ignore=RESUMABLE_FIELDS) -> dict:
    """Dotted fields (outside ``ignore``) whose values differ: ``{name: (a_value, b_value)}``."""
    flat_a, flat_b = flatten(a), flatten(b)
    names = sorted(set(flat_a) | set(flat_b))
    return {n: (flat_a.get(n), flat_b.get(n)) for n in names
            if n not in ignore and flat_a.get(n) != flat_b.get(n)}


__all__ = ["Config", "ConfigError", "DataConfig", "GuardConfig", "ModelConfig",
           "ObjectiveConfig", "OptimizerConfig", "RESUMABLE_FIELDS", "RunConfig",
           "apply_overrides", "config_differences", "config_from_dict", "field_names", "flatten",
           "override", "setting", "validate"]
