"""Energy combinators: AND, OR and NOT of energies, and class-conditional energies.

Every combinator returns an ordinary per-example ``energy_fn(params, x, *cond) ->
scalar``, so samplers, losses and :func:`~ebm_jax.energies.batch_energy` accept it
as they accept any energy. ``cond`` is passed unchanged to every part.

Params of a combined energy are a **tuple (or list) of the parts' params**, in the
order the parts were given::

    both = product(energy_a, energy_b)          # E(x) = E_a(x) + E_b(x)
    both((params_a, params_b), x)

With ``shared_params=True`` every part receives the same params instead: the case of
several energies read off one network (``class_energy(logits_fn, 3)`` and
``class_energy(logits_fn, 8)`` of the same classifier). The class-conditional helpers
(:func:`class_energy`, :func:`classes_or`, :func:`classes_and`) take the classifier's
params directly.

=====================  =========================================  ==================
combinator             energy                                     density
=====================  =========================================  ==================
:func:`product`        ``Σ_i w_i E_i(x)``                         ``Π_i p_i(x)^w_i``
:func:`mixture`        ``-log Σ_i w_i exp(-E_i(x))``              ``Σ_i w_i p_i(x)``
:func:`negation`       ``E_a(x) - α E_b(x)``                      ``p_a(x) / p_b(x)^α``
:func:`classes_or`     ``-log Σ_{c ∈ C} exp f(x)[c]``             "class 3 or 8"
:func:`classes_and`    ``-Σ_{c ∈ C} f(x)[c]``                     "class 3 and 8"
:func:`guided`         ``(1+w) E(x, y) - w E(x, ∅)``              ``p(x|y)^(1+w)/p(x)^w``
=====================  =========================================  ==================

(densities up to normalisation; see each function for when they are normalisable).
These are the compositions of Du, Li & Mordatch (2020), "Compositional Visual
Generation with Energy Based Models" (NeurIPS).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import FLOAT32_MAX, FLOAT32_TINY, check_positive_finite, is_int
from ebm_jax.energies._base import (EnergyFn, LogitsFn,
                                    energy_from_logits, joint_energy_from_logits)

__all__ = [
    "ClassConditional",
    "class_conditional",
    "class_energy",
    "classes_and",
    "classes_or",
    "composed_class_energy",
    "guided",
    "mixture",
    "negation",
    "product",
]


# -- validation helpers ---------------------------------------------------------------

def _check_energy_fns(energy_fns: tuple, name: str) -> None:
    if len(energy_fns) == 0:
        raise ValueError(f"{name}() got no energy functions: expected at least one "
                         "energy_fn(params, x, *cond)")
    for i, fn in enumerate(energy_fns):
        if not callable(fn):
            hint = (" (pass the energies as separate arguments: "
                    f"{name}(e1, e2), not {name}([e1, e2]))"
                    if isinstance(fn, (list, tuple)) else "")
            raise ValueError(f"energy_fns[{i}] is a {type(fn).__name__}: expected a callable "
                             f"energy_fn(params, x, *cond){hint}")


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _check_weights(weights: Any, n: int, name: str) -> Any:
    """``None`` -> ``n`` ones. Concrete weights -> a tuple of positive finite Python
    floats; a traced ``[n]`` array is returned as is (its values cannot be checked)."""
    if weights is None:
        return (1.0,) * n
    if _is_traced(weights):
        if tuple(weights.shape) != (n,):
            raise ValueError(f"weights has shape {tuple(weights.shape)}: expected ({n},), one "
                             f"weight per energy given to {name}()")
        return weights
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"weights={weights!r}: expected a sequence of {n} positive numbers, "
                         f"one per energy given to {name}()") from err
    if w.shape != (n,):
        raise ValueError(f"weights has shape {w.shape}: expected ({n},), one weight per energy "
                         f"given to {name}()")
    if not np.all(np.isfinite(w) & (w > 0)):
        raise ValueError(f"weights={w.tolist()!r}: expected positive finite numbers")
    if name == "product" and np.any((w > FLOAT32_MAX) | (w < FLOAT32_TINY)) \
            and not jax.config.jax_enable_x64:
        raise ValueError(f"weights={w.tolist()!r}: expected positive finite numbers that float32 "
                         f"can hold (in [{FLOAT32_TINY:.4g}, {FLOAT32_MAX:.4g}]): they multiply "
                         "float32 energies (a weight rounded to 0 times an infinite energy is NaN)")
    return tuple(float(v) for v in w)


def _describe(params: Any) -> str:
    if isinstance(params, (tuple, list)):
        return f"a {type(params).__name__} of length {len(params)}"
    return f"a {type(params).__name__}"


def _part_params(params: Any, n: int, shared: bool, name: str) -> Sequence[Any]:
    """The params of each of the ``n`` parts (checked at trace time, before any compute)."""
    if shared:
        return (params,) * n
    if not isinstance(params, (tuple, list)) or len(params) != n:
        raise ValueError(
            f"params is {_describe(params)}: expected a tuple or list of {n} params, one per "
            f"energy in the order given to {name}() (or build it with shared_params=True to "
            "pass the same params to every part)")
    return params


# -- AND, OR, NOT ---------------------------------------------------------------------

def product(*energy_fns: EnergyFn, weights: Optional[Sequence[float]] = None,
            shared_params: bool = False) -> EnergyFn:
    """AND: a product of experts, ``E(x) = Σ_i w_i E_i(x)``, i.e. ``p(x) ∝ Π_i p_i(x)^w_i``.

    The product is normalisable whenever one part is and the others are bounded below
    (e.g. every part a normalisable energy with ``w_i > 0``). Two Gaussians give a
    Gaussian with precision ``Σ_i w_i P_i`` and mean ``P⁻¹ Σ_i w_i P_i μ_i``.

    Args:
      *energy_fns: one or more per-example ``energy_fn(params_i, x, *cond) -> scalar``.
      weights: ``[n]`` positive exponents ``w_i`` (default all 1); a weight is an inverse
        temperature of its expert. A traced array is accepted (its values are not checked).
      shared_params: if True, every part gets the same ``params``; otherwise ``params`` is
        a tuple/list ``(params_1, ..., params_n)``.

    Returns:
      ``energy_fn(params, x, *cond) -> scalar``.

    Example::

      >>> from ebm_jax.energies import gaussian
      >>> a, b = gaussian(jnp.zeros(2), jnp.eye(2)), gaussian(jnp.ones(2), jnp.eye(2))
      >>> both = product(a.energy_fn, b.energy_fn, weights=[1.0, 2.0])
      >>> both((None, None), jnp.zeros(2))            # 0 + 2 * 1
      Array(2., dtype=float32)
    """
    _check_energy_fns(energy_fns, "product")
    w = _check_weights(weights, len(energy_fns), "product")
    n = len(energy_fns)

    def energy_fn(params, x, *cond):
        parts = _part_params(params, n, shared_params, "product")
        total = w[0] * energy_fns[0](parts[0], x, *cond)
        for i in range(1, n):
            total = total + w[i] * energy_fns[i](parts[i], x, *cond)
        return total

    return energy_fn


def mixture(*energy_fns: EnergyFn, weights: Optional[Sequence[float]] = None,
            shared_params: bool = False) -> EnergyFn:
    """OR: ``E(x) = -log Σ_i w_i exp(-E_i(x))``, with the weights normalised to sum to 1.

    This is the energy of the mixture ``Σ_i w_i p_i(x)`` **only if every part is
    normalised** (``∫ exp(-E_i) = 1``, e.g. ``-log_prob``). With unnormalised parts the
    effective weight of part ``i`` is ``w_i Z_i / Σ_j w_j Z_j``: a part with a larger
    normaliser ``Z_i`` takes a larger share. (That is the usual reading of "OR" for
    classifier energies; :func:`classes_or` is the mixture of class energies of one
    network.)

    Args:
      *energy_fns: one or more per-example ``energy_fn(params_i, x, *cond) -> scalar``.
      weights: ``[n]`` positive mixture weights (default equal); normalised here, so only
        their ratios matter. A traced array is accepted (values not checked).
      shared_params: if True, every part gets the same ``params``; otherwise ``params`` is
        a tuple/list ``(params_1, ..., params_n)``.

    Returns:
      ``energy_fn(params, x, *cond) -> scalar``.

    Example::

      >>> from ebm_jax.energies import gaussian
      >>> a, b = gaussian(-jnp.ones(2), jnp.eye(2)), gaussian(jnp.ones(2), jnp.eye(2))
      >>> either = mixture(lambda p, x: a.energy_fn(p, x) + a.log_z,   # normalised parts
      ...                  lambda p, x: b.energy_fn(p, x) + b.log_z, weights=[0.3, 0.7])
      >>> either((None, None), jnp.zeros(2)).shape
      ()
    """
    _check_energy_fns(energy_fns, "mixture")
    w = _check_weights(weights, len(energy_fns), "mixture")
    n = len(energy_fns)
    if isinstance(w, tuple):
        # log(w_i / Σ w) in log space: the sum of huge weights (1e308) would overflow.
        logs = [math.log(v) for v in w]
        top = max(logs)
        log_total = top + math.log(sum(math.exp(v - top) for v in logs))
        log_w = tuple(v - log_total for v in logs)
    else:  # traced
        log_w = jnp.log(w) - jnp.log(jnp.sum(w))

    def energy_fn(params, x, *cond):
        parts = _part_params(params, n, shared_params, "mixture")
        terms = [log_w[i] - energy_fns[i](parts[i], x, *cond) for i in range(n)]
        return -jax.nn.logsumexp(jnp.stack(terms))

    return energy_fn


def negation(energy_fn_a: EnergyFn, energy_fn_b: EnergyFn, alpha: float, *,
             shared_params: bool = False) -> EnergyFn:
    """NOT: ``E(x) = E_a(x) - α E_b(x)``, i.e. ``p(x) ∝ p_a(x) / p_b(x)^α`` ("a and not b").

    The composition of Du et al. (2020). It is **normalisable only if E_a dominates**:
    ``E_a - α E_b`` must grow fast enough as ``|x| → ∞``, which in general requires ``α``
    small enough. For Gaussians, the result is a Gaussian iff ``P_a - α P_b`` is positive
    definite (then with that precision and mean ``(P_a - α P_b)⁻¹ (P_a μ_a - α P_b μ_b)``);
    otherwise the density is improper and samplers diverge (or pile up at ``clip_range``).
    On a bounded domain (images clamped to ``[-1, 1]``) any ``α`` gives a proper density.

    Args:
      energy_fn_a: the energy to keep.
      energy_fn_b: the energy to avoid.
      alpha: ``α > 0``, the strength of the negation (a traced value is not checked).
      shared_params: if True both parts get the same ``params``; otherwise ``params`` is
        ``(params_a, params_b)``.

    Returns:
      ``energy_fn(params, x, *cond) -> scalar``.

    Example::

      >>> from ebm_jax.energies import gaussian
      >>> a, b = gaussian(jnp.zeros(2), jnp.eye(2)), gaussian(jnp.ones(2), 4 * jnp.eye(2))
      >>> not_b = negation(a.energy_fn, b.energy_fn, alpha=0.5)   # precision 1 - 0.5/4 > 0
      >>> not_b((None, None), jnp.zeros(2))            # 0 - 0.5 * (0.5 * 2 / 4)
      Array(-0.125, dtype=float32)
    """
    _check_energy_fns((energy_fn_a, energy_fn_b), "negation")
    check_positive_finite("alpha", alpha)

    def energy_fn(params, x, *cond):
        pa, pb = _part_params(params, 2, shared_params, "negation")
        return energy_fn_a(pa, x, *cond) - alpha * energy_fn_b(pb, x, *cond)

    return energy_fn


def guided(energy_fn: EnergyFn, weight: float, null_label: int) -> EnergyFn:
    """Classifier-free guidance: ``E_w(x, *cond, y) = (1 + w) E(x, *cond, y) - w E(x, *cond, ∅)``.

    ``energy_fn`` is conditioned on a class label as its last argument and was trained with
    labels dropped to ``null_label`` (∅) now and then, so that ``E(x, ∅)`` is the
    unconditional energy; ``p_w(x | y) ∝ p(x | y)^(1+w) / p(x)^w`` sharpens the class at the
    cost of diversity as ``w`` grows (Ho & Salimans 2021; CDRL applies it to its EBMs, and
    the same mix to its initializer's mean: any function of that signature can be guided).
    ``w = 0`` is ``energy_fn`` itself.

    Args:
      energy_fn: ``energy_fn(params, x, *cond, label) -> scalar`` (or any array).
      weight: ``w >= 0`` (a traced value is not checked).
      null_label: the null class, an int >= 0.

    Example::

      >>> mean = jnp.array([0.0, 1.0])       # E(x, y) = (x - mean[y])² / 2, class 0 the null
      >>> energy = lambda p, x, y: 0.5 * jnp.sum((x - mean[y]) ** 2)
      >>> guided(energy, 2.0, 0)(None, jnp.array([3.0]), 1)   # minimum at (1 + w) mean[1] = 3
      Array(-3., dtype=float32)
    """
    if not callable(energy_fn):
        raise TypeError(f"energy_fn={energy_fn!r}: expected a callable energy")
    if not _is_traced(weight):
        if not (isinstance(weight, (int, float, np.floating, np.integer))
                and not isinstance(weight, bool) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight={weight!r}: expected a finite guidance weight >= 0")
    if not (is_int(null_label) and null_label >= 0):
        raise ValueError(f"null_label={null_label!r}: expected an int >= 0, the null class")

    def guided_fn(params, x, *cond_and_label):
        if not cond_and_label:
            raise TypeError("a guided energy takes a class label as its last argument")
        *cond, label = cond_and_label
        null = jnp.full_like(jnp.asarray(label), null_label)
        return ((1.0 + weight) * energy_fn(params, x, *cond, label)
                - weight * energy_fn(params, x, *cond, null))

    return guided_fn


# -- class-conditional energies of one classifier -------------------------------------

def _check_class(name: str, y: Any) -> int:
    if not is_int(y):
        if isinstance(y, (np.ndarray, jax.Array)) and y.shape == () and \
                jnp.issubdtype(y.dtype, jnp.integer) and not _is_traced(y):
            y = int(y)
        else:
            raise ValueError(
                f"{name}={y!r}: expected a non-negative Python int class index (for one label "
                "per example, use joint_energy_from_logits(logits_fn) with y as a cond)")
    if y < 0:
        raise ValueError(f"{name}={y!r}: expected a non-negative class index")
    return int(y)


def _check_classes(classes: Any) -> tuple[int, ...]:
    if is_int(classes):
        raise ValueError(f"classes={classes!r}: expected a sequence of class indices, e.g. "
                         f"({classes},); for one class use class_energy")
    try:
        items = list(np.asarray(classes).reshape(-1)) if isinstance(
            classes, (np.ndarray, jax.Array)) else list(classes)
    except TypeError as err:
        raise ValueError(f"classes={classes!r}: expected a sequence of class indices") from err
    if len(items) == 0:
        raise ValueError("classes is empty: expected at least one class index")
    out = tuple(_check_class(f"classes[{i}]", c) for i, c in enumerate(items))
    if len(set(out)) != len(out):
        raise ValueError(f"classes={list(out)!r} has repeated indices: expected distinct classes")
    return out


def _logits(logits_fn: LogitsFn, params: Any, x: jax.Array, largest: int) -> jax.Array:
    """``logits_fn(params, x)``, checked to be ``[K]`` with ``K > largest`` (trace time)."""
    logits = logits_fn(params, x)
    if logits.ndim != 1:
        raise ValueError(f"logits_fn returned shape {tuple(logits.shape)}: expected [K] for one "
                         "example (class-conditional energies are per-example; vmap them)")
    if largest >= logits.shape[0]:
        raise ValueError(f"class index {largest} is out of range: logits_fn returned "
                         f"{logits.shape[0]} classes, expected indices in [0, {logits.shape[0]})")
    return logits


def class_energy(logits_fn: LogitsFn, y: int) -> EnergyFn:
    """The energy of one class: ``E(x) = -f(x)[y]`` (JEM's ``E(x, y)`` with ``y`` fixed).

    Args:
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example.
      y: a Python int class index in ``[0, K)`` (checked against ``K`` at trace time).

    Returns:
      ``energy_fn(params, x) -> scalar`` with the classifier's params.

    Example::

      >>> e3 = class_energy(lambda p, x: p @ x, 3)
      >>> e3(jnp.eye(4), jnp.arange(4.0))             # -x[3]
      Array(-3., dtype=float32)
    """
    y = _check_class("y", y)

    def energy_fn(params, x):
        return -_logits(logits_fn, params, x, y)[y]

    return energy_fn


def classes_or(logits_fn: LogitsFn, classes: Sequence[int]) -> EnergyFn:
    """OR of classes ("a 3 or an 8"): ``E(x) = -logsumexp_{c ∈ classes} f(x)[c]``.

    ``exp(-E) = Σ_c exp f(x)[c]``: the sum of the unnormalised class densities
    ``p~(x, c)`` over the classes, i.e. ``p~(x) p(y ∈ classes | x)``. With all the
    classes it is :func:`~ebm_jax.energies.energy_from_logits`.

    Args:
      logits_fn: ``logits_fn(params, x) -> [K]``.
      classes: a non-empty sequence of distinct class indices in ``[0, K)``.

    Returns:
      ``energy_fn(params, x) -> scalar``.

    Example::

      >>> e = classes_or(lambda p, x: x, (3, 8))
      >>> e(None, jnp.zeros(10))                      # -log 2
      Array(-0.6931472, dtype=float32)
    """
    classes = _check_classes(classes)
    index = np.asarray(classes, np.int32)
    largest = max(classes)

    def energy_fn(params, x):
        return -jax.nn.logsumexp(_logits(logits_fn, params, x, largest)[index])

    return energy_fn


def classes_and(logits_fn: LogitsFn, classes: Sequence[int]) -> EnergyFn:
    """AND of classes: ``E(x) = -Σ_{c ∈ classes} f(x)[c]``, the product of the class energies.

    Normalisable when the class densities are (e.g. Gaussian class-conditionals); for a
    plain linear classifier it is bounded only on a bounded domain (``clip_range``).

    Args:
      logits_fn: ``logits_fn(params, x) -> [K]``.
      classes: a non-empty sequence of distinct class indices in ``[0, K)``.

    Returns:
      ``energy_fn(params, x) -> scalar``.

    Example::

      >>> e = classes_and(lambda p, x: x, (1, 2))
      >>> e(None, jnp.arange(4.0))                    # -(1 + 2)
      Array(-3., dtype=float32)
    """
    classes = _check_classes(classes)
    index = np.asarray(classes, np.int32)
    largest = max(classes)

    def energy_fn(params, x):
        return -jnp.sum(_logits(logits_fn, params, x, largest)[index])

    return energy_fn


def composed_class_energy(logits_fn: LogitsFn, *, any_of: Optional[Sequence[int]] = None,
                          all_of: Optional[Sequence[int]] = None,
                          none_of: Optional[Sequence[int]] = None,
                          alpha: Optional[float] = None) -> EnergyFn:
    """A class query of one classifier: ``(any_of) AND (all_of) AND NOT (none_of)``.

    ``E = [classes_or(any_of)] + [classes_and(all_of)] - α classes_or(none_of)``, the
    bracketed terms present when given. At least one of ``any_of``/``all_of`` is needed;
    ``none_of`` needs ``alpha`` (see :func:`negation` for when the result is normalisable).

    Returns:
      ``energy_fn(params, x) -> scalar`` with the classifier's params.

    Example::

      >>> logits_fn = lambda params, x: x                  # the logits are x: 10 classes
      >>> e = composed_class_energy(logits_fn, any_of=(3, 8), none_of=(0,), alpha=0.5)
      >>> round(float(e(None, jnp.zeros(10))), 4)           # -log 2 - 0.5 * (-log 1)
      -0.6931
    """
    if any_of is None and all_of is None:
        raise ValueError("any_of and all_of are both None: expected at least one class set to "
                         "sample (none_of alone describes no density)")
    positive = []
    if any_of is not None:
        positive.append(classes_or(logits_fn, any_of))
    if all_of is not None:
        positive.append(classes_and(logits_fn, all_of))
    energy = positive[0] if len(positive) == 1 else product(*positive, shared_params=True)
    if none_of is None:
        if alpha is not None:
            raise ValueError(f"alpha={alpha!r} is given but none_of is None: expected alpha "
                             "only with none_of")
        return energy
    if alpha is None:
        raise ValueError("none_of is given but alpha is None: expected the strength alpha > 0 "
                         "of the negation")
    return negation(energy, classes_or(logits_fn, none_of), alpha, shared_params=True)


class ClassConditional(NamedTuple):
    """The energies of one classifier ``logits_fn(params, x) -> [K]`` (see
    :func:`class_conditional`); all take the classifier's params.

    Attributes:
      marginal: ``E(x) = -logsumexp f(x)``.
      joint: ``E(x, y) = -f(x)[y]`` with ``y`` a cond (one label per example).
      class_energy: ``class_energy(y)``, see :func:`class_energy`.
      classes_or: ``classes_or(classes)``, see :func:`classes_or`.
      classes_and: ``classes_and(classes)``, see :func:`classes_and`.
    """

    marginal: EnergyFn
    joint: EnergyFn
    class_energy: Callable[[int], EnergyFn]
    classes_or: Callable[[Sequence[int]], EnergyFn]
    classes_and: Callable[[Sequence[int]], EnergyFn]


def class_conditional(logits_fn: LogitsFn) -> ClassConditional:
    """All the class energies of one classifier, bound to its ``logits_fn``.

    Example::

      >>> cc = class_conditional(lambda w, x: w @ x)         # a linear classifier
      >>> three_or_eight = cc.classes_or((3, 8))             # energy_fn(params, x)
      >>> three_not_eight = negation(cc.class_energy(3), cc.class_energy(8), 0.5,
      ...                            shared_params=True)
      >>> w, x = jnp.eye(10), jnp.zeros(10).at[3].set(1.0)  # logits: 1 for class 3, else 0
      >>> float(cc.class_energy(3)(w, x)), float(three_not_eight(w, x))   # -1 - 0.5 * 0
      (-1.0, -1.0)
    """
    if not callable(logits_fn):
        raise ValueError(f"logits_fn is a {type(logits_fn).__name__}: expected a callable "
                         "logits_fn(params, x) -> [K]")
    return ClassConditional(
        marginal=energy_from_logits(logits_fn),
        joint=joint_energy_from_logits(logits_fn),
        class_energy=lambda y: class_energy(logits_fn, y),
        classes_or=lambda classes: classes_or(logits_fn, classes),
        classes_and=lambda classes: classes_and(logits_fn, classes),
    )
