"""Energy-based transformers (Gladstone et al. 2025): a conditional energy ``E(x, y)`` whose
prediction is ``num_steps`` descent steps on ``y`` with a learned step size, trained end to
end through the steps (:func:`ebm_jax.losses.ebt`).

Hyperparameters mirror the loss factory (``num_steps``, ``mode``, ``y0``, ...), plus the
task that makes the ``(x, y)`` pairs and the start of the learned step size:

* ``task="denoise"``: the dataset's examples, noised inside the train step,
  ``x = clip(example + noise_std N(0, I))`` into the data range, against the clean example
  as target (:func:`ebm_jax.losses.denoising_pairs`; a dataset's labels are not used);
* ``task="regress"``: a regression dataset's own ``(x, y)`` pairs (``data.dataset=
  "branches"``).

The descent on ``y`` is the method's sampler: it is part of the loss (differentiated
through), set by the fields above, so there is no ``sampler`` section, and no samples of
``x``. Evaluation reports the method's own metrics (:func:`make_evaluate`): the PSNR of the
prediction for denoising, the share of predictions on a branch for ``"branches"``.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> config = make_config("ebt_branches")
    >>> config.objective.task, config.objective.y0, config.objective.num_steps
    ('regress', 'target', 8)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import plots
from ebm_jax.experiments.config import (NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                                        PROBABILITY, REGRESSION_NAMES, Config, ConfigError,
                                        DataConfig, ModelConfig, ObjectiveConfig, RunConfig,
                                        one_of, setting)
from ebm_jax.experiments.networks import make_network
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.losses import LossTransform
from ebm_jax.losses.ebt import (MODES, STARTS, default_start_noise, denoising_pairs, ebt,
                                ebt_descent, ebt_energy, ebt_params, ebt_step_size)
from ebm_jax.nets import as_energy_fn

TASKS = ("denoise", "regress")
HIT_TOLERANCE = 0.1       # a prediction within this distance of an answer is on it
BEST_OF_DENOISE = 8       # best-of-N at evaluation: starts y0 + 0.2 N(0, I) around the input
BEST_OF_NOISE = 0.2
BEST_OF_REGRESS = 16      # ... and for regression, 16 starts like the single prediction's
TEST_NOISE_KEY = 10_000   # the test split's noise: key 10_000 + run.seed (the benchmark's)


@dataclass(frozen=True)
class EBTConfig(ObjectiveConfig):
    """``ebt(energy_fn, num_steps=, mode=, y0=, start_noise=, min_steps=, max_steps=,
    step_jitter=, langevin_noise=, replay_capacity=, replay_fraction=, contrastive_weight=,
    batch_negatives=, noise_negatives=, num_perturbed=, perturb_scale=, calibration_weight=,
    calibration_scale=, stationarity_weight=, energy_l2=, detach_between_steps=,
    clip_range=)`` on ``ebt_params(net_params, step_size=step_size)``; ``task`` and
    ``noise_std`` make the pairs; ``prediction_start_std`` is evaluation's start for
    ``y0="target"``."""

    kind = "ebt"
    task: str = setting("denoise", *one_of(*TASKS))
    noise_std: float = setting(0.3, *POSITIVE)  # task "denoise": the inputs' noise
    num_steps: int = setting(4, *POSITIVE_INT)
    mode: str = setting("system1", *one_of(*MODES))
    y0: str = setting("input", *one_of(*STARTS))  # the loss's ("batch" needs starts in a batch)
    start_noise: Optional[float] = setting(
        None, lambda v: v is None or v >= 0,
        "a number >= 0, or none (1 for y0 'noise' and 'target', else 0)")
    min_steps: int = setting(1, *POSITIVE_INT)
    max_steps: Optional[int] = setting(None, lambda v: v is None or v > 0,
                                       "a positive int, or none (num_steps)")
    step_jitter: float = setting(0.0, *NON_NEGATIVE)
    langevin_noise: float = setting(0.0, *NON_NEGATIVE)
    replay_capacity: int = setting(0, *NON_NEGATIVE_INT)
    replay_fraction: float = setting(0.0, *PROBABILITY)
    contrastive_weight: float = setting(0.0, *NON_NEGATIVE)
    batch_negatives: int = setting(0, *NON_NEGATIVE_INT)
    noise_negatives: int = setting(0, *NON_NEGATIVE_INT)
    num_perturbed: int = setting(0, *NON_NEGATIVE_INT)
    perturb_scale: float = setting(0.3, *POSITIVE)
    calibration_weight: float = setting(0.0, *NON_NEGATIVE)
    calibration_scale: float = setting(1.0, *POSITIVE)
    stationarity_weight: float = setting(0.0, *NON_NEGATIVE)
    energy_l2: float = setting(0.0, *NON_NEGATIVE)
    detach_between_steps: bool = setting(False)
    clip_range: Optional[tuple[float, ...]] = setting(
        None, lambda v: v is None or (len(v) == 2 and v[0] < v[1]),
        "none, or low,high with low < high")
    step_size: float = setting(0.1, *POSITIVE)  # the learned step size's start
    prediction_start_std: float = setting(1.0, *POSITIVE)  # y0="target": N(0, std²) starts


LOSS_FIELDS = ("num_steps", "mode", "y0", "start_noise", "min_steps", "max_steps",
               "step_jitter", "langevin_noise", "replay_capacity", "replay_fraction",
               "contrastive_weight", "batch_negatives", "noise_negatives", "num_perturbed",
               "perturb_scale", "calibration_weight", "calibration_scale",
               "stationarity_weight", "energy_l2", "detach_between_steps", "clip_range")


def loss_options(settings: EBTConfig) -> dict:
    """The keyword arguments of :func:`ebm_jax.losses.ebt` that ``settings`` holds.

    Example::

      >>> loss_options(EBTConfig(num_steps=8))["num_steps"]
      8
    """
    return {name: getattr(settings, name) for name in LOSS_FIELDS}


def concat_energy(config: Config, in_x: int, in_y: int, rngs) -> tuple[Any, Callable]:
    """``(params, energy_fn)``: the config's MLP over the concatenation ``[x, y]`` (flattened)
    read as ``energy_fn(params, x, y) -> scalar``."""
    model = as_energy_fn(make_network(config.model, in_x + in_y, None, 1, rngs))

    def energy_fn(params, x, y):
        return model.apply(params, jnp.concatenate([jnp.ravel(x), jnp.ravel(y)]))

    return model.params, energy_fn


def denoising_loss(loss: LossTransform, noise_std: float,
                   clip_range: Optional[tuple]) -> LossTransform:
    """``loss`` on pairs made inside the step from the batch's clean examples ``x [B, ...]``:
    ``{"x": clip(x + noise_std N(0, I)), "y": x}`` (labels in the batch are not used).

    Example::

      >>> from ebm_jax.losses import ebt, ebt_params
      >>> energy = lambda w, x, y: 0.5 * jnp.sum((y - w * x) ** 2)
      >>> loss = denoising_loss(ebt(energy, num_steps=2), 0.3, (-1.0, 1.0))
      >>> params, batch = ebt_params(jnp.float32(1.0)), {"x": jnp.zeros((4, 3))}
      >>> state = loss.init(jax.random.key(0), params, batch)
      >>> value, (state, info) = loss.loss(params, state, batch, jax.random.key(1))
      >>> bool(info["reconstruction_start"] > 0)       # the inputs were noised
      True
    """
    def pairs(rng_key, batch):
        return denoising_pairs(rng_key, batch["x"], noise_std, clip_range=clip_range)

    def init(rng_key, params, example_batch):
        return loss.init(rng_key, params, pairs(rng_key, example_batch))

    def loss_fn(params, state, batch, rng_key):
        k_pairs, k_loss = jax.random.split(rng_key)
        return loss.loss(params, state, pairs(k_pairs, batch), k_loss)

    return LossTransform(init, loss_fn)


# -- evaluation ---------------------------------------------------------------------------------
def psnr(pred, target, peak_to_peak: float) -> float:
    """Over a whole set: ``10 log10(peak_to_peak² / MSE)``.

    Example::

      >>> round(psnr(np.zeros(4), np.full(4, 0.2), 2.0), 2)     # MSE 0.04
      20.0
    """
    mse = float(np.mean(np.square(np.asarray(pred) - np.asarray(target))))
    return float(10.0 * np.log10(peak_to_peak ** 2 / max(mse, 1e-30)))


def spearman(a, b) -> float:
    """Spearman's rank correlation of two 1-D arrays (ties broken by order)."""
    ra = np.argsort(np.argsort(np.asarray(a)))
    rb = np.argsort(np.argsort(np.asarray(b)))
    return float(np.corrcoef(ra, rb)[0, 1])


