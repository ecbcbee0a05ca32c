"""EBT-Policy (Davies et al. 2025): an energy ``E(observation, action chunk)`` trained as an
energy-based transformer (:func:`ebm_jax.losses.ebt`), acting by a few descent steps from
noise with best-of-N, beside a behavioural-cloning MLP of the same size trained in the same
run on the same batches (:mod:`._side_by_side`). On the reach task
(:mod:`ebm_jax.environments.reach`, ``data.dataset="reach"``) the expert passes the obstacle
above or below with equal probability: the regressor learns the mean of the two ways and
drives into the obstacle (Florence et al. 2021's case for implicit policies), the energy
keeps both ways as basins and picks one.

**The loss** is EBT's with its contrastive term, not implicit BC's InfoNCE alone: the
prediction is the descent itself (``num_steps`` learned-step steps from a start), trained
end to end, so that the policy acts in as many steps as it was trained with (two by
default: EBT-Policy's "converges in about two steps"), where an energy trained by InfoNCE
alone needs a sampler of its own at test time (Florence et al. use 100 Langevin steps or
iterated derivative-free search). The descent starts from the demonstrated chunk plus noise
of a random size up to ``start_noise`` (``y0="target"``): the start carries the way, and
each way becomes a basin; the InfoNCE term (``contrastive_weight``, ``batch_negatives``:
other examples' chunks as counter-examples, implicit BC's loss) shapes the energy between the
basins; the calibration term (``calibration_weight``, ``num_perturbed``) makes the energy of
a chunk read as its squared distance from a demonstrated one, so that the energy of the
chosen chunk is a confidence.

**Acting**: every ``execute`` moves, :func:`~._side_by_side.best_of_n_predictions`:
``num_starts`` descents of ``inference_steps`` steps from ``prediction_start_std N(0, I)``,
the lowest final energy kept (its energy is the decision's confidence).

**Evaluation** (:func:`make_evaluate`): ``eval_episodes`` simulated episodes from the
nominal starts, from shifted starts (closer to the obstacle, past where the expert turns) and
toward shifted goals (beyond the demonstrated ones), seeded by ``run.seed``.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> config = make_config("ebt_policy_reach")
    >>> config.data.dataset, config.objective.num_steps, config.objective.inference_steps
    ('reach', 2, 2)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import jax
import numpy as np

from ebm_jax import plots
from ebm_jax.environments.reach import ReachTask, sample_starts, simulate
from ebm_jax.experiments.config import (POSITIVE_INT, Config, ConfigError, DataConfig,
                                        ModelConfig, RunConfig, one_of, setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives import ebt as ebt_objective
from ebm_jax.experiments.objectives._side_by_side import (best_of_n_predictions, ebt_half,
                                                          failure_auroc, param_count,
                                                          regressor_network, side_by_side_loss,
                                                          side_by_side_params)
from ebm_jax.losses.ebt import STARTS, ebt, ebt_energy, ebt_params, ebt_step_size

ENVIRONMENTS = {"reach": ReachTask()}   # the datasets with a simulator, and their task
STEP_COUNTS = (1, 2, 4, 8)              # success_by_steps: inference steps compared
EPISODES_KEY = 50_000                   # the episodes' starts: seeds (50_000, run.seed, shift)
CONDITIONS = {"": "none", "_shifted": "start", "_goal_shifted": "goal"}   # key suffix: shift


@dataclass(frozen=True)
class EBTPolicyConfig(ebt_objective.EBTConfig):
    """The EBT objective's settings (:class:`~.ebt.EBTConfig`: the loss factory's, the
    learned step size's start ``step_size``, the acting starts' std ``prediction_start_std``;
    ``task`` is ``"regress"``, ``noise_std`` unused), and how the policy acts and is scored:
    ``inference_steps`` descent steps from ``num_starts`` starts (best-of-N) every
    ``execute`` moves, over ``eval_episodes`` episodes per start distribution."""

    kind = "ebt_policy"
    task: str = setting("regress", *one_of("regress"))
    num_steps: int = setting(2, *POSITIVE_INT)
    y0: str = setting("target", *one_of(*STARTS))
    inference_steps: int = setting(2, *POSITIVE_INT)
    num_starts: int = setting(16, *POSITIVE_INT)
    execute: int = setting(4, *POSITIVE_INT)
    eval_episodes: int = setting(1000, *POSITIVE_INT)


def episode_energy(rollout) -> np.ndarray:
    """``[B]``: the highest energy among the chunks an episode executed (its least confident
    decision; the policy's ``aux`` is the chosen chunk's energy ``[B, R]``).

    Example::

      >>> from types import SimpleNamespace
      >>> out = SimpleNamespace(aux=np.array([[0.1, 0.9, 5.0]]),
      ...                       decided=np.array([[True, True, False]]))
      >>> episode_energy(out).tolist()                    # the third call ran no episode
      [0.9]
    """
    decided = np.asarray(rollout.decided)
    return np.where(decided, np.asarray(rollout.aux), -np.inf).max(axis=1)


def make_evaluate(config: Config, energy: Callable, regressor_fn: Callable,
                  y_shape: tuple) -> Callable:
    """The policy's metrics, ``evaluate(params, rng_key, *, quick=False, figure=None)``.

    The EBT policy acts by :func:`~._side_by_side.best_of_n_predictions` on ``energy`` (over
    EBT's params) with ``inference_steps`` steps; the behavioural-cloning policy is
    ``regressor_fn``; both through :func:`~ebm_jax.environments.reach.simulate` from the same
    ``eval_episodes`` starts of each distribution.

    Keys: ``success_rate`` and ``success_rate_bc`` (nominal starts), ``collision_rate`` and
    ``collision_rate_bc``, ``step_size``; unless ``quick``: ``success_by_steps`` (``{"1":
    ..., "2": ..., "4": ..., "8": ...}``, nominal starts), ``success_rate_shifted`` and
    ``success_rate_bc_shifted`` (shifted starts), ``success_rate_goal_shifted`` and
    ``success_rate_bc_goal_shifted`` (shifted goals), ``failure_auroc`` (the AUROC of
    :func:`episode_energy` for failed against successful episodes, over the EBT policy's
    episodes of all three distributions at ``inference_steps``; NaN without failures),
    ``failures`` (how many of them failed) and ``failure_auroc_goal_shifted`` (within the
    distribution where failures are most common).
    """
    settings, task = config.objective, ENVIRONMENTS[config.data.dataset]
    episodes = {shift: sample_starts([EPISODES_KEY, config.run.seed, index],
                                     settings.eval_episodes, task, shift=shift)
                for index, shift in enumerate(CONDITIONS.values())}

    def ebt_policy(params, num_steps):
        def policy(rng_key, observations):
            return best_of_n_predictions(
                energy, params["ebt"], observations, rng_key, num_starts=settings.num_starts,
                num_steps=num_steps, start_std=settings.prediction_start_std, y_shape=y_shape,
                clip_range=settings.clip_range)
        return policy

    @functools.partial(jax.jit, static_argnums=1)
    def run_ebt(params, num_steps, starts, goals, rng_key):
        return simulate(ebt_policy(params, num_steps), starts, goals, rng_key, task=task,
                        execute=settings.execute)

    @jax.jit
    def run_bc(params, starts, goals):
        def policy(rng_key, observations):
            return jax.vmap(regressor_fn, (None, 0))(params["regressor"], observations)
        return simulate(policy, starts, goals, jax.random.key(0), task=task,
                        execute=settings.execute)

    def rate(values) -> float:
        return float(np.mean(np.asarray(values)))

    def evaluate(params, rng_key, *, quick: bool = False, figure: Optional[str] = None) -> dict:
        keys = dict(zip(["none", "start", "goal", *STEP_COUNTS],
                        jax.random.split(rng_key, 3 + len(STEP_COUNTS))))
        k = settings.inference_steps
        ebt_runs = {"none": run_ebt(params, k, *episodes["none"], keys["none"])}
        bc_runs = {"none": run_bc(params, *episodes["none"])}
        out = {"success_rate": rate(ebt_runs["none"].success),
               "success_rate_bc": rate(bc_runs["none"].success),
               "collision_rate": rate(ebt_runs["none"].collided),
               "collision_rate_bc": rate(bc_runs["none"].collided),
               "step_size": float(ebt_step_size(params["ebt"]))}
        if quick:
            return out
        by_steps = {}
        for steps in STEP_COUNTS:
            run = ebt_runs["none"] if steps == k else run_ebt(params, steps, *episodes["none"],
                                                              keys[steps])
            by_steps[str(steps)] = rate(run.success)
        out["success_by_steps"] = by_steps
        for suffix, shift in CONDITIONS.items():
            if shift == "none":
                continue
            ebt_runs[shift] = run_ebt(params, k, *episodes[shift], keys[shift])
            bc_runs[shift] = run_bc(params, *episodes[shift])
            out[f"success_rate{suffix}"] = rate(ebt_runs[shift].success)
            out[f"success_rate_bc{suffix}"] = rate(bc_runs[shift].success)
        energies = np.concatenate([episode_energy(run) for run in ebt_runs.values()])
        failed = ~np.concatenate([np.asarray(run.success) for run in ebt_runs.values()])
        out.update(failure_auroc=failure_auroc(energies, failed), failures=int(failed.sum()),
                   failure_auroc_goal_shifted=failure_auroc(
                       episode_energy(ebt_runs["goal"]), ~np.asarray(ebt_runs["goal"].success)))
        if figure is not None:
            draw_rollouts(figure, config, task, ebt_runs, bc_runs)
        return out

    return evaluate


def draw_rollouts(path: str, config: Config, task: ReachTask, ebt_runs: dict,
                  bc_runs: dict) -> None:
    """The method's picture: the obstacle, the start boxes and the goals' span, and 30 paths
    of the EBT policy and of the behavioural-cloning MLP from the nominal and the shifted
    starts (successes blue, failures red)."""
    k = config.objective.inference_steps
    panels = {}
    for shift, label in (("none", "nominal starts"), ("start", "shifted starts")):
        for name, runs in ((f"EBT-Policy, {k} steps", ebt_runs), ("BC MLP", bc_runs)):
            run = runs[shift]
            panels[f"{name}: {label}"] = (np.asarray(run.positions[:30]),
                                          np.asarray(run.success[:30]))
    goal = (task.goal_x - task.goal_radius, task.goal_x + task.goal_radius)
    low, high = task.goal_y_range
    plots.save_trajectories(
        path, panels, discs=[((0.0, 0.0), task.obstacle_radius)],
        boxes=[("start", task.start_x_range, task.start_y_range),
               ("shifted", task.shifted_x_range, task.start_y_range),
               ("goals", goal, (low - task.goal_radius, high + task.goal_radius))])


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    """The MLP energy over ``[observation, chunk]`` and a behavioural-cloning MLP of the same
    size (:func:`~._side_by_side.regressor_network`), trained side by side
    (:func:`~._side_by_side.side_by_side_loss`); ``energy_fn(params, x, y)`` reads the EBT
    half; the policy's metrics. No sampler of ``x``."""
    del num_devices
    settings = config.objective
    in_x, in_y = int(np.prod(data.x_train.shape[1:])), int(np.prod(data.y_train.shape[1:]))
    net_params, energy_fn = ebt_objective.concat_energy(config, in_x, in_y, rngs)
    bc_params, regressor_fn, _ = regressor_network(config, in_x, in_y, param_count(net_params),
                                                   rngs)
    loss = side_by_side_loss(ebt(energy_fn, **ebt_objective.loss_options(settings)),
                             regressor_fn)
    energy = ebt_energy(energy_fn)
    params = side_by_side_params(ebt_params(net_params, settings.step_size), bc_params)
    return Pieces(params, ebt_half(energy), None, loss, None, None, None, "",
                  make_evaluate(config, energy, regressor_fn, tuple(data.y_train.shape[1:])))


def check(config: Config) -> None:
    """A dataset with a simulator, ``execute`` within a chunk, and the EBT objective's checks
    (the loss factory's own, the replay buffer and the negatives against the batch)."""
    settings, dataset = config.objective, config.data.dataset
    if dataset not in ENVIRONMENTS:
        raise ConfigError(f"data.dataset={dataset!r} with objective='ebt_policy': expected one "
                          f"of {list(ENVIRONMENTS)} (a task with a simulator that scores the "
                          "policy)")
    chunk = ENVIRONMENTS[dataset].chunk
    if settings.execute > chunk:
        raise ConfigError(f"objective.execute={settings.execute}: expected at most the chunk's "
                          f"{chunk} moves of data.dataset={dataset!r}")
    ebt_objective.check(config)


PRESETS = {
    # The reach task's 1,000 demonstrated episodes (about 23,000 pairs of observation and
    # 4-move chunk): an MLP energy 12-128-128-1 and a BC MLP 4-w-w-8 of the same size, trained
    # side by side for 3,000 steps; acting by best-of-16 descents of 2 steps from N(0, 1).
    "ebt_policy_reach": Config(
        name="ebt_policy_reach", data=DataConfig(dataset="reach", batch_size=128),
        model=ModelConfig(kind="mlp", hidden=(128, 128)),
        objective=EBTPolicyConfig(num_steps=2, y0="target", start_noise=1.0,
                                  contrastive_weight=0.1, batch_negatives=8,
                                  calibration_weight=0.1, num_perturbed=4),
        run=RunConfig(num_steps=3000, eval_every=1000, checkpoint_every=1000)),
}

OBJECTIVE = Objective(
    kind="ebt_policy", config=EBTPolicyConfig, build=build, needs_labels=False,
    classifier=False, unsupervised=False, models=("mlp",),
    models_note="the policy's energy is an MLP over the concatenated observation and chunk",
    presets=PRESETS, check=check, density=False, regression=True,
    summary="EBT-Policy: act by best-of-N descent on E(observation, action chunk), beside BC")
