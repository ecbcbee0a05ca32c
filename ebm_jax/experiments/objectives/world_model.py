"""Energy-based world models (Gladstone et al. 2024): an energy ``E(context frames, next frame)``
that scores how well a future fits the past, trained as an energy-based transformer
(:func:`ebm_jax.losses.ebt`), predicting the next frame by descent from noise, best of ``N``
by energy, and using the energy of its pick as a confidence. Beside it, in the same run and
from the same batches, an MSE next-frame predictor of the same size
(:mod:`~ebm_jax.experiments.objectives._side_by_side`).

The data are ``(context, next frame)`` pairs cut from an environment's episodes, a regression
dataset that carries its environment (``data.dataset="ball_fork"``:
:mod:`ebm_jax.environments.ball_fork`, where the next frame is one of two at a fork). The
settings are the EBT objective's loss settings (:data:`~._side_by_side.EBT_SETTINGS`,
same names, checks and meaning) plus ``num_starts`` (best-of-N at evaluation) and
``regressor_weight``.

Evaluation (:func:`make_evaluate`) judges predicted frames with the environment's check of a
valid frame, at the fork, over all the test contexts and along 10-step rollouts.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> config = make_config("world_model_ball_fork")
    >>> config.data.dataset, config.objective.y0, config.objective.num_starts
    ('ball_fork', 'target', 16)
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import numpy as np

from ebm_jax import plots
from ebm_jax.experiments.config import (POSITIVE, POSITIVE_INT, REGRESSION_NAMES, Config,
                                        ConfigError, DataConfig, ModelConfig, RunConfig,
                                        setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._side_by_side import (REGRESSOR_MSE, best_of_n_candidates,
                                                          ebt_config_class, ebt_half,
                                                          failure_auroc, param_count,
                                                          regressor_network, side_by_side_loss,
                                                          side_by_side_params)
from ebm_jax.experiments.objectives.ebt import check_loss_settings, concat_energy, loss_options
from ebm_jax.losses.ebt import ebt, ebt_energy, ebt_params, ebt_step_size

FIGURE_EXAMPLES = 4   # fork contexts and rollouts drawn in the picture
FIGURE_RANGE = (-0.3, 1.0)   # frames' [0, 1] drawn so that their background is light grey

WorldModelConfig = ebt_config_class(
    "WorldModelConfig", "world_model",
    """``ebt(energy_fn, num_steps=, mode=, y0=, start_noise=, ...)`` on ``ebt_params(
    net_params, step_size=step_size)`` (the EBT objective's loss settings) beside an MSE
    regressor of the energy's size (``regressor_weight``: its loss's weight); evaluation's
    prediction is the best of ``num_starts`` descents from ``prediction_start_std N(0, I)``,
    on the first ``eval_episodes`` test episodes.""",
    defaults={"num_steps": 8, "y0": "target", "start_noise": 1.0, "contrastive_weight": 0.1,
              "batch_negatives": 8, "noise_negatives": 2, "energy_l2": 0.03,
              "clip_range": (0.0, 1.0)},
    extra=(("num_starts", int, setting(16, *POSITIVE_INT)),
           ("regressor_weight", float, setting(1.0, *POSITIVE)),
           ("eval_episodes", int, setting(200, *POSITIVE_INT))),
    module=__name__)


# -- evaluation -------------------------------------------------------------------------------
def _rate(valid: np.ndarray) -> float:
    return float(np.mean(valid)) if valid.size else float("nan")


def branch_shares(environment, contexts: np.ndarray, frames: np.ndarray) -> list:
    """The share of ``frames`` nearest each of their contexts' true next frames (the two ways
    at the fork: a world model that keeps both is near ``[0.5, 0.5]``)."""
    answers = environment.true_next_frames(contexts)
    gap = np.square(np.asarray(frames)[:, None].reshape(len(frames), 1, -1)
                    - answers.reshape(len(frames), answers.shape[1], -1)).sum(-1)
    nearest = np.argmin(gap, axis=1)
    return [float(np.mean(nearest == k)) for k in range(answers.shape[1])]


def make_evaluate(config: Config, data, energy: Callable, regressor_fn: Callable) -> Callable:
    """The world model's metrics, ``evaluate(params, rng_key, *, quick=False, figure=None)``
    over the side-by-side params, on the first ``eval_episodes`` of the test split's episodes
    (``data.environment``).

    EBT's prediction for a context is the best of ``num_starts`` descents of ``num_steps``
    learned steps from ``prediction_start_std N(0, I)`` (clamped to ``clip_range``), the
    lowest final energy kept; the regressor's is its output. A frame is valid by the
    environment's check (``valid_frames``: one ball, on one of the true paths given the
    context it was predicted from).

    Keys: ``valid_frame_rate`` and ``valid_frame_rate_mse`` (the share of valid predictions
    at the fork contexts, one per test episode), ``fork_branch_shares`` (EBT's picks there,
    nearest each way), ``step_size``; unless ``quick``: ``rollout_valid_rate`` and
    ``rollout_valid_rate_mse`` (episodes whose autoregressive rollout of ``rollout_steps``
    frames from the first context is valid at every frame), ``valid_frame_rate_all`` and
    ``valid_frame_rate_all_mse`` (over every test context, the fork's and the others), and
    the energy as a confidence (failure: an invalid frame): ``failure_rate_single`` and
    ``failure_auroc`` over single descents (every start's result at every test context, a
    prediction of its own, scored by its final energy), ``failure_count_best_of_n`` and
    ``failure_auroc_best_of_n`` over the picks (every test context and every rollout frame,
    each judged on the frames it was predicted from). An AUROC is that of the energy for a
    failure against a success (1: every failure has a higher energy than every success;
    0.5: chance; NaN without a failure or without a success).
    """
    settings, environment = config.objective, data.environment
    episodes = environment.test_episodes[:settings.eval_episodes]
    contexts, _, steps = environment.context_pairs(episodes)
    fork = environment.fork_mask(steps)
    first = episodes[:, :environment.context_length]
    frame_shape = tuple(environment.frame_shape)
    predict = jax.jit(functools.partial(
        best_of_n_candidates, energy, num_starts=settings.num_starts,
        num_steps=settings.num_steps, start_std=settings.prediction_start_std,
        y_shape=frame_shape, clip_range=settings.clip_range))
    regress = jax.jit(jax.vmap(regressor_fn, (None, 0)))

    def chunked(fn, inputs, *args):
        """``fn(inputs_chunk, *args)`` over chunks of ``len(first)`` inputs (the last padded),
        concatenated: one compiled program for every set of contexts."""
        size, num = len(first), len(inputs)
        pad = -num % size
        inputs = np.concatenate([inputs, np.repeat(inputs[:1], pad, axis=0)])
        parts = [fn(inputs[i:i + size], *args, i) for i in range(0, len(inputs), size)]
        return [np.concatenate(part)[:num] for part in zip(*parts)]

    def ebt_predictions(params, inputs, rng_key):
        """``[picks, their energies, every start's result, its energy]`` (NumPy)."""
        def one(chunk, i):
            return predict(params["ebt"], chunk, jax.random.fold_in(rng_key, i))
        return chunked(one, inputs)

    def ebt_frames(params, inputs, rng_key):
        return ebt_predictions(params, inputs, rng_key)[:2]

    def mse_frames(params, inputs):
        def one(chunk, i):
            return (np.asarray(regress(params["regressor"], chunk)).reshape(-1, *frame_shape),)
        return chunked(one, inputs)[0]

    def rollout(next_frames, start):
        """``(frames [E, rollout_steps, *frame_shape], energies [E, rollout_steps])``: frames
        predicted one after the other, each from the last ``context_length`` frames seen
        (the start's, then the predictions), with the energies ``next_frames`` gives."""
        seen, energies = np.asarray(start), []
        for t in range(environment.rollout_steps):
            frames, energy = next_frames(seen[:, -environment.context_length:], t)
            seen = np.concatenate([seen, frames[:, None]], axis=1)
            energies.append(energy)
        return seen[:, start.shape[1]:], np.stack(energies, axis=1)

    def evaluate(params, rng_key, *, quick: bool = False, figure: Optional[str] = None) -> dict:
        k_fork, k_all, k_roll = jax.random.split(rng_key, 3)
        valid = environment.valid_frames
        fork_contexts = contexts[fork]
        ebt_fork = ebt_frames(params, fork_contexts, k_fork)[0]
        mse_fork = mse_frames(params, fork_contexts)
        out = {"valid_frame_rate": _rate(valid(fork_contexts, ebt_fork)),
               "valid_frame_rate_mse": _rate(valid(fork_contexts, mse_fork)),
               "fork_branch_shares": branch_shares(environment, fork_contexts, ebt_fork),
               "step_size": float(ebt_step_size(params["ebt"]))}
        if quick:
            return out
        roll_keys = jax.random.split(k_roll, environment.rollout_steps)
        ebt_roll, roll_energies = rollout(
            lambda seen, t: ebt_frames(params, seen, roll_keys[t]), first)
        mse_roll, _ = rollout(lambda seen, t: (mse_frames(params, seen), np.zeros(len(seen))),
                              first)
        roll_valid = environment.rollout_validity(first, ebt_roll)
        out["rollout_valid_rate"] = _rate(roll_valid.all(axis=1))
        out["rollout_valid_rate_mse"] = _rate(
            environment.rollout_validity(first, mse_roll).all(axis=1))
        frames, energies, candidates, candidate_energies = ebt_predictions(params, contexts,
                                                                           k_all)
        all_valid = valid(contexts, frames)
        out["valid_frame_rate_all"] = _rate(all_valid)
        out["valid_frame_rate_all_mse"] = _rate(valid(contexts, mse_frames(params, contexts)))
        num_starts = candidates.shape[1]
        single_valid = valid(np.repeat(contexts, num_starts, axis=0),
                             candidates.reshape(-1, *frame_shape))
        out["failure_rate_single"] = float(1.0 - np.mean(single_valid))
        out["failure_auroc"] = failure_auroc(candidate_energies.ravel(), ~single_valid)
        picked_valid = np.concatenate([all_valid, roll_valid.ravel()])
        out["failure_count_best_of_n"] = int(np.sum(~picked_valid))
        out["failure_auroc_best_of_n"] = failure_auroc(
            np.concatenate([energies, roll_energies.ravel()]), ~picked_valid)
        if figure is not None:
            draw_world_model(figure, config, fork_contexts, ebt_fork, mse_fork, first,
                             ebt_roll, mse_roll)
        return out

    return evaluate


def draw_world_model(path: str, config: Config, fork_contexts, ebt_fork, mse_fork, first,
                     ebt_roll, mse_roll) -> None:
    """The picture: at the fork, rows of ``[context frames..., EBT, MSE]`` (several examples
    a row), and rollouts, one episode a row (its first context, then the predicted frames),
    EBT's and the regressor's."""
    num = FIGURE_EXAMPLES
    columns = first.shape[1] + ebt_roll.shape[1]
    fork_rows = np.concatenate([fork_contexts[:num], ebt_fork[:num, None],
                                mse_fork[:num, None]], axis=1)      # [num, C + 2, H, W]
    per_row = max(1, columns // fork_rows.shape[1])
    fork_frames = fork_rows.reshape(-1, *fork_rows.shape[2:])
    fork_frames = np.concatenate([fork_frames, np.full(
        (-len(fork_frames) % columns, *fork_frames.shape[1:]), np.nan)])
    strips = {name: np.concatenate([first[:num], roll[:num]], axis=1).reshape(
        -1, *first.shape[2:]) for name, roll in (("EBT", ebt_roll), ("MSE", mse_roll))}
    shape = first.shape[2:]
    plots.save_image_grids(path, {
        f"at the fork: {first.shape[1]} context frames, EBT, MSE ({per_row} a row)":
            fork_frames.reshape(len(fork_frames), -1),
        f"{config.name}: EBT rollouts": strips["EBT"].reshape(len(strips["EBT"]), -1),
        "MSE rollouts": strips["MSE"].reshape(len(strips["MSE"]), -1)},
        shape, columns=columns, value_range=FIGURE_RANGE)


# -- build --------------------------------------------------------------------------------------
def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    """The MLP energy over ``[context, frame]`` (EBT params) and an MLP regressor from the
    context to the frame with as many parameters (within 5%), trained side by side; the
    world model's metrics. ``energy_fn(params, x, y)`` reads the side-by-side params."""
    del num_devices
    if getattr(data.environment, "valid_frames", None) is None:
        raise ConfigError(f"objective=world_model with data.dataset={config.data.dataset!r}: "
                          "expected a dataset cut from an environment's episodes that checks "
                          "predicted frames (such as 'ball_fork')")
    settings = config.objective
    in_x = int(np.prod(data.x_train.shape[1:]))
    in_y = int(np.prod(data.y_train.shape[1:]))
    net_params, energy_fn = concat_energy(config, in_x, in_y, rngs)
    reg_params, regressor_fn, _ = regressor_network(config, in_x, in_y,
                                                    param_count(net_params), rngs)
    loss = side_by_side_loss(ebt(energy_fn, **loss_options(settings)), regressor_fn,
                             regressor_weight=settings.regressor_weight)
    energy = ebt_energy(energy_fn)
    params = side_by_side_params(ebt_params(net_params, settings.step_size), reg_params)
    return Pieces(params, ebt_half(energy), None, loss, None, None, None, "",
                  make_evaluate(config, data, energy, regressor_fn))


def check(config: Config) -> None:
    """A regression dataset (one cut from an environment is checked at build), starts that
    are frames, and the EBT loss's own cross-field checks."""
    settings, dataset = config.objective, config.data.dataset
    if dataset not in REGRESSION_NAMES:
        raise ConfigError(f"objective=world_model with data.dataset={dataset!r}: expected a "
                          f"dataset of (context, next frame) pairs, one of "
                          f"{list(REGRESSION_NAMES)} cut from an environment's episodes")
    if settings.y0 == "input":
        raise ConfigError("objective.y0='input': expected 'noise' or 'target' (a world "
                          "model's input, the context, is not a frame to start from)")
    check_loss_settings(config)


PRESETS = {
    # The ball-fork next-frame task: an MLP energy 432-128-128-1 over (2 context frames, next
    # frame) trained as EBT from perturbed targets (y0="target", noise up to 1) with a
    # contrastive term against 8 other targets of the batch and 2 searches from noise
    # (noise_negatives), descents clamped to the frames' [0, 1], and energy_l2 0.03 (the
    # data's energy pinned near 0 in every context, so that energies compare across
    # contexts), beside an MLP regressor 288-128-128-144 of the same size. Without the clamp
    # no descent from noise reached a frame; calibration_weight and num_perturbed negatives
    # broke the two modes; without noise_negatives best-of-16 picked "both ways at once" in up
    # to 100 of 4,000 predictions. Measured (benchmarks/world_models.py, seeds 0-2, 3,000
    # steps, 155-215 s of training on 2 shared cores): EBT best-of-16 valid at the fork
    # 0.995-1.0 (MSE 0.0), 10-step rollouts valid 0.985-1.0 (MSE 0.0), single-descent failure
    # AUROC 0.97-0.99, failed picks 8 / 0 / 0 of 4,000.
    "world_model_ball_fork": Config(
        name="world_model_ball_fork", data=DataConfig(dataset="ball_fork", batch_size=128),
        model=ModelConfig(kind="mlp", hidden=(128, 128)),
        objective=WorldModelConfig(),
        run=RunConfig(num_steps=3000, eval_every=1000, checkpoint_every=1000)),
}

OBJECTIVE = Objective(
    kind="world_model", config=WorldModelConfig, build=build, needs_labels=False,
    classifier=False, unsupervised=False, models=("mlp",),
    models_note="the world model's energy is an MLP over the concatenated context and frame",
    presets=PRESETS, check=check, density=False, regression=True,
    summary=f"energy-based world model (EBT on E(context, next frame), best-of-N by energy) "
            f"beside an MSE predictor of its size ({REGRESSOR_MSE})")