def mode_distance(pred, modes) -> np.ndarray:
    """``[N]``: the distance of each prediction ``[N, dy]`` to its nearest answer
    (``modes [N, K, dy]``)."""
    gap = np.asarray(pred)[:, None] - np.asarray(modes)
    return np.min(np.sqrt(np.sum(np.square(gap.reshape(*gap.shape[:2], -1)), -1)), axis=1)


def held_out_pairs(config: Config, data) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)`` of the test split: noisy and clean test examples (denoising; the
    noise seeded by ``run.seed``), or the regression dataset's ``(x_test, y_test)``."""
    settings = config.objective
    if settings.task == "regress":
        return np.asarray(data.x_test), np.asarray(data.y_test)
    pairs = denoising_pairs(jax.random.key(TEST_NOISE_KEY + config.run.seed),
                            jnp.asarray(data.x_test), settings.noise_std,
                            clip_range=data.data_range)
    return np.asarray(pairs["x"]), np.asarray(pairs["y"])


def make_evaluate(config: Config, data, energy: Callable) -> Callable:
    """The method's metrics, ``evaluate(params, rng_key, *, quick=False, figure=None)``
    (see :class:`~ebm_jax.experiments.objectives.Pieces`), on the test split.

    The prediction is ``num_steps`` descent steps of the learned step size (clamped to
    ``clip_range``) from the start the loss trains from: the input (``y0="input"``),
    ``start_noise N(0, I)`` (``"noise"``) or ``prediction_start_std N(0, I)`` (``"target"``,
    as a test input has no target to start around).

    Keys, denoising: ``psnr`` (the prediction's, over the whole test set, peak-to-peak the
    data range), ``psnr_noisy`` (the input's), ``mse``; and unless ``quick``, ``psnr_2k``
    (after ``2 num_steps`` steps), ``thinking_gain_db`` (``psnr_2k - psnr``),
    ``energy_error_spearman`` (final energy against squared error over the test examples),
    ``best_of_n_gain_db`` (best of 8 starts ``y0 + 0.2 N`` by energy, minus a random one of
    the 8). Regression: ``mse``, ``mse_mean_target`` (predicting the training targets' mean,
    which a least-squares regressor approaches where the answers are symmetric), and with the
    dataset's exact answers ``branch_hit_rate`` (predictions within :data:`HIT_TOLERANCE` of
    one), ``branch_hit_rate_mean_target`` and ``branch_hit_rate_start`` (the starts' own, the
    chance level of a descent that does not move); unless ``quick``, ``branch_hit_rate_best_of_n``
    (16 starts, the lowest final energy kept) and ``branch_shares`` (the share of those
    picks nearest each answer). Both: ``step_size`` (the learned one).
    """
    settings = config.objective
    inputs, targets = held_out_pairs(config, data)
    denoise = settings.task == "denoise"
    k = settings.num_steps
    peak = float(data.data_range[1] - data.data_range[0])
    start_noise = settings.start_noise
    if start_noise is None:
        start_noise = default_start_noise(settings.y0)
    start_std = start_noise if settings.y0 == "noise" else settings.prediction_start_std
    y_shape = targets.shape[1:]

    def starts(rng_key, x, num):
        """``[num, *y_shape]`` starts for one input (the input itself for y0="input")."""
        if settings.y0 == "input":
            return jnp.broadcast_to(jnp.reshape(x, y_shape), (num, *y_shape))
        return start_std * jax.random.normal(rng_key, (num, *y_shape))

    def descend(params, x, y0, num_steps):
        return ebt_descent(energy, params, x, y0, num_steps=num_steps,
                           step_size=ebt_step_size(params), clip_range=settings.clip_range)

    @jax.jit
    def predict(params, rng_key):
        """Predictions after each of ``2k`` steps ``[N, 2k, ...]``, the energies
        ``[N, 2k + 1]`` and the starts ``[N, ...]``, one start per input."""
        keys = jax.random.split(rng_key, inputs.shape[0])
        y0 = jax.vmap(lambda key, x: starts(key, x, 1)[0])(keys, inputs)
        out = jax.vmap(lambda x, y: descend(params, x, y, 2 * k))(inputs, y0)
        return out.ys, out.energies, y0

    def best_of_n(params, rng_key, num, noise):
        """The lowest-energy prediction of ``num`` starts per input (``noise``: their std
        around the usual start), and one of the ``num`` at random."""
        keys = jax.random.split(rng_key, inputs.shape[0])

        def one(key, x):
            k_start, k_noise, k_pick = jax.random.split(key, 3)
            y0 = starts(k_start, x, num)
            if noise:
                y0 = y0 + noise * jax.random.normal(k_noise, y0.shape)
            out = jax.vmap(lambda y: descend(params, x, y, k))(y0)
            best = jnp.argmin(jnp.where(jnp.isfinite(out.energies[:, -1]),
                                        out.energies[:, -1], jnp.inf))
            return out.y[best], out.y[jax.random.randint(k_pick, (), 0, num)]

        return jax.vmap(one)(keys, inputs)

    best_of = jax.jit(best_of_n, static_argnums=(2, 3))

    def evaluate(params, rng_key, *, quick: bool = False, figure: Optional[str] = None) -> dict:
        k_one, k_best = jax.random.split(rng_key)
        ys, energies, ys_start = predict(params, k_one)
        pred = np.asarray(ys[:, k - 1])
        out = {"step_size": float(ebt_step_size(params)),
               "mse": float(np.mean(np.square(pred - targets)))}
        if denoise:
            out.update(psnr=psnr(pred, targets, peak), psnr_noisy=psnr(inputs, targets, peak))
            if not quick:
                out["psnr_2k"] = psnr(ys[:, 2 * k - 1], targets, peak)
                out["thinking_gain_db"] = out["psnr_2k"] - out["psnr"]
                errors = np.mean(np.square(pred - targets).reshape(len(pred), -1), axis=1)
                out["energy_error_spearman"] = spearman(energies[:, k], errors)
                best, random = best_of(params, k_best, BEST_OF_DENOISE, BEST_OF_NOISE)
                out["best_of_n_gain_db"] = psnr(best, targets, peak) - psnr(random, targets,
                                                                            peak)
        else:
            mean = np.broadcast_to(np.mean(np.asarray(data.y_train), axis=0), targets.shape)
            out["mse_mean_target"] = float(np.mean(np.square(mean - targets)))
            if data.modes is not None:
                modes = np.asarray(data.modes(inputs))
                out["branch_hit_rate"] = float(np.mean(mode_distance(pred, modes)
                                                       < HIT_TOLERANCE))
                out["branch_hit_rate_mean_target"] = float(np.mean(
                    mode_distance(mean, modes) < HIT_TOLERANCE))
                out["branch_hit_rate_start"] = float(np.mean(
                    mode_distance(ys_start, modes) < HIT_TOLERANCE))
                if not quick:
                    best, _ = best_of(params, k_best, BEST_OF_REGRESS, 0.0)
                    best = np.asarray(best)
                    out["branch_hit_rate_best_of_n"] = float(np.mean(
                        mode_distance(best, modes) < HIT_TOLERANCE))
                    nearest = np.argmin(np.sum(np.square(
                        (best[:, None] - modes).reshape(len(best), modes.shape[1], -1)), -1), 1)
                    out["branch_shares"] = [float(np.mean(nearest == m))
                                            for m in range(modes.shape[1])]
        if figure is not None:
            draw_predictions(figure, config, data, energy, params, inputs, targets,
                             np.asarray(ys), np.asarray(ys_start))
        return out

    return evaluate


