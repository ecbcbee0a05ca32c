"""Seeded 2-D toy densities (FFJORD-style), as pure JAX samplers with exact log-densities.

Every toy is a :class:`Toy2D`: a pure sampler ``sample(rng_key, n) -> [n, 2]``
float32 (jittable with ``n`` static, deterministic given the key) and, where
the density has a closed form, a normalised per-example
``log_prob(x[2]) -> scalar`` (so ``-log_prob`` is a normalised energy: batch
it with ``jax.vmap``).

===============  ===================================================  ==========
name             density                                              log_prob
===============  ===================================================  ==========
``8gaussians``   equal mixture of 8 isotropic Gaussians on a circle   exact
``two_moons``    two interleaved noisy half circles                   ``None``
``rings``        four concentric rings, equal weights                 exact
``checkerboard`` uniform on the 8 black squares of a 4x4 board        exact
``swiss_roll``   a noisy 2-D spiral                                   ``None``
``pinwheel``     five curved arms                                     ``None``
``two_spirals``  two interleaved spirals: a 400-Gaussian mixture      exact
===============  ===================================================  ==========

``labelled_8gaussians`` is ``8gaussians`` with each draw's component as its class label
(``sample_labelled``), for class-conditional generation and guidance.

Example::

  >>> toy = get_toy("8gaussians")
  >>> x = toy.sample(jax.random.key(0), 512)
  >>> x.shape, x.dtype
  ((512, 2), dtype('float32'))
  >>> jax.vmap(toy.log_prob)(x).shape
  (512,)
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np


class Toy2D(NamedTuple):
    """A named 2-D toy density.

    Attributes:
      name: the registry key.
      sample: ``sample(rng_key, n) -> [n, 2]`` float32 exact draws.
      log_prob: ``log_prob(x[2]) -> scalar`` normalised log-density, or ``None``
        where there is no closed form.
      sample_labelled: ``sample_labelled(rng_key, n) -> (x [n, 2], labels [n] int32)``: the
        same draws as ``sample`` with each one's class (its mixture component), or ``None``
        for an unlabelled toy.
    """

    name: str
    sample: Callable[[jax.Array, int], jax.Array]
    log_prob: Optional[Callable[[jax.Array], jax.Array]]
    sample_labelled: Optional[Callable[[jax.Array, int], tuple]] = None


# --------------------------------------------------------------------------- 8gaussians

_EIGHT_SCALE = 4.0 / 1.414          # FFJORD divides by the literal 1.414, not sqrt(2)
_EIGHT_STD = 0.5 / 1.414
_EIGHT_ANGLES = np.arange(8) * (np.pi / 4)
# NumPy, not jnp: importing this module must not initialise a JAX backend.
EIGHT_GAUSSIANS_MEANS = (_EIGHT_SCALE * np.stack(
    [np.cos(_EIGHT_ANGLES), np.sin(_EIGHT_ANGLES)], axis=-1)).astype(np.float32)
"""``[8, 2]`` NumPy float32 means of ``8gaussians``: radius ``4 / 1.414``, angles ``k π/4``."""


def _eight_gaussians_sample_labelled(rng_key: jax.Array, n: int) -> tuple:
    """``([n, 2], [n])``: a uniform component ``k`` (the label) and ``mean_k + (0.5 / 1.414) ε``."""
    k_comp, k_noise = jax.random.split(rng_key)
    comp = jax.random.randint(k_comp, (n,), 0, 8)
    noise = jax.random.normal(k_noise, (n, 2), jnp.float32)
    return jnp.asarray(EIGHT_GAUSSIANS_MEANS)[comp] + _EIGHT_STD * noise, comp.astype(jnp.int32)


def _eight_gaussians_sample(rng_key: jax.Array, n: int) -> jax.Array:
    """``[n, 2]`` draws of :func:`_eight_gaussians_sample_labelled` without their labels."""
    return _eight_gaussians_sample_labelled(rng_key, n)[0]


def _eight_gaussians_log_prob(x: jax.Array) -> jax.Array:
    """``log (1/8) Σ_k N(x; mean_k, (0.5/1.414)² I)`` for one point ``x[2]``."""
    sq = jnp.sum((x - jnp.asarray(EIGHT_GAUSSIANS_MEANS)) ** 2, axis=-1)
    log_comp = -0.5 * sq / _EIGHT_STD**2 - jnp.log(2 * jnp.pi * _EIGHT_STD**2)
    return jax.nn.logsumexp(log_comp) - jnp.log(8.0)


# --------------------------------------------------------------------------- two_moons

_MOONS_NOISE = 0.1                  # sklearn's ``noise``, before the x2 scaling


def _two_moons_sample(rng_key: jax.Array, n: int) -> jax.Array:
    """``[n, 2]`` draws of sklearn's ``make_moons(noise=0.1)`` mapped by ``2 x + (-1, -0.2)``.

    The moon is chosen with probability ½ each and the position along it
    uniformly (sklearn spaces them evenly instead). After scaling, the upper
    moon is the half circle of radius 2 about ``(-1, -0.2)``, the lower one the
    half circle of radius 2 about ``(1, 0.8)``, with isotropic noise of std 0.2;
    the whole density is point-symmetric about ``(0, 0.3)``, its mean.
    """
    k_moon, k_angle, k_noise = jax.random.split(rng_key, 3)
    lower = jax.random.bernoulli(k_moon, 0.5, (n,))
    theta = jnp.pi * jax.random.uniform(k_angle, (n,), jnp.float32)
    outer = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    inner = jnp.stack([1.0 - jnp.cos(theta), 0.5 - jnp.sin(theta)], axis=-1)
    x = jnp.where(lower[:, None], inner, outer)
    x = x + _MOONS_NOISE * jax.random.normal(k_noise, (n, 2), jnp.float32)
    return 2.0 * x + jnp.array([-1.0, -0.2], jnp.float32)


# --------------------------------------------------------------------------- rings

RINGS_RADII = (0.75, 1.5, 2.25, 3.0)
"""Radii of the four equally weighted rings of ``rings``."""
RINGS_NOISE = 0.08
"""Std of the radial Gaussian noise of ``rings``."""
_RINGS_MIN_RADIUS = 1e-6


def _rings_sample(rng_key: jax.Array, n: int) -> jax.Array:
    """``[n, 2]`` draws: ``r = r_k + 0.08 ε`` for a uniform ring ``k``, angle uniform on [0, 2π)."""
    k_ring, k_noise, k_angle = jax.random.split(rng_key, 3)
    radii = jnp.asarray(RINGS_RADII, jnp.float32)
    r = radii[jax.random.randint(k_ring, (n,), 0, len(RINGS_RADII))]
    r = r + RINGS_NOISE * jax.random.normal(k_noise, (n,), jnp.float32)
    theta = 2 * jnp.pi * jax.random.uniform(k_angle, (n,), jnp.float32)
    return jnp.stack([r * jnp.cos(theta), r * jnp.sin(theta)], axis=-1)


def _rings_log_prob(x: jax.Array) -> jax.Array:
    """``log p(x) = log p_r(|x|) - log(2π |x|)`` with ``p_r = ¼ Σ_k N(r_k, 0.08²)``.

    This is the exact density of the sampler up to the radial Gaussians' mass
    below ``r = 0`` (a draw with ``r < 0`` lands at radius ``|r|``), which is
    ``Φ(-0.75 / 0.08) ≈ 3e-21`` for the innermost ring: negligible, so the
    density is normalised to float precision. ``|x|`` is floored at ``1e-6``
    so that the origin gives a finite value (``≈ -31.7``, density ``~1e-14``;
    the exact density has an integrable ``1/|x|`` spike there of negligible
    mass) and a finite gradient.
    """
    r = jnp.sqrt(jnp.maximum(jnp.sum(x**2), _RINGS_MIN_RADIUS**2))
    radii = jnp.asarray(RINGS_RADII, jnp.float32)
    log_comp = (-0.5 * ((r - radii) / RINGS_NOISE) ** 2
                - jnp.log(RINGS_NOISE * jnp.sqrt(2 * jnp.pi)))
    log_pr = jax.nn.logsumexp(log_comp) - jnp.log(float(len(RINGS_RADII)))
    return log_pr - jnp.log(2 * jnp.pi * r)


# --------------------------------------------------------------------------- checkerboard

def _checkerboard_sample(rng_key: jax.Array, n: int) -> jax.Array:
    """``[n, 2]`` draws of FFJORD's checkerboard: uniform on the 8 black squares of [-4, 4)²."""
    k1, k2, k3 = jax.random.split(rng_key, 3)
    x1 = 4.0 * jax.random.uniform(k1, (n,), jnp.float32) - 2.0
    x2 = jax.random.uniform(k2, (n,), jnp.float32) - 2.0 * jax.random.randint(k3, (n,), 0, 2)
    x2 = x2 + jnp.mod(jnp.floor(x1), 2.0)
    return 2.0 * jnp.stack([x1, x2], axis=-1)


