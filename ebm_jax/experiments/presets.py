"""The named starting points of runs, collected from the objective modules, and
:func:`make_config`: a preset (or a JSON file) plus ``key=value`` overrides, validated.

Example::

    >>> config = make_config("jem_digits", ["run.num_steps=100", "run.seed=3"])
    >>> config.run.num_steps, config.objective.kind
    (100, 'jem')
    >>> sorted(presets_by_objective())[:2]
    ['cbm', 'cd']
"""
from __future__ import annotations

import json
from typing import Iterable

from ebm_jax.experiments.config import Config, ConfigError, apply_overrides, config_from_dict
from ebm_jax.experiments.migration import saved_run_values
from ebm_jax.experiments.objectives import get_objective, objective_kinds


def _collect() -> dict[str, Config]:
    presets: dict[str, Config] = {}
    for kind in objective_kinds():
        for name, config in get_objective(kind).presets.items():
            if name in presets:
                raise TypeError(f"preset {name!r} is defined by two objectives")
            if config.name != name:
                raise TypeError(f"preset {name!r} has name={config.name!r}")
            if config.objective.kind != kind:
                raise TypeError(f"preset {name!r} of objective {kind!r} holds objective "
                                f"{config.objective.kind!r}")
            presets[name] = config
    return dict(sorted(presets.items()))


PRESETS: dict[str, Config] = _collect()


def presets_by_objective() -> dict[str, list[str]]:
    """``{objective kind: [preset names]}`` (every registered kind, sorted)."""
    return {kind: sorted(get_objective(kind).presets) for kind in objective_kinds()}


def load_config_file(path: str, saved_run: bool = False) -> Config:
    """A config from a JSON file: a run's ``config.json`` (nested, or the flat one of
    ebm_jax 0.1), or a hand-written subset (missing fields take their defaults), validated.
    With ``saved_run``, the file is a run directory's: settings added since it was written
    take the values it ran under (:func:`~ebm_jax.experiments.migration.saved_run_values`).

    Raises:
      ConfigError: a missing or unreadable file, invalid JSON (with line and column), not an
        object, unknown keys, or a bad field (naming it, its value and what is expected).
    """
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist: expected a preset name "
                          f"({', '.join(list(PRESETS)[:3])}, ...) or a JSON file") from None
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
    return config_from_dict(saved_run_values(values) if saved_run else values)


def make_config(preset: str = "jem_digits", overrides: Iterable[str] = ()) -> Config:
    """A validated config from a preset name (or a JSON file, see :func:`load_config_file`)
    and ``key=value`` overrides with dotted keys (``objective.sampler.step_size=0.01``;
    ``objective=nce`` switches to that objective's defaults)."""
    if preset.endswith(".json") or "/" in preset:
        base = load_config_file(preset)
    elif preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)} or a "
                          "JSON file")
    else:
        base = PRESETS[preset]
    return apply_overrides(base, overrides)


__all__ = ["PRESETS", "load_config_file", "make_config", "presets_by_objective"]
