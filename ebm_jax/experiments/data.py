"""What a run trains and evaluates on: the embedded digits, seeded 2-D toys, a prepared
tensorflow-datasets dataset, or the user's own ``.npz`` or ``.csv``
(:mod:`ebm_jax.data.files`).

Example::

    >>> from ebm_jax.experiments import make_config
    >>> data = load_data(make_config("jem_digits"))
    >>> data.x_train.shape, data.num_classes
    ((1437, 64), 10)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from ebm_jax.data import load_cluster_toy, load_digits, load_seven_segment_digits
from ebm_jax.data.files import (Normalization, data_statistics, is_data_file, load_file,
                                normalization)
from ebm_jax.data.regression import REGRESSION_DATASETS
from ebm_jax.experiments.config import (CLUSTER_NAMES, REGRESSION_NAMES, TFDS_NAMES, Config,
                                        resolve_energy_l2, validate)
from ebm_jax.experiments.objectives import objective_of

TOY_LIMIT = 4.5  # 2-D toys live in [-4.5, 4.5]^2
TOY_TRAIN_SIZE = 50_000
TFDS_TRAIN_SAMPLE = 2000
TFDS_TEST_LIMIT = 10_000


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
    # signals and sequences of a user's file, ``(L, C)``: what a "conv" model convolves
    # along (1-D); None for images (``image_shape``) and the shipped data
    signal_shape: Optional[tuple] = None
    # a user's file: the map (x - center) / scale that brought its values to the presets'
    # scale (data.normalize; ebm_jax.data.files.Normalization); None for the shipped data
    normalization: Optional[Normalization] = None
    # a regression dataset (y_train: float targets [N, dy]): its exact answers,
    # modes(x [N, dx]) -> [N, K, dy] (ebm_jax.data.regression); None elsewhere
    modes: Optional[Callable] = None
    # a regression dataset cut from an environment's episodes: the environment (its test
    # episodes and checks, ebm_jax.environments); None elsewhere
    environment: Optional[Any] = None
    # a concept dataset (ebm_jax.data.concepts): binary concepts [N, C] of each split and
    # their names; batches then carry them as "c". None elsewhere
    c_train: Optional[np.ndarray] = None
    c_test: Optional[np.ndarray] = None
    concept_names: Optional[tuple] = None


def load_tfds_data(config: Config) -> Data:
    """A prepared tensorflow-datasets dataset (raises DatasetNotPreparedError, naming the
    command that prepares it, when it is not)."""
    from ebm_jax.data.tfds_source import TFDSBatches, get_spec, load_arrays, load_source

    d = config.data
    spec = get_spec(d.dataset)
    source = load_source(d.dataset, spec.train_split, data_dir=d.data_dir)
    x_train, y_train = load_arrays(d.dataset, spec.train_split, data_dir=d.data_dir,
                                   limit=TFDS_TRAIN_SAMPLE)
    x_test, y_test = load_arrays(d.dataset, spec.test_split, data_dir=d.data_dir,
                                 limit=TFDS_TEST_LIMIT)

    def train_batches(start_step: int, process_index: int = 0, process_count: int = 1):
        return TFDSBatches(source, spec, d.batch_size, seed=config.run.seed,
                           start_step=start_step, dequantize=d.dequantize, flip=d.flip,
                           process_index=process_index, process_count=process_count, prefetch=2)

    return Data(x_train, y_train, x_test, y_test, (-1.0, 1.0), spec.image_shape,
                spec.num_classes, None, train_batches, len(source))


def _read_file(config: Config):
    d = config.data
    return load_file(d.dataset, target=d.target, test_fraction=d.test_fraction,
                     seed=config.run.seed)


def load_file_data(config: Config) -> Data:
    """The user's ``.npz`` or ``.csv`` (checked; see :mod:`ebm_jax.data.files`), brought to
    the scale the presets' sampler settings are tuned for by ``data.normalize`` (default
    ``"auto"``: unit variance, or the median and IQR for heavy tails; see
    :func:`~ebm_jax.data.files.normalization`). The data range (the sampler's clamp and
    chain restarts) is the normalised box: the data's range (``data.value_range`` when set),
    or its central 99% for heavy tails.

    Examples of rank 3 (``[H, W, C]``) are images; of rank 2 (``[L, C]``) or 1 (``[L]``, one
    channel) signals, which a "conv" model convolves along ``L``; an MLP flattens any shape.
    """
    f = _read_file(config)
    norm = normalization(f.x_train, config.data.normalize, config.data.value_range)
    x_train, x_test = norm.apply(f.x_train), norm.apply(f.x_test)
    example = tuple(x_train.shape[1:])
    image_shape = example if len(example) == 3 else None
    signal_shape = {1: example + (1,), 2: example}.get(len(example))
    x_train, y_train = _keep_labelled_share(config, x_train, f.y_train)
    return Data(x_train, y_train, x_test, f.y_test, (norm.low, norm.high), image_shape,
                f.num_classes, None, signal_shape=signal_shape, normalization=norm)


def derived_settings(config: Config, data: Data, *, energy_l2_derived: bool = False) -> dict:
    """What a run on the user's file derived from the data, for its log and summary
    (``{}`` for a shipped dataset).

    Keys: ``data_normalize`` (the method, ``"auto"`` resolved), ``data_center`` and
    ``data_scale`` (the map ``(x - center) / scale``), ``sampler_box`` (the clamp and
    restart box, normalised units) and, for a Langevin sampler, ``sampler_step_in_data_units``
    and ``sampler_noise_in_data_units``: the preset's step and noise act on the normalised
    values, which is a step ``step * scale**2`` and a noise ``noise * scale`` in the file's;
    with ``energy_l2_derived`` (the config left ``objective.energy_l2`` at none),
    ``derived_energy_l2``.
    """
    norm = data.normalization
    if norm is None:
        return {}
    out = {"data_normalize": norm.method, "data_center": norm.center, "data_scale": norm.scale,
           "sampler_box": [norm.low, norm.high]}
    sampler = getattr(config.objective, "sampler", None)
    if sampler is not None and hasattr(sampler, "step_size"):
        out["sampler_step_in_data_units"] = sampler.step_size * norm.scale ** 2
        if sampler.noise_scale is not None:
            out["sampler_noise_in_data_units"] = sampler.noise_scale * norm.scale
    if energy_l2_derived:
        out["derived_energy_l2"] = config.objective.energy_l2
    return out


def describe_derived(config: Config, data: Data, *,
                     energy_l2_derived: bool = False) -> Optional[str]:
    """One log line saying what was derived from the user's data and from what (None when
    nothing was)."""
    derived = derived_settings(config, data, energy_l2_derived=energy_l2_derived)
    if not derived:
        return None
    norm = data.normalization
    low, high = config.data.value_range or (float("nan"), float("nan"))
    line = (f"data.normalize={config.data.normalize} ({norm.method}): the file's values "
            f"(range [{low:.4g}, {high:.4g}], std {config.data.scale or float('nan'):.4g}) "
            f"are mapped by (x - {norm.center:.4g}) / {norm.scale:.4g}; the sampler's clamp "
            f"and chain restarts cover [{norm.low:.4g}, {norm.high:.4g}]")
    if "sampler_step_in_data_units" in derived:
        sampler = config.objective.sampler
        line += (f", and its step_size={sampler.step_size:g}, noise_scale="
                 f"{sampler.noise_scale} act there (in the file's units: step "
                 f"{derived['sampler_step_in_data_units']:.4g}"
                 + (f", noise {derived['sampler_noise_in_data_units']:.4g}"
                    if "sampler_noise_in_data_units" in derived else "") + ")")
    if "derived_energy_l2" in derived:
        line += (f"; objective.energy_l2={derived['derived_energy_l2']:g} (none was set: the "
                 "energy's scale on a user's file is unknown; set it to choose)")
    return line


def with_measured_data(config: Config) -> Config:
    """``config`` with ``data.value_range`` and ``data.scale`` measured on a user's file
    where they are none, and an ``objective.energy_l2`` of none derived
    (:data:`~ebm_jax.experiments.config.USER_FILE_ENERGY_L2`); a shipped dataset's config is
    returned as it is. A run records them in its ``config.json``, so that what the sampler
    and the guard assume about the data is written beside the results."""
    d = config.data
    if not is_data_file(d.dataset):
        return config
    if d.value_range is None or d.scale is None:
        stats = data_statistics(_read_file(config).x_train)
        d = dataclasses.replace(
            d, value_range=d.value_range or (round(stats.low, 6), round(stats.high, 6)),
            scale=d.scale or (round(stats.std, 6) or 1.0))
    return validate(resolve_energy_l2(dataclasses.replace(config, data=d)))


def _labelled_rows(config: Config, y_train) -> np.ndarray:
    """The training rows a concept model sees: all, or the labelled share."""
    if config.data.label_fraction >= 1.0:
        return np.ones(len(y_train), bool)
    return labelled_subset(y_train, config.data.label_fraction, seed=config.run.seed)


def _keep_labelled_share(config: Config, x_train, y_train):
    fraction = config.data.label_fraction
    if fraction >= 1.0 or y_train is None:
        return x_train, y_train
    keep = labelled_subset(y_train, fraction, seed=config.run.seed)
    if objective_of(config).keeps_unlabelled:
        return x_train, np.where(keep, y_train, -1).astype(y_train.dtype)
    return x_train[keep], y_train[keep]  # a supervised baseline sees the labelled share only


def load_regression_data(config: Config) -> Data:
    """A seeded regression dataset (``"branches"``, ``"ball_fork"``): float targets
    ``y [N, dy]``, no classes, its exact answers in ``modes`` and, for one cut from an
    environment's episodes, the environment."""
    d = REGRESSION_DATASETS[config.data.dataset](config.run.seed)
    return Data(d.x_train, d.y_train, d.x_test, d.y_test, d.x_range, None, None, None,
                modes=d.modes, environment=d.environment)


