"""Divergence guards: detect a blown-up step inside the jitted step, roll back outside it.

EBM training is famous for blowing up (the JEM authors restarted most runs by
hand). Two layers keep a run alive:

- :class:`DivergenceGuard`, inside the jitted step (no host sync): a step is
  *not applied* (params, optimizer state, replay buffer and average keep their
  values) and is counted in the metrics (``diverged`` and one flag per cause)
  when its loss, gradient, energies or sampler are non-finite, when its energies
  or gradient norm pass an absolute limit, or, after ``warmup_steps``, when it
  leaves the run's own early statistics (:class:`GuardStats`, kept in the train
  state): energies 10x their early scale, a sample-data energy gap 10x that
  scale, the classifier's smoothed loss 2 nats above its running best, a
  gradient norm 100x its moving average. The relative criteria catch the slow
  blow-ups that stay below any absolute limit until the model is long broken.
- :class:`RollbackPolicy`, in :func:`~ebm_jax.train.fit`: when a logging window
  holds a diverged step, the run returns to the last good checkpoint (or the
  last good state kept in memory), draws a new RNG key, scales the learning
  rate (:func:`with_lr_scale`) and goes on, up to ``max_retries`` times; then it
  stops with :class:`TrainingDiverged`, naming the cause and what to change,
  with the last good checkpoint intact.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax


class Remedy(NamedTuple):
    """One thing to change when a guard criterion keeps firing: ``text`` names the pure API's
    argument and, in brackets, ``setting``, the command line's (None: no single setting)."""

    text: str
    setting: Optional[str] = None


# What to change when a criterion keeps firing, as alternatives (joined by "or"), then why.
# Read by TrainingDiverged's message (:func:`divergence_advice`).
CAUSE_REMEDIES = {
    "nonfinite": ((Remedy("a smaller learning rate", "optimizer.learning_rate"),
                   Remedy("sampler step", "objective.sampler.step_size")), ""),
    "energy": ((Remedy("energy_l2 > 0", "objective.energy_l2=0.1"),
                Remedy("a smaller learning rate", "optimizer.learning_rate")), ""),
    "grad_norm": ((Remedy("gradient clipping", "optimizer.clip_grad_norm=1.0"),
                   Remedy("a smaller learning rate", "optimizer.learning_rate")), ""),
    "sampler": ((Remedy("a smaller sampler step", "objective.sampler.step_size"),
                 Remedy("sampler grad_clip", "objective.sampler.grad_clip=0.01")), ""),
    "energy_scale": ((Remedy("energy_l2 > 0", "objective.energy_l2=0.1"),
                      Remedy("MALA steps adapted to an acceptance rate",
                             "objective.step_adaptation=0.05"),
                      Remedy("a smaller learning rate", "optimizer.learning_rate")),
                     "energies left 10x their early scale"),
    "energy_gap": ((Remedy("energy_l2 > 0", "objective.energy_l2=0.1"),
                    Remedy("more sampler steps", "objective.num_steps"),
                    Remedy("a larger sampler step", "objective.sampler.step_size")),
                   "samples drifted away from the data's energies"),
    "loss_rise": ((Remedy("a smaller learning rate", "optimizer.learning_rate"),
                   Remedy("a lower generative weight", "objective.generative_weight")),
                  "the classifier's loss rose 2 nats above its best"),
    "grad_spike": ((Remedy("gradient clipping", "optimizer.clip_grad_norm=1.0"),
                    Remedy("a smaller learning rate", "optimizer.learning_rate")),
                   "the gradient norm jumped 100x its moving average"),
}
GENERIC_ADVICE = "a smaller learning rate or sampler step, energy_l2 > 0, or gradient clipping"


def divergence_advice(causes, has_setting: Optional[Callable[[str], bool]] = None) -> str:
    """What to change for each of ``causes`` (guard criteria): ``"cause: a or b: why; ..."``.

    ``has_setting(key)`` (the setting's key, without ``=value``) keeps only the remedies a run
    can apply: a command-line run passes its config's keys, so that a run whose objective has
    no ``energy_l2`` is not told to set it (a remedy without a setting is always kept).

    Example::

      >>> print(divergence_advice(["sampler"]).replace(" or ", "\\n  or "))
      sampler: a smaller sampler step (objective.sampler.step_size)
        or sampler grad_clip (objective.sampler.grad_clip=0.01)
      >>> divergence_advice(["grad_norm"], lambda key: key != "optimizer.clip_grad_norm")
      'grad_norm: a smaller learning rate (optimizer.learning_rate)'
    """
    parts = [(cause, _remedy_text(cause, has_setting)) for cause in causes
             if cause in CAUSE_REMEDIES]
    return "; ".join(f"{cause}: {text}" for cause, text in parts if text) or GENERIC_ADVICE


