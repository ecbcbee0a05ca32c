"""Adversarial robustness: PGD attacks, robust-accuracy curves, SGLD purification, and how
attacks move a classifier's energy.

:func:`pgd_attack` is projected gradient ascent on the classification loss
(Madry et al., 2018) inside an L-inf or L2 ball of radius ``epsilon`` around
each input, intersected with the data range, run by the descent/ascent kernel
(:func:`~ebm_jax.samplers.descent_kernel`, sign or L2-normalised steps). It is one jitted
XLA program: the steps are a ``lax.fori_loop``, the examples a ``vmap``.

:func:`robust_accuracy_curve` evaluates accuracy under attack for a list of
budgets, optionally with a *defence*: a function that maps inputs to
"purified" inputs before classification. :func:`sgld_purification` is the
JEM-line defence (Grathwohl et al., 2020; Hill et al., 2021): a few SGLD
steps down the energy ``E(x) = -logsumexp f(x)`` pull an adversarial input
back toward the data manifold.

:func:`attack_energy_shift` reads the classifier as the EBM ``E(x) = -logsumexp f(x)`` and
measures the share of examples whose energy an untargeted attack lowers and a targeted one
raises (the observation of Mirza et al., 2024).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_bounds, check_choice, check_flag, check_int, is_real
from ebm_jax.energies._base import EnergyFn, LogitsFn
from ebm_jax.samplers.base import init_chains, run_chains
from ebm_jax.samplers.descent import pgd_chain
from ebm_jax.samplers.langevin import langevin

NORMS = ("linf", "l2")
LOSSES = ("ce", "margin")

Defence = Callable[[jax.Array, Any, jax.Array], jax.Array]


CLIP_RANGE = "None or (low, high) with low < high"
NUM_STEPS = "a positive Python int"


def _check_attack_args(norm, epsilon, step_size, num_steps, clip_range, loss):
    check_choice("norm", norm, NORMS)
    check_choice("loss", loss, LOSSES)
    # Concrete numbers are checked; traced values (inside the caller's jit) are the caller's.
    if is_real(epsilon) and not epsilon >= 0:
        raise ValueError(f"epsilon={epsilon!r}: expected a number >= 0")
    if step_size is not None and is_real(step_size) and not step_size > 0:
        raise ValueError(f"step_size={step_size!r}: expected a positive number or None "
                         "(default 2.5 * epsilon / num_steps)")
    check_int("num_steps", num_steps, expected=NUM_STEPS)
    return check_bounds("clip_range", clip_range, allow_none=True, expected=CLIP_RANGE)


def _padded_batches(x: np.ndarray, y: np.ndarray, batch_size: int):
    """``(index, x_b, y_b, mask)`` for every batch of ``batch_size`` examples, the last one
    padded with copies of the first example (``mask`` False there): one compiled program
    serves every batch."""
    n = x.shape[0]
    num_batches = -(-n // batch_size)
    pad = num_batches * batch_size - n
    x_pad = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
    y_pad = np.concatenate([y, np.repeat(y[:1], pad, axis=0)])
    valid = np.arange(num_batches * batch_size) < n
    for b in range(num_batches):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        yield b, x_pad[sl], y_pad[sl], valid[sl]


def _check_batch(x, y) -> tuple[jax.Array, jax.Array]:
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: expected a non-empty batch [B, ...]")
    if y.shape != x.shape[:1] or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"y has shape {y.shape} and dtype {y.dtype}: expected integer labels "
                         f"({x.shape[0]},) matching x {x.shape}")
    return x, y


def _loss(logits: jax.Array, label: jax.Array, kind: str) -> jax.Array:
    if kind == "ce":
        return -jax.nn.log_softmax(logits)[label]
    # Carlini-Wagner margin: best wrong logit minus the true one (> 0 means misclassified).
    others = jnp.where(jnp.arange(logits.shape[-1]) == label, -jnp.inf, logits)
    return jnp.max(others) - logits[label]


@functools.partial(jax.jit, static_argnames=("logits_fn", "norm", "num_steps", "random_start",
                                             "clip_range", "loss", "targeted"))
def _pgd(rng_key, params, x, y, epsilon, step_size, *, logits_fn, norm, num_steps, random_start,
         clip_range, loss, targeted=False):
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    x = x.astype(dtype)

    def loss_fn(p, z, label):
        return _loss(logits_fn(p, z), label, loss)

    # Ascent of the loss (descent of the target class's, targeted) with sign (L-inf) or
    # L2-normalised steps, projected back into the ball around the clean input intersected
    # with the data range: the descent kernel's PGD chain.
    def attack_one(key, x0, label):
        return pgd_chain(key, loss_fn, params, x0, label, norm=norm, epsilon=epsilon,
                         step_size=step_size, num_steps=num_steps, ascent=not targeted,
                         random_start=random_start, clip_range=clip_range)

    keys = jax.random.split(rng_key, x.shape[0])
    return jax.vmap(attack_one)(keys, x, y)


def pgd_attack(rng_key: jax.Array, logits_fn: LogitsFn, params: Any, x: jax.Array, y: jax.Array, *,
               norm: str = "linf", epsilon: float, step_size: Optional[float] = None,
               num_steps: int, random_start: bool = True,
               clip_range: Optional[tuple[float, float]] = (-1.0, 1.0),
               loss: str = "ce", targeted: bool = False) -> jax.Array:
    """Projected gradient descent (ascent on the loss) within an ``epsilon`` ball.

    Each of ``num_steps`` steps moves every example up the gradient of its loss,
    ``x ← x + step_size · sign(∇)`` (L-inf) or ``x ← x + step_size · ∇/||∇||_2``
    (L2), then projects back onto ``{x' : ||x' - x_0|| <= epsilon}`` and clips to
    ``clip_range``. Clipping after the projection keeps the result in the ball
    (it only moves coordinates toward ``x_0`` when ``x_0`` lies in the range).
    The last iterate is returned. ``epsilon`` and ``step_size`` are traced, so a
    sweep over budgets compiles once; the norm, steps, loss and range are static.

    Args:
      rng_key: PRNG key for the random starts (one per example).
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example.
      params: the classifier's params.
      x: ``[B, ...]`` clean inputs, inside ``clip_range``.
      y: ``[B]`` integer labels: the true labels, whose loss the attack raises, or with
        ``targeted`` the target classes, whose loss it lowers.
      norm: ``"linf"`` or ``"l2"`` (over all features of an example).
      epsilon: the budget (>= 0); 0 returns ``clip(x)``.
      step_size: step length; default ``2.5 * epsilon / num_steps`` (Madry et al.),
        enough to cross the ball from any random start.
      num_steps: number of gradient steps (a Python int).
      random_start: start uniformly at random in the ball (else at ``x``).
      clip_range: ``(low, high)`` data range, or ``None`` for no clipping.
      loss: ``"ce"`` (cross-entropy) or ``"margin"`` (Carlini-Wagner:
        ``max_{j≠y} f_j - f_y``, which does not saturate on confident examples).
      targeted: descend the loss of class ``y`` (steps ``x ← x - step_size · sign(∇)``,
        resp. L2): a targeted attack toward ``y`` instead of away from it.

    Returns:
      ``[B, ...]`` adversarial inputs, ``||x_adv - x||_norm <= epsilon`` (up to
      float rounding) and inside ``clip_range``.

    Example::

      >>> logits_fn = lambda w, x: w @ x                       # a linear classifier
      >>> w = jnp.eye(2)
      >>> x, y = jnp.array([[0.5, 0.0], [0.0, 0.05]]), jnp.array([0, 1])
      >>> x_adv = pgd_attack(jax.random.key(0), logits_fn, w, x, y,
      ...                    norm="linf", epsilon=0.1, num_steps=10)
      >>> bool(jnp.max(jnp.abs(x_adv - x)) <= 0.1 + 1e-6)
      True
      >>> jnp.argmax(jax.vmap(logits_fn, (None, 0))(w, x_adv), axis=-1)   # the close one flips
      Array([0, 0], dtype=int32)
      >>> x_to = pgd_attack(jax.random.key(0), logits_fn, w, x, jnp.array([1, 0]),
      ...                   norm="linf", epsilon=0.1, num_steps=10, targeted=True)
      >>> jnp.argmax(jax.vmap(logits_fn, (None, 0))(w, x_to), axis=-1)   # the close one gets there
      Array([0, 0], dtype=int32)
    """
    clip_range = _check_attack_args(norm, epsilon, step_size, num_steps, clip_range, loss)
    if not callable(logits_fn):
        raise ValueError(f"logits_fn={logits_fn!r}: expected a callable "
                         "logits_fn(params, x) -> [K]")
    x, y = _check_batch(x, y)
    if step_size is None:
        step_size = 2.5 * jnp.asarray(epsilon, jnp.float32) / num_steps
    return _pgd(rng_key, params, x, y, epsilon, step_size, logits_fn=logits_fn, norm=norm,
                num_steps=num_steps, random_start=bool(random_start), clip_range=clip_range,
                loss=loss, targeted=check_flag("targeted", targeted))


def sgld_purification(energy_fn: EnergyFn, num_steps: int = 10, step_size: float = 1.0,
                      noise_scale: float = 0.01,
                      clip_range: Optional[tuple[float, float]] = (-1.0, 1.0)) -> Defence:
    """The JEM-line defence: a few SGLD steps down the energy before classifying.

    ``x ← clip(x - step_size · ∇E(x) + noise_scale · ε)`` for ``num_steps`` steps
    (the decoupled SGLD of :func:`ebm_jax.samplers.langevin`; JEM's defaults are
    step 1, noise 0.01). With a classifier read as an EBM, ``energy_fn`` is
    ``energy_from_logits(logits_fn)`` and the purifier shares the classifier's params.

    Args:
      energy_fn: per-example ``energy_fn(params, x) -> scalar``.
      num_steps: SGLD steps (a positive Python int).
      step_size: gradient step size (> 0).
      noise_scale: noise standard deviation (>= 0).
      clip_range: ``(low, high)`` data range after every step, or ``None``.

    Returns:
      ``purify(rng_key, params, x [B, ...]) -> [B, ...]``, pure and jit-friendly.

    Example::

      >>> from ebm_jax.energies import energy_from_logits
      >>> logits_fn = lambda w, x: w @ x                       # a linear classifier
      >>> w, x, y = jnp.eye(2), jnp.array([[0.5, 0.0], [0.0, 0.5]]), jnp.array([0, 1])
      >>> purify = sgld_purification(energy_from_logits(logits_fn), num_steps=10,
      ...                            step_size=1.0, noise_scale=0.01)
      >>> jax.jit(purify)(jax.random.key(0), w, x).shape
      (2, 2)
      >>> curve = robust_accuracy_curve(jax.random.key(1), logits_fn, w, x, y, norm="linf",
      ...                               epsilons=[0.0, 0.1], num_steps=10, batch_size=2,
      ...                               defence=purify)
      >>> list(curve)
      [0.0, 0.1]
    """
    if not callable(energy_fn):
        raise ValueError(f"energy_fn={energy_fn!r}: expected a callable energy_fn(params, x)")
    check_int("num_steps", num_steps, expected=NUM_STEPS)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True, expected=CLIP_RANGE)
    sampler = langevin(energy_fn, step_size, noise_scale, clip_range=clip_range)

    def purify(rng_key, params, x):
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"x has shape {x.shape}: expected a non-empty batch [B, ...]")
        states = init_chains(sampler, x, params)
        states, _ = run_chains(rng_key, sampler, states, params, num_steps)
        return states.position

    return purify


def robust_accuracy_curve(rng_key: jax.Array, logits_fn: LogitsFn, params: Any, x, y, *,
                          norm: str, epsilons: Sequence[float], num_steps: int,
                          batch_size: int, defence: Optional[Defence] = None,
                          step_size: Optional[float] = None, random_start: bool = True,
                          clip_range: Optional[tuple[float, float]] = (-1.0, 1.0),
                          loss: str = "ce") -> dict:
    """Accuracy under a PGD attack for each budget in ``epsilons``.

    The data are processed in batches of ``batch_size`` (the last one padded,
    so one program serves every batch and every budget: it compiles once).
    Every budget sees the same random starts (common random numbers), which
    keeps the curve smooth.

    With a ``defence``, the attack is computed against the **undefended**
    classifier and the defended pipeline classifies ``defence(key, params,
    x_adv)``. This is the transfer (BPDA-free) setting in which JEM-style
    purification is usually reported; it is *not* an adaptive attack, which
    would differentiate through the defence (with BPDA/EOT for its randomness
    and clipping) and typically lowers the defended accuracy. Treat defended
    numbers as an upper bound on robustness.

    Args:
      rng_key: PRNG key (random starts and the defence's noise).
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example.
      params: the classifier's params (also passed to the defence).
      x: ``[N, ...]`` clean inputs; ``y``: ``[N]`` integer labels.
      norm: ``"linf"`` or ``"l2"``.
      epsilons: budgets (each >= 0); include 0 for clean accuracy.
      num_steps: PGD steps per attack.
      batch_size: examples per attack call.
      defence: optional ``purify(rng_key, params, x [B, ...]) -> [B, ...]``, for
        example :func:`sgld_purification`.
      step_size, random_start, clip_range, loss: as in :func:`pgd_attack`
        (``step_size=None`` gives ``2.5 * eps / num_steps`` per budget).

    Returns:
      ``{float(eps): accuracy}`` in the order of ``epsilons``.

    Example::

      >>> logits_fn = lambda w, x: w @ x                       # a linear classifier
      >>> w, x, y = jnp.eye(2), jnp.array([[0.5, 0.0], [0.0, 0.5]]), jnp.array([0, 1])
      >>> curve = robust_accuracy_curve(jax.random.key(0), logits_fn, w, x, y, norm="linf",
      ...                               epsilons=[0, 0.05, 0.1], num_steps=10, batch_size=2)
      >>> curve[0.0]                  # clean accuracy; an attack within 0.1 flips neither
      1.0

    Plot curves with :func:`ebm_jax.plots.save_robustness_curve`.
    """
    clip_range = _check_attack_args(norm, 0.0, step_size, num_steps, clip_range, loss)
    epsilons = list(epsilons) if not isinstance(epsilons, (int, float)) else [epsilons]
    if not epsilons or not all(is_real(e) and e >= 0 for e in epsilons):
        raise ValueError(f"epsilons={epsilons!r}: expected a non-empty sequence of numbers >= 0")
    check_int("batch_size", batch_size)
    if defence is not None and not callable(defence):
        raise ValueError(f"defence={defence!r}: expected None or a callable "
                         "purify(rng_key, params, x) -> x")
    x = np.asarray(x)
    y = np.asarray(y)
    _check_batch(x, y)
    n = x.shape[0]

    @jax.jit
    def correct_in_batch(key, params, xb, yb, mask, eps):
        attack_key, defence_key = jax.random.split(key)
        step = 2.5 * eps / num_steps if step_size is None else jnp.asarray(step_size, eps.dtype)
        x_adv = _pgd(attack_key, params, xb, yb, eps, step, logits_fn=logits_fn, norm=norm,
                     num_steps=num_steps, random_start=bool(random_start), clip_range=clip_range,
                     loss=loss)
        if defence is not None:
            x_adv = defence(defence_key, params, x_adv)
        logits = jax.vmap(logits_fn, in_axes=(None, 0))(params, x_adv)
        return jnp.sum(jnp.where(mask, jnp.argmax(logits, axis=-1) == yb, False))

    curve = {}
    for eps in epsilons:
        correct = 0
        for b, xb, yb, mask in _padded_batches(x, y, batch_size):
            correct += int(correct_in_batch(jax.random.fold_in(rng_key, b), params, xb, yb,
                                            mask, jnp.float32(eps)))
        curve[float(eps)] = correct / n
    return curve


@functools.partial(jax.jit, static_argnames=("logits_fn", "norm", "num_steps", "random_start",
                                             "clip_range", "num_classes"))
def _energy_shifts(rng_key, params, x, y, epsilon, step_size, *, logits_fn, norm, num_steps,
                   random_start, clip_range, num_classes):
    """``E(x_away) - E(x)``, ``E(x_toward) - E(x)`` and whether ``x_away`` is still classified
    ``y``, for one batch (one program for every batch and every call with these settings)."""
    k_target, k_away, k_toward = jax.random.split(rng_key, 3)
    targets = (y + jax.random.randint(k_target, y.shape, 1, num_classes)) % num_classes
    options = dict(logits_fn=logits_fn, norm=norm, num_steps=num_steps,
                   random_start=random_start, clip_range=clip_range, loss="ce")
    x_away = _pgd(k_away, params, x, y, epsilon, step_size, targeted=False, **options)
    x_toward = _pgd(k_toward, params, x, targets, epsilon, step_size, targeted=True, **options)
    batched = jax.vmap(logits_fn, (None, 0))
    logits_away = batched(params, x_away)
    e = -jax.nn.logsumexp(batched(params, x), axis=-1)
    e_away = -jax.nn.logsumexp(logits_away, axis=-1)
    e_toward = -jax.nn.logsumexp(batched(params, x_toward), axis=-1)
    return e_away - e, e_toward - e, jnp.argmax(logits_away, axis=-1) == y


def attack_energy_shift(rng_key: jax.Array, logits_fn: LogitsFn, params: Any, x, y, *,
                        norm: str = "linf", epsilon: float, num_steps: int, batch_size: int,
                        step_size: Optional[float] = None, random_start: bool = True,
                        clip_range: Optional[tuple[float, float]] = (-1.0, 1.0),
                        num_classes: Optional[int] = None) -> dict:
    """How PGD attacks move a classifier's energy ``E(x) = -logsumexp f(x)`` (Mirza et al.
    2024: untargeted attacks lower it, targeted ones raise it, on their CIFAR-10 models).

    Each example is attacked twice with :func:`pgd_attack` (cross-entropy, the same budget):
    untargeted, away from its label, and targeted, toward a class drawn uniformly among the
    other ``K - 1``. Batches of ``batch_size`` (the last one padded: one program for every
    batch, and for every call with the same ``logits_fn`` and settings).

    Args:
      rng_key: PRNG key (targets and random starts).
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example; ``params``: its params.
      x: ``[N, ...]`` inputs inside ``clip_range``; ``y``: ``[N]`` integer labels.
      norm, epsilon, num_steps, step_size, random_start, clip_range: as in
        :func:`pgd_attack`.
      batch_size: examples per attack call.
      num_classes: ``K`` (default: read from ``logits_fn``'s output shape).

    Returns:
      ``{"untargeted": share of examples with E(x_adv) < E(x), "targeted": share with
      E(x_adv) > E(x), "untargeted_mean": mean E(x_adv) - E(x), "targeted_mean": the same
      for the targeted attack, "untargeted_accuracy": accuracy under the untargeted attack
      (the robust accuracy at this budget)}``.

    Example::

      >>> logits_fn = lambda w, x: jnp.stack([-0.5 * w @ x, 0.5 * w @ x])   # two classes
      >>> w, x, y = jnp.array([1.0, 1.0]), jnp.array([[0.3, 0.3], [-0.02, 0.0]]), jnp.array([1, 0])
      >>> out = attack_energy_shift(jax.random.key(0), logits_fn, w, x, y, epsilon=0.1,
      ...                           num_steps=10, batch_size=2)
      >>> out["untargeted"], out["targeted"]   # the margin 0.6 shrinks: E rises; -0.02 crosses
      (0.5, 0.5)
      >>> out["untargeted_accuracy"]
      0.5
    """
    clip_range = _check_attack_args(norm, epsilon, step_size, num_steps, clip_range, "ce")
    check_int("batch_size", batch_size)
    x = np.asarray(x)
    y = np.asarray(y)
    _check_batch(x, y)
    if num_classes is None:
        shape = jax.eval_shape(logits_fn, params, jnp.asarray(x[0])).shape
        if len(shape) != 1:
            raise ValueError(f"logits_fn returned shape {shape} per example: expected [K]")
        num_classes = shape[0]
    num_classes = check_int("num_classes", num_classes, 2,
                            expected="an int >= 2 (a targeted attack needs another class)")
    epsilon = np.float32(epsilon)
    step = np.float32(2.5 * epsilon / num_steps if step_size is None else step_size)
    parts = []
    for b, xb, yb, mask in _padded_batches(x, y, batch_size):
        out = _energy_shifts(jax.random.fold_in(rng_key, b), params, xb, yb,
                             epsilon, step, logits_fn=logits_fn, norm=norm,
                             num_steps=num_steps, random_start=bool(random_start),
                             clip_range=clip_range, num_classes=num_classes)
        parts.append([np.asarray(a)[mask] for a in out])
    away, toward, correct = (np.concatenate(a) for a in zip(*parts))
    return {"untargeted": float(np.mean(away < 0)), "targeted": float(np.mean(toward > 0)),
            "untargeted_mean": float(np.mean(away)), "targeted_mean": float(np.mean(toward)),
            "untargeted_accuracy": float(np.mean(correct))}
