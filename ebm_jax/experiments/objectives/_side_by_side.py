"""An EBT and a regressor of the same size, trained side by side in one run, and the
evaluation pieces that sequential-decision objectives (world models, policies) share.

The params are one pytree ``{"ebt": ebt_params(...), "regressor": ...}``; the loss is the EBT
loss on ``params["ebt"]`` plus the mean squared error of ``regressor(params["regressor"], x)``
against ``y`` (info key :data:`REGRESSOR_MSE`). The two halves share no parameter, so each
gets exactly the gradient it would get alone, from the same batches: the regressor is the
baseline that predicts the mean of a multimodal answer, measured in the same run.

* :func:`matched_hidden` picks the regressor MLP's hidden widths so that its parameter count
  is the energy's (within :data:`SIZE_TOLERANCE`): "a predictor of the same size".
* :func:`best_of_n_predictions`: EBT's prediction at evaluation, the lowest-energy of ``N``
  descents from noise (:func:`ebm_jax.inference.best_of_n` at the learned step size), with
  the energy of the pick (a confidence: high energy = doubtful).
* :func:`failure_auroc`: how well that energy tells failures from successes
  (:func:`ebm_jax.metrics.auroc`).

Example::

    >>> from ebm_jax.losses import ebt, ebt_params
    >>> energy = lambda w, x, y: 0.5 * jnp.sum((y - w * x) ** 2)
    >>> loss = side_by_side_loss(ebt(energy, num_steps=2, y0="noise"),
    ...                          lambda w, x: w * x)
    >>> params = side_by_side_params(ebt_params(jnp.float32(1.0)), jnp.float32(0.5))
    >>> batch = {"x": jnp.ones((4, 3)), "y": jnp.ones((4, 3))}
    >>> state = loss.init(jax.random.key(0), params, batch)
    >>> value, (state, info) = loss.loss(params, state, batch, jax.random.key(1))
    >>> float(info["regressor_mse"])                      # (0.5 - 1)²
    0.25
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import metrics
from ebm_jax.experiments.config import Config, ObjectiveConfig
from ebm_jax.experiments.networks import make_network
from ebm_jax.experiments.objectives.ebt import LOSS_FIELDS, EBTConfig
from ebm_jax.inference import best_of_n
from ebm_jax.losses import LossTransform
from ebm_jax.losses.ebt import ebt_step_size
from ebm_jax.nets import pure

HALVES = ("ebt", "regressor")
REGRESSOR_MSE = "regressor_mse"   # the regressor half's loss, in the loss's info
SIZE_TOLERANCE = 0.05             # the regressor's parameter count within 5% of the energy's

__all__ = ["EBT_SETTINGS", "HALVES", "Predictions", "REGRESSOR_MSE", "SIZE_TOLERANCE",
           "best_of_n_candidates", "best_of_n_predictions", "ebt_config_class", "ebt_half",
           "failure_auroc", "matched_hidden", "mlp_param_count", "param_count", "regressor_network",
           "side_by_side_loss", "side_by_side_params"]


# -- settings -----------------------------------------------------------------------------------
# the EBT objective's settings that an objective built on the EBT loss shares: the loss's
# (LOSS_FIELDS), the learned step size's start and the prediction's start std
EBT_SETTINGS = LOSS_FIELDS + ("step_size", "prediction_start_std")


def ebt_config_class(name: str, kind: str, doc: str, *, defaults: Optional[Mapping] = None,
                     extra: tuple = (), module: Optional[str] = None) -> type:
    """A frozen objective config dataclass with the EBT objective's :data:`EBT_SETTINGS`
    (their types, checks and defaults, or ``defaults[name]``) followed by ``extra`` fields
    ``(name, type, setting(...))``: an objective on the EBT loss mirrors the loss factory
    without copying its settings.

    Example::

      >>> from ebm_jax.experiments.config import POSITIVE_INT, setting
      >>> Probe = ebt_config_class("Probe", "probe", "A probe.", defaults={"y0": "noise"},
      ...                          extra=(("num_starts", int, setting(4, *POSITIVE_INT)),))
      >>> probe = Probe()
      >>> probe.kind, probe.y0, probe.num_steps, probe.num_starts
      ('probe', 'noise', 4, 4)
    """
    source = EBTConfig
    hints = typing.get_type_hints(source)
    fields = {f.name: f for f in dataclasses.fields(source)}
    defaults = dict(defaults or {})
    unknown = set(defaults) - set(EBT_SETTINGS)
    if unknown:
        raise ValueError(f"defaults for {sorted(unknown)}: expected names of EBT_SETTINGS")
    specs = [(key, hints[key], dataclasses.field(default=defaults.get(key, fields[key].default),
                                                 metadata=fields[key].metadata))
             for key in EBT_SETTINGS]
    return dataclasses.make_dataclass(
        name, specs + list(extra), bases=(ObjectiveConfig,), frozen=True,
        namespace={"kind": kind, "__doc__": doc, "__module__": module or __name__})


# -- params and loss --------------------------------------------------------------------------
def side_by_side_params(ebt_half_params: Any, regressor_params: Any) -> dict:
    """``{"ebt": ebt_half_params, "regressor": regressor_params}`` (the first is
    :func:`~ebm_jax.losses.ebt_params`' dict)."""
    return {"ebt": ebt_half_params, "regressor": regressor_params}


def _check_params(params: Any) -> None:
    if not (isinstance(params, Mapping) and set(params) == set(HALVES)):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"side-by-side params are {got}: expected a dict with keys "
                         f"{sorted(HALVES)} (build it with side_by_side_params)")


