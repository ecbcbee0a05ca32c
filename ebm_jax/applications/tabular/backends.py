"""Backends of TabEBM's class energies: what plays the role of the paper's in-context
classifier (TabPFN) that tells a class's rows from its surrogate negatives.

A backend is a :class:`ClassEnergyBackend`: ``fit`` turns one class's standardised rows and
its surrogate negatives into parameters, ``logits`` reads them at a point as two logits
``[real, surrogate]``, and the class energy is ``E_c(x) = -logsumexp(logits)``
(:func:`class_energy`), low near the class's rows.

* :func:`kernel_backend`: training-free, an in-context Gaussian-kernel classifier,
  ``logit_real(x) = log sum_i exp(-|x - x_i|^2 / 2h^2)`` over the class's rows and the same
  sum over the negatives; its energy is a differentiable kernel density of the class (the
  far negatives barely touch it near the data). Bandwidth by Scott's rule or by leave-one-out
  likelihood. Its SGLD step is in units of the squared bandwidth (``step_scale``): the
  energy's curvature at a row is ``1/h^2``, and the paper's step 0.1, chosen for TabPFN's
  smooth logits, overshoots every mode once ``h^2 < 0.05`` (seen on iris' setosa at 20 rows,
  ``h = 0.19``: chains at 1e4), while ``0.1 h^2`` moves a chain a tenth of the way to its
  mode a step, whatever the bandwidth.
* :func:`network_backend`: a small MLP per class trained for a few hundred Adam steps to tell
  the rows from noise drawn from a Gaussian fitted to the class (plus the negatives):
  noise-contrastive estimation of the class density's ratio to that Gaussian, whose
  log-density both logits carry (a normalisable energy with quadratic walls).
* :func:`in_context_backend`: your own in-context classifier, ``logits_fn(context_x,
  context_y, x) -> [2]`` (context labels 0 for rows, 1 for negatives), differentiable in JAX.

And the paper's ablation: :func:`shared_kernel_energy`, one kernel classifier over all
classes read as ``E(x, y) = -log p(y | x)`` (no density: what distinct class energies fix).

Rows come padded to a common count with a mask, so that ``fit`` and ``logits`` of the first two
vmap over classes; an in-context function sees only real rows (``vmappable=False``: the
estimator loops over classes).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ebm_jax._checks import check_choice, check_int, check_positive_finite
from ebm_jax.nets import MLP, pure


class ClassEnergyBackend(NamedTuple):
    """How one class's energy is made and read.

    Attributes:
      name: what the estimator reports (``"kernel"``, ``"network"``, ``"in_context"``).
      init: ``init(rng_key, num_features) -> initial params`` (eager, once per class).
      fit: ``fit(rng_key, initial, rows [N, D], row_mask [N], negatives [M, D]) -> params``,
        pure; rows past the mask are padding.
      logits: ``logits(params, x [D]) -> [2]``: the real and the surrogate logit.
      vmappable: whether ``fit`` and ``logits`` may be vmapped over classes with padded rows.
      step_scale: ``step_scale(params) -> scalar`` multiplying the sampler's step for this
        class (None: 1), for an energy whose curvature is set by its params.
      init_from_table: ``init_from_table(rows [K, N, D], row_mask [K, N]) -> initial params``
        stacked over the ``K`` classes, for a backend whose class fits share a statistic of
        the whole table (the kernel's pooled within-class spread); None: ``init`` per class.
    """

    name: str
    init: Callable[[jax.Array, int], Any]
    fit: Callable[..., Any]
    logits: Callable[[Any, jax.Array], jax.Array]
    vmappable: bool = True
    step_scale: Optional[Callable[[Any], jax.Array]] = None
    init_from_table: Optional[Callable[[jax.Array, jax.Array], Any]] = None


def class_energy(backend: ClassEnergyBackend) -> Callable[[Any, jax.Array], jax.Array]:
    """The class energy ``E_c(x) = -logsumexp(logits(params, x))``, a per-example scalar.

    Example::

      >>> backend = kernel_backend(bandwidth=0.5)
      >>> rows = jnp.array([[0.0, 0.0], [1.0, 0.0]])
      >>> negatives = jnp.array([[5.0, 5.0], [-5.0, -5.0]])
      >>> params = backend.fit(None, (), rows, jnp.ones(2, bool), negatives)
      >>> energy = class_energy(backend)
      >>> bool(energy(params, jnp.zeros(2)) < energy(params, jnp.array([3.0, 3.0])))
      True
    """
    return _energy_of_logits(backend.logits)


# One energy per logits function, not per backend: the kernel's bandwidth rules share their
# logits, so their jitted samplers compile once a shape.
@functools.lru_cache(maxsize=64)
def _energy_of_logits(logits: Callable) -> Callable[[Any, jax.Array], jax.Array]:
    def energy(params, x):
        return -jax.nn.logsumexp(logits(params, x))

    return energy


# -- the kernel backend -----------------------------------------------------------------
class KernelParams(NamedTuple):
    """A class's in-context kernel classifier.

    Attributes:
      rows: ``[N, D]`` the class's standardised rows (padding included).
      log_weights: ``[N]``: 0 for a row, ``-inf`` for padding.
      negatives: ``[M, D]`` surrogate negatives.
      bandwidth: a scalar ``h``, or ``[D]`` one per feature (a diagonal bandwidth matrix).
    """

    rows: jax.Array
    log_weights: jax.Array
    negatives: jax.Array
    bandwidth: jax.Array


BANDWIDTH_RULES = ("scott", "loo", "scott_diagonal", "scott_pooled")
# A feature's diagonal bandwidth is at least this share of the class's mean feature std (a
# feature constant within a class, a one-hot column, would otherwise get a zero bandwidth).
MIN_DIAGONAL_SHARE = 0.1
# Leave-one-out likelihood searches h over these multiples of the class's mean std.
LOO_GRID = tuple(float(f) for f in jnp.geomspace(0.02, 2.0, 40))


def _masked_moments(rows, mask):
    """Each feature's mean and variance ``[D]`` over the masked rows."""
    weights = mask / jnp.sum(mask)
    mean = weights @ rows
    return mean, weights @ (rows - mean) ** 2


def _masked_std(rows, mask):
    """The mean over features of each feature's standard deviation over the masked rows."""
    return jnp.maximum(jnp.mean(jnp.sqrt(_masked_moments(rows, mask)[1])), 1e-3)


def scott_bandwidth(rows: jax.Array, row_mask: jax.Array) -> jax.Array:
    """Scott's rule for a ``D``-dimensional Gaussian kernel: ``h = s n^(-1/(D+4))``, with
    ``s`` the mean per-feature standard deviation of the ``n`` masked rows.

    Example::

      >>> rows = jax.random.normal(jax.random.key(0), (100, 2))
      >>> round(float(scott_bandwidth(rows, jnp.ones(100, bool))), 2)
      0.45
    """
    return _masked_std(rows, row_mask) * _scott_factor(row_mask, rows.shape[-1])


def _scott_factor(row_mask: jax.Array, num_features: int) -> jax.Array:
    """Scott's factor ``n^(-1/(D+4))`` of the ``n`` masked rows in ``D`` dimensions."""
    return jnp.sum(row_mask) ** (-1.0 / (num_features + 4))


def scott_diagonal_bandwidth(rows: jax.Array, row_mask: jax.Array) -> jax.Array:
    """Scott's rule per feature, ``[D]``: ``h_j = s_j n^(-1/(D+4))`` with ``s_j`` feature
    ``j``'s standard deviation over the ``n`` masked rows (at least :data:`MIN_DIAGONAL_SHARE`
    of their mean): the diagonal of the bandwidth matrix that scipy's ``gaussian_kde`` takes
    as Scott's factor times the data's covariance. A class spread wide in one feature and
    narrow in another gets a kernel of the same shape.

    Example::

      >>> rows = jax.random.normal(jax.random.key(0), (100, 2)) * jnp.array([1.0, 0.1])
      >>> [round(float(h), 2) for h in scott_diagonal_bandwidth(rows, jnp.ones(100, bool))]
      [0.45, 0.04]
    """
    std = jnp.sqrt(_masked_moments(rows, row_mask)[1])
    floor = MIN_DIAGONAL_SHARE * _masked_std(rows, row_mask)
    return jnp.maximum(std, floor) * _scott_factor(row_mask, rows.shape[-1])


def pooled_within_class_std(rows: jax.Array, row_mask: jax.Array) -> jax.Array:
    """Each feature's within-class standard deviation pooled over the classes, ``[D]``: the
    squared deviations of every row from its own class's mean, summed over all classes and
    divided by ``n - K`` (``rows`` ``[K, N, D]`` padded, ``row_mask`` ``[K, N]``), the spread
    a linear discriminant assumes every class shares.

    Example::

      >>> rows = jnp.array([[[0.0, 0.0], [2.0, 0.0]], [[10.0, 1.0], [12.0, 3.0]]])
      >>> pooled_within_class_std(rows, jnp.ones((2, 2), bool)).tolist()
      [1.4142135381698608, 1.0]
    """
    mask = jnp.asarray(row_mask, rows.dtype)
    counts = jnp.sum(mask, 1, keepdims=True)
    means = jnp.einsum("kn,knd->kd", mask, rows) / counts
    squares = jnp.einsum("kn,knd->d", mask, (rows - means[:, None]) ** 2)
    return jnp.sqrt(squares / (jnp.sum(mask) - rows.shape[0]))


def scott_pooled_bandwidth(rows: jax.Array, row_mask: jax.Array,
                           pooled_std: jax.Array) -> jax.Array:
    """Scott's rule per feature with the table's pooled within-class spread, ``[D]``:
    ``h_j = s_j n^(-1/(D+4))``, ``s_j`` feature ``j``'s :func:`pooled_within_class_std` (at
    least :data:`MIN_DIAGONAL_SHARE` of their mean) and ``n`` this class's masked rows. A
    class of 6 rows estimates 13 spreads poorly; pooled over the classes, every row of the
    table informs them (as standardisation already uses every row), while each class keeps
    its own rows as kernel centres and its own energy.

    Example::

      >>> rows = jnp.zeros((16, 2))
      >>> [round(float(h), 3) for h in scott_pooled_bandwidth(rows, jnp.ones(16, bool),
      ...                                                    jnp.array([1.0, 0.01]))]
      [0.63, 0.032]
    """
    floor = MIN_DIAGONAL_SHARE * jnp.mean(pooled_std)
    return jnp.maximum(pooled_std, floor) * _scott_factor(row_mask, rows.shape[-1])


def loo_bandwidth(rows: jax.Array, row_mask: jax.Array) -> jax.Array:
    """The bandwidth on a grid (:data:`LOO_GRID` times the mean feature std) that maximises the
    leave-one-out log-likelihood of the masked rows under the kernel density of the others.

    Example::

      >>> rows = jax.random.normal(jax.random.key(0), (200, 1))
      >>> 0.2 < float(loo_bandwidth(rows, jnp.ones(200, bool))) < 0.6
      True
    """
    n, d = rows.shape
    count = jnp.sum(row_mask)
    sq = jnp.sum((rows[:, None, :] - rows[None, :, :]) ** 2, -1)
    others = row_mask[None, :] & row_mask[:, None] & ~jnp.eye(n, dtype=bool)
    grid = _masked_std(rows, row_mask) * jnp.asarray(LOO_GRID)

    def loo_log_likelihood(h):
        log_k = jnp.where(others, -sq / (2 * h ** 2), -jnp.inf)
        per_row = (jax.nn.logsumexp(log_k, axis=1) - jnp.log(count - 1)
                   - d * jnp.log(h) - 0.5 * d * math.log(2 * math.pi))
        return jnp.sum(jnp.where(row_mask, per_row, 0.0))

    return grid[jnp.argmax(jax.vmap(loo_log_likelihood)(grid))]


@functools.lru_cache(maxsize=64)  # one per setting: jitted uses compile once
def kernel_backend(bandwidth: Union[str, float] = "scott") -> ClassEnergyBackend:
    """The training-free in-context kernel classifier (TabPFN's role, no weights needed).

    Args:
      bandwidth: ``"scott"`` (:func:`scott_bandwidth`), ``"loo"`` (:func:`loo_bandwidth`),
        ``"scott_diagonal"`` (:func:`scott_diagonal_bandwidth`, one per feature),
        ``"scott_pooled"`` (:func:`scott_pooled_bandwidth`, one per feature from the
        table's pooled within-class spread, which ``init_from_table`` hands each class's
        ``fit`` as its initial params; ``init`` gives unit spreads for a class fitted
        alone), or a positive number in standardised units.

    Example::

      >>> backend = kernel_backend("loo")
      >>> rows = jax.random.normal(jax.random.key(0), (30, 3))
      >>> params = backend.fit(None, (), rows, jnp.ones(30, bool), 5.0 * jnp.eye(3))
      >>> backend.logits(params, jnp.zeros(3)).shape
      (2,)
    """
    if isinstance(bandwidth, str):
        check_choice("bandwidth", bandwidth, list(BANDWIDTH_RULES))
        pooled = bandwidth == "scott_pooled"  # the rule reads the fit's initial params
        rule = {"scott": scott_bandwidth, "loo": loo_bandwidth,
                "scott_diagonal": scott_diagonal_bandwidth,
                "scott_pooled": None}[bandwidth]
    else:
        check_positive_finite("bandwidth", bandwidth,
                              f"a positive number or one of {list(BANDWIDTH_RULES)}")
        h, pooled = float(bandwidth), False

        def rule(rows, mask):
            return jnp.asarray(h, rows.dtype)

    def init(rng_key, num_features):
        return jnp.ones(num_features) if pooled else ()

    def init_from_table(rows, row_mask):  # every class fits with the same pooled spread
        spread = pooled_within_class_std(rows, row_mask)
        return jnp.broadcast_to(spread, (rows.shape[0],) + spread.shape)

    def fit(rng_key, initial, rows, row_mask, negatives):
        del rng_key
        row_mask = jnp.asarray(row_mask, bool)
        widths = (scott_pooled_bandwidth(rows, row_mask, initial) if pooled
                  else rule(rows, row_mask))
        return KernelParams(rows, jnp.where(row_mask, 0.0, -jnp.inf), negatives, widths)

    return ClassEnergyBackend("kernel", init, fit, _kernel_logits, step_scale=_kernel_step_scale,
                              init_from_table=init_from_table if pooled else None)


def _kernel_logits(params: KernelParams, x: jax.Array) -> jax.Array:
    """The kernel classifier's ``[real, surrogate]`` logits (every bandwidth rule's)."""
    scale = 1.0 / (2.0 * params.bandwidth ** 2)  # a scalar, or one per feature
    real = jax.nn.logsumexp(-jnp.sum((x - params.rows) ** 2 * scale, -1) + params.log_weights)
    surrogate = jax.nn.logsumexp(-jnp.sum((x - params.negatives) ** 2 * scale, -1))
    return jnp.stack([real, surrogate])


def _kernel_step_scale(params: KernelParams) -> jax.Array:
    # per feature for a diagonal bandwidth: a diagonal preconditioner, each coordinate's step
    # in units of its own squared bandwidth (with noise sqrt(2 step) per coordinate the chains
    # still sample exp(-E))
    return params.bandwidth ** 2


# -- the network backend ----------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _mlp(num_features: int, hidden: tuple) -> Callable:
    """The pure ``apply(params, x) -> [1]`` of an MLP of these widths (built once a shape)."""
    return pure(MLP(num_features, hidden, 1, rngs=nnx.Rngs(0))).apply


def network_backend(hidden: Sequence[int] = (64, 64), num_steps: int = 300,
                    learning_rate: float = 1e-2, noise_per_row: int = 4,
                    min_noise: int = 64, noise_scale: float = 1.0) -> ClassEnergyBackend:
    """A small MLP per class, trained by noise-contrastive estimation against a Gaussian fitted
    to the class: the class's rows against noise from ``q = N(mean, diag(std^2))``, the rows'
    mean and per-feature std times ``noise_scale`` (the std floored at 0.1), plus the surrogate
    negatives. Its output ``r(x)``, bounded by a tanh to ``D log(noise_scale) + 5`` nats (room
    for a Gaussian class against the wider noise), is the log-ratio of the class density to
    ``q``; the logits are ``[r(x) + log q(x), log q(x)]``: the log model density
    ``log p(x) = log q(x) + r(x)`` and the noise's, a classifier of rows against as many noise
    points, so that ``E_c(x) = -log(p(x) + q(x))``.

    Why a Gaussian and not uniform noise in the negatives' box: in 13 or 30 dimensions the box
    is so large that its points almost never fall near 20 rows, the network's log-ratio keeps
    growing (linearly) away from the rows in directions no noise covers, and the chains run off
    along them (measured on wine and breast cancer at 20 rows: median distance to the closest
    training row 1.8 and 30 standardised units). Here ``log q`` adds quadratic walls that a
    bounded ``r`` cannot cancel, and the energy is a normalisable density: in the temperature
    form (``TabEBM(noise_scale=None)``) the chains sample it, at the paper's noise 0.01 they
    climb to its modes. The sampler's step is in units of ``q``'s smallest variance
    (``step_scale``): the walls' curvature is ``1 / std^2``. With ``noise_scale=1`` (the
    default) the noise is the class's own Gaussian and the network learns how the class
    departs from it; wider noise leaves more to learn from 20 rows, and in 30 dimensions a
    temperature-form sample of it keeps about twice the class's spread.

    Each of ``num_steps`` full-batch Adam steps draws fresh noise (``noise_per_row`` points a
    row slot, at least ``min_noise``); the loss is the mean cross-entropy of the rows plus that
    of the noise and negatives (balanced however many rows a class has).

    Example::

      >>> backend = network_backend(hidden=(16,), num_steps=50)
      >>> rows = jax.random.normal(jax.random.key(0), (20, 2))
      >>> initial = backend.init(jax.random.key(1), 2)
      >>> params = backend.fit(jax.random.key(2), initial, rows, jnp.ones(20, bool),
      ...                      5.0 * jnp.array([[1.0, 1.0], [-1.0, -1.0]]))
      >>> backend.logits(params, jnp.zeros(2)).shape
      (2,)
    """
    hidden = tuple(check_int("hidden", h) for h in hidden)
    num_steps = check_int("num_steps", num_steps)
    check_positive_finite("learning_rate", learning_rate)
    noise_per_row = check_int("noise_per_row", noise_per_row)
    min_noise = check_int("min_noise", min_noise)
    check_positive_finite("noise_scale", noise_scale)
    return _network_backend(hidden, num_steps, float(learning_rate), noise_per_row, min_noise,
                            float(noise_scale))


class NetworkParams(NamedTuple):
    """A class's :func:`network_backend` parameters: the MLP's ``network``, and the ``mean``
    and ``std`` ``[D]`` of the class's noise distribution, a diagonal Gaussian."""

    network: Any
    mean: jax.Array
    std: jax.Array


# The network's log-ratio to the noise is bounded by a tanh at D log(noise_scale) + 5 nats: the
# ratio of a Gaussian class to the noise, its std times noise_scale, at the centre, with 5 to
# spare (a fixed bound cannot hold a 30-D class against noise twice as wide: 20.8 nats).
LOG_RATIO_BOUND = 5.0
NOISE_MIN_STD = 0.1  # standardised units: a constant column of a class still gets spread


def gaussian_log_density(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """``log N(x; mean, diag(std^2))``: ``x`` ``[..., D]``, ``mean``, ``std`` ``[D]`` -> ``[...]``.

    Example::

      >>> round(float(gaussian_log_density(jnp.zeros(2), jnp.zeros(2), jnp.ones(2))), 4)
      -1.8379
    """
    z = (x - mean) / std
    return jnp.sum(-0.5 * z ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi), -1)


@functools.lru_cache(maxsize=64)
def _network_backend(hidden, num_steps, learning_rate, noise_per_row, min_noise,
                     noise_scale) -> ClassEnergyBackend:
    """:func:`network_backend` of checked settings, one per settings (so that its jitted uses
    are compiled once)."""
    optimizer = optax.adam(learning_rate)

    def init(rng_key, num_features):
        seed = int(jax.random.randint(rng_key, (), 0, 2 ** 31 - 1))
        network = pure(MLP(num_features, hidden, 1, rngs=nnx.Rngs(seed))).params
        return NetworkParams(network, jnp.zeros(num_features), jnp.ones(num_features))

    def nce_logit(params, x):  # log p_model(x) - log q(x), the network's one output
        bound = LOG_RATIO_BOUND + x.shape[-1] * math.log(noise_scale)
        return bound * jnp.tanh(_mlp(x.shape[-1], hidden)(params.network, x)[0] / bound)

    def logits(params, x):
        # [log p_model(x), log q(x)] with p_model = q exp(network): E_c = -log(p_model + q),
        # the class density where it dominates the noise, and the noise's quadratic walls
        # far from the class (the network grows at most linearly), so no chain runs off.
        log_q = gaussian_log_density(x, params.mean, params.std)
        return jnp.stack([nce_logit(params, x) + log_q, log_q])

    def fit(rng_key, initial, rows, row_mask, negatives):
        row_mask = jnp.asarray(row_mask, rows.dtype)
        num_noise = max(min_noise, noise_per_row * rows.shape[0])
        mean, var = _masked_moments(rows, row_mask)
        std = noise_scale * jnp.sqrt(var + NOISE_MIN_STD ** 2)
        initial = NetworkParams(initial.network, mean, std)
        batched = jax.vmap(nce_logit, (None, 0))

        def loss(network, key):
            params = initial._replace(network=network)
            noise = mean + std * jax.random.normal(key, (num_noise, rows.shape[1]), rows.dtype)
            real = jax.nn.log_sigmoid(batched(params, rows))
            fake = jax.nn.log_sigmoid(-batched(params, jnp.concatenate([noise, negatives])))
            return -(jnp.sum(real * row_mask) / jnp.sum(row_mask) + jnp.mean(fake))

        def step(carry, key):
            network, opt_state = carry
            grads = jax.grad(loss)(network, key)
            updates, opt_state = optimizer.update(grads, opt_state, network)
            return (optax.apply_updates(network, updates), opt_state), None

        (network, _), _ = jax.lax.scan(step, (initial.network,
                                              optimizer.init(initial.network)),
                                       jax.random.split(rng_key, num_steps))
        return initial._replace(network=network)

    def step_scale(params):  # the noise's narrowest variance: its walls' curvature is 1/std^2
        return jnp.min(params.std) ** 2

    return ClassEnergyBackend("network", init, fit, logits, step_scale=step_scale)


# -- your own in-context classifier -----------------------------------------------------
class InContextParams(NamedTuple):
    """A class's context: ``x`` ``[N + M, D]`` (rows, then negatives), ``y`` ``[N + M]`` (0 for
    a row, 1 for a negative)."""

    x: jax.Array
    y: jax.Array


def in_context_backend(logits_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
                       ) -> ClassEnergyBackend:
    """Your own in-context classifier (for example a JAX port of TabPFN):
    ``logits_fn(context_x [K, D], context_y [K], x [D]) -> [2]``, differentiable in ``x``.

    Example::

      >>> def nearest(cx, cy, x):  # a soft nearest-neighbour classifier
      ...     d = -jnp.sum((x - cx) ** 2, -1)
      ...     return jnp.stack([jax.nn.logsumexp(jnp.where(cy == c, d, -jnp.inf)) for c in (0, 1)])
      >>> backend = in_context_backend(nearest)
      >>> params = backend.fit(None, (), jnp.zeros((3, 2)), jnp.ones(3, bool), 5 * jnp.ones((1, 2)))
      >>> backend.logits(params, jnp.zeros(2)).shape
      (2,)
    """
    if not callable(logits_fn):
        raise TypeError(f"logits_fn={logits_fn!r}: expected a function "
                        "logits_fn(context_x, context_y, x) -> [2]")

    def init(rng_key, num_features):
        return ()

    def fit(rng_key, initial, rows, row_mask, negatives):
        del rng_key, initial, row_mask  # the estimator passes real rows only (vmappable=False)
        x = jnp.concatenate([rows, negatives])
        y = jnp.concatenate([jnp.zeros(rows.shape[0], jnp.int32),
                             jnp.ones(negatives.shape[0], jnp.int32)])
        return InContextParams(x, y)

    def logits(params, x):
        return logits_fn(params.x, params.y, x)

    return ClassEnergyBackend("in_context", init, fit, logits, vmappable=False)


# -- the shared-model ablation ----------------------------------------------------------
class SharedKernelParams(NamedTuple):
    """One class's view of a single kernel classifier over all classes.

    Attributes:
      rows: ``[K, N, D]`` every class's rows (padded), ``log_weights`` ``[K, N]`` their mask
        (0 or ``-inf``), ``bandwidths`` ``[K]`` each class's bandwidth (``[K, D]`` diagonal
        ones), ``label`` this class.
    """

    rows: jax.Array
    log_weights: jax.Array
    bandwidths: jax.Array
    label: jax.Array


def shared_step_scale(params: SharedKernelParams) -> jax.Array:
    """The shared ablation's step scale: the class's own squared bandwidth (as the kernel's;
    per feature for diagonal bandwidths)."""
    return params.bandwidths[params.label] ** 2


def shared_kernel_energy(params: SharedKernelParams, x: jax.Array) -> jax.Array:
    """The shared-model ablation's energy ``E(x, y) = -log p(y | x)`` of one kernel classifier
    over all classes (``f_k(x)``: the log of class ``k``'s kernel sum, normalised by its
    bandwidth; the classifier's log-softmax). Unlike a class energy it is low wherever ``y`` is
    the confident class, near its rows or far from every other class's.

    Example::

      >>> rows = jnp.array([[[0.0], [0.5]], [[3.0], [3.5]]])
      >>> params = SharedKernelParams(rows, jnp.zeros((2, 2)), jnp.ones(2), jnp.array(0))
      >>> bool(shared_kernel_energy(params, jnp.array([-3.0])) < 1e-3)  # far is as good
      True
    """
    widths = params.bandwidths  # class k's kernel has its own bandwidth, [K] or [K, D]
    widths = jnp.broadcast_to(widths if widths.ndim == 2 else widths[:, None],
                              widths.shape[:1] + x.shape[-1:])
    scale = 1.0 / (2.0 * widths ** 2)
    sq = jnp.sum((x - params.rows) ** 2 * scale[:, None, :], -1)
    f = (jax.nn.logsumexp(-sq + params.log_weights, axis=1)
         - jnp.sum(jnp.log(widths), -1))
    return -(f[params.label] - jax.nn.logsumexp(f))