def draw_predictions(path: str, config: Config, data, energy, params, inputs, targets,
                     ys, starts) -> None:
    """The method's picture: noisy, predicted (after ``num_steps`` steps) and clean test
    images in rows of ten; for a regression with 1-D ``x`` and ``y``, ``E(x, y)`` on a grid
    with descent paths (``starts [N, 1]`` then ``ys [N, >= num_steps, 1]``) and the exact
    answers. Nothing for other data."""
    k = config.objective.num_steps
    if config.objective.task == "denoise" and data.image_shape is not None:
        rows = np.concatenate([inputs[:10], ys[:10, k - 1], targets[:10]])
        plots.save_image_grids(path, {f"rows: noisy, {k} steps, clean": rows},
                               data.image_shape, value_range=data.data_range)
        return
    if config.objective.task != "regress" or inputs.shape[1:] != (1,) \
            or targets.shape[1:] != (1,):
        return
    (x_low, x_high), pad = data.data_range, 0.5
    y_low, y_high = float(targets.min()) - pad, float(targets.max()) + pad
    xs, ys_grid = np.linspace(x_low, x_high, 101), np.linspace(y_low, y_high, 101)
    row = jax.vmap(lambda x, y: energy(params, x[None], y[None]), (0, None))   # over x
    grid = jax.jit(jax.vmap(row, (None, 0)))(jnp.asarray(xs), jnp.asarray(ys_grid))
    order = np.argsort(inputs[:, 0])[np.linspace(0, len(inputs) - 1, 24).astype(int)]
    y_path = np.concatenate([starts[order][:, None, 0], ys[order, :k, 0]], axis=1)  # [P, k+1]
    x_path = np.broadcast_to(inputs[order][:, None, 0], y_path.shape)
    paths = np.stack([x_path, y_path], -1)
    curves = None
    if data.modes is not None:
        answers = np.asarray(data.modes(xs[:, None].astype(np.float32)))   # [101, K, 1]
        curves = [(xs, answers[:, m, 0]) for m in range(answers.shape[1])]
    plots.save_energy_paths(path, np.asarray(grid), (x_low, x_high, y_low, y_high), paths,
                            targets=curves, title=f"{config.name}: E(x, y), {k} descent steps")


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    """The MLP energy over ``[x, y]``, the EBT loss on the task's pairs, and the method's
    metrics; no sampler of ``x``. ``energy_fn`` is ``energy_fn(params, x, y)`` over the
    EBT params (``{"energy", "log_step_size"}``), for :mod:`ebm_jax.inference` with
    ``step_size=ebt_step_size(params)``."""
    del num_devices
    settings = config.objective
    in_x = int(np.prod(data.x_train.shape[1:]))
    in_y = in_x if settings.task == "denoise" else int(np.prod(data.y_train.shape[1:]))
    net_params, energy_fn = concat_energy(config, in_x, in_y, rngs)
    loss = ebt(energy_fn, **loss_options(settings))
    if settings.task == "denoise":
        loss = denoising_loss(loss, settings.noise_std, data.data_range)
    energy = ebt_energy(energy_fn)
    return Pieces(ebt_params(net_params, settings.step_size), energy, None, loss, None, None,
                  None, "", make_evaluate(config, data, energy))


