"""From a :class:`~ebm_jax.experiments.config.Config` to the pure pieces of a run.

:func:`build` loads the data, lets the config's objective build its network, energy, loss,
sampler and generator (:mod:`ebm_jax.experiments.objectives`), and adds the optimizer.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> exp = build(make_config("cd_2d_8gaussians", ["model.hidden=16"]))
    >>> exp.logits_fn is None, exp.data.x_train.shape
    (True, (50000, 2))
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
import optax
from flax import nnx

from ebm_jax.experiments.config import Config, ConfigError, OptimizerConfig
from ebm_jax.experiments.data import Data, example_batch, load_data
from ebm_jax.experiments.objectives import objective_of
from ebm_jax.losses import LossTransform
from ebm_jax.samplers import ReplayBuffer, Sampler
from ebm_jax.train import TrainState, init_train_state, with_lr_scale
from ebm_jax.train.state import copy_arrays


class Experiment(NamedTuple):
    """The pure pieces of a run, built from its config (see
    :class:`~ebm_jax.experiments.objectives.Pieces` for the objective's part)."""

    config: Config
    data: Data
    params: Any
    energy_fn: Callable
    logits_fn: Optional[Callable]
    sampler: Optional[Sampler]
    make_sampler: Optional[Callable]
    loss: LossTransform
    optimizer: optax.GradientTransformation
    generate: Optional[Callable]
    generator_name: str
    evaluate: Optional[Callable] = None  # the objective's own metrics (Pieces.evaluate)
    density: bool = True  # energy_fn(params, x) models the data (Objective.density)


def make_optimizer(settings: OptimizerConfig, num_steps: int,
                   wrap: Optional[Callable] = None) -> optax.GradientTransformation:
    """Adam/AdamW/SGD with optional warm-up, cosine decay over ``num_steps`` and global-norm
    gradient clipping, inside ``wrap(optimizer)`` when given (an objective's,
    ``Pieces.wrap_optimizer``), behind a learning-rate multiplier that a rollback can
    lower."""
    lr = settings.learning_rate
    if settings.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, settings.learning_rate,
                                                settings.warmup_steps,
                                                max(num_steps, settings.warmup_steps + 1),
                                                end_value=0.01 * settings.learning_rate)
    elif settings.warmup_steps:
        lr = optax.linear_schedule(0.0, settings.learning_rate, settings.warmup_steps)
    if settings.kind == "adam":
        opt = optax.adam(lr)
    elif settings.kind == "adamw":
        opt = optax.adamw(lr, weight_decay=settings.weight_decay)
    else:
        opt = optax.sgd(lr, momentum=0.9)
    if settings.clip_grad_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(settings.clip_grad_norm), opt)
    return with_lr_scale(wrap(opt) if wrap is not None else opt)


def build(config: Config, data: Optional[Data] = None, *, num_devices: int = 1) -> Experiment:
    """Assemble data, network, energy, sampler, loss and optimizer from ``config``.

    ``num_devices`` only sets the replay buffer's blocks when the chain start's
    ``num_shards`` is none (one block per device); nothing else depends on it.
    """
    objective = objective_of(config)
    data = data if data is not None else load_data(config)
    if objective.needs_labels and data.num_classes is None:
        raise ConfigError(f"objective={objective.kind!r} needs labels: data.dataset="
                          f"{config.data.dataset!r} has none")
    pieces = objective.build(config, data, nnx.Rngs(config.run.seed), num_devices=num_devices)
    return Experiment(config, data, pieces.params, pieces.energy_fn, pieces.logits_fn,
                      pieces.sampler, pieces.make_sampler, pieces.loss,
                      make_optimizer(config.optimizer, config.run.num_steps,
                                     pieces.wrap_optimizer), pieces.generate,
                      pieces.generator_name, pieces.evaluate, objective.density)


def initial_state(exp: Experiment) -> TrainState:
    """The state at step 0 for ``exp`` (also the template that checkpoints restore into)."""
    # A copy of the params: a donated train step frees the state's arrays, and exp.params must
    # stay usable (another state, a restore template).
    params = copy_arrays(exp.params)
    return init_train_state(jax.random.PRNGKey(exp.config.run.seed), params, exp.optimizer,
                            exp.loss, example_batch(exp.config, exp.data))


def find_buffer(loss_state: Any) -> Optional[ReplayBuffer]:
    """The first replay buffer inside a loss state, or None (losses without one)."""
    found = [node for node in jax.tree.leaves(loss_state,
                                               is_leaf=lambda n: isinstance(n, ReplayBuffer))
             if isinstance(node, ReplayBuffer)]
    return found[0] if found else None


def num_train_examples(exp: Experiment) -> int:
    return exp.data.num_train or int(np.shape(exp.data.x_train)[0])


__all__ = ["Experiment", "build", "find_buffer", "initial_state", "make_optimizer",
           "num_train_examples"]