def load_data(config: Config) -> Data:
    """The embedded digits, a seeded sample of a 2-D toy density, a seeded regression
    dataset, a tfds dataset, or the user's file."""
    dataset = config.data.dataset
    if dataset in TFDS_NAMES:
        return load_tfds_data(config)
    if is_data_file(dataset):
        return load_file_data(config)
    if dataset in REGRESSION_NAMES:
        return load_regression_data(config)
    if dataset in CLUSTER_NAMES:
        d = load_cluster_toy(dataset, seed=config.run.seed)
        x_train, y_train = _keep_labelled_share(config, d.x_train, d.y_train)
        return Data(x_train, y_train, d.x_test, d.y_test, d.data_range, None, d.num_classes,
                    None)
    if dataset == "seven_segment_digits":
        d = load_seven_segment_digits()
        keep = _labelled_rows(config, d.y_train)
        return Data(d.x_train[keep], d.y_train[keep], d.x_test, d.y_test, (-1.0, 1.0),
                    d.image_shape, d.num_classes, None, c_train=d.c_train[keep],
                    c_test=d.c_test, concept_names=d.concept_names)
    if dataset == "digits":
        d = load_digits()
        x_train, y_train = _keep_labelled_share(config, d.x_train, d.y_train)
        return Data(x_train, y_train, d.x_test, d.y_test, d.data_range, d.image_shape,
                    d.num_classes, None)
    from ebm_jax.data.toy2d import get_toy

    toy = get_toy(dataset)
    key_train, key_test = jax.random.split(jax.random.PRNGKey(10_000 + config.run.seed))
    if toy.sample_labelled is not None:   # the component of each draw is its class
        sample = jax.jit(toy.sample_labelled, static_argnums=1)
        (x_train, y_train), (x_test, y_test) = [
            (np.asarray(x, np.float32), np.asarray(y, np.int32))
            for x, y in (sample(key_train, TOY_TRAIN_SIZE), sample(key_test, 5_000))]
        return Data(x_train, y_train, x_test, y_test, (-TOY_LIMIT, TOY_LIMIT), None,
                    int(y_train.max()) + 1, toy.log_prob)
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


def example_batch(config: Config, data: Data) -> dict:
    """The first batch of the training set: the shapes a loss's ``init`` needs."""
    size = config.data.batch_size
    example = {"x": data.x_train[:size]}
    if data.y_train is not None:
        example["y"] = data.y_train[:size]
    if data.c_train is not None:
        example["c"] = data.c_train[:size]
    return example


__all__ = ["Data", "TOY_LIMIT", "derived_settings", "describe_derived", "example_batch",
           "labelled_subset", "load_data",
           "load_file_data", "load_regression_data", "load_tfds_data", "with_measured_data"]