def _checkerboard_log_prob(x: jax.Array) -> jax.Array:
    """``-log 32`` on the 8 black squares, ``-inf`` elsewhere.

    The squares are the half-open cells ``[2i, 2i+2) x [2j, 2j+2)`` with
    ``i, j ∈ {-2, -1, 0, 1}`` and ``i + j`` even; their total area is 32.
    Outside the support the log-density is exactly ``-inf`` (so
    ``exp(log_prob)`` is exactly 0 there), never a large finite negative.
    """
    cell = jnp.floor(x / 2.0)
    inside = jnp.all((x >= -4.0) & (x < 4.0)) & (jnp.mod(cell[0] + cell[1], 2.0) == 0)
    return jnp.where(inside, -jnp.log(32.0), -jnp.inf).astype(jnp.float32)


# --------------------------------------------------------------------------- swiss_roll

SWISS_ROLL_SCALE = 4.0 / (4.5 * math.pi)
"""``swiss_roll`` maps ``t (cos t, sin t)``, ``t ∈ [1.5π, 4.5π]``, by this factor (max radius 4)."""
_SWISS_ROLL_NOISE = 1.0             # sklearn's ``noise``, before scaling


def _swiss_roll_sample(rng_key: jax.Array, n: int) -> jax.Array:
    """``[n, 2]`` draws: the ``(x, z)`` plane of sklearn's ``make_swiss_roll(noise=1.0)``.

    ``t ~ U[1.5π, 4.5π]``, ``x = s (t cos t + ε₁, t sin t + ε₂)`` with
    ``s = 4 / 4.5π`` (FFJORD uses ``s = 1/5``), so the roll fills about
    ``[-4, 4]²`` and the noise std is ``s ≈ 0.28``.
    """
    k_t, k_noise = jax.random.split(rng_key)
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(k_t, (n,), jnp.float32))
    x = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1)
    x = x + _SWISS_ROLL_NOISE * jax.random.normal(k_noise, (n, 2), jnp.float32)
    return SWISS_ROLL_SCALE * x


