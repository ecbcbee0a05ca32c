"""The application layer: from a config to a trained, evaluated run directory.

The library below (energies, samplers, losses, train, ...) never imports this package; the
``ebm-jax`` command imports only this package.

- :mod:`~ebm_jax.experiments.config`: the nested config schema and its checks;
- :mod:`~ebm_jax.experiments.objectives`: one module per learning method (its
  hyperparameters, ``build``, capability flags and presets) and the registry;
- :mod:`~ebm_jax.experiments.presets`: the named configs and :func:`make_config`;
- :mod:`~ebm_jax.experiments.migration`: configs written by ebm_jax 0.1;
- :mod:`~ebm_jax.experiments.data`, :mod:`~ebm_jax.experiments.networks`,
  :mod:`~ebm_jax.experiments.sampling`, :mod:`~ebm_jax.experiments.build`: the pieces;
- :mod:`~ebm_jax.experiments.run`: training into a run directory;
- :mod:`~ebm_jax.experiments.processes`: a run as one process of many (joining, and checking
  that every process was started for the same run); :mod:`~ebm_jax.experiments.launch`: N
  processes of one run on this machine, ``ebm-jax launch``;
- :mod:`~ebm_jax.experiments.evaluation`: the summary and ``ebm-jax evaluate``;
- :mod:`~ebm_jax.experiments.doctor`: a short pilot run and its diagnoses, ``ebm-jax doctor``.

Example::

    >>> from ebm_jax.experiments import build, make_config
    >>> exp = build(make_config("cd_2d_8gaussians", ["model.hidden=16"]))
    >>> type(exp.loss).__name__
    'LossTransform'
"""
from ebm_jax.experiments.build import Experiment, build, find_buffer, initial_state, make_optimizer
from ebm_jax.experiments.config import (Config, ConfigError, DataConfig, GuardConfig, ModelConfig,
                                        ObjectiveConfig, OptimizerConfig, RunConfig,
                                        config_differences, config_from_dict)
from ebm_jax.experiments.data import Data, load_data
from ebm_jax.experiments.doctor import PilotReport, pilot
from ebm_jax.experiments.evaluation import evaluate, evaluate_run, load_run
from ebm_jax.experiments.objectives import Objective, Pieces, get_objective, objective_kinds
from ebm_jax.experiments.presets import (PRESETS, load_config_file, make_config,
                                         presets_by_objective)
from ebm_jax.experiments.run import experiment_train_step, train

__all__ = ["Config", "ConfigError", "Data", "DataConfig", "Experiment", "GuardConfig",
           "ModelConfig", "Objective", "ObjectiveConfig", "OptimizerConfig", "PRESETS", "Pieces",
           "PilotReport", "RunConfig", "build", "config_differences", "config_from_dict",
           "evaluate", "evaluate_run", "experiment_train_step", "find_buffer", "get_objective",
           "initial_state", "load_config_file", "load_data", "load_run", "make_config",
           "make_optimizer", "objective_kinds", "pilot", "presets_by_objective", "train"]
