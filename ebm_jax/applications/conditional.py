"""Class-conditional and composed sampling from a classifier read as an EBM (JEM).

A classifier ``logits_fn(params, x) -> [K]`` defines the joint energy
``E(x, y) = -f(x)[y]`` (Grathwohl et al. 2020, "Your classifier is secretly an energy
based model"): ``p(x | y) ∝ exp f(x)[y]``. :func:`sample_conditional` draws from it by
SGLD started from uniform noise, one chain per requested label; :func:`sample_composed`
draws from a class query such as "a 3 or an 8, not a 0"
(:func:`~ebm_jax.energies.composition.composed_class_energy`). :func:`generate_by_ascent`
is DAT's generation (Yin et al. 2025): PGD ascent of the class logit from held-out OOD
seeds, the number of steps chosen by a score (the best Fréchet distance).

Example::

  >>> logits_fn = lambda params, x: params @ x       # a linear classifier, 10 classes
  >>> params, labels = jnp.eye(10, 64), jnp.arange(10)
  >>> x = sample_conditional(jax.random.key(0), logits_fn, params, labels, shape=(64,),
  ...                        num_steps=100, step_size=1.0, noise_scale=0.01, clip_range=(-1, 1))
  >>> x.shape
  (10, 64)
  >>> bool(jnp.all(jnp.diag(x[:, :10]) == 1.0))     # each sample maxes its own class's logit
  True
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import (check_bounds, check_int, check_positive_finite, check_scalar_fn,
                             is_traced)
from ebm_jax.energies import EnergyFn, LogitsFn, joint_energy_from_logits
from ebm_jax.energies.composition import composed_class_energy
from ebm_jax.losses.dat import pgd_contrastive_samples
from ebm_jax.samplers.base import Sampler, init_chains, run_chains
from ebm_jax.samplers.langevin import langevin

__all__ = ["AscentSweep", "generate_by_ascent", "sample_composed", "sample_conditional"]

NUM_STEPS = "a positive Python int"
RANGE = "(low, high) with low < high"


def _check_shape(shape: Any) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
        ok = all(int(s) == s for s in shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"shape={shape!r}: expected the shape of one example, a tuple of "
                         "positive ints") from err
    if not ok or len(out) == 0 or min(out) < 1:
        raise ValueError(f"shape={shape!r}: expected the shape of one example, a non-empty "
                         "tuple of positive ints")
    return out


def _num_classes(logits_fn: LogitsFn, params: Any, shape: tuple) -> int:
    """``K`` from tracing ``logits_fn`` on one example (``jax.eval_shape``: no compute)."""
    if not callable(logits_fn):
        raise ValueError(f"logits_fn is a {type(logits_fn).__name__}: expected a callable "
                         "logits_fn(params, x) -> [K]")
    try:
        out = jax.eval_shape(logits_fn, params, jax.ShapeDtypeStruct(shape, jnp.float32))
    except (TypeError, ValueError) as err:
        raise ValueError(f"shape={shape!r}: logits_fn raised {type(err).__name__} on one example "
                         f"of this shape ({err}); expected the shape logits_fn takes") from err
    if len(getattr(out, "shape", (0, 0))) != 1:
        raise ValueError(f"logits_fn returned shape {getattr(out, 'shape', None)} for one "
                         f"example of shape {shape}: expected [K] logits")
    return int(out.shape[0])


def _check_labels(labels: Any, num_classes: int) -> jax.Array:
    if getattr(labels, "shape", None) is None:
        labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] < 1:
        raise ValueError(f"labels has shape {tuple(labels.shape)}: expected [B] with B >= 1, one "
                         "class index per sample")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels has dtype {labels.dtype}: expected integer class indices")
    if not is_traced(labels):
        values = np.asarray(labels)
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.size:
            raise ValueError(f"labels contains {int(bad[0])}: expected class indices in "
                             f"[0, {num_classes}) (logits_fn returns {num_classes} classes)")
    return jnp.asarray(labels)


def _check_run(num_steps: Any, clip_range: Any, init_range: Any) -> tuple:
    """Check the chains' settings; return ``(clip_range, init_range)``, the noise range
    defaulting to ``clip_range``, else ``(-1, 1)``."""
    check_int("num_steps", num_steps, expected=NUM_STEPS)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True, expected=RANGE)
    init_range = check_bounds("init_range", init_range, allow_none=True, expected=RANGE)
    return clip_range, init_range or clip_range or (-1.0, 1.0)


def _build_sampler(energy: EnergyFn, sampler: Optional[Sampler], step_size, noise_scale,
                   temperature, grad_clip, clip_range) -> Sampler:
    if sampler is not None:
        owned = dict(step_size=step_size, noise_scale=noise_scale, temperature=temperature,
                     grad_clip=grad_clip, clip_range=clip_range)
        given = [k for k, v in owned.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} given with a sampler: expected them only "
                             "without one (a Sampler owns its hyperparameters)")
        if not isinstance(sampler, Sampler):
            raise ValueError(f"sampler is a {type(sampler).__name__}: expected a "
                             "Sampler(init, step)")
        return sampler
    if step_size is None:
        raise ValueError("step_size is None: expected a positive SGLD step size (or a sampler)")
    check_positive_finite("step_size", step_size)
    return langevin(energy, step_size, noise_scale, temperature=temperature,
                    grad_clip=grad_clip, clip_range=clip_range)


def _from_noise(rng_key, sampler: Sampler, params, num: int, shape: tuple, init_range,
                num_steps: int, *cond) -> jax.Array:
    """``num`` chains from uniform noise over ``init_range``, ``num_steps`` steps each."""

    @jax.jit  # one program, not one compile per eager operation (inlined under an outer jit)
    def run(rng_key, params, *cond):
        key_init, key_run = jax.random.split(rng_key)
        x0 = jax.random.uniform(key_init, (num,) + shape, jnp.float32, init_range[0],
                                init_range[1])
        states = init_chains(sampler, x0, params, *cond)
        states, _ = run_chains(key_run, sampler, states, params, num_steps, *cond)
        return states.position

    return run(rng_key, params, *cond)


def sample_conditional(rng_key: jax.Array, logits_fn: LogitsFn, params: Any, labels: jax.Array,
                       *, shape: Sequence[int], num_steps: int, step_size: Optional[float] = None,
                       noise_scale: Optional[float] = None, temperature: Optional[float] = None,
                       grad_clip: Optional[float] = None,
                       clip_range: Optional[tuple[float, float]] = None,
                       init_range: Optional[tuple[float, float]] = None,
                       sampler: Optional[Sampler] = None) -> jax.Array:
    """Draw ``x ~ p(x | y) ∝ exp f(x)[y]`` for each requested label (JEM conditional sampling).

    SGLD on ``E(x, y) = -f(x)[y]`` (:func:`~ebm_jax.energies.joint_energy_from_logits`),
    one chain per label, started from uniform noise over ``init_range``: one
    ``lax.scan`` vmapped over chains.

    Args:
      rng_key: PRNG key.
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example of shape ``shape``.
      params: the classifier's params.
      labels: ``[B]`` integer class indices in ``[0, K)``.
      shape: the shape of one example (e.g. ``(64,)`` or ``(32, 32, 3)``).
      num_steps: SGLD steps.
      step_size: SGLD step size (required unless ``sampler`` is given).
      noise_scale: noise standard deviation (decoupled form; JEM uses step 1, noise 0.01);
        if None, the temperature form ``sqrt(2 step_size T)``.
      temperature: ``T`` of the temperature form.
      grad_clip: clip every gradient element (SGLD only).
      clip_range: ``(low, high)``: clamp positions after every step (e.g. ``(-1, 1)``).
      init_range: the uniform noise the chains start from; default ``clip_range`` if given,
        else ``(-1, 1)``.
      sampler: instead of SGLD, a :class:`~ebm_jax.samplers.Sampler` built on
        ``joint_energy_from_logits(logits_fn)`` (the label is its cond), e.g. MALA; it owns
        its hyperparameters (leave ``step_size`` ... ``clip_range`` None).

    Returns:
      ``[B, *shape]`` float32 samples, row ``i`` conditioned on ``labels[i]``.

    Example::

      >>> logits_fn = lambda params, x: params @ x       # a linear classifier, 10 classes
      >>> params = jnp.eye(10, 64)
      >>> x = sample_conditional(jax.random.key(0), logits_fn, params, jnp.array([3, 8]),
      ...                        shape=(64,), num_steps=200, step_size=1.0, noise_scale=0.01,
      ...                        clip_range=(-1, 1))
      >>> x.shape
      (2, 64)
    """
    shape = _check_shape(shape)
    num_classes = _num_classes(logits_fn, params, shape)
    labels = _check_labels(labels, num_classes)
    clip_range, init_range = _check_run(num_steps, clip_range, init_range)
    energy = joint_energy_from_logits(logits_fn)
    sampler = _build_sampler(energy, sampler, step_size, noise_scale, temperature, grad_clip,
                             clip_range)
    return _from_noise(rng_key, sampler, params, labels.shape[0], shape, init_range, num_steps,
                       labels)


def sample_composed(rng_key: jax.Array, logits_fn: LogitsFn, params: Any, num_samples: int, *,
                    shape: Sequence[int], num_steps: int, any_of: Optional[Sequence[int]] = None,
                    all_of: Optional[Sequence[int]] = None,
                    none_of: Optional[Sequence[int]] = None, alpha: Optional[float] = None,
                    step_size: float, noise_scale: Optional[float] = None,
                    temperature: Optional[float] = None, grad_clip: Optional[float] = None,
                    clip_range: Optional[tuple[float, float]] = None,
                    init_range: Optional[tuple[float, float]] = None) -> jax.Array:
    """Sample a class query of one classifier: ``(any_of) AND (all_of) AND NOT (none_of)``.

    SGLD from uniform noise on
    :func:`~ebm_jax.energies.composition.composed_class_energy`:
    ``E = -logsumexp f(x)[any_of] - Σ f(x)[all_of] + α (-logsumexp f(x)[none_of])``
    (the terms present when given). For a sampler other than SGLD, build the energy with
    ``composed_class_energy`` and run it with :func:`~ebm_jax.samplers.run_chains`.

    Args:
      rng_key: PRNG key.
      logits_fn: ``logits_fn(params, x) -> [K]``.
      params: the classifier's params.
      num_samples: number of independent chains (samples).
      shape: the shape of one example.
      num_steps: SGLD steps.
      any_of: classes of which the sample should be one ("a 3 or an 8").
      all_of: classes the sample should be all of (a product of class energies).
      none_of: classes to avoid; requires ``alpha > 0`` (see
        :func:`~ebm_jax.energies.composition.negation` on normalisability).
      alpha: strength of the negation.
      step_size, noise_scale, temperature, grad_clip, clip_range, init_range: as in
        :func:`sample_conditional`.

    Returns:
      ``[num_samples, *shape]`` float32 samples.

    Example::

      >>> logits_fn = lambda params, x: params @ x       # a linear classifier, 10 classes
      >>> params = jnp.eye(10, 64)
      >>> x = sample_composed(jax.random.key(0), logits_fn, params, 16, shape=(64,),
      ...                     any_of=(3, 8), num_steps=200, step_size=1.0, noise_scale=0.01,
      ...                     clip_range=(-1, 1))
      >>> x.shape
      (16, 64)
    """
    shape = _check_shape(shape)
    num_samples = check_int("num_samples", num_samples)
    clip_range, init_range = _check_run(num_steps, clip_range, init_range)
    _num_classes(logits_fn, params, shape)
    energy = composed_class_energy(logits_fn, any_of=any_of, all_of=all_of, none_of=none_of,
                                   alpha=alpha)
    # Class indices are checked against K when the energy is traced: do it now, before compute.
    check_scalar_fn("the composed class energy", energy, params,
                    jax.ShapeDtypeStruct(shape, jnp.float32))
    sampler = _build_sampler(energy, None, step_size, noise_scale, temperature, grad_clip,
                             clip_range)
    return _from_noise(rng_key, sampler, params, num_samples, shape, init_range, num_steps)


class AscentSweep(NamedTuple):
    """:func:`generate_by_ascent`'s result.

    Attributes:
      samples: ``{steps: [N, ...] samples}`` for every step count swept.
      scores: ``{steps: score}`` (lower is better).
      best_steps: the step count with the lowest score.
    """

    samples: dict
    scores: dict
    best_steps: int


def generate_by_ascent(logits_fn: LogitsFn, params: Any, seeds: Any, labels: Any,
                       steps: Sequence[int], score_fn: Callable[[np.ndarray], float], *,
                       step_size: float = 0.1,
                       clip_range: Optional[tuple[float, float]] = (-1.0, 1.0)) -> AscentSweep:
    """Class-conditional samples by PGD ascent of ``f(x)[label]`` from ``seeds [N, ...]``
    (L2-normalised steps of ``step_size``, clamped; :func:`~ebm_jax.losses.dat.
    pgd_contrastive_samples`), for every count in ``steps``, each scored by ``score_fn(
    samples) -> float`` (lower is better, e.g. the digit yardstick's Fréchet distance); one
    compiled program serves every count, and the sweep costs as many steps as its largest
    count (each count continues the last).

    Raises:
      ValueError: no step counts or a negative one, seeds and labels of different lengths.

    Example::

      >>> logits_fn = lambda w, x: w @ x                    # class 0 grows along (1, 0)
      >>> seeds, labels = jnp.zeros((4, 2)), jnp.zeros(4, jnp.int32)
      >>> target = np.array([0.3, 0.0])                     # score: distance to a point
      >>> sweep = generate_by_ascent(logits_fn, jnp.eye(2), seeds, labels, [1, 3, 5],
      ...                            lambda x: float(np.abs(x - target).sum()))
      >>> sweep.best_steps
      3
    """
    steps = [check_int("steps", t, 0) for t in steps]
    if not steps:
        raise ValueError("steps=[]: expected at least one step count to sweep")
    check_positive_finite("step_size", step_size)
    seeds, labels = jnp.asarray(seeds), jnp.asarray(labels)
    if labels.shape != seeds.shape[:1]:
        raise ValueError(f"labels has shape {labels.shape}: expected ({seeds.shape[0]},), one "
                         "per seed")
    ascend = jax.jit(lambda p, x, y, t: pgd_contrastive_samples(
        logits_fn, p, x, y, t, step_size=step_size, clip_range=clip_range))
    # The ascent is deterministic: each count continues the previous one's samples (the cost
    # of the largest count alone), which equals starting afresh from the seeds.
    samples, x, done = {}, seeds, 0
    for t in sorted(set(steps)):
        x = ascend(params, x, labels, jnp.int32(t - done))
        samples[t], done = np.asarray(x), t
    scores = {t: float(score_fn(x)) for t, x in samples.items()}
    return AscentSweep(samples, scores, min(scores, key=scores.get))