# --------------------------------------------------------------------------- pinwheel

_PINWHEEL_ARMS = 5
_PINWHEEL_RADIAL_STD = 0.3
_PINWHEEL_TANGENTIAL_STD = 0.1
_PINWHEEL_RATE = 0.25


def _pinwheel_sample(rng_key: jax.Array, n: int) -> jax.Array:
    """``[n, 2]`` draws of FFJORD's pinwheel with 5 arms.

    ``f = (1 + 0.3 ε₁, 0.1 ε₂)`` is rotated by ``-(2πk/5 + 0.25 exp(f₁))`` for a
    uniform arm ``k`` (FFJORD's ``einsum("ti,tij->tj")``) and doubled.
    """
    k_arm, k_feat = jax.random.split(rng_key)
    arm = jax.random.randint(k_arm, (n,), 0, _PINWHEEL_ARMS)
    f = jax.random.normal(k_feat, (n, 2), jnp.float32) * jnp.array(
        [_PINWHEEL_RADIAL_STD, _PINWHEEL_TANGENTIAL_STD], jnp.float32)
    f = f.at[:, 0].add(1.0)
    angle = 2 * jnp.pi * arm / _PINWHEEL_ARMS + _PINWHEEL_RATE * jnp.exp(f[:, 0])
    c, s = jnp.cos(angle), jnp.sin(angle)
    out = jnp.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], axis=-1)
    return (2.0 * out).astype(jnp.float32)


# --------------------------------------------------------------------------- two_spirals