def _no_energy(params, x, y):
    del params, x, y
    return 0.0


def check(config: Config) -> None:
    """The task against the dataset, and the loss factory's own cross-field checks
    (:func:`check_loss_settings`)."""
    settings, dataset = config.objective, config.data.dataset
    regression_data = dataset in REGRESSION_NAMES
    if settings.task == "regress" and not regression_data:
        raise ConfigError(f"objective.task='regress' with data.dataset={dataset!r}: expected a "
                          f"dataset with continuous targets, one of {list(REGRESSION_NAMES)} "
                          "(or objective.task='denoise')")
    if settings.task == "denoise" and regression_data:
        raise ConfigError(f"objective.task='denoise' with data.dataset={dataset!r}: expected "
                          "objective.task='regress' (its targets are the answers)")
    check_loss_settings(config)


def check_loss_settings(config: Config) -> None:
    """The EBT loss factory's own cross-field checks on ``config.objective`` (any objective
    config with :data:`LOSS_FIELDS`): System 1 against System 2's settings, the step range,
    the replay buffer against the batch, the starts' noise."""
    settings = config.objective
    try:
        ebt(_no_energy, **loss_options(settings))
    except ValueError as error:
        raise ConfigError(f"objective.{error}") from None
    batch = config.data.batch_size
    if settings.replay_capacity and settings.replay_capacity < batch:
        raise ConfigError(f"objective.replay_capacity={settings.replay_capacity} with "
                          f"data.batch_size={batch}: expected a capacity of at least one batch")
    if settings.contrastive_weight and settings.batch_negatives and batch < 2:
        raise ConfigError(f"objective.batch_negatives={settings.batch_negatives} with "
                          f"data.batch_size={batch}: expected a batch of at least 2")


