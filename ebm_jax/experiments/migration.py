"""Configs written by ebm_jax 0.1: one flat object of 66 fields. :func:`migrate_flat` maps
them onto the nested schema, so old run directories resume and evaluate. And settings added
since runs were saved: :func:`saved_run_values` gives a run directory's ``config.json`` the
values under which it ran (:data:`SAVED_RUN_DEFAULTS`).

One table, :data:`FLAT_FIELDS`, says where each old field went. Paths under ``objective.``
exist only in some objectives: an old field whose path the run's objective lacks was inert
in that run and is dropped (``buffer_size`` in an NCE run), and so are the fields read
nowhere (``per_class_buffer``) or by the run's objective (its ``flat_inert``).

Example::

    >>> migrate_flat({"objective": "cd", "sgld_step_size": 0.01})
    {'objective': {'kind': 'cd', 'sampler': {'step_size': 0.01}}}
"""
from __future__ import annotations

from typing import Any

from ebm_jax.experiments.config import field_types

# old flat field -> new dotted path (None: read nowhere, dropped)
FLAT_FIELDS = {
    "name": "name",
    "dataset": "data.dataset", "label_fraction": "data.label_fraction",
    "data_dir": "data.data_dir", "dequantize": "data.dequantize", "flip": "data.flip",
    "batch_size": "data.batch_size",
    "model": "model.kind", "hidden": "model.hidden", "channels": "model.channels",
    "conv_impl": "model.conv_impl", "activation": "model.activation",
    "spectral_norm": "model.spectral_norm", "depth": "model.depth",
    "widen_factor": "model.widen_factor", "resnet_channels": "model.resnet_channels",
    "resnet_blocks": "model.resnet_blocks", "dtype": "model.dtype",
    "objective": "objective.kind",
    "sgld_steps": "objective.num_steps", "sgld_step_size": "objective.sampler.step_size",
    "sgld_noise": "objective.sampler.noise_scale",
    "sgld_grad_clip": "objective.sampler.grad_clip", "sgld_clamp": "objective.sampler.clamp",
    "buffer_size": "objective.chain_start.capacity",
    "reinit_prob": "objective.chain_start.reinit_prob",
    "reinit_from_data": "objective.chain_start.reinit_from_data",
    "buffer_shards": "objective.chain_start.num_shards",
    "per_class_buffer": None,
    "energy_l2": "objective.energy_l2", "generative_weight": "objective.generative_weight",
    "cd_objective": "objective.objective", "kl_weight": "objective.kl_weight",
    "entropy_weight": "objective.entropy_weight",
    "nce_noise": "objective.noise", "nce_noise_scale": "objective.noise_scale",
    "nce_ratio": "objective.noise_ratio", "dsm_sigma": "objective.sigma",
    "rl_schedule": "objective.schedule", "rl_num_levels": "objective.num_levels",
    "rl_langevin_steps": "objective.num_langevin_steps",
    "rl_step_size_scale": "objective.step_size_scale", "rl_chain_init": "objective.chain_init",
    "rl_metropolis": "objective.metropolis", "rl_data_noise": "objective.data_noise",
    "rl_split_batch": "objective.split_batch",
    "optimizer": "optimizer.kind", "learning_rate": "optimizer.learning_rate",
    "weight_decay": "optimizer.weight_decay", "clip_grad_norm": "optimizer.clip_grad_norm",
    "warmup_steps": "optimizer.warmup_steps", "lr_schedule": "optimizer.schedule",
    "ema_decay": "optimizer.ema_decay",
    "guard": "guard.enabled", "guard_max_energy": "guard.max_energy",
    "guard_max_grad_norm": "guard.max_grad_norm", "rollback_retries": "guard.rollback_retries",
    "rollback_lr_factor": "guard.rollback_lr_factor",
    "num_steps": "run.num_steps", "seed": "run.seed", "log_every": "run.log_every",
    "eval_every": "run.eval_every", "checkpoint_every": "run.checkpoint_every",
    "keep_checkpoints": "run.keep_checkpoints", "num_eval_samples": "run.num_eval_samples",
    "fresh_sample_steps": "run.fresh_sample_steps",
}
# A 0.1 config without "objective" trained JEM (its default).
FLAT_DEFAULT_OBJECTIVE = "jem"


def is_flat(values: dict) -> bool:
    """Whether ``values`` is a 0.1 config: an objective given by name, or any old-only key."""
    # "model", "optimizer" and "guard" were 0.1 fields too: as keys they say nothing.
    sections = ("data", "model", "optimizer", "guard", "run")
    if isinstance(values.get("objective"), str):
        return True
    return any(k in FLAT_FIELDS and k not in sections and k not in ("name", "objective")
               for k in values)


def _has_path(cls: type, parts: list[str]) -> bool:
    """Whether the config section ``cls`` has the dotted field ``parts``."""
    types = field_types(cls)
    if parts[0] not in types:
        return False
    return len(parts) == 1 or _has_path(types[parts[0]], parts[1:])


def migrate_flat(values: dict) -> dict:
    """Nested values of a flat 0.1 config (unknown keys are kept for the schema to refuse)."""
    from ebm_jax.experiments.objectives import get_objective

    kind = values.get("objective", FLAT_DEFAULT_OBJECTIVE)
    objective = get_objective(kind)
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if key not in FLAT_FIELDS:
            nested[key] = value
            continue
        path = FLAT_FIELDS[key]
        if path is None or key in objective.flat_inert:
            continue
        parts = path.split(".")
        if parts[0] == "objective" and parts[1:] != ["kind"] \
                and not _has_path(objective.config, parts[1:]):
            continue  # inert in a run of this objective
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    if "objective" not in values:
        nested.setdefault("objective", {})["kind"] = kind
    return nested


# Settings added after runs were saved whose default changes how a saved run continues: a run
# directory's config.json without one ran before it existed, so it takes the value here (the
# behaviour it ran with), while a hand-written config takes the default.
SAVED_RUN_DEFAULTS = {"run.cpu_compile": "xla"}


def saved_run_values(values: dict) -> dict:
    """The nested values of a run directory's saved config (flat 0.1 configs migrated), with
    :data:`SAVED_RUN_DEFAULTS` filled in where the file has no such field.

    Example::

      >>> saved_run_values({"run": {"num_steps": 10}})
      {'run': {'num_steps': 10, 'cpu_compile': 'xla'}}
      >>> saved_run_values({"run": {"cpu_compile": "o2"}})
      {'run': {'cpu_compile': 'o2'}}
    """
    nested = dict(migrate_flat(values) if is_flat(values) else values)
    for path, value in SAVED_RUN_DEFAULTS.items():
        section, leaf = path.split(".")
        part = nested.get(section, {})
        if isinstance(part, dict) and leaf not in part:  # a non-object: the schema refuses it
            nested[section] = {**part, leaf: value}
    return nested


__all__ = ["FLAT_FIELDS", "SAVED_RUN_DEFAULTS", "is_flat", "migrate_flat", "saved_run_values"]