_SPIRAL_CENTRES_PER_ARM = 200
_SPIRAL_NOISE = 0.1
_SPIRAL_TURN = 3 * np.pi           # FFJORD's 540 degrees


def _spiral_centres() -> np.ndarray:
    """``[400, 2]`` centres: FFJORD's 2spirals curve ``θ (-cos θ, sin θ) / 3`` (and its
    mirror image) at ``θ = 3π sqrt(u)``, ``u`` on an even grid of 200 midpoints in (0, 1),
    FFJORD's ``θ = 3π sqrt(U)`` with ``U`` uniform quantised to the grid."""
    u = (np.arange(_SPIRAL_CENTRES_PER_ARM) + 0.5) / _SPIRAL_CENTRES_PER_ARM
    theta = _SPIRAL_TURN * np.sqrt(u)
    arm = np.stack([-np.cos(theta) * theta, np.sin(theta) * theta], axis=-1) / 3.0
    return np.concatenate([arm, -arm]).astype(np.float32)


TWO_SPIRALS_CENTRES = _spiral_centres()
"""``[400, 2]`` NumPy float32 component means of ``two_spirals`` (200 per arm)."""


def _two_spirals_sample(rng_key: jax.Array, n: int) -> jax.Array:
    """``[n, 2]`` draws: a uniform one of the 400 centres plus ``0.1 ε``.

    FFJORD's ``2spirals`` draws the position along the curve continuously; here it is
    one of 200 evenly spaced quantiles per arm (neighbours at most 0.08 apart, under
    the noise std 0.1), so that the density is a finite mixture with an exact
    ``log_prob``.
    """
    k_comp, k_noise = jax.random.split(rng_key)
    comp = jax.random.randint(k_comp, (n,), 0, len(TWO_SPIRALS_CENTRES))
    noise = jax.random.normal(k_noise, (n, 2), jnp.float32)
    return jnp.asarray(TWO_SPIRALS_CENTRES)[comp] + _SPIRAL_NOISE * noise


def _two_spirals_log_prob(x: jax.Array) -> jax.Array:
    """``log (1/400) Σ_k N(x; c_k, 0.1² I)`` for one point ``x[2]``."""
    sq = jnp.sum((x - jnp.asarray(TWO_SPIRALS_CENTRES)) ** 2, axis=-1)
    log_comp = -0.5 * sq / _SPIRAL_NOISE**2 - jnp.log(2 * jnp.pi * _SPIRAL_NOISE**2)
    return jax.nn.logsumexp(log_comp) - jnp.log(float(len(TWO_SPIRALS_CENTRES)))


# --------------------------------------------------------------------------- registry

TOY_DENSITIES: dict[str, Toy2D] = {
    "8gaussians": Toy2D("8gaussians", _eight_gaussians_sample, _eight_gaussians_log_prob),
    "two_moons": Toy2D("two_moons", _two_moons_sample, None),
    "rings": Toy2D("rings", _rings_sample, _rings_log_prob),
    "checkerboard": Toy2D("checkerboard", _checkerboard_sample, _checkerboard_log_prob),
    "swiss_roll": Toy2D("swiss_roll", _swiss_roll_sample, None),
    "pinwheel": Toy2D("pinwheel", _pinwheel_sample, None),
    "two_spirals": Toy2D("two_spirals", _two_spirals_sample, _two_spirals_log_prob),
    "labelled_8gaussians": Toy2D("labelled_8gaussians", _eight_gaussians_sample,
                                 _eight_gaussians_log_prob, _eight_gaussians_sample_labelled),
}
"""All toy densities by name."""


def get_toy(name: str) -> Toy2D:
    """Look a toy density up by name (one of :data:`TOY_DENSITIES`).

    Example::

      >>> toy = get_toy("rings")
      >>> toy.sample(jax.random.key(0), 4).shape
      (4, 2)
      >>> get_toy("spirals")
      Traceback (most recent call last):
      ValueError: toy='spirals': expected one of ['8gaussians', 'checkerboard', ...]
    """
    if name not in TOY_DENSITIES:
        raise ValueError(f"toy={name!r}: expected one of {sorted(TOY_DENSITIES)}")
    return TOY_DENSITIES[name]