PRESETS = {
    # Denoising the embedded 8x8 digits (noise 0.3, clipped to [-1, 1]): an MLP energy
    # 128-256-256-1 over (noisy image, candidate), predicting by 4 learned-step descent steps
    # from the noisy image. System 1 (the reconstruction averaged over the 4 steps), as
    # benchmarks/inference.py measured it (3 seeds, 4,000 steps): 21.0 dB at 4 steps from
    # 18.4 dB noisy, against 19.9 dB for System 2 (which keeps improving past its steps,
    # +0.6 dB at 8, but settles on a smaller step) at a third of System 2's training time.
    "ebt_digits_denoise": Config(
        name="ebt_digits_denoise", data=DataConfig(dataset="digits", batch_size=64),
        model=ModelConfig(kind="mlp", hidden=(256, 256)),
        objective=EBTConfig(task="denoise", noise_std=0.3, num_steps=4, mode="system1",
                            y0="input"),
        run=RunConfig(num_steps=4000, eval_every=1000, checkpoint_every=1000)),
    # y = ±sqrt(1 - x²) + 0.02 ε: trained from perturbed targets (y0="target", noise up to
    # 0.5) with a contrastive term against 8 other targets of the batch, so each branch is a
    # basin; predictions descend 8 steps from N(0, 1) starts (benchmarks/inference.py's
    # BRANCH_EBT: 94-97% within 0.1 of a branch over 3 seeds, an MSE regressor 0.2-1.1%).
    "ebt_branches": Config(
        name="ebt_branches", data=DataConfig(dataset="branches", batch_size=128),
        model=ModelConfig(kind="mlp", hidden=(128, 128)),
        objective=EBTConfig(task="regress", num_steps=8, mode="system1", y0="target",
                            start_noise=0.5, contrastive_weight=0.1, batch_negatives=8),
        run=RunConfig(num_steps=4000, eval_every=1000, checkpoint_every=1000)),
}

OBJECTIVE = Objective(
    kind="ebt", config=EBTConfig, build=build, needs_labels=False, classifier=False,
    unsupervised=False, models=("mlp",),
    models_note="EBT's energy is an MLP over the concatenated input and candidate",
    presets=PRESETS, check=check, density=False, regression=True,
    summary="energy-based transformer: predict by learned-step descent on E(x, y)")