def _remedy_text(cause: str, has_setting: Optional[Callable[[str], bool]] = None) -> str:
    """``"a (setting) or b (setting): why"`` of the remedies kept ("" when none is)."""
    remedies, why = CAUSE_REMEDIES[cause]
    kept = [r for r in remedies if r.setting is None or has_setting is None
            or has_setting(r.setting.split("=")[0])]
    if not kept:
        return ""
    text = " or ".join(r.text + (f" ({r.setting})" if r.setting else "") for r in kept)
    return text + (f": {why}" if why else "")


CAUSE_ADVICE = {cause: _remedy_text(cause) for cause in CAUSE_REMEDIES}


class TrainingDiverged(RuntimeError):
    """Divergence persisted through every allowed rollback.

    Attributes:
      causes: the guard criteria that fired in the last window (``"energy_scale"``, ...).
      step: the step at which training stopped.
    """

    def __init__(self, message: str, causes: tuple = (), step: Optional[int] = None,
                 situation: Optional[str] = None):
        super().__init__(message)
        self.causes = tuple(causes)
        self.step = step
        self.situation = situation  # the message before its advice

    def with_advice(self, has_setting: Callable[[str], bool]) -> "TrainingDiverged":
        """The same stop, its advice kept to the settings ``has_setting`` accepts (see
        :func:`divergence_advice`)."""
        if self.situation is None:
            return self
        return TrainingDiverged(
            f"{self.situation}; expected {divergence_advice(self.causes, has_setting)}",
            self.causes, self.step, self.situation)


class DivergenceGuard(NamedTuple):
    """When a train step counts as diverged (and is not applied).

    Absolute limits, checked from the first step:

    Attributes:
      max_abs_energy: any info value whose key names an energy
        (``energy_data``, ``generative/energy_sample``, ...) above this in
        absolute value. JEM's code stops at a loss above 1e8.
      max_grad_norm: the global norm of the parameter gradient.
      check_sampler: count a step whose chains met a non-finite energy or
        gradient (the loss's ``nonfinite_steps`` info) as diverged.

    Relative criteria, against the run's own statistics (:class:`GuardStats`),
    checked once ``warmup_steps`` steps have been applied (None turns one off):

    Attributes:
      warmup_steps: applied steps whose mean energy magnitude sets the early scale.
      energy_factor: the largest mean ``|energy|`` of a step (over the info's energy
        keys) above ``energy_factor * max(early scale, energy_floor)``: ``energy_scale``.
      energy_floor: nats; the least early scale (networks start near zero energy).
      gap_factor: ``|mean sample energy - mean data energy|`` (keys ``...energy_sample``
        and ``...energy_data`` with one prefix) above ``gap_factor * max(early scale,
        energy_floor)``: ``energy_gap``.
      loss_margin: nats; the smoothed (``ema_decay``) classification loss (info keys
        ending in ``classification/loss``) above its best since warm-up plus this:
        ``loss_rise``.
      grad_factor: the gradient norm above ``grad_factor`` times its moving average
        (``ema_decay``, applied steps only): ``grad_spike``.
      ema_decay: the decay of the loss's and the gradient norm's moving averages.

    Example::

      >>> guard = DivergenceGuard()                          # every criterion on
      >>> absolute_only = DivergenceGuard(energy_factor=None, gap_factor=None,
      ...                                 loss_margin=None, grad_factor=None)
      >>> guard.relative, absolute_only.relative
      (True, False)
    """

    max_abs_energy: float = 1e8
    max_grad_norm: float = 1e8
    check_sampler: bool = True
    warmup_steps: int = 200
    energy_factor: Optional[float] = 10.0
    energy_floor: float = 5.0
    gap_factor: Optional[float] = 10.0
    loss_margin: Optional[float] = 2.0
    grad_factor: Optional[float] = 100.0
    ema_decay: float = 0.99

    @property
    def relative(self) -> bool:
        """Whether any relative criterion is on (then the state needs :class:`GuardStats`)."""
        return any(v is not None for v in (self.energy_factor, self.gap_factor,
                                           self.loss_margin, self.grad_factor))


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
    energies = [jnp.max(jnp.abs(jnp.asarray(v))) for k, v in info.items() if is_energy_key(k)
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


class GuardStats(NamedTuple):
    """The run's own statistics that the relative criteria compare against (float32 scalars
    but ``count``); part of :class:`~ebm_jax.train.TrainState`, so checkpoints and
    rollbacks carry them.

    Attributes:
      count: applied steps seen (int32).
      energy_scale: mean of the steps' energy magnitudes over the first ``warmup_steps``.
      grad_ema: moving average of the gradient norm.
      loss_ema: moving average of the classification loss.
      loss_best: the least ``loss_ema`` since warm-up (+inf before).
    """

    count: jax.Array
    energy_scale: jax.Array
    grad_ema: jax.Array
    loss_ema: jax.Array
    loss_best: jax.Array


def init_guard_stats() -> GuardStats:
    """Fresh :class:`GuardStats` (a run's first step, or a resumed run of an old release)."""
    zero = lambda: jnp.zeros((), jnp.float32)  # noqa: E731  (distinct buffers: donation)
    return GuardStats(jnp.zeros((), jnp.int32), zero(), zero(), zero(),
                      jnp.full((), jnp.inf, jnp.float32))


def is_energy_key(key: str) -> bool:
    """Whether an info key names an energy (``energy_data``, ``generative/energy_sample``,
    ...): it contains ``energy`` and is not a gradient norm (EBT's ``energy_grad_norm``,
    ``|∇_y E|``, grows as its learned step shrinks: it is no energy scale).

    Example::

      >>> is_energy_key("generative/energy_sample"), is_energy_key("energy_grad_norm")
      (True, False)
    """
    return "energy" in key and not key.endswith("grad_norm")


def _floats(info: dict, select) -> list:
    return [jnp.asarray(v) for k, v in info.items() if select(k)
            and jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)]