def ebt_half(energy: Callable) -> Callable:
    """An energy over EBT's params (``ebt_energy(energy_fn)``) read over the side-by-side
    params: ``(params, x, y, *cond) -> energy(params["ebt"], x, y, *cond)``."""
    def energy_of_all(params, x, y, *cond):
        return energy(params["ebt"], x, y, *cond)

    return energy_of_all


def side_by_side_loss(ebt_loss: LossTransform, regressor_fn: Callable, *,
                      regressor_weight: float = 1.0) -> LossTransform:
    """``ebt_loss`` on ``params["ebt"]`` plus ``regressor_weight * mean |regressor_fn(
    params["regressor"], x) - y|²`` (a mean over the examples and the target's entries).

    Args:
      ebt_loss: the EBT's :class:`~ebm_jax.losses.LossTransform` (its state is the loss
        state; the regressor has none).
      regressor_fn: per-example ``regressor_fn(params, x) -> y_hat`` (any shape that
        reshapes to one target's).
      regressor_weight: ``> 0``, the MSE's weight in the total.

    Returns:
      a :class:`~ebm_jax.losses.LossTransform` over ``{"ebt", "regressor"}`` params on
      batches ``{"x": [B, ...], "y": [B, *y_shape]}``, whose info is the EBT's plus
      :data:`REGRESSOR_MSE` (unweighted).
    """
    if not callable(regressor_fn):
        raise ValueError(f"regressor_fn={regressor_fn!r}: expected a callable "
                         "regressor_fn(params, x) -> y_hat")
    if not (isinstance(regressor_weight, (int, float)) and regressor_weight > 0
            and np.isfinite(regressor_weight)):
        raise ValueError(f"regressor_weight={regressor_weight!r}: expected a finite number > 0")

    def init(rng_key, params, example_batch):
        _check_params(params)
        return ebt_loss.init(rng_key, params["ebt"], example_batch)

    def loss(params, state, batch, rng_key):
        _check_params(params)
        value, (state, info) = ebt_loss.loss(params["ebt"], state, batch, rng_key)
        y = jnp.asarray(batch["y"])
        pred = jax.vmap(regressor_fn, (None, 0))(params["regressor"], jnp.asarray(batch["x"]))
        mse = jnp.mean(jnp.square(pred.reshape(y.shape) - y))
        return value + regressor_weight * mse, (state, {**info, REGRESSOR_MSE: mse})

    return LossTransform(init, loss)


# -- a regressor of the energy's size ---------------------------------------------------------
def param_count(params: Any) -> int:
    """The number of scalars in a pytree.

    Example::

      >>> param_count({"w": np.zeros((3, 2)), "b": np.zeros(2)})
      8
    """
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def mlp_param_count(in_dim: int, hidden: tuple, out_dim: int) -> int:
    """Weights and biases of a dense MLP ``in_dim -> hidden... -> out_dim``.

    Example::

      >>> mlp_param_count(2, (4,), 1)                      # 2*4 + 4 + 4*1 + 1
      17
    """
    widths = [in_dim, *hidden, out_dim]
    return int(sum(a * b + b for a, b in zip(widths[:-1], widths[1:])))


def matched_hidden(target_count: int, in_dim: int, out_dim: int, depth: int, *,
                   tolerance: float = SIZE_TOLERANCE) -> tuple:
    """``depth`` equal hidden widths whose MLP ``in_dim -> ... -> out_dim`` has the parameter
    count nearest ``target_count``.

    Raises:
      ValueError: when no width comes within ``tolerance`` (relative) of the target (e.g. a
        target smaller than the narrowest such MLP).

    Example: a regressor 64 -> w -> w -> 16 the size of an energy 80 -> 64 -> 64 -> 1::

      >>> target = mlp_param_count(80, (64, 64), 1)
      >>> hidden = matched_hidden(target, 64, 16, 2)
      >>> hidden, round(mlp_param_count(64, hidden, 16) / target, 3)
      ((64, 64), 0.995)
    """
    if depth < 1:
        raise ValueError(f"depth={depth}: expected at least one hidden layer")
    widths = np.arange(1, max(2, int(target_count)) + 1, dtype=np.int64)
    counts = (in_dim * widths + widths + (depth - 1) * (widths * widths + widths)
              + widths * out_dim + out_dim)
    best = int(widths[np.argmin(np.abs(counts - target_count))])
    got = mlp_param_count(in_dim, (best,) * depth, out_dim)
    if abs(got / target_count - 1) > tolerance:
        raise ValueError(f"no MLP {in_dim} -> {depth} x w -> {out_dim} has about "
                         f"{target_count} parameters (nearest: w={best}, {got}): expected "
                         f"within {tolerance:.0%}")
    return (best,) * depth


