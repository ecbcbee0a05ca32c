"""Energy-based transformer (EBT) training: learn ``E(x, y)`` so that a few descent steps on
``y`` *are* the prediction (Gladstone et al. 2025, "Energy-Based Transformers are Scalable
Learners and Thinkers").

The prediction for an input ``x`` is ``K`` unrolled gradient steps on a conditional energy
``energy_fn(params, x, y) -> scalar`` from a start ``y0`` (the input itself, e.g. a noisy
image, or noise)::

    y_{k+1} = y_k - h s_k ∇_y E(x, y_k) [+ σ ε_k],     h = exp(params["log_step_size"])

and the loss is a reconstruction loss of the prediction against the target ``y``, trained
end to end: ``jax.grad`` of the loss differentiates through every step, gradients of
gradients included (the ``create_graph`` of the PyTorch code), so the learned step size
``h`` and the energy's parameters both receive gradient. ``detach_between_steps`` stops the
gradient between steps (each step is trained as if it started from a constant).

* **System 1** (``mode="system1"``): the ``K`` steps every time; the loss is the
  reconstruction averaged over the ``K`` predictions.
* **System 2** (``mode="system2"``): the loss of the final prediction only, with a random
  number of steps per example in ``[min_steps, max_steps]`` (one compiled program: the scan
  always has ``max_steps`` steps and a mask turns the extra ones into no-ops), random
  per-step size factors ``s_k = exp(U(-j, j))`` (``step_jitter``), optional Langevin noise
  ``σ`` and an optional replay buffer of past ``(x, y, y_hat)`` whose predictions become
  starts (the model learns to keep improving its own answers).

Optional terms, all on the same descent: ``contrastive_weight`` (InfoNCE: the true ``y``
against the detached predictions, rolled batch negatives and perturbed targets, for
multimodal targets where the reconstruction alone averages modes), ``calibration_weight``
(the energy regresses ``calibration_scale * ½|y' - y|²`` for the predictions and perturbed
targets ``y'``, with ``E(x, y) = 0``: an energy that reads as the error, so that best-of-N by
energy and energy-based confidence mean something), ``stationarity_weight`` (``|h ∇_y E(x,
y)|²`` at the true ``y``: the answer is a fixed point, so more steps than trained do not walk
away from it) and ``energy_l2``.

Inference with the trained energy uses :mod:`ebm_jax.inference` on :func:`ebt_energy`
(``minimize``, ``best_of_n``, ``rank``) with ``step_size=ebt_step_size(params)``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from ebm_jax._checks import (check_bounds, check_choice, check_flag, check_in_range, check_int,
                             check_positive_finite, check_weight)
from ebm_jax.inference._common import check_energy_takes, check_floating, shape_of
from ebm_jax.inference.minimize import check_options
from ebm_jax.losses.base import LossTransform, check_examples, require_keys

MODES = ("system1", "system2")
STARTS = ("input", "noise", "target")
PARAM_KEYS = ("energy", "log_step_size")

__all__ = ["EBTDescent", "EBTReplay", "EBTState", "default_start_noise", "denoising_pairs", "ebt",
           "ebt_descent", "ebt_energy", "ebt_params", "ebt_step_size"]


# -- parameters -----------------------------------------------------------------------------
def ebt_params(energy_params: Any, step_size: float = 0.1) -> dict:
    """The parameters EBT trains: ``{"energy": energy_params, "log_step_size": scalar}``.

    The descent's step size is learned in log space (it stays positive).

    Example::

      >>> params = ebt_params(jnp.ones(2), step_size=0.5)
      >>> sorted(params), round(float(ebt_step_size(params)), 4)
      (['energy', 'log_step_size'], 0.5)
    """
    check_positive_finite("step_size", step_size)
    return {"energy": energy_params,
            "log_step_size": jnp.log(jnp.asarray(step_size, jnp.float32))}


def _check_params(params: Any) -> None:
    if not (isinstance(params, Mapping) and set(params) == set(PARAM_KEYS)):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"ebt params are {got}: expected a dict with keys "
                         f"{sorted(PARAM_KEYS)} (build it with ebt_params(energy_params))")
    if shape_of(params["log_step_size"]) != ():
        raise ValueError(f"params['log_step_size'] has shape "
                         f"{shape_of(params['log_step_size'])}: expected a scalar")


def ebt_step_size(params: Mapping) -> jax.Array:
    """The learned step size ``exp(params["log_step_size"])`` (a scalar; differentiable)."""
    _check_params(params)
    return jnp.exp(params["log_step_size"])


def ebt_energy(energy_fn: Callable) -> Callable:
    """The conditional energy over EBT's params: ``(params, x, y, *cond) ->
    energy_fn(params["energy"], x, y, *cond)``, for :mod:`ebm_jax.inference`.

    Example::

      >>> from ebm_jax.inference import minimize
      >>> energy = lambda w, x, y: 0.5 * jnp.sum((y - w * x) ** 2)
      >>> params = ebt_params(jnp.float32(2.0), step_size=0.5)
      >>> out = minimize(ebt_energy(energy), params, jnp.ones(2), jnp.zeros(2), num_steps=30,
      ...                step_size=ebt_step_size(params))
      >>> out.y.round(3).tolist()
      [2.0, 2.0]
    """
    if not callable(energy_fn):
        raise ValueError(f"energy_fn={energy_fn!r}: expected a callable "
                         "energy_fn(params, x, y, *cond) -> scalar")

    def energy(params, x, y, *cond):
        return energy_fn(params["energy"], x, y, *cond)

    return energy


# -- data -----------------------------------------------------------------------------------
def default_start_noise(y0: Any) -> float:
    """The starts' noise when ``start_noise`` is none: 1 for ``y0="noise"`` and
    ``"target"`` (the start is that noise, or the target perturbed by it), else 0.

    Example::

      >>> default_start_noise("target"), default_start_noise("input")
      (1.0, 0.0)
    """
    return 1.0 if isinstance(y0, str) and y0 in ("noise", "target") else 0.0


def denoising_pairs(rng_key: jax.Array, x: jax.Array, noise_std: float, *,
                    clip_range: Optional[tuple[float, float]] = None) -> dict:
    """A denoising batch: ``{"x": clip(x + noise_std N(0, I)), "y": x}`` (inputs noisy,
    targets clean), for :func:`ebt` with ``y0="input"``.

    Args:
      rng_key: PRNG key.
      x: clean examples ``[B, ...]``.
      noise_std: ``> 0``.
      clip_range: ``(low, high)``: clamp the noisy inputs into the data's range.

    Example::

      >>> pairs = denoising_pairs(jax.random.key(0), jnp.zeros((4, 3)), 0.3, clip_range=(-1, 1))
      >>> pairs["x"].shape, float(jnp.abs(pairs["y"]).max())
      ((4, 3), 0.0)
    """
    check_positive_finite("noise_std", noise_std)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True)
    x = check_examples({"x": x}, "denoising_pairs", floating=True)
    noisy = x + noise_std * jax.random.normal(rng_key, x.shape, x.dtype)
    if clip_range is not None:
        noisy = jnp.clip(noisy, *clip_range)
    return {"x": noisy, "y": x}


# -- the unrolled descent ---------------------------------------------------------------------
class EBTDescent(NamedTuple):
    """What :func:`ebt_descent` returns for one example (``jax.vmap`` adds a leading axis).

    Attributes:
      y: the final prediction ``[*y_shape]`` (after the last step the mask lets through).
      ys: ``[num_steps, *y_shape]``: the prediction after every step (a masked-off step
        repeats the previous one).
      energies: ``[num_steps + 1]``: the energy at ``y0`` and after every step.
      grad_norms: ``[num_steps]``: ``|∇_y E|`` where every step started.
      nonfinite: ``int32`` scalar: steps whose energy or gradient was NaN/inf.
    """

    y: jax.Array
    ys: jax.Array
    energies: jax.Array
    grad_norms: jax.Array
    nonfinite: jax.Array


def _check_vector(name: str, value: Any, num_steps: int, kind: str) -> None:
    if value is None:
        return
    if shape_of(value) != (num_steps,):
        raise ValueError(f"{name} has shape {shape_of(value)}: expected ({num_steps},), one "
                         f"{kind} per step (num_steps={num_steps})")


def ebt_descent(energy_fn: Callable, params: Any, x: Any, y0: jax.Array, *, num_steps: int,
                step_size: Any, step_mask: Optional[jax.Array] = None,
                step_scales: Optional[jax.Array] = None, noise_scale: Any = 0.0,
                rng_key: Optional[jax.Array] = None, detach_between_steps: bool = False,
                clip_range: Optional[tuple[float, float]] = None) -> EBTDescent:
    """``num_steps`` unrolled, differentiable descent steps on ``y`` for one input ``x``.

    ``y <- y - step_size * step_scales[k] * ∇_y E(x, y) [+ noise_scale ε]``, then the clamp;
    a step whose ``step_mask[k]`` is False leaves ``y`` as it was (so one compiled scan of
    ``num_steps`` steps serves every number of steps up to it). ``∇_y E`` is ``jax.grad``
    inside the scan: differentiating the result with respect to ``params`` or a traced
    ``step_size`` goes through the gradients themselves (second order). With
    ``detach_between_steps`` the position entering every step is a constant
    (``jax.lax.stop_gradient``).

    Args:
      energy_fn: per-example ``energy_fn(params, x, y) -> scalar``.
      params: its parameters.
      x: one input.
      y0: the start ``[*y_shape]``, floating point.
      num_steps: a positive Python int (the scan length).
      step_size: ``> 0``; a concrete value is checked, a traced one (a learned step size)
        is used as is.
      step_mask: ``bool [num_steps]`` (default all True).
      step_scales: ``[num_steps]`` factors on the step size (default 1).
      noise_scale: ``>= 0``: Langevin noise std added at every step (needs ``rng_key``).
      rng_key: PRNG key for the noise.
      detach_between_steps: stop the gradient between steps.
      clip_range: ``(low, high)``: clamp ``y`` after every step.

    Returns:
      :class:`EBTDescent` ``(y, ys, energies, grad_norms, nonfinite)``.

    Raises:
      ValueError: before any compute, for ``num_steps`` not a positive int, a non-positive
        ``step_size``, a negative ``noise_scale`` or noise without a key, a mask or scales
        of another length, or a ``y0`` the energy cannot take for ``x``.

    Example: on ``E = ½|y - 2x|²`` each step of size ``h`` shrinks the error by ``1 - h``::

      >>> energy = lambda p, x, y: 0.5 * jnp.sum((y - 2.0 * x) ** 2)
      >>> out = ebt_descent(energy, None, jnp.ones(2), jnp.zeros(2), num_steps=3,
      ...                   step_size=0.5, step_mask=jnp.array([True, True, False]))
      >>> out.y.tolist(), out.energies.round(3).tolist()
      ([1.5, 1.5], [4.0, 1.0, 0.25, 0.25])
    """
    num_steps, noisy = check_options(num_steps, step_size, noise_scale, rng_key)  # as minimize
    detach_between_steps = check_flag("detach_between_steps", detach_between_steps)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True)
    _check_vector("step_mask", step_mask, num_steps, "flag")
    _check_vector("step_scales", step_scales, num_steps, "factor")
    y0 = jnp.asarray(y0)
    check_floating("y0", y0)
    check_energy_takes("y0", energy_fn, params, x, y0)

    dtype = y0.dtype
    mask = jnp.ones(num_steps, bool) if step_mask is None else jnp.asarray(step_mask, bool)
    scales = (jnp.ones(num_steps, dtype) if step_scales is None
              else jnp.asarray(step_scales).astype(dtype))
    keys = jax.random.split(jax.random.key(0) if rng_key is None else rng_key, num_steps)
    step_size = jnp.asarray(step_size).astype(dtype)
    value_and_grad = jax.value_and_grad(energy_fn, argnums=2)

    def step(y, inputs):
        active, scale, key = inputs
        if detach_between_steps:
            y = jax.lax.stop_gradient(y)
        energy, grad = value_and_grad(params, x, y)
        new_y = y - step_size * scale * grad
        if noisy:
            new_y = new_y + noise_scale * jax.random.normal(key, y.shape, dtype)
        if clip_range is not None:
            new_y = jnp.clip(new_y, *clip_range)
        finite = jnp.isfinite(energy) & jnp.all(jnp.isfinite(grad))
        new_y = jnp.where(active, new_y, y)
        norm = jnp.sqrt(jnp.sum(jnp.square(grad)))
        return new_y, (new_y, energy, norm, (active & ~finite).astype(jnp.int32))

    y, (ys, energies, norms, nonfinite) = jax.lax.scan(step, y0, (mask, scales, keys))
    final = jnp.asarray(energy_fn(params, x, y)).astype(energies.dtype)
    energies = jnp.concatenate([energies, final[None]])
    # energies[k] is where step k started: a masked step repeats the energy before it.
    return EBTDescent(y, ys, energies, norms, jnp.sum(nonfinite))


# -- the loss transform -----------------------------------------------------------------------
class EBTReplay(NamedTuple):
    """A ring buffer of past examples and the model's predictions for them.

    Attributes:
      x: ``[C, ...]`` inputs; y: ``[C, *y_shape]`` targets; y_pred: ``[C, *y_shape]`` the
      final predictions made for them (detached); size: ``int32``, slots written (<= C);
      pointer: ``int32``, the next slot to write.
    """

    x: jax.Array
    y: jax.Array
    y_pred: jax.Array
    size: jax.Array
    pointer: jax.Array


class EBTState(NamedTuple):
    """The loss state of :func:`ebt`: the replay buffer (``None`` without one)."""

    replay: Optional[EBTReplay]


def other_targets(rng_key: jax.Array, y: jax.Array, num: int) -> jax.Array:
    """``[num, B, ...]``: for every example of ``y [B, ...]``, the targets of ``num`` other
    examples of the batch: the batch rolled by distinct shifts in ``[1, B - 1]`` (repeated
    only when there are fewer than ``num``), so no example is its own negative.

    Example::

      >>> other_targets(jax.random.key(0), jnp.arange(3.0), 2).sort(axis=0).tolist()
      [[1.0, 0.0, 0.0], [2.0, 2.0, 1.0]]
    """
    batch_size = y.shape[0]
    shifts = 1 + jax.random.choice(rng_key, batch_size - 1, (num,),
                                   replace=batch_size - 1 < num)
    return y[(jnp.arange(batch_size)[None, :] + shifts[:, None]) % batch_size]


def _mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(pred - target))


def ebt(energy_fn: Callable, *, num_steps: int = 4, mode: str = "system1",
        y0: Union[str, Callable] = "input", start_noise: Optional[float] = None,
        min_steps: int = 1, max_steps: Optional[int] = None, step_jitter: float = 0.0,
        langevin_noise: float = 0.0, replay_capacity: int = 0, replay_fraction: float = 0.0,
        contrastive_weight: float = 0.0, batch_negatives: int = 0, noise_negatives: int = 0,
        num_perturbed: int = 0, perturb_scale: float = 0.3, calibration_weight: float = 0.0,
        calibration_scale: float = 1.0, stationarity_weight: float = 0.0,
        energy_l2: float = 0.0, detach_between_steps: bool = False,
        clip_range: Optional[tuple[float, float]] = None) -> LossTransform:
    """Energy-based-transformer training as a :class:`~ebm_jax.losses.LossTransform`.

    Params are :func:`ebt_params` (the energy's params and the learned log step size); the
    batch is ``{"x": [B, ...], "y": [B, *y_shape]}`` (and ``"y0"`` when ``y0="batch"``).
    For every example the prediction is :func:`ebt_descent` from its start, and::

        system1: L = mean_k mean_b MSE(y_k, y)        (k = 1..num_steps)
        system2: L = mean_b MSE(y_K_b, y),  K_b ~ U{min_steps..max_steps}
        L += contrastive_weight * InfoNCE + calibration_weight * calibration
             + stationarity_weight * mean |h ∇_y E(x, y)|² + energy_l2 * mean E(x, y)²

    Args:
      energy_fn: per-example ``energy_fn(energy_params, x, y) -> scalar``.
      num_steps: ``K``, the steps of System 1 (and the default ``max_steps`` of System 2).
      mode: ``"system1"`` or ``"system2"``.
      y0: where the descent starts: ``"input"`` (``x`` itself; ``y`` must have its shape),
        ``"noise"`` (``start_noise * N(0, I)``), ``"target"`` (the target plus
        ``σ N(0, I)``, ``σ ~ U(0, start_noise)`` per example: the energy learns to pull
        perturbed answers back, a basin around every answer of a multimodal target;
        inference then starts from noise), ``"batch"`` (``batch["y0"]``) or a callable
        ``y0(rng_key, x) -> y0`` for one example.
      start_noise: std of Gaussian noise added to the start (default 1 for ``"noise"`` and
        ``"target"``, 0 otherwise): starts drawn around ``y0``, as best-of-N will draw them.
      min_steps, max_steps: System 2's range of steps (default ``[1, num_steps]``); the scan
        has ``max_steps`` steps and a mask, so the train step compiles once.
      step_jitter: ``j >= 0``: System 2 multiplies every step by ``exp(U(-j, j))``.
      langevin_noise: ``σ >= 0``: System 2 adds ``σ N(0, I)`` at every step.
      replay_capacity, replay_fraction: System 2's replay buffer of ``(x, y, y_hat)``; a
        fraction of every batch (its first examples) is replaced by buffered examples that
        start from their stored prediction.
      contrastive_weight: weight of the InfoNCE term ``-log softmax(-E)`` of the true ``y``
        among negatives: the detached final predictions, ``batch_negatives`` other targets
        of the batch (rolled), ``noise_negatives`` search results (below) and
        ``num_perturbed`` targets plus ``U(0, perturb_scale)`` times Gaussian noise.
      noise_negatives: per example, the results of that many descents from
        ``start_noise N(0, I)`` (the starts inference draws), detached: the minima a search
        from noise finds, spurious ones included, which the InfoNCE term pushes up unless
        they are the target (a short-run chain of contrastive divergence). Needs
        ``contrastive_weight > 0`` and ``start_noise > 0``. Measured on the ball-fork world
        model (seed 0): without them best-of-16 picked a frame with both ways at once in 27
        of 4,000 predictions, energies below the true frames'; with 2, in 1 to 5.
      calibration_weight: weight of ``mean (E(x, y') - calibration_scale ½|y' - y|²)² +
        E(x, y)²`` over the detached predictions of every step and the perturbed targets.
      stationarity_weight: weight of ``|h ∇_y E(x, y)|²`` at the true ``y``: the length of
        the step the descent would take from the answer. With ``h`` in it the term does not
        change when the energy is scaled by ``c`` and the step size by ``1 / c`` (the same
        descent); ``|∇_y E|²`` alone flattened the energy while the learned step grew to
        match (measured: ``h`` from 0.1 to 3.3 over 4,000 steps, then descents that
        diverged from some starts).
      energy_l2: weight of ``E(x, y)²`` (keeps energies at the scale of the start).
      detach_between_steps: see :func:`ebt_descent`.
      clip_range: clamp predictions after every step.

    State: :class:`EBTState`. Info: ``reconstruction`` (MSE of the final prediction),
    ``reconstruction_start``, ``energy_data`` (``E(x, y)``), ``energy_prediction``,
    ``energy_start``, ``energy_grad_norm``, ``step_size``, ``mean_steps``,
    ``nonfinite_steps`` and each weighted term's unweighted value.

    Raises:
      ValueError: for any bad option (before any compute); at ``init``/``loss``, a batch
        whose ``y`` the energy cannot take with ``x``, or starts of another shape.

    Example: a linear energy learns to denoise in 2 steps::

      >>> energy_fn = lambda w, x, y: 0.5 * jnp.sum((y - w * x) ** 2)
      >>> loss = ebt(energy_fn, num_steps=2)
      >>> params = ebt_params(jnp.float32(2.0), step_size=0.3)
      >>> batch = {"x": jnp.ones((8, 3)), "y": jnp.full((8, 3), 2.0)}
      >>> state = loss.init(jax.random.key(0), params, batch)
      >>> (value, (state, info)), grads = jax.value_and_grad(loss.loss, has_aux=True)(
      ...     params, state, batch, jax.random.key(1))
      >>> round(float(value), 3), bool(grads["log_step_size"] < 0)   # a longer step helps
      (0.365, True)
    """
    check_choice("mode", mode, MODES)
    system2 = mode == "system2"
    num_steps = check_int("num_steps", num_steps,
                          expected="a positive int (the number of descent steps)")
    if isinstance(y0, str):
        check_choice("y0", y0, STARTS + ("batch",))
    elif not callable(y0):
        raise ValueError(f"y0={y0!r}: expected 'input', 'noise', 'batch' or a callable "
                         "y0(rng_key, x) -> y0")
    if start_noise is None:
        start_noise = default_start_noise(y0)
    check_weight("start_noise", start_noise, 0.0, expected="a number >= 0 (finite)")
    if y0 in ("noise", "target") and not start_noise > 0:
        raise ValueError(f"start_noise={start_noise!r} with y0={y0!r}: expected a positive "
                         "std for the noisy starts")
    min_steps = check_int("min_steps", min_steps)
    max_steps = num_steps if max_steps is None else check_int("max_steps", max_steps)
    if not system2:
        extras = {"min_steps": (min_steps, 1), "max_steps": (max_steps, num_steps),
                  "step_jitter": (step_jitter, 0.0), "langevin_noise": (langevin_noise, 0.0),
                  "replay_capacity": (replay_capacity, 0),
                  "replay_fraction": (replay_fraction, 0.0)}
        for name, (value, default) in extras.items():
            if value != default:
                raise ValueError(f"{name}={value!r} with mode='system1': expected "
                                 f"mode='system2' (System 1 runs num_steps={num_steps} "
                                 "steps, deterministically)")
    if min_steps > max_steps:
        raise ValueError(f"min_steps={min_steps} > max_steps={max_steps}: expected "
                         "min_steps <= max_steps")
    check_weight("step_jitter", step_jitter, 0.0, expected="a number >= 0 (finite)")
    check_weight("langevin_noise", langevin_noise, 0.0, expected="a number >= 0 (finite)")
    replay_capacity = check_int("replay_capacity", replay_capacity, 0)
    replay_fraction = check_in_range("replay_fraction", replay_fraction, 0, 1)
    if (replay_capacity > 0) != (replay_fraction > 0):
        raise ValueError(f"replay_capacity={replay_capacity} with replay_fraction="
                         f"{replay_fraction}: expected both positive (a replay buffer) or "
                         "both 0")
    for name, value in (("contrastive_weight", contrastive_weight),
                        ("calibration_weight", calibration_weight),
                        ("stationarity_weight", stationarity_weight),
                        ("energy_l2", energy_l2)):
        check_weight(name, value, 0.0, expected="a number >= 0 (finite)")
    batch_negatives = check_int("batch_negatives", batch_negatives, 0)
    noise_negatives = check_int("noise_negatives", noise_negatives, 0)
    if noise_negatives and not (contrastive_weight > 0 and start_noise > 0):
        raise ValueError(f"noise_negatives={noise_negatives} with contrastive_weight="
                         f"{contrastive_weight} and start_noise={start_noise}: expected both "
                         "positive (the negatives enter the InfoNCE term; their starts are "
                         "start_noise N(0, I))")
    num_perturbed = check_int("num_perturbed", num_perturbed, 0)
    check_positive_finite("perturb_scale", perturb_scale)
    check_positive_finite("calibration_scale", calibration_scale)
    detach_between_steps = check_flag("detach_between_steps", detach_between_steps)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True)
    scan_steps = max_steps if system2 else num_steps
    value_and_grad_y = jax.value_and_grad(energy_fn, argnums=2)

    def check_batch(params, batch) -> tuple:
        _check_params(params)
        require_keys(batch, ("x", "y") + (("y0",) if y0 == "batch" else ()), "ebt")
        x = check_examples(batch, "ebt", floating=True)
        y = jnp.asarray(batch["y"])
        if shape_of(y)[:1] != (x.shape[0],):
            raise ValueError(f"ebt: batch['y'] has shape {shape_of(y)}: expected "
                             f"({x.shape[0]}, *y_shape), one target per example of batch['x']")
        check_floating("batch['y']", y)
        check_energy_takes("batch['y']", energy_fn, params["energy"], x[0], y[0],
                           given=shape_of(y), what=f"one target of shape {shape_of(y)[1:]}")
        if y0 == "input" and x.shape != y.shape:
            raise ValueError(f"y0='input' with batch['x'] of shape {x.shape} and batch['y'] of "
                             f"shape {y.shape}: expected one shape (the input is the start)")
        if y0 == "batch" and shape_of(batch["y0"]) != shape_of(y):
            raise ValueError(f"batch['y0'] has shape {shape_of(batch['y0'])}: expected "
                             f"{shape_of(y)}, the shape of batch['y']")
        if callable(y0):
            one = jax.eval_shape(y0, jax.random.key(0), x[0])
            if one.shape != y.shape[1:]:
                raise ValueError(f"y0(rng_key, x) returned shape {one.shape}: expected "
                                 f"{y.shape[1:]}, the shape of one target")
        if replay_capacity and replay_capacity < x.shape[0]:
            raise ValueError(f"replay_capacity={replay_capacity} with a batch of {x.shape[0]}: "
                             "expected a capacity of at least one batch")
        if contrastive_weight and batch_negatives and x.shape[0] < 2:
            raise ValueError(f"batch_negatives={batch_negatives} with a batch of {x.shape[0]}: "
                             "expected at least 2 examples (the negatives are other examples' "
                             "targets)")
        return x, y

    def init(rng_key, params, example_batch):
        x, y = check_batch(params, example_batch)
        if not replay_capacity:
            return EBTState(None)
        return EBTState(EBTReplay(jnp.zeros((replay_capacity, *x.shape[1:]), x.dtype),
                                  jnp.zeros((replay_capacity, *y.shape[1:]), y.dtype),
                                  jnp.zeros((replay_capacity, *y.shape[1:]), y.dtype),
                                  jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)))

    def starts(key, x, y, batch):
        if y0 == "batch":
            start = jnp.asarray(batch["y0"], y.dtype)
        elif y0 == "input":
            start = x.astype(y.dtype)
        elif y0 == "noise":
            start = jnp.zeros_like(y)
        elif y0 == "target":
            start = y
        else:
            start = jax.vmap(y0)(jax.random.split(key, x.shape[0]), x).astype(y.dtype)
        if start_noise and not (callable(y0)):
            noise_key, scale_key = jax.random.split(jax.random.fold_in(key, 1))
            scale = start_noise
            if y0 == "target":  # one std per example in [0, start_noise]: every distance
                scale = jax.random.uniform(scale_key, (y.shape[0],) + (1,) * (y.ndim - 1),
                                           y.dtype, 0.0, start_noise)
            start = start + scale * jax.random.normal(noise_key, y.shape, y.dtype)
        return start

    def replay_draw(key, replay, x, y, start):
        count = int(round(replay_fraction * x.shape[0]))
        if count == 0:
            return x, y, start
        k_index, = jax.random.split(key, 1)
        index = jax.random.randint(k_index, (count,), 0, jnp.maximum(replay.size, 1))
        use = replay.size > 0

        def mix(fresh, stored):
            head = jnp.where(use, stored[index], fresh[:count])
            return jnp.concatenate([head, fresh[count:]])

        return mix(x, replay.x), mix(y, replay.y), mix(start, replay.y_pred)

    def replay_push(replay, x, y, y_pred):
        size = x.shape[0]
        slots = (replay.pointer + jnp.arange(size)) % replay_capacity
        y_pred = jax.lax.stop_gradient(y_pred)
        return EBTReplay(replay.x.at[slots].set(x), replay.y.at[slots].set(y),
                         replay.y_pred.at[slots].set(y_pred),
                         jnp.minimum(replay.size + size, replay_capacity),
                         (replay.pointer + size) % replay_capacity)

    def search_from_noise(key, energy_params, step_size, x, y):
        """``[noise_negatives, B, ...]``: detached descents of ``scan_steps`` steps from
        ``start_noise N(0, I)``, as inference searches."""
        noise = start_noise * jax.random.normal(key, (noise_negatives, *y.shape), y.dtype)

        def one(x_b, start_b):
            return ebt_descent(energy_fn, energy_params, x_b, start_b, num_steps=scan_steps,
                               step_size=step_size, clip_range=clip_range).y

        found = jax.vmap(jax.vmap(one), in_axes=(None, 0))(x, noise)
        return jax.lax.stop_gradient(found)

    def loss(params, state, batch, rng_key):
        x, y = check_batch(params, batch)
        k_start, k_steps, k_jitter, k_noise, k_replay, k_neg = jax.random.split(rng_key, 6)
        batch_size = x.shape[0]
        start = starts(k_start, x, y, batch)
        if replay_capacity:
            x, y, start = replay_draw(k_replay, state.replay, x, y, start)
        step_size = ebt_step_size(params)
        energy_params = params["energy"]
        if system2:
            counts = jax.random.randint(k_steps, (batch_size,), min_steps, max_steps + 1)
            masks = jnp.arange(scan_steps)[None, :] < counts[:, None]
            scales = jnp.exp(jax.random.uniform(k_jitter, (batch_size, scan_steps), y.dtype,
                                                -step_jitter, step_jitter)) \
                if step_jitter else None
        else:
            counts = jnp.full((batch_size,), num_steps)
            masks, scales = None, None

        def one(x_b, start_b, mask_b, scale_b, key_b):
            return ebt_descent(energy_fn, energy_params, x_b, start_b, num_steps=scan_steps,
                               step_size=step_size, step_mask=mask_b, step_scales=scale_b,
                               noise_scale=langevin_noise if system2 else 0.0,
                               rng_key=key_b, detach_between_steps=detach_between_steps,
                               clip_range=clip_range)

        axes = (0, 0, None if masks is None else 0, None if scales is None else 0, 0)
        out = jax.vmap(one, in_axes=axes)(x, start, masks, scales,
                                          jax.random.split(k_noise, batch_size))
        per_step = jax.vmap(jax.vmap(_mse), in_axes=(1, None))(out.ys, y)    # [K, B]
        final = jax.vmap(_mse)(out.y, y)
        value = jnp.mean(final) if system2 else jnp.mean(per_step)
        energies = jax.vmap(energy_fn, in_axes=(None, 0, 0))
        e_data = energies(energy_params, x, y)
        info = {"reconstruction": jnp.mean(final),
                "reconstruction_start": jnp.mean(jax.vmap(_mse)(start, y)),
                "energy_data": jnp.mean(e_data),
                "energy_prediction": jnp.mean(out.energies[:, -1]),
                "energy_start": jnp.mean(out.energies[:, 0]),
                "energy_grad_norm": jnp.mean(out.grad_norms[:, 0]),
                "step_size": step_size,
                "mean_steps": jnp.mean(counts.astype(jnp.float32)),
                "nonfinite_steps": jnp.sum(out.nonfinite).astype(jnp.float32)}
        y_flat = y.reshape(batch_size, -1)
        k_roll, k_pert, k_scale, k_search = jax.random.split(k_neg, 4)
        perturbed = None
        if num_perturbed:
            sizes = jax.random.uniform(k_scale, (num_perturbed, batch_size), y.dtype, 0.0,
                                       perturb_scale)
            noise = jax.random.normal(k_pert, (num_perturbed, *y.shape), y.dtype)
            perturbed = y[None] + sizes.reshape(sizes.shape + (1,) * (y.ndim - 1)) * noise
        if contrastive_weight:
            negatives = [jax.lax.stop_gradient(out.y)[None]]
            if batch_negatives:
                negatives.append(other_targets(k_roll, y, batch_negatives))
            if noise_negatives:
                negatives.append(search_from_noise(k_search, energy_params, step_size, x, y))
            if perturbed is not None:
                negatives.append(perturbed)
            negatives = jnp.concatenate(negatives)                       # [M, B, ...]
            e_neg = jax.vmap(energies, in_axes=(None, None, 0))(energy_params, x, negatives)
            logits = -jnp.concatenate([e_data[None], e_neg])             # [1 + M, B]
            nce = jnp.mean(jax.nn.logsumexp(logits, axis=0) - logits[0])
            info["contrastive"] = nce
            value = value + contrastive_weight * nce
        if calibration_weight:
            candidates = [jax.lax.stop_gradient(jnp.moveaxis(out.ys, 1, 0))]   # [K, B, ...]
            if perturbed is not None:
                candidates.append(perturbed)
            candidates = jnp.concatenate(candidates)
            e_cand = jax.vmap(energies, in_axes=(None, None, 0))(energy_params, x, candidates)
            dist = 0.5 * jnp.sum(jnp.square(candidates.reshape(*candidates.shape[:2], -1)
                                            - y_flat[None]), axis=-1)
            calibration = jnp.mean(jnp.square(e_cand - calibration_scale * dist)) \
                + jnp.mean(jnp.square(e_data))
            info["calibration"] = calibration
            value = value + calibration_weight * calibration
        if stationarity_weight:
            grads = jax.vmap(value_and_grad_y, in_axes=(None, 0, 0))(energy_params, x, y)[1]
            steps = step_size * grads.reshape(batch_size, -1)
            stationarity = jnp.mean(jnp.sum(jnp.square(steps), -1))
            info["stationarity"] = stationarity
            value = value + stationarity_weight * stationarity
        if energy_l2:
            value = value + energy_l2 * jnp.mean(jnp.square(e_data))
        new_state = state
        if replay_capacity:
            new_state = EBTState(replay_push(state.replay, x, y, out.y))
        return value, (new_state, info)

    return LossTransform(init, loss)
