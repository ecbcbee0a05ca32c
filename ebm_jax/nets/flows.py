"""Normalising flows (Flax NNX) and pure adapters: RealNVP and neural spline flows.

A flow is an invertible map ``x = f(z)`` from a standard-normal base ``z ~ N(0, I_D)`` to
data ``x``, so that ``log p(x) = log N(f⁻¹(x); 0, I) + log|det ∂f⁻¹/∂x|``. Two families of
coupling layers:

- :class:`RealNVP` (Dinh et al. 2017): affine couplings ``x_b = z_b exp(s(z_a)) + t(z_a)``
  with a tanh-bounded log-scale ``s``.
- :class:`NeuralSplineFlow` (Durkan et al. 2019): monotone rational-quadratic splines on
  ``[-bound, bound]`` whose bins, heights and knot derivatives come from the conditioner,
  the identity outside (linear tails).

Examples are flat vectors ``x[D]`` (2-D toys, flattened data); masks alternate over the
coordinates' parity, so that for ``D = 2`` each layer transforms one coordinate given the
other (for ``D = 1`` a layer is an elementwise map with learned constants). The conditioners'
last layers start at zero, so a new flow is exactly the identity map (its density is the
standard normal).

Module methods are per example (batch them with ``jax.vmap``):
``forward(z[D]) -> (x[D], log_det)`` (base to data), ``inverse(x[D]) -> (z[D], log_det)``
(data to base) and ``log_prob(x[D]) -> scalar``. :func:`flow_functions` turns a flow into
pure functions of an explicit params pytree (``nnx.split``/``nnx.merge``, like
:func:`ebm_jax.nets.pure`), :func:`as_noise` into a
:class:`~ebm_jax.energies.distributions.NoiseDistribution` for NCE.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ebm_jax._checks import check_in_range, check_int
from ebm_jax.energies.distributions import NoiseDistribution
from ebm_jax.nets.adapters import split_params

__all__ = ["FlowFunctions", "NeuralSplineFlow", "RealNVP", "as_noise", "flow_functions"]

_LOG_2PI = math.log(2 * math.pi)


def _check_hidden(hidden) -> tuple[int, ...]:
    try:
        widths = tuple(hidden)
    except TypeError:
        raise ValueError(f"hidden={hidden!r}: expected a sequence of positive ints") from None
    for w in widths:
        check_int("hidden", w, 1, expected=f"a sequence of positive ints (got {hidden!r})")
    return tuple(int(w) for w in widths)


def _mask(dim: int, parity: int) -> np.ndarray:
    """``[dim]`` float32: 1 where a coupling layer keeps (conditions on) the coordinate."""
    if dim == 1:
        return np.zeros(1, np.float32)
    return ((np.arange(dim) + parity) % 2 == 0).astype(np.float32)


class _Conditioner(nnx.Module):
    """``[D] -> [out]`` MLP (SiLU) whose last layer starts at zero (the coupling's identity)."""

    def __init__(self, dim: int, hidden: tuple[int, ...], out: int, *, rngs: nnx.Rngs):
        widths = [dim, *hidden]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs)
                                for a, b in zip(widths[:-1], widths[1:])])
        self.last = nnx.Linear(widths[-1], out, kernel_init=nnx.initializers.zeros_init(),
                               bias_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for layer in self.hidden:
            h = jax.nn.silu(layer(h))
        return self.last(h)


def _standard_normal_log_prob(z: jax.Array) -> jax.Array:
    return -0.5 * jnp.sum(z ** 2) - 0.5 * z.shape[-1] * _LOG_2PI


class _Flow(nnx.Module):
    """A stack of coupling layers over a standard-normal base (shared methods)."""

    dim: int

    def forward(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Base to data: ``z[D] -> (x[D], log|det ∂x/∂z|)``."""
        self._require(z, "forward")
        log_det = jnp.zeros((), z.dtype)
        for layer in self.layers:
            z, ld = layer.forward(z)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Data to base: ``x[D] -> (z[D], log|det ∂z/∂x|)``."""
        self._require(x, "inverse")
        log_det = jnp.zeros((), x.dtype)
        for layer in reversed(self.layers):
            x, ld = layer.inverse(x)
            log_det = log_det + ld
        return x, log_det

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Normalised log-density of one example ``x[D]`` (a scalar)."""
        z, log_det = self.inverse(x)
        return _standard_normal_log_prob(z) + log_det

    def _require(self, x: jax.Array, who: str) -> None:
        if jnp.shape(x) != (self.dim,):
            raise ValueError(f"{type(self).__name__}.{who} got x of shape {jnp.shape(x)}: "
                             f"expected one flat example of shape ({self.dim},) (methods are "
                             "per example; batch them with jax.vmap)")


# --------------------------------------------------------------------------- RealNVP

class _AffineCoupling(nnx.Module):
    def __init__(self, dim: int, hidden: tuple[int, ...], parity: int, max_log_scale: float, *,
                 rngs: nnx.Rngs):
        self.dim = dim
        self.parity = parity
        self.max_log_scale = max_log_scale
        self.conditioner = _Conditioner(dim, hidden, 2 * dim, rngs=rngs)

    def _params(self, kept: jax.Array):
        out = self.conditioner(kept)
        raw_scale, shift = out[:self.dim], out[self.dim:]
        bound = self.max_log_scale
        return bound * jnp.tanh(raw_scale / bound), shift

    def forward(self, z):
        mask = jnp.asarray(_mask(self.dim, self.parity), z.dtype)
        log_scale, shift = self._params(z * mask)
        log_scale = (1 - mask) * log_scale
        x = mask * z + (1 - mask) * (z * jnp.exp(log_scale) + shift)
        return x, jnp.sum(log_scale)

    def inverse(self, x):
        mask = jnp.asarray(_mask(self.dim, self.parity), x.dtype)
        log_scale, shift = self._params(x * mask)
        log_scale = (1 - mask) * log_scale
        z = mask * x + (1 - mask) * (x - shift) * jnp.exp(-log_scale)
        return z, -jnp.sum(log_scale)


class RealNVP(_Flow):
    """RealNVP: affine coupling layers with alternating masks over a standard-normal base.

    Layer ``i`` keeps the coordinates of one parity and maps the others by
    ``x_b = z_b · exp(s) + t`` with ``(s, t) = MLP(z_a)`` and the log-scale bounded,
    ``s = m · tanh(s_raw / m)`` (``m = max_log_scale``). The MLPs' last layers start at zero:
    a new flow is the identity.

    Args:
      dim: ``D``, the length of one (flat) example; ``>= 1``.
      num_layers: coupling layers, ``>= 1`` (use an even number so that every coordinate
        is transformed equally often).
      hidden: hidden widths of each conditioner MLP (SiLU).
      max_log_scale: the bound ``m > 0`` on each layer's log-scale.
      rngs: ``nnx.Rngs`` for initialisation.

    Raises:
      ValueError: naming the argument, its value and what was expected.

    Example::

      >>> flow = RealNVP(2, num_layers=4, hidden=(16,), rngs=nnx.Rngs(0))
      >>> x, log_det = flow.forward(jnp.array([0.5, -1.0]))       # identity at init
      >>> x.tolist(), float(log_det)
      ([0.5, -1.0], 0.0)
      >>> round(float(flow.log_prob(jnp.zeros(2))), 4)             # -log(2π)
      -1.8379
    """

    def __init__(self, dim: int, *, num_layers: int = 8, hidden: Sequence[int] = (64, 64),
                 max_log_scale: float = 3.0, rngs: nnx.Rngs):
        self.dim = check_int("dim", dim, 1)
        num_layers = check_int("num_layers", num_layers, 1)
        hidden = _check_hidden(hidden)
        max_log_scale = check_in_range("max_log_scale", max_log_scale, 0, math.inf,
                                       include_low=False, expected="a positive finite number")
        self.layers = nnx.List([_AffineCoupling(self.dim, hidden, i % 2, max_log_scale, rngs=rngs)
                                for i in range(num_layers)])


# --------------------------------------------------------------------------- spline flow

def _spline_knots(raw_widths, raw_heights, raw_derivs, bound, min_width, min_height,
                  min_derivative):
    """Knots of a monotone RQ spline on ``[-bound, bound]^2`` from unconstrained params.

    Returns ``(xs[K+1], ys[K+1], derivs[K+1])``; the end derivatives are 1 (linear tails).
    ``raw_derivs = 0`` gives derivative 1, so all-zero params give the identity.
    """
    num_bins = raw_widths.shape[-1]

    def knots(raw, min_size):
        sizes = min_size + (1 - min_size * num_bins) * jax.nn.softmax(raw)
        cum = jnp.concatenate([jnp.zeros(1, sizes.dtype), jnp.cumsum(sizes)])
        cum = 2 * bound * cum - bound
        return cum.at[0].set(-bound).at[-1].set(bound)

    xs = knots(raw_widths, min_width)
    ys = knots(raw_heights, min_height)
    offset = math.log(math.expm1(1 - min_derivative))   # softplus(offset) + min = 1
    inner = min_derivative + jax.nn.softplus(raw_derivs + offset)
    ones = jnp.ones(1, inner.dtype)
    return xs, ys, jnp.concatenate([ones, inner, ones])


def _rq_spline(x, xs, ys, derivs, *, inverse: bool):
    """The RQ spline (or its inverse) at the scalar ``x``: ``(y, log|dy/dx|)``; identity outside
    ``[xs[0], xs[-1]]`` (for the inverse, outside ``[ys[0], ys[-1]]``)."""
    lo, hi = (ys[0], ys[-1]) if inverse else (xs[0], xs[-1])
    inside = (x >= lo) & (x <= hi)
    xc = jnp.clip(x, lo, hi)          # keeps the inside branch finite (and its gradient)
    edges = ys if inverse else xs
    k = jnp.clip(jnp.sum(xc >= edges[1:-1]), 0, xs.shape[0] - 2)
    x_k, w_k = xs[k], xs[k + 1] - xs[k]
    y_k, h_k = ys[k], ys[k + 1] - ys[k]
    d_k, d_k1 = derivs[k], derivs[k + 1]
    s_k = h_k / w_k
    if inverse:
        dy = xc - y_k
        c2 = d_k1 + d_k - 2 * s_k
        a = h_k * (s_k - d_k) + dy * c2
        b = h_k * d_k - dy * c2
        c = -s_k * dy
        disc = jnp.maximum(b ** 2 - 4 * a * c, 0.0)
        xi = jnp.clip(2 * c / (-b - jnp.sqrt(disc)), 0.0, 1.0)
        out = x_k + xi * w_k
    else:
        xi = (xc - x_k) / w_k
    t = xi * (1 - xi)
    denominator = s_k + (d_k1 + d_k - 2 * s_k) * t
    if not inverse:
        out = y_k + h_k * (s_k * xi ** 2 + d_k * t) / denominator
    log_deriv = (2 * jnp.log(s_k) + jnp.log(d_k1 * xi ** 2 + 2 * s_k * t + d_k * (1 - xi) ** 2)
                 - 2 * jnp.log(denominator))
    if inverse:
        log_deriv = -log_deriv
    return jnp.where(inside, out, x), jnp.where(inside, log_deriv, 0.0)


class _SplineCoupling(nnx.Module):
    def __init__(self, dim: int, hidden: tuple[int, ...], parity: int, num_bins: int,
                 bound: float, min_bin: float, min_derivative: float, *, rngs: nnx.Rngs):
        self.dim = dim
        self.parity = parity
        self.num_bins = num_bins
        self.bound = bound
        self.min_bin = min_bin
        self.min_derivative = min_derivative
        self.conditioner = _Conditioner(dim, hidden, dim * (3 * num_bins - 1), rngs=rngs)

    def _apply(self, x, inverse: bool):
        mask = jnp.asarray(_mask(self.dim, self.parity), x.dtype)
        k = self.num_bins
        raw = self.conditioner(x * mask).reshape(self.dim, 3 * k - 1)

        def one(xi, r):
            knots = _spline_knots(r[:k], r[k:2 * k], r[2 * k:], self.bound, self.min_bin,
                                  self.min_bin, self.min_derivative)
            return _rq_spline(xi, *knots, inverse=inverse)

        y, log_deriv = jax.vmap(one)(x, raw)
        return mask * x + (1 - mask) * y, jnp.sum((1 - mask) * log_deriv)

    def forward(self, z):
        return self._apply(z, inverse=False)

    def inverse(self, x):
        return self._apply(x, inverse=True)


class NeuralSplineFlow(_Flow):
    """Neural spline flow: rational-quadratic spline couplings (Durkan et al. 2019).

    Each layer keeps the coordinates of one parity and maps every other coordinate by a
    monotone rational-quadratic spline with ``num_bins`` bins on ``[-bound, bound]`` (the
    identity outside: linear tails with derivative 1 at the ends), its bin widths, heights
    and inner knot derivatives given by an MLP of the kept coordinates. Bin widths and
    heights are at least ``min_bin`` of the interval and derivatives at least
    ``min_derivative``. The MLPs' last layers start at zero, which makes every spline the
    identity: a new flow is the identity.

    Args:
      dim: ``D``, the length of one (flat) example; ``>= 1``.
      num_layers: coupling layers, ``>= 1``.
      hidden: hidden widths of each conditioner MLP (SiLU).
      num_bins: spline bins ``K >= 2``.
      bound: the spline acts on ``[-bound, bound]``, ``bound > 0``.
      min_bin: the least bin width and height as a fraction of the interval, in
        ``(0, 1 / num_bins)``.
      min_derivative: the least knot derivative, in ``(0, 1)``.
      rngs: ``nnx.Rngs`` for initialisation.

    Raises:
      ValueError: naming the argument, its value and what was expected.

    Example::

      >>> flow = NeuralSplineFlow(2, num_layers=2, hidden=(16,), num_bins=4, rngs=nnx.Rngs(0))
      >>> z, log_det = flow.inverse(jnp.array([0.5, 7.0]))    # identity at init (and outside)
      >>> z.tolist(), round(float(log_det), 6)
      ([0.5, 7.0], 0.0)
    """

    def __init__(self, dim: int, *, num_layers: int = 4, hidden: Sequence[int] = (64, 64),
                 num_bins: int = 8, bound: float = 4.0, min_bin: float = 1e-3,
                 min_derivative: float = 1e-3, rngs: nnx.Rngs):
        self.dim = check_int("dim", dim, 1)
        num_layers = check_int("num_layers", num_layers, 1)
        num_bins = check_int("num_bins", num_bins, 2)
        bound = check_in_range("bound", bound, 0, math.inf, include_low=False,
                               expected="a positive finite number")
        hidden = _check_hidden(hidden)
        min_bin = check_in_range("min_bin", min_bin, 0, 1 / num_bins, include_low=False,
                                 include_high=False,
                                 expected=f"a number in (0, 1/num_bins = {1 / num_bins:.4g})")
        min_derivative = check_in_range("min_derivative", min_derivative, 0, 1,
                                        include_low=False, include_high=False,
                                        expected="a number in (0, 1)")
        self.layers = nnx.List([
            _SplineCoupling(self.dim, hidden, i % 2, num_bins, bound, min_bin, min_derivative,
                            rngs=rngs)
            for i in range(num_layers)])


# --------------------------------------------------------------------------- pure adapters

class FlowFunctions(NamedTuple):
    """A flow as pure functions of its params pytree (from :func:`flow_functions`).

    Attributes:
      log_prob: ``log_prob(params, x[D]) -> scalar``, the normalised log-density of one example.
      sample: ``sample(params, rng_key, n) -> [n, D]`` (``n`` a Python int).
      sample_and_log_prob: ``sample_and_log_prob(params, rng_key, n) -> ([n, D], [n])``, the
        samples and their log-densities from one forward pass; reparameterised, so both are
        differentiable with respect to ``params`` through the samples.
      forward: ``forward(params, z[D]) -> (x[D], log_det)``, base to data.
      inverse: ``inverse(params, x[D]) -> (z[D], log_det)``, data to base.
      params: the flow's initial trainable parameters, a nested dict of arrays.
      dim: ``D``, the length of one example.
    """

    log_prob: Callable[[Any, jax.Array], jax.Array]
    sample: Callable[[Any, jax.Array, int], jax.Array]
    sample_and_log_prob: Callable[[Any, jax.Array, int], tuple[jax.Array, jax.Array]]
    forward: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    inverse: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    params: Any
    dim: int


def flow_functions(module: _Flow) -> FlowFunctions:
    """Split a flow (:class:`RealNVP`, :class:`NeuralSplineFlow`) into pure functions of its
    params pytree.

    The module is split once (``nnx.split``) and rebuilt with ``nnx.merge`` at trace time
    inside each function, as :func:`ebm_jax.nets.pure` does.

    Example::

      >>> flow = flow_functions(RealNVP(2, num_layers=2, hidden=(16,), rngs=nnx.Rngs(0)))
      >>> x, log_q = flow.sample_and_log_prob(flow.params, jax.random.key(0), 5)
      >>> x.shape, log_q.shape
      ((5, 2), (5,))
      >>> bool(jnp.allclose(log_q, jax.vmap(flow.log_prob, (None, 0))(flow.params, x)))
      True
    """
    if not isinstance(module, _Flow):
        raise ValueError(f"module={module!r}: expected a flow (RealNVP or NeuralSplineFlow)")
    rebuild, params = split_params(module, "FlowFunctions.params")
    dim = module.dim

    def log_prob(params, x):
        return rebuild(params).log_prob(x)

    def forward(params, z):
        return rebuild(params).forward(z)

    def inverse(params, x):
        return rebuild(params).inverse(x)

    def sample_and_log_prob(params, rng_key, n):
        n = check_int("sample n", n, 0, expected="a non-negative Python int")
        z = jax.random.normal(rng_key, (n, dim), jnp.float32)
        x, log_det = jax.vmap(forward, (None, 0))(params, z)
        return x, jax.vmap(_standard_normal_log_prob)(z) - log_det

    def sample(params, rng_key, n):
        return sample_and_log_prob(params, rng_key, n)[0]

    return FlowFunctions(log_prob, sample, sample_and_log_prob, forward, inverse, params, dim)


def as_noise(functions: FlowFunctions, params: Any) -> NoiseDistribution:
    """A flow with fixed ``params`` as a :class:`~ebm_jax.energies.distributions.NoiseDistribution`
    (for :func:`ebm_jax.losses.nce`); its examples are flat vectors of shape ``(D,)``.

    ``sample`` stops gradients; ``log_prob`` closes over ``params`` as constants.

    Example::

      >>> flow = flow_functions(RealNVP(2, num_layers=2, hidden=(16,), rngs=nnx.Rngs(0)))
      >>> noise = as_noise(flow, flow.params)
      >>> noise.sample(jax.random.key(0), 3).shape, noise.shape
      ((3, 2), (2,))
    """
    if not isinstance(functions, FlowFunctions):
        raise ValueError(f"functions={functions!r}: expected FlowFunctions "
                         "(from flow_functions(flow))")
    dim = functions.dim

    def sample(rng_key, n):
        return jax.lax.stop_gradient(functions.sample(params, rng_key, n))

    def log_prob(x):
        if jnp.shape(x) != (dim,):
            raise ValueError(f"flow noise log_prob got x of shape {jnp.shape(x)}: expected one "
                             f"flat example of shape ({dim},) (batch it with jax.vmap)")
        return functions.log_prob(params, x)

    return NoiseDistribution(sample, log_prob, (dim,))