def _energy_magnitude(info: dict) -> Optional[jax.Array]:
    """The largest mean |energy| over the info's energy keys, or None without any."""
    energies = _floats(info, is_energy_key)
    if not energies:
        return None
    return jnp.max(jnp.stack([jnp.mean(jnp.abs(v)) for v in energies]))


def _energy_gap(info: dict) -> Optional[jax.Array]:
    """The largest |mean sample energy - mean data energy| over ``<prefix>energy_data`` /
    ``<prefix>energy_sample`` pairs, or None without a pair."""
    gaps = [jnp.abs(jnp.mean(jnp.asarray(info[k[:-len("data")] + "sample"]))
                    - jnp.mean(jnp.asarray(v)))
            for k, v in info.items()
            if k.endswith("energy_data") and k[:-len("data")] + "sample" in info]
    return jnp.max(jnp.stack(gaps)) if gaps else None


def _classification_loss(info: dict) -> Optional[jax.Array]:
    losses = _floats(info, lambda k: k.endswith("classification/loss"))
    return jnp.mean(losses[0]) if losses else None


def relative_flags(grad_norm: jax.Array, info: dict, stats: GuardStats,
                   guard: DivergenceGuard) -> tuple[dict, GuardStats]:
    """The relative criteria's flags for one step, and the statistics after it (to keep
    only if the step is applied).

    Returns:
      ``({"energy_scale", "energy_gap", "loss_rise", "grad_spike"}: bool scalars
      (False for a criterion that is off or has nothing to read), new_stats)``.

    Example::

      >>> guard = DivergenceGuard(warmup_steps=2)
      >>> stats = init_guard_stats()
      >>> for e in (1.0, 1.0):                                   # warm-up: scale 5 (the floor)
      ...     _, stats = relative_flags(jnp.float32(1.0), {"energy_data": jnp.float32(e)},
      ...                               stats, guard)
      >>> flags, _ = relative_flags(jnp.float32(1.0), {"energy_data": jnp.float32(60.0)},
      ...                           stats, guard)
      >>> bool(flags["energy_scale"])                           # 60 > 10 x 5
      True
    """
    off = jnp.zeros((), bool)
    warm = stats.count >= guard.warmup_steps
    count = stats.count + 1
    decay = guard.ema_decay

    def ema(old, new):  # starts at the first value
        return jnp.where(stats.count == 0, new, decay * old + (1.0 - decay) * new)

    flags = {"energy_scale": off, "energy_gap": off, "loss_rise": off, "grad_spike": off}
    energy_scale = stats.energy_scale
    magnitude = _energy_magnitude(info)
    if magnitude is not None:
        # The mean over warm-up (a running mean), then frozen.
        energy_scale = jnp.where(warm, stats.energy_scale,
                                 stats.energy_scale + (magnitude - stats.energy_scale) / count)
        limit = jnp.maximum(stats.energy_scale, guard.energy_floor)
        if guard.energy_factor is not None:
            flags["energy_scale"] = warm & (magnitude > guard.energy_factor * limit)
        gap = _energy_gap(info)
        if guard.gap_factor is not None and gap is not None:
            flags["energy_gap"] = warm & (gap > guard.gap_factor * limit)
    loss_ema, loss_best = stats.loss_ema, stats.loss_best
    loss = _classification_loss(info)
    if loss is not None:
        loss_ema = ema(stats.loss_ema, loss)
        if guard.loss_margin is not None:
            flags["loss_rise"] = warm & (loss_ema > stats.loss_best + guard.loss_margin)
        loss_best = jnp.where(warm, jnp.minimum(stats.loss_best, loss_ema), stats.loss_best)
    if guard.grad_factor is not None:
        flags["grad_spike"] = warm & (grad_norm > guard.grad_factor * stats.grad_ema)
    grad_ema = ema(stats.grad_ema, grad_norm)
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731  (bf16 energies stay f32 here)
    return flags, GuardStats(count, f32(energy_scale), f32(grad_ema), f32(loss_ema),
                             f32(loss_best))


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
