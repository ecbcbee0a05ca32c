"""Divergence guards: detect a blown-up step inside the jitted step, roll back outside it.

EBM training is famous for blowing up (the JEM authors restarted most runs by
hand). Two layers keep a run alive:

- :class:`DivergenceGuard`, inside the jitted step (no host sync): a step whose
  loss, gradient, energies or sampler are non-finite, or whose energies or
  gradient norm pass a threshold, is *not applied* (params, optimizer state,
  replay buffer and average keep their values) and is counted in the metrics
  (``diverged`` and one flag per cause).
- :class:`RollbackPolicy`, in :func:`~ebm_jax.train.fit`: when a logging window
  holds a diverged step, the run returns to the last good checkpoint, draws a
  new RNG key, scales the learning rate (:func:`with_lr_scale`) and goes on, up
  to ``max_retries`` times; then it stops with :class:`TrainingDiverged` and the
  last good checkpoint intact.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax


class TrainingDiverged(RuntimeError):
    """Divergence persisted through every allowed rollback."""


class DivergenceGuard(NamedTuple):
    """Thresholds past which a train step counts as diverged.

    Attributes:
      max_abs_energy: any info value whose key names an energy
        (``energy_data``, ``generative/energy_sample``, ...) above this in
        absolute value. JEM's code stops at a loss above 1e8.
      max_grad_norm: the global norm of the parameter gradient.
      check_sampler: count a step whose chains met a non-finite energy or
        gradient (the loss's ``nonfinite_steps`` info) as diverged.
    """

    max_abs_energy: float = 1e8
    max_grad_norm: float = 1e8
    check_sampler: bool = True


def divergence_flags(value: jax.Array, grad_norm: jax.Array, info: dict,
                     guard: DivergenceGuard) -> dict:
    """Boolean scalars ``{"nonfinite", "energy", "grad_norm", "sampler"}`` for one step.

    Example::

      >>> info = {"energy_data": jnp.float32(3e8), "nonfinite_steps": jnp.float32(0.0)}
      >>> flags = divergence_flags(jnp.float32(1.0), jnp.float32(2.0), info, DivergenceGuard())
      >>> {k: bool(v) for k, v in flags.items()}
      {'nonfinite': False, 'energy': True, 'grad_norm': False, 'sampler': False}
    """
    floats = [jnp.asarray(v) for v in info.values()
              if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)]
    finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
    for v in floats:
        finite = finite & jnp.all(jnp.isfinite(v))
    energies = [jnp.max(jnp.abs(jnp.asarray(v))) for k, v in info.items() if "energy" in k
                and jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)]
    energy = (jnp.max(jnp.stack(energies)) > guard.max_abs_energy) if energies \
        else jnp.zeros((), bool)
    sampler = jnp.zeros((), bool)
    if guard.check_sampler:
        for k, v in info.items():
            if k.endswith("nonfinite_steps"):
                sampler = sampler | (jnp.asarray(v) > 0)
    return {"nonfinite": ~finite, "energy": energy,
            "grad_norm": grad_norm > guard.max_grad_norm, "sampler": sampler}


class RollbackPolicy(NamedTuple):
    """What :func:`~ebm_jax.train.fit` does when a logging window holds a diverged step.

    Attributes:
      max_retries: rollbacks allowed over the run; one more divergence stops it.
      lr_factor: multiply the learning rate by this at each rollback (1.0 keeps
        it); needs an optimizer wrapped by :func:`with_lr_scale`.
    """

    max_retries: int = 3
    lr_factor: float = 0.5


def with_lr_scale(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optimizer`` followed by a multiplier kept in the optimizer state (initially 1), so a
    rollback can lower the learning rate of a restored state (:func:`scale_learning_rate`).

    Example::

      >>> opt = with_lr_scale(optax.adam(1e-4))
      >>> params = {"w": jnp.zeros(2)}
      >>> opt_state = scale_learning_rate(opt.init(params), 0.5)   # after a rollback
    """
    return optax.chain(optimizer, optax.inject_hyperparams(optax.scale)(step_size=1.0))


def _is_lr_scale(node: Any) -> bool:
    # optax's inject_hyperparams states (two NamedTuple classes across versions) hold a
    # ``hyperparams`` dict; ours is the one with a "step_size" (optax.scale's argument).
    hyper = getattr(node, "hyperparams", None)
    return isinstance(node, tuple) and isinstance(hyper, dict) and "step_size" in hyper


def scale_learning_rate(opt_state: Any, factor: float) -> Any:
    """Multiply the :func:`with_lr_scale` multiplier in ``opt_state`` by ``factor``.

    Raises:
      ValueError: the optimizer was not wrapped by :func:`with_lr_scale`.
    """
    found = []

    def scale(node):
        if _is_lr_scale(node):
            found.append(True)
            hyper = dict(node.hyperparams)
            hyper["step_size"] = hyper["step_size"] * factor
            return node._replace(hyperparams=hyper)
        return node

    new = jax.tree.map(scale, opt_state, is_leaf=_is_lr_scale)
    if not found:
        raise ValueError("the optimizer state has no learning-rate multiplier: expected an "
                         "optimizer wrapped by with_lr_scale(...) to lower the rate on rollback")
    return new


def learning_rate_scale(opt_state: Any) -> Optional[float]:
    """The current :func:`with_lr_scale` multiplier, or None without one."""
    for node in jax.tree.leaves(opt_state, is_leaf=_is_lr_scale):
        if _is_lr_scale(node):
            return float(node.hyperparams["step_size"])
    return None
