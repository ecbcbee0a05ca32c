"""Adversarial training as loss transforms: PGD-AT, TRADES and WEAT, a robust classifier read
as the EBM ``E(x) = -logsumexp f(x)``.

Every transform attacks its batch at the current params (a PGD chain of the descent kernel,
:func:`~ebm_jax.samplers.descent.pgd_chain`: a start uniform in the ``norm`` ball of radius
``epsilon`` around each example, ``num_steps`` sign (L-inf) or L2-normalised steps of
``step_size``, each projected onto the ball and clamped to ``clip_range``), holds the
adversarial examples fixed (no gradient flows through the attack: Danskin's theorem) and
averages per-example losses:

* :func:`pgd_adversarial_training` (Madry et al. 2018): ``l_i = CE(f(x'_i), y_i)``, ``x'``
  maximising the cross-entropy;
* :func:`trades` (Zhang et al. 2019): ``l_i = CE(f(x_i), y_i) + beta KL(p(x_i) || p(x'_i))``,
  ``p = softmax f``, ``x'`` maximising the KL (:func:`trades_examples`; at ``x' = x`` its
  gradient is 0, hence the random start);
* :func:`weat` (Mirza et al. 2024): TRADES's ``l_i`` weighted by
  ``w_i = 1 / softplus(|E(x_i)|)`` (or ``E(x'_i)``), normalised over the batch,
  ``L = sum_i w_i l_i / sum_i w_i``, the weights held constant. Untargeted attacks lower a
  classifier's energy and targeted ones raise it; examples of large ``|E|`` dominate
  TRADES's gradient, and the weight evens them out.

Shapes: ``logits_fn(params, x) -> [K]`` for one example; ``batch = {"x": [B, ...] floats
inside clip_range, "y": [B] int labels in [0, K)}``. The transforms are stateless (state
``()``). Info (batch means): ``accuracy`` (clean), ``adversarial_accuracy`` (on ``x'``),
``cross_entropy``, ``log_px_shift`` (``E(x) - E(x')``: positive where the attack lowered the
energy; no key names an energy, which the train step's guard would read as an EBM's energy
scale), and for TRADES and WEAT ``kl``; WEAT adds ``weight_min`` and ``weight_max`` (the
normalised weights, mean 1).

Example::

    >>> logits_fn = lambda w, x: x @ w                         # a linear classifier, 3 classes
    >>> loss = weat(logits_fn, epsilon=0.1, num_steps=5, beta=6.0)
    >>> w = jax.random.normal(jax.random.key(0), (4, 3))
    >>> batch = {"x": jnp.zeros((8, 4)), "y": jnp.arange(8) % 3}
    >>> state = loss.init(jax.random.key(1), w, batch)
    >>> (value, (state, info)), grads = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))(
    ...     w, state, batch, jax.random.key(2))
    >>> grads.shape, sorted(info)[:3]
    ((4, 3), ['accuracy', 'adversarial_accuracy', 'cross_entropy'])
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_bounds, check_choice, check_flag, check_int, check_weight
from ebm_jax.energies import LogitsFn
from ebm_jax.losses.base import LossTransform, check_examples, check_labels, require_keys
from ebm_jax.samplers.descent import PGD_NORMS, pgd_chain

INPUTS = ("natural", "adversarial")


class _Attack(NamedTuple):
    """The checked settings of a training attack (see :func:`pgd_adversarial_training`)."""

    norm: str
    epsilon: float
    num_steps: int
    step_size: float
    random_start: bool
    clip_range: Optional[tuple[float, float]]


def _attack_settings(norm, epsilon, num_steps, step_size, random_start, clip_range) -> _Attack:
    check_choice("norm", norm, PGD_NORMS)
    check_weight("epsilon", epsilon, 0.0, expected="a number >= 0 (finite): the ball's radius")
    num_steps = check_int("num_steps", num_steps, 1)
    if step_size is None:
        step_size = 2.5 * float(epsilon) / num_steps
    else:
        check_weight("step_size", step_size, 0.0,
                     expected="a positive number, or None (2.5 * epsilon / num_steps)")
        if not step_size > 0:
            raise ValueError(f"step_size={step_size!r}: expected a positive number, or None "
                             "(2.5 * epsilon / num_steps)")
    return _Attack(norm, float(epsilon), num_steps, float(step_size),
                   check_flag("random_start", random_start),
                   check_bounds("clip_range", clip_range, allow_none=True))


def _cross_entropy(logits: jax.Array, label: jax.Array) -> jax.Array:
    return -jax.nn.log_softmax(logits)[label]


def _kl(log_p: jax.Array, logits_q: jax.Array) -> jax.Array:
    """``KL(p || softmax(logits_q))`` for one example, ``p = exp(log_p)``."""
    return jnp.sum(jnp.exp(log_p) * (log_p - jax.nn.log_softmax(logits_q)))


def _run_attack(rng_key, fn, params, x, targets, attack: _Attack) -> jax.Array:
    """``[B, ...]`` PGD examples maximising ``fn(params, x', target_i)``, held constant."""
    params = jax.lax.stop_gradient(params)
    keys = jax.random.split(rng_key, x.shape[0])

    def one(key, x0, target):
        return pgd_chain(key, fn, params, x0, target, norm=attack.norm,
                         epsilon=attack.epsilon, step_size=attack.step_size,
                         num_steps=attack.num_steps, ascent=True,
                         random_start=attack.random_start, clip_range=attack.clip_range)

    return jax.lax.stop_gradient(jax.vmap(one)(keys, jax.lax.stop_gradient(x), targets))


def trades_examples(rng_key: jax.Array, logits_fn: LogitsFn, params, x: jax.Array, *,
                    epsilon: float, num_steps: int = 10, norm: str = "linf",
                    step_size: Optional[float] = None, random_start: bool = True,
                    clip_range: Optional[tuple[float, float]] = (-1.0, 1.0)) -> jax.Array:
    """TRADES's inner maximisation: ``x'`` in the ball around each ``x`` maximising
    ``KL(softmax f(x) || softmax f(x'))`` (no labels needed), by the PGD chain of the
    descent kernel. :func:`trades` and :func:`weat` attack exactly these examples with their
    ``rng_key``.

    Args:
      rng_key: key of the random starts (split into one per example).
      logits_fn: ``logits_fn(params, x) -> [K]``; ``params``: its params.
      x: ``[B, ...]`` inputs inside ``clip_range``.
      epsilon, num_steps, norm, step_size, random_start, clip_range: as in
        :func:`pgd_adversarial_training`.

    Returns:
      ``[B, ...]`` adversarial examples (constants: no gradient flows back).

    Example::

      >>> logits_fn = lambda w, x: jnp.stack([-0.5 * w @ x, 0.5 * w @ x])   # two classes
      >>> x_adv = trades_examples(jax.random.key(0), logits_fn, jnp.array([1.0, -1.0]),
      ...                         jnp.zeros((3, 2)), epsilon=0.1)
      >>> bool(jnp.allclose(jnp.abs(x_adv), 0.1))                  # a corner of the ball
      True
    """
    attack = _attack_settings(norm, epsilon, num_steps, step_size, random_start, clip_range)
    if not callable(logits_fn):
        raise ValueError(f"logits_fn={logits_fn!r}: expected a callable "
                         "logits_fn(params, x) -> [K]")
    x = jnp.asarray(x)
    return _trades_examples(rng_key, logits_fn, params, x, attack)


def _trades_examples(rng_key, logits_fn, params, x, attack: _Attack) -> jax.Array:
    log_p = jax.lax.stop_gradient(jax.nn.log_softmax(
        jax.vmap(logits_fn, (None, 0))(params, x), axis=-1))
    return _run_attack(rng_key, lambda p, z, lp: _kl(lp, logits_fn(p, z)), params, x, log_p,
                       attack)


def _adversarial_loss(logits_fn: LogitsFn, who: str, attack: _Attack, *, kind: str,
                      beta: float = 0.0, ce_input: str = "natural",
                      energy_input: Optional[str] = None) -> LossTransform:
    """The shared transform: ``kind`` "ce" (PGD-AT) or "kl" (TRADES, weighted by the energy of
    ``energy_input`` inputs for WEAT)."""
    if not callable(logits_fn):
        raise ValueError(f"logits_fn={logits_fn!r}: expected a callable "
                         "logits_fn(params, x) -> [K]")
    batched = jax.vmap(logits_fn, (None, 0))

    def checked(batch, params, values: bool):
        """``(x, y)``: shapes and dtypes always, label values where ``values`` (``init``: the
        loss runs under ``jit``, where even a constant batch's values are staged)."""
        require_keys(batch, ("x", "y"), who)
        x = check_examples(batch, who, floating=True)
        shape = jax.eval_shape(batched, params, x).shape
        if len(shape) != 2:
            raise ValueError(f"{who}: logits_fn returned shape {shape[1:]} per example: "
                             "expected logits [K]")
        return x, check_labels(batch, who, x.shape[0], shape[-1] if values else None)

    def init(rng_key, params, example_batch):
        checked(example_batch, params, values=True)
        return ()

    def loss(params, state, batch, rng_key):
        x, y = checked(batch, params, values=False)
        logits = batched(params, x)
        if kind == "ce":
            def ce_fn(p, z, label):
                return _cross_entropy(logits_fn(p, z), label)

            x_adv = _run_attack(rng_key, ce_fn, params, x, y, attack)
        else:
            x_adv = _trades_examples(rng_key, logits_fn, params, x, attack)
        logits_adv = batched(params, x_adv)
        ce_logits = logits_adv if (kind == "ce" or ce_input == "adversarial") else logits
        ce = jax.vmap(_cross_entropy)(ce_logits, y)
        per_example = ce
        energy = -jax.nn.logsumexp(logits, axis=-1)
        energy_adv = -jax.nn.logsumexp(logits_adv, axis=-1)
        info = {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
                "adversarial_accuracy": jnp.mean(jnp.argmax(logits_adv, -1) == y),
                "cross_entropy": jnp.mean(ce),
                "log_px_shift": jnp.mean(energy - energy_adv)}
        if kind == "kl":
            kl = jax.vmap(_kl)(jax.nn.log_softmax(logits, axis=-1), logits_adv)
            per_example = ce + beta * kl
            info["kl"] = jnp.mean(kl)
        if energy_input is None:
            return jnp.mean(per_example), (state, info)
        e = jax.lax.stop_gradient(energy if energy_input == "natural" else energy_adv)
        weights = 1.0 / jax.nn.softplus(jnp.abs(e))
        weights = weights / jnp.mean(weights)  # normalised over the batch: mean 1
        info.update(weight_min=jnp.min(weights), weight_max=jnp.max(weights))
        return jnp.mean(weights * per_example), (state, info)

    return LossTransform(init, loss)


def pgd_adversarial_training(logits_fn: LogitsFn, *, epsilon: float, num_steps: int = 10,
                             norm: str = "linf", step_size: Optional[float] = None,
                             random_start: bool = True,
                             clip_range: Optional[tuple[float, float]] = (-1.0, 1.0)
                             ) -> LossTransform:
    """PGD adversarial training (Madry et al. 2018): the mean cross-entropy on PGD examples.

    ``L = mean_i CE(f(x'_i), y_i)``, ``x'_i`` the PGD chain's last point maximising
    ``CE(f(x'), y_i)`` in the ``norm`` ball of radius ``epsilon`` around ``x_i`` (a random
    start, ``num_steps`` sign or L2 steps), held constant.

    Args:
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example.
      epsilon: the ball's radius (``>= 0``), in the data's units (digits live in [-1, 1]).
      num_steps: PGD steps (a positive int).
      norm: ``"linf"`` (sign steps) or ``"l2"`` (L2-normalised steps).
      step_size: the step length (``> 0``); None: ``2.5 * epsilon / num_steps``.
      random_start: start uniformly in the ball (else at ``x``).
      clip_range: ``(low, high)`` data range the examples stay in, or None.

    Every setting is checked here: a bad one raises one ``ValueError`` naming it, its value
    and what was expected.

    Example::

      >>> logits_fn = lambda w, x: jnp.stack([-0.5 * w @ x, 0.5 * w @ x])   # two classes
      >>> loss = pgd_adversarial_training(logits_fn, epsilon=0.1, num_steps=5)
      >>> w, batch = jnp.array([1.0, -1.0]), {"x": jnp.zeros((4, 2)), "y": jnp.ones(4, int)}
      >>> value, _ = jax.jit(loss.loss)(w, loss.init(jax.random.key(0), w, batch), batch,
      ...                               jax.random.key(1))
      >>> round(float(value), 4)        # softplus(0.2): the margin moved by eps * ||w||_1
      0.7981
    """
    attack = _attack_settings(norm, epsilon, num_steps, step_size, random_start, clip_range)
    return _adversarial_loss(logits_fn, "pgd_adversarial_training", attack, kind="ce")


def _kl_settings(beta, ce_input) -> float:
    check_weight("beta", beta, 0.0, expected="a number >= 0 (finite): the KL term's weight")
    check_choice("ce_input", ce_input, INPUTS)
    return float(beta)


def trades(logits_fn: LogitsFn, *, epsilon: float, beta: float = 6.0, num_steps: int = 10,
           norm: str = "linf", step_size: Optional[float] = None, random_start: bool = True,
           clip_range: Optional[tuple[float, float]] = (-1.0, 1.0),
           ce_input: str = "natural") -> LossTransform:
    """TRADES (Zhang et al. 2019): accuracy on clean inputs plus ``beta`` times the KL from the
    clean prediction to the prediction at its worst neighbour.

    ``L = mean_i [CE(f(x_i), y_i) + beta KL(softmax f(x_i) || softmax f(x'_i))]`` with ``x'``
    from :func:`trades_examples` (held constant; both ``f(x)`` and ``f(x')`` get gradients).

    Args:
      logits_fn, epsilon, num_steps, norm, step_size, random_start, clip_range: as in
        :func:`pgd_adversarial_training`. TRADES's reference code starts at
        ``x + 0.001 N(0, I)``; here the start is uniform in the ball, as for PGD.
      beta: the KL term's weight (``>= 0``; the paper's 6).
      ce_input: ``"natural"`` (TRADES) or ``"adversarial"``: the cross-entropy of ``x'``.

    Example::

      >>> logits_fn = lambda w, x: x @ w
      >>> loss = trades(logits_fn, epsilon=0.1, num_steps=5)
      >>> w, batch = jnp.eye(3), {"x": 0.5 * jnp.eye(3), "y": jnp.arange(3)}
      >>> value, (_, info) = jax.jit(loss.loss)(w, (), batch, jax.random.key(0))
      >>> bool(info["kl"] > 0), float(info["accuracy"])
      (True, 1.0)
    """
    attack = _attack_settings(norm, epsilon, num_steps, step_size, random_start, clip_range)
    beta = _kl_settings(beta, ce_input)
    return _adversarial_loss(logits_fn, "trades", attack, kind="kl", beta=beta,
                             ce_input=ce_input)


def weat(logits_fn: LogitsFn, *, epsilon: float, beta: float = 6.0, num_steps: int = 10,
         norm: str = "linf", step_size: Optional[float] = None, random_start: bool = True,
         clip_range: Optional[tuple[float, float]] = (-1.0, 1.0), ce_input: str = "natural",
         energy_input: str = "natural") -> LossTransform:
    """WEAT (Mirza et al. 2024): TRADES with each example weighted by its energy.

    ``L = sum_i w_i l_i / sum_i w_i`` with TRADES's ``l_i`` (:func:`trades`) and
    ``w_i = 1 / softplus(|E(x_i)|)``, ``E(x) = -logsumexp f(x)``, of the clean inputs
    (``energy_input="natural"``) or of their adversarial examples (``"adversarial"``); the
    weights are held constant (no gradient flows through them). The paper's reference code
    averages ``w_i l_i`` over the batch without normalising; normalised, the loss keeps
    TRADES's scale whatever the energies' size.

    Args:
      logits_fn, epsilon, beta, num_steps, norm, step_size, random_start, clip_range,
        ce_input: as in :func:`trades` (the reference code's WEAT-nat and WEAT-adv are
        ``ce_input="natural"`` and ``"adversarial"``, both with natural energies).
      energy_input: ``"natural"`` or ``"adversarial"``: whose energy weighs an example.

    Example::

      >>> logits_fn = lambda w, x: x @ w
      >>> loss = weat(logits_fn, epsilon=0.1, beta=0.0)          # beta 0: weighted CE only
      >>> w, batch = jnp.eye(2), {"x": jnp.array([[0.0, 0.0], [1.0, 0.0]]), "y": jnp.array([0, 0])}
      >>> value, (_, info) = jax.jit(loss.loss)(w, (), batch, jax.random.key(0))
      >>> e = -jax.nn.logsumexp(batch["x"] @ w, axis=-1)          # the energies
      >>> w_i = 1 / jax.nn.softplus(jnp.abs(e))
      >>> ce = -jax.nn.log_softmax(batch["x"] @ w)[:, 0]
      >>> bool(jnp.isclose(value, jnp.sum(w_i * ce) / jnp.sum(w_i)))
      True
    """
    attack = _attack_settings(norm, epsilon, num_steps, step_size, random_start, clip_range)
    beta = _kl_settings(beta, ce_input)
    check_choice("energy_input", energy_input, INPUTS)
    return _adversarial_loss(logits_fn, "weat", attack, kind="kl", beta=beta,
                             ce_input=ce_input, energy_input=energy_input)


__all__ = ["pgd_adversarial_training", "trades", "trades_examples", "weat"]
