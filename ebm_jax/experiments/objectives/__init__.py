"""The objective registry: one module per learning method, found by name.

Each module in this package (``jem.py``, ``cd.py``, ...) defines ``OBJECTIVE``, an
:class:`Objective`: its hyperparameter dataclass (mirroring its loss factory, nesting
the sampler's and the chain start's settings), one ``build`` function returning the
run's :class:`Pieces`, its capability flags and its presets. Adding a method is
writing one module here (and its loss and tests); nothing else names it. This is the
only place where objective names are compared.

Example::

    >>> from ebm_jax.experiments.objectives import get_objective
    >>> get_objective("cd").unsupervised
    True
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, NamedTuple, Optional

from ebm_jax.experiments.config import ConfigError
from ebm_jax.losses import LossTransform


class Pieces(NamedTuple):
    """What an objective builds for a run.

    Attributes:
      params: the trained pytree (every network of the method).
      energy_fn: ``energy_fn(params, x) -> scalar``, the model of the data that every
        metric evaluates; for an objective that is not a ``density`` (a conditional energy
        over continuous outputs), ``energy_fn(params, x, y) -> scalar``.
      logits_fn: ``logits_fn(params, x) -> [K]`` for classifiers, else None.
      loss: the :class:`~ebm_jax.losses.LossTransform` that training minimises.
      sampler: the run's sampler on ``energy_fn`` (None for an objective that draws no
        samples of ``x``).
      make_sampler: the same sampler settings on any energy (``make(energy_fn) -> Sampler``;
        None without a sampler).
      generate: ``generate(rng_key, params, num) -> [num, *example_shape]``: fresh samples
        the way this method draws them (SGLD from noise, progressive sampling, ...); None
        without a sampler.
      generator_name: how ``generate`` draws, for figure titles.
      evaluate: the method's own metrics, or None: ``evaluate(params, rng_key, *,
        quick=False, figure=None) -> {name: float}`` (PSNR of a denoiser's prediction, ...),
        added to the run's summary, to ``ebm-jax evaluate``'s report and, with
        ``quick=True`` (what is cheap), to the periodic evaluation; with ``figure`` (a PNG
        path), it also draws its picture there.
      wrap_optimizer: ``wrap(optimizer) -> optimizer`` around the config's optimizer (before
        the rollback's learning-rate multiplier), or None: e.g. batch norm's running
        statistics on their own update (:func:`~ebm_jax.nets.with_running_statistics`).
    """

    params: Any
    energy_fn: Callable
    logits_fn: Optional[Callable]
    loss: LossTransform
    sampler: Any
    make_sampler: Optional[Callable]
    generate: Optional[Callable]
    generator_name: str = "SGLD from noise"
    evaluate: Optional[Callable] = None
    wrap_optimizer: Optional[Callable] = None


def _no_check(config) -> None:
    del config


class Objective(NamedTuple):
    """A registered learning method.

    Attributes:
      kind: its name (``objective.kind`` in configs, ``--set objective=KIND``).
      config: its hyperparameter dataclass (a subclass of ``ObjectiveConfig``).
      build: ``build(config, data, rngs, *, num_devices) -> Pieces``.
      needs_labels: it trains on labels (the dataset must have them).
      classifier: it returns ``logits_fn``.
      unsupervised: it learns p(x) from unlabelled data.
      models: the ``model.kind`` values it can build, and ``models_note`` why.
      presets: ``{name: Config}``, its named starting points.
      check: cross-field checks of a config of this objective (raise ConfigError).
      keeps_unlabelled: with ``data.label_fraction < 1``, unlabelled rows stay (label -1)
        instead of being dropped.
      summary: one line for ``ebm-jax presets``.
      is_baseline: a plain discriminative classifier, the baseline that ``ebm-jax evaluate``
        reports EBM classifiers beside.
      flat_inert: fields of ebm_jax 0.1's flat config that runs of this objective ignored
        (dropped when such a config is migrated, so old runs resume unchanged).
      density: its ``energy_fn(params, x)`` models the data, so the metrics of a density
        apply (energies of data against noise, fresh samples, OOD scores, inpainting).
        False for a conditional energy ``E(x, y)`` over continuous outputs, whose metrics
        are its own (``Pieces.evaluate``).
      regression: it learns from continuous targets ``y`` (a dataset of ``(x, y)`` pairs,
        such as ``"branches"``, needs such an objective).
      batch_norm: it trains networks with batch norm (``model.batch_norm``): its loss moves
        the running statistics (:func:`~ebm_jax.losses.with_batch_statistics`) and its
        ``Pieces.wrap_optimizer`` gives them their update.
      concepts: it learns binary concepts beside the class (batches ``{"x", "y", "c"}``), so
        it runs on a concept dataset (``seven_segment_digits``) and only there.
    """

    kind: str
    config: type
    build: Callable
    needs_labels: bool
    classifier: bool
    unsupervised: bool
    models: tuple
    models_note: str
    presets: dict
    check: Callable = _no_check
    keeps_unlabelled: bool = False
    summary: str = ""
    is_baseline: bool = False
    flat_inert: tuple = ()
    density: bool = True
    regression: bool = False
    batch_norm: bool = False
    concepts: bool = False


_REGISTRY: dict[str, Objective] = {}


def _load() -> dict[str, Objective]:
    if not _REGISTRY:
        found = {}
        for module_info in pkgutil.iter_modules(__path__):
            if module_info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{module_info.name}")
            objective = getattr(module, "OBJECTIVE", None)
            if not isinstance(objective, Objective):
                raise TypeError(f"{module.__name__} defines no OBJECTIVE: expected an Objective")
            if objective.kind in found:
                raise TypeError(f"objective kind {objective.kind!r} is registered twice")
            if objective.config.kind != objective.kind:
                raise TypeError(f"{module.__name__}: config.kind={objective.config.kind!r}, "
                                f"expected {objective.kind!r}")
            found[objective.kind] = objective
        _REGISTRY.update(found)
    return _REGISTRY


def objective_kinds() -> tuple[str, ...]:
    """The registered objective names, sorted."""
    return tuple(sorted(_load()))


def get_objective(kind: Any) -> Objective:
    """The registered objective named ``kind``.

    Raises:
      ConfigError: an unknown name (listing the registered ones).
    """
    registry = _load()
    if not isinstance(kind, str) or kind not in registry:
        raise ConfigError(f"objective={kind!r}: expected one of {list(sorted(registry))}")
    return registry[kind]


def objective_of(config) -> Objective:
    """The registered objective of a config."""
    return get_objective(config.objective.kind)


__all__ = ["Objective", "Pieces", "get_objective", "objective_kinds", "objective_of"]