def regressor_network(config: Config, in_x: int, out_y: int, target_count: int,
                      rngs) -> tuple[Any, Callable, tuple]:
    """``(params, regressor_fn, hidden)``: the config's MLP (its activation and depth) from
    ``in_x`` inputs to ``out_y`` outputs, its widths from :func:`matched_hidden` so that it
    has about ``target_count`` parameters; ``regressor_fn(params, x) -> [out_y]`` flattens
    one input."""
    hidden = matched_hidden(target_count, in_x, out_y, len(config.model.hidden))
    model = pure(make_network(dataclasses.replace(config.model, hidden=hidden), in_x, None,
                              out_y, rngs))

    def regressor_fn(params, x):
        return model.apply(params, jnp.ravel(x))

    return model.params, regressor_fn, hidden


# -- evaluation -------------------------------------------------------------------------------
class Predictions(NamedTuple):
    """What :func:`best_of_n_candidates` returns for ``N`` inputs and ``n`` starts each.

    Attributes:
      y: ``[N, *y_shape]`` the picks (lowest final energy); energy: ``[N]`` their energies.
      candidates: ``[N, n, *y_shape]`` every descent's result; candidate_energies: ``[N, n]``.
    """

    y: jax.Array
    energy: jax.Array
    candidates: jax.Array
    candidate_energies: jax.Array


def best_of_n_candidates(energy: Callable, params: Any, inputs: Any, rng_key: jax.Array, *,
                         num_starts: int, num_steps: int, start_std: float, y_shape: tuple,
                         clip_range: Optional[tuple] = None) -> Predictions:
    """:func:`best_of_n_predictions` with every start's result beside the pick: each single
    descent is a prediction of its own, its final energy its confidence (the picks of
    best-of-N are the lowest of them)."""
    step_size = ebt_step_size(params)
    inputs = jnp.asarray(inputs)

    def start(key):
        return start_std * jax.random.normal(key, y_shape)

    def one(key, x):
        out = best_of_n(key, energy, params, x, start, num_starts, num_steps=num_steps,
                        step_size=step_size, clip_range=clip_range)
        return Predictions(out.y, out.energy, out.results.y, out.results.energy)

    return jax.vmap(one)(jax.random.split(rng_key, inputs.shape[0]), inputs)


def best_of_n_predictions(energy: Callable, params: Any, inputs: Any, rng_key: jax.Array, *,
                          num_starts: int, num_steps: int, start_std: float, y_shape: tuple,
                          clip_range: Optional[tuple] = None) -> tuple[jax.Array, jax.Array]:
    """EBT's prediction for every input: :func:`~ebm_jax.inference.best_of_n` of
    ``num_starts`` descents of ``num_steps`` steps at the learned step size from
    ``start_std N(0, I)``, the lowest final energy kept.

    Args:
      energy: ``energy(ebt_params, x, y) -> scalar`` over EBT's params (``ebt_energy``).
      params: EBT's params (``{"energy", "log_step_size"}``; for the side-by-side pytree
        pass ``params["ebt"]``).
      inputs: ``[N, ...]``.
      rng_key: PRNG key.
      num_starts, num_steps: Python ints.
      start_std: the starts' std.
      y_shape: one prediction's shape.
      clip_range: ``(low, high)`` clamp after every step.

    Returns:
      ``(predictions [N, *y_shape], energies [N])``: the picks and their energies.
    """
    out = best_of_n_candidates(energy, params, inputs, rng_key, num_starts=num_starts,
                               num_steps=num_steps, start_std=start_std, y_shape=y_shape,
                               clip_range=clip_range)
    return out.y, out.energy


def failure_auroc(energies: Any, failed: Any) -> float:
    """AUROC of the energy as a detector of failures: the chance that a failed prediction
    has a higher energy than a successful one (ties count half); 0.5 is chance, 1 perfect.
    NaN where there are no failures or no successes (the AUROC is undefined).

    Example::

      >>> failure_auroc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([False, False, True, True]))
      1.0
    """
    energies = np.asarray(energies, np.float64).ravel()
    failed = np.asarray(failed, bool).ravel()
    if failed.all() or not failed.any():
        return float("nan")
    # auroc(in, out) scores "in" high: the failures are "in", scored by their energy
    return float(metrics.auroc(jnp.asarray(energies[failed]), jnp.asarray(energies[~failed])))
