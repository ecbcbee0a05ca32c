"""The mass matrix of HMC and the preconditioner of MALA: identity, diagonal or dense.

Both samplers take it as its inverse, ``Σ = M⁻¹``: set it to (an estimate of) the target's
covariance and every direction looks like a unit Gaussian to the sampler, so one step size
fits all of them. ``inverse_mass`` is

* ``None``: the identity;
* a 1-D array ``[D]``: the diagonal of ``Σ`` (the target's marginal variances);
* a 2-D array ``[D, D]``: a dense symmetric positive definite ``Σ`` (the target's
  covariance, correlations included),

with ``D`` the flattened size of one chain's position. With the Cholesky factor
``Σ = L Lᵀ`` the samplers need four operations, gathered in :class:`MassMatrix`:

=====================  =========================  ==============================================
operation              formula                    where
=====================  =========================  ==============================================
``velocity(v)``        ``Σ v``                    HMC's drift ``x += ε M⁻¹ p``; MALA's ``h Σ ∇E``
``scale_noise(z)``     ``L z`` (cov ``Σ``)        MALA's proposal noise
``momentum(z)``        ``L⁻ᵀ z`` (cov ``Σ⁻¹=M``)  HMC's momentum draw
``kinetic_energy(p)``  ``½ pᵀ Σ p``               HMC's Hamiltonian
=====================  =========================  ==============================================

Example::

  >>> sigma = jnp.array([[4.0, 1.0], [1.0, 1.0]])
  >>> mass = mass_matrix(sigma, jnp.zeros(2))
  >>> z = jax.random.normal(jax.random.key(0), (20000, 2))
  >>> cov = jnp.cov(jax.vmap(mass.scale_noise)(z).T)          # about sigma
  >>> bool(jnp.allclose(cov, sigma, atol=0.15))
  True
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from ebm_jax._checks import is_traced


class MassMatrix(NamedTuple):
    """The four operations of an inverse mass ``Σ = L Lᵀ`` on vectors shaped like one
    chain's position (see the module docstring)."""

    velocity: Callable[[jax.Array], jax.Array]
    scale_noise: Callable[[jax.Array], jax.Array]
    momentum: Callable[[jax.Array], jax.Array]
    kinetic_energy: Callable[[jax.Array], jax.Array]


def check_inverse_mass(inverse_mass: Any) -> Any:
    """Validate an inverse mass (``None`` = identity; ``[D]`` diagonal; ``[D, D]`` dense);
    return it as an array (or ``None``).

    Concrete values are checked: finite; a diagonal positive; a dense matrix square,
    symmetric (to float32 rounding) and positive definite. A traced array only for its rank.

    Example::

      >>> check_inverse_mass([[1.0, 2.0], [2.0, 1.0]])
      Traceback (most recent call last):
      ...
      ValueError: inverse_mass=[[1.0, 2.0], [2.0, 1.0]]: expected a symmetric positive definite...
      ...(its smallest eigenvalue is -1)
    """
    if inverse_mass is None:
        return None
    traced = is_traced(inverse_mass)
    arr = inverse_mass if traced else np.asarray(inverse_mass)
    shown = inverse_mass if traced else np.asarray(arr).tolist()
    if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[0] != arr.shape[1]):
        raise ValueError(f"inverse_mass has shape {tuple(arr.shape)}: expected a 1-D array [D] "
                         "(the diagonal of the inverse mass, one entry per position element) "
                         "or a square 2-D array [D, D] (a dense inverse mass)")
    if traced:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ValueError(f"inverse_mass={shown}: expected finite entries")
    if arr.ndim == 1:
        if not np.all(arr > 0):
            raise ValueError(f"inverse_mass={shown}: expected finite positive entries")
        return arr
    scale = max(float(np.max(np.abs(arr))), np.finfo(np.float32).tiny)
    if not np.allclose(arr, arr.T, rtol=1e-5, atol=1e-6 * scale):
        raise ValueError(f"inverse_mass={shown}: expected a symmetric matrix")
    smallest = float(np.linalg.eigvalsh(np.asarray(arr, np.float64)).min())
    if not smallest > 0:
        raise ValueError(f"inverse_mass={shown}: expected a symmetric positive definite "
                         f"matrix (its smallest eigenvalue is {smallest:.3g})")
    return arr


def check_mass_size(inverse_mass: Any, position_shape: tuple) -> None:
    """Raise unless the inverse mass matches ``D``, the flattened size of the position."""
    if inverse_mass is None:
        return
    size = int(np.prod(position_shape))
    expected = (size,) * jnp.ndim(inverse_mass)
    if tuple(jnp.shape(inverse_mass)) != expected:
        raise ValueError(
            f"inverse_mass has shape {tuple(jnp.shape(inverse_mass))}: expected {expected}, "
            f"from the flattened size of the position (shape {tuple(position_shape)})")


def mass_matrix(inverse_mass: Any, position: jax.Array) -> MassMatrix:
    """The :class:`MassMatrix` of an inverse mass (checked by :func:`check_inverse_mass`)
    for chains whose one position is shaped like ``position``.

    The Cholesky factor of a dense ``Σ`` is computed here, once per call: inside a vmapped
    kernel with an unbatched ``Σ`` that is once per step for all chains.
    """
    shape, dtype = position.shape, position.dtype
    if inverse_mass is None:
        return MassMatrix(lambda v: v, lambda z: z, lambda z: z,
                          lambda p: 0.5 * jnp.sum(jnp.square(p)))
    check_mass_size(inverse_mass, shape)
    sigma = jnp.asarray(inverse_mass, dtype)
    if sigma.ndim == 1:
        diag = sigma.reshape(shape)
        return MassMatrix(lambda v: diag * v, lambda z: jnp.sqrt(diag) * z,
                          lambda z: z / jnp.sqrt(diag),
                          lambda p: 0.5 * jnp.sum(diag * jnp.square(p)))
    chol = jnp.linalg.cholesky(sigma)

    def flat(fn):
        return lambda v: fn(v.reshape(-1)).reshape(shape)

    def kinetic_energy(p):
        return 0.5 * jnp.sum(jnp.square(chol.T @ p.reshape(-1)))  # ½ |Lᵀp|² = ½ pᵀΣp

    return MassMatrix(flat(lambda v: sigma @ v), flat(lambda z: chol @ z),
                      flat(lambda z: solve_triangular(chol.T, z, lower=False)), kinetic_energy)
