"""Score matching: fit the model score ``s(x) = -∇ₓE(x)`` with no sampling and no log Z.

- :func:`denoising_score_matching` (Vincent 2011): match the score at
  ``x̃ = x + σε`` to the score of the noising kernel, ``-ε/σ``. Its optimum is
  the score of the *smoothed* data density ``p_data * N(0, σ² I)``, not of
  ``p_data`` itself (for Gaussian data of covariance ``S``: covariance
  ``S + σ² I``); small ``σ`` means small bias and high variance.
- :func:`sliced_score_matching` (Song et al. 2019): Hyvärinen's score
  matching ``E[tr ∇ₓs(x) + ½|s(x)|²]`` with the trace estimated along random
  projections ``v`` by Hessian-vector products (``jax.jvp`` of ``jax.grad``).
  Unbiased: its optimum is the data score itself.

Both are stateless (state ``()``) and need ``batch["x"]`` only.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from ebm_jax._checks import FLOAT32_MAX, FLOAT32_TINY, check_in_range, check_int
from ebm_jax.energies import EnergyFn
from ebm_jax.losses.base import LossTransform, check_examples, require_keys


def _sum_except_batch(a: jax.Array) -> jax.Array:
    return jnp.sum(a.reshape(a.shape[0], -1), axis=-1)


def _positive(value, name: str) -> float:
    """A noise level: a positive finite number that float32 can hold, as a float."""
    return check_in_range(name, value, FLOAT32_TINY, FLOAT32_MAX,
                          expected="a positive finite number that float32 can hold "
                                   f"(in [{FLOAT32_TINY:.4g}, {FLOAT32_MAX:.4g}])")


def denoising_score_matching(energy_fn: EnergyFn, *, sigma: Optional[float] = None,
                             sigmas: Optional[Sequence[float]] = None,
                             noise_conditional: bool = False) -> LossTransform:
    """Denoising score matching with the ``σ²`` weighting that makes the loss O(1) in σ.

    For each example a noise level ``σ`` (the one ``sigma``, or one of
    ``sigmas`` drawn uniformly per example, NCSN-style) and ``ε ~ N(0, I)``
    are drawn; with ``x̃ = x + σε`` and ``s = -∇ₓE``::

        L = mean_batch ½ |σ s(x̃) + ε|²        (summed over the example's elements)

    which is ``σ² · ½|s(x̃) - (-ε/σ)|²``, the regression of the model score on
    the noising kernel's score with weight ``λ(σ) = σ²``.

    The optimum is the score of ``p_data * N(0, σ²I)``. For an unconditional
    energy and several levels it is the ``σ²``-weighted compromise: for
    Gaussian data of covariance ``S`` and a quadratic energy, the precision
    ``(S + (Σσ⁴ / Σσ²) I)⁻¹``. With ``noise_conditional=True`` the energy is
    told the level, ``energy_fn(params, x̃, σ)`` (a scalar ``σ``), and can fit
    every smoothed density at once (NCSN).

    Args:
      energy_fn: ``energy_fn(params, x) -> scalar`` (or ``(params, x, sigma)``).
      sigma: the noise standard deviation (> 0). Give exactly one of ``sigma``
        and ``sigmas``.
      sigmas: several noise standard deviations (each > 0).
      noise_conditional: pass ``σ`` to the energy as a third argument.

    Info: ``score_norm``: mean ``|∇ₓE(x̃)|`` over the batch.

    Example::

      >>> energy_fn = lambda mean, x: 0.5 * jnp.sum((x - mean) ** 2)
      >>> x = jax.random.normal(jax.random.key(0), (64, 2))
      >>> dsm = denoising_score_matching(energy_fn, sigma=0.1)
      >>> value, (_, info) = jax.jit(dsm.loss)(jnp.zeros(2), (), {"x": x}, jax.random.key(1))
      >>> value.shape, sorted(info)
      ((), ['score_norm'])
    """
    if (sigma is None) == (sigmas is None):
        raise ValueError(f"sigma={sigma!r}, sigmas={sigmas!r}: expected exactly one of them")
    if sigma is not None:
        levels = (_positive(sigma, "sigma"),)
    else:
        if isinstance(sigmas, (str, bytes)) or not hasattr(sigmas, "__len__") or len(sigmas) == 0:
            raise ValueError(f"sigmas={sigmas!r}: expected a non-empty sequence of "
                             "positive numbers")
        levels = tuple(_positive(s, f"sigmas[{i}]") for i, s in enumerate(sigmas))
    levels_arr = jnp.asarray(levels, jnp.float32)

    def energy_at(params, x, s):
        return energy_fn(params, x, s) if noise_conditional else energy_fn(params, x)

    grad_x = jax.vmap(jax.grad(energy_at, argnums=1), in_axes=(None, 0, 0))

    def init(rng_key, params, example_batch):
        require_keys(example_batch, ("x",), "denoising_score_matching")
        check_examples(example_batch, "denoising_score_matching", floating=True)
        return ()

    def loss(params, state, batch, rng_key):
        require_keys(batch, ("x",), "denoising_score_matching")
        x = check_examples(batch, "denoising_score_matching", floating=True)
        k_level, k_eps = jax.random.split(rng_key)
        if len(levels) == 1:
            s = jnp.full((x.shape[0],), levels[0], jnp.float32)
        else:
            s = levels_arr[jax.random.randint(k_level, (x.shape[0],), 0, len(levels))]
        eps = jax.random.normal(k_eps, x.shape, x.dtype)
        s_b = s.reshape((-1,) + (1,) * (x.ndim - 1))
        grads = grad_x(params, x + s_b * eps, s)              # ∇E = -score
        value = 0.5 * jnp.mean(_sum_except_batch((eps - s_b * grads) ** 2))
        info = {"score_norm": jnp.mean(jnp.sqrt(_sum_except_batch(grads**2)))}
        return value, (state, info)

    return LossTransform(init, loss)


def sliced_score_matching(energy_fn: EnergyFn, *, num_projections: int = 1,
                          variance_reduction: bool = True,
                          projection: str = "gaussian") -> LossTransform:
    """Sliced score matching: Hyvärinen's objective with random projections.

    With ``s = -∇ₓE`` and ``H = ∇²ₓE`` (so ``vᵀ∇ₓs v = -vᵀHv``), per example and
    projection ``v`` (``E[vvᵀ] = I``)::

        SSM:     -vᵀHv + ½ (vᵀ∇E)²
        SSM-VR:  -vᵀHv + ½ |∇E|²          (variance_reduction=True)

    averaged over ``num_projections`` projections and the batch. ``Hv`` comes
    from ``jax.jvp`` of ``jax.grad(E)`` (one forward-over-reverse pass per
    projection, never the full Hessian). Both are unbiased estimates of
    ``E[tr ∇s + ½|s|²]``, whose minimiser is the data score.

    Args:
      energy_fn: ``energy_fn(params, x) -> scalar``.
      num_projections: projections per example (a positive int).
      variance_reduction: use the exact ``½|∇E|²`` (SSM-VR) instead of its
        projection.
      projection: ``"gaussian"`` (``v ~ N(0, I)``) or ``"rademacher"`` (±1).

    Info: ``score_norm``: mean ``|∇ₓE(x)|`` over the batch.

    Example::

      >>> energy_fn = lambda mean, x: 0.5 * jnp.sum((x - mean) ** 2)
      >>> x = jax.random.normal(jax.random.key(0), (64, 2))
      >>> ssm = sliced_score_matching(energy_fn, num_projections=4)
      >>> value, (_, info) = jax.jit(ssm.loss)(jnp.zeros(2), (), {"x": x}, jax.random.key(1))
      >>> value.shape, sorted(info)
      ((), ['score_norm'])
    """
    check_int("num_projections", num_projections)
    if projection not in ("gaussian", "rademacher"):
        raise ValueError(f"projection={projection!r}: expected 'gaussian' or 'rademacher'")

    def per_example(params, x, vs):
        grad_fn = jax.grad(lambda y: energy_fn(params, y))

        def one(v):
            g, hv = jax.jvp(grad_fn, (x,), (v,))
            vhv = jnp.sum(v * hv)
            if variance_reduction:
                return -vhv + 0.5 * jnp.sum(g**2), g
            return -vhv + 0.5 * jnp.sum(v * g) ** 2, g

        values, gs = jax.vmap(one)(vs)
        return jnp.mean(values), jnp.sqrt(jnp.sum(gs[0] ** 2))

    batched = jax.vmap(per_example, in_axes=(None, 0, 0))

    def init(rng_key, params, example_batch):
        require_keys(example_batch, ("x",), "sliced_score_matching")
        check_examples(example_batch, "sliced_score_matching", floating=True)
        return ()

    def loss(params, state, batch, rng_key):
        require_keys(batch, ("x",), "sliced_score_matching")
        x = check_examples(batch, "sliced_score_matching", floating=True)
        shape = (x.shape[0], num_projections) + x.shape[1:]
        if projection == "gaussian":
            vs = jax.random.normal(rng_key, shape, x.dtype)
        else:
            vs = jax.random.rademacher(rng_key, shape, x.dtype)
        values, grad_norms = batched(params, x, vs)
        return jnp.mean(values), (state, {"score_norm": jnp.mean(grad_norms)})

    return LossTransform(init, loss)
