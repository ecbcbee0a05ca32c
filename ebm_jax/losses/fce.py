"""Flow contrastive estimation (Gao et al., CVPR 2020): NCE against a normalising flow that
is trained jointly, adversarially.

NCE's weakness is its noise: far from the data, the classification is too easy and the
energy learns little. FCE makes the noise a flow ``q_φ`` and plays the game

    V(θ, φ) = E_data[log D(x)] + E_{y ~ q_φ}[log(1 - D(y))],
    D(x) = σ(G(x)),  G(x) = -E_θ(x) - c - log q_φ(x) - log ν,

which the EBM (``θ`` and its log normaliser ``c``) maximises, NCE's loss, and the flow
minimises. At the equilibrium the flow and the model both equal the data and ``-V = log 4``
(for ``ν = 1``). Following the public ports, the flow moves only while the EBM's
classification accuracy is above ``threshold`` (0.6): the EBM always leads.

One backward pass gives both players their gradients: the flow's samples and densities
enter the loss through a gradient reversal (their cotangent times ``-1``, or ``0`` on a
step where the rule keeps the flow still), so a descent step on the loss is the EBM's
descent and the flow's ascent. :func:`fce_optimizer` gives the flow its own optimizer and
state (in the same ``TrainState``), and leaves that state untouched on the steps the flow
sits out (``optax.MultiSteps`` skipping a step of exactly zero gradient).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from ebm_jax._checks import check_in_range, check_probability
from ebm_jax.energies import EnergyFn, batch_energy
from ebm_jax.losses.base import LossTransform, require_keys
from ebm_jax.losses.nce import _num_noise

FLOW_KEY = "flow"


def fce_params(energy_params: Any, flow_params: Any, log_z=0.0) -> dict:
    """The parameters FCE trains: ``{"energy": ..., "log_z": scalar, "flow": ...}``.

    Example::

      >>> params = fce_params(jnp.ones(2), {"shift": jnp.zeros(2)})
      >>> sorted(params), float(params["log_z"])
      (['energy', 'flow', 'log_z'], 0.0)
    """
    log_z = jnp.asarray(log_z, jnp.float32)
    if log_z.shape != ():
        raise ValueError(f"log_z has shape {log_z.shape}: expected a scalar")
    return {"energy": energy_params, "log_z": log_z, FLOW_KEY: flow_params}


def _check_params(params) -> None:
    if not (isinstance(params, Mapping) and set(params) == {"energy", "log_z", FLOW_KEY}):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"fce params are {got}: expected a dict with keys ['energy', 'flow', "
                         "'log_z'] (build it with fce_params(energy_params, flow_params))")


def _reversed(value: jax.Array, scale: jax.Array) -> jax.Array:
    """``value`` forward; its cotangent times ``-scale`` backward."""
    return jax.lax.stop_gradient(value) - scale * (value - jax.lax.stop_gradient(value))


def fce(energy_fn: EnergyFn, flow: Any, *, threshold: float = 0.6,
        noise_ratio: float = 1.0, flow_likelihood_weight: float = 0.0) -> LossTransform:
    """Flow contrastive estimation: NCE whose noise is a flow playing against the EBM.

    Stateless (its state is ``()``); the params are :func:`fce_params`. The value is NCE's
    loss (the mean binary cross-entropy over the ``B`` data and ``M = round(ν B)`` flow
    samples): its gradient is the EBM's, and, through the gradient reversal, minus the
    flow's on the steps where the EBM's accuracy (of this batch, before the update) is
    above ``threshold``, zero on the others. Train it with :func:`fce_optimizer`.

    Args:
      energy_fn: per-example ``energy_fn(energy_params, x[D]) -> scalar``.
      flow: the flow's pure functions (:func:`ebm_jax.nets.flow_functions`): it needs
        ``log_prob(flow_params, x[D]) -> scalar`` and ``sample_and_log_prob(flow_params,
        rng_key, n) -> ([n, D], [n])``, differentiable in ``flow_params`` through the
        samples (reparameterised).
      threshold: the flow moves while the EBM's accuracy is above it, in ``[0, 1)``
        (0 moves it on every step).
      noise_ratio: ``ν > 0``, flow samples per data example.
      flow_likelihood_weight: ``λ >= 0``: the flow also descends ``λ`` times its negative
        log-likelihood of the data on every step (maximum likelihood keeps it on the data
        while the game sharpens it; 0 is the paper's pure game).

    Info: ``minus_value`` (``-V = mean_data softplus(-G) + mean_flow softplus(G)``, log 4
    at the equilibrium with ``ν = 1``), ``accuracy`` (over all points), ``accuracy_data``
    and ``accuracy_flow`` (data called data, flow samples called flow), ``flow_updated``
    (1 when the flow moves), ``flow_nll`` (the flow's mean ``-log q(x)`` on the batch),
    ``log_z``, ``energy_data``, ``energy_noise``.

    Example::

      >>> from flax import nnx
      >>> from ebm_jax.nets import RealNVP, flow_functions
      >>> flow = flow_functions(RealNVP(2, num_layers=2, hidden=(16,), rngs=nnx.Rngs(0)))
      >>> energy_fn = lambda scale, x: 0.5 * jnp.sum((x / scale) ** 2)
      >>> loss = fce(energy_fn, flow)
      >>> params = fce_params(jnp.ones(2), flow.params)
      >>> data = {"x": 2.0 * jax.random.normal(jax.random.key(0), (64, 2))}
      >>> value, (_, info) = jax.jit(loss.loss)(params, (), data, jax.random.key(1))
      >>> round(float(info["minus_value"]), 4) == round(2 * float(value), 4)   # ν = 1
      True
    """
    threshold = check_probability("threshold", threshold, include_one=False,
                                  expected="an accuracy in [0, 1)")
    noise_ratio = check_in_range("noise_ratio", noise_ratio, 0, math.inf, include_low=False,
                                 expected="a positive finite number")
    for name in ("log_prob", "sample_and_log_prob"):
        if not callable(getattr(flow, name, None)):
            raise ValueError(f"flow={flow!r}: expected the flow's pure functions with a "
                             f"callable {name} (ebm_jax.nets.flow_functions(flow))")
    flow_likelihood_weight = check_in_range("flow_likelihood_weight", flow_likelihood_weight,
                                            0, math.inf, expected="a finite number >= 0")
    batched = batch_energy(energy_fn)
    flow_log_prob = jax.vmap(flow.log_prob, (None, 0))

    def check(params, batch) -> int:
        require_keys(batch, ("x",), "fce")
        _check_params(params)
        x = batch["x"]
        if jnp.ndim(x) != 2 or jnp.shape(x)[0] == 0:
            raise ValueError(f"batch['x'] has shape {jnp.shape(x)}: expected a non-empty batch "
                             "of flat examples [B, D] (a flow models vectors)")
        return _num_noise(noise_ratio, jnp.shape(x)[0])

    def init(rng_key, params, example_batch):
        del rng_key
        check(params, example_batch)
        return ()

    def loss(params, state, batch, rng_key):
        num_noise = check(params, batch)
        x = batch["x"]
        batch_size = x.shape[0]
        log_nu = math.log(num_noise / batch_size)
        flow_params, log_z = params[FLOW_KEY], params["log_z"]
        y, log_q_y = flow.sample_and_log_prob(flow_params, rng_key, num_noise)
        log_q_x = flow_log_prob(flow_params, x)
        e_data = batched(params["energy"], x)

        # The rule, from this batch's values: does the EBM classify well enough?
        def log_odds(e_data, e_noise, log_q_x, log_q_y):
            return -e_data - log_z - log_q_x - log_nu, -e_noise - log_z - log_q_y - log_nu

        sg = jax.lax.stop_gradient
        g_data0, g_noise0 = log_odds(sg(e_data), sg(batched(params["energy"], y)), sg(log_q_x),
                                     sg(log_q_y))
        right_data, right_flow = jnp.mean(g_data0 > 0), jnp.mean(g_noise0 < 0)
        accuracy = (batch_size * right_data + num_noise * right_flow) / (batch_size + num_noise)
        move = (accuracy > threshold).astype(jnp.float32)

        # The flow's quantities enter with their gradient reversed (or cut on a still step).
        y, log_q_y, log_q_x = (_reversed(v, move) for v in (y, log_q_y, log_q_x))
        e_noise = batched(params["energy"], y)
        g_data, g_noise = log_odds(e_data, e_noise, log_q_x, log_q_y)
        data_term, flow_term = jax.nn.softplus(-g_data), jax.nn.softplus(g_noise)
        value = (jnp.sum(data_term) + jnp.sum(flow_term)) / (batch_size + num_noise)
        if flow_likelihood_weight:   # the flow's own NLL: its gradient reaches the flow only
            flow_nll = -jnp.mean(flow_log_prob(flow_params, x))
            value = value + flow_likelihood_weight * (flow_nll - sg(flow_nll))
        info = {
            "minus_value": sg(jnp.mean(data_term) + jnp.mean(flow_term)),
            "accuracy": accuracy, "accuracy_data": right_data, "accuracy_flow": right_flow,
            "flow_updated": move, "flow_nll": -jnp.mean(sg(log_q_x)), "log_z": log_z,
            "energy_data": jnp.mean(e_data), "energy_noise": jnp.mean(sg(e_noise)),
        }
        return value, (state, info)

    return LossTransform(init, loss)


def _still(updates, gradient_step, params):
    """``optax.MultiSteps``'s skip rule: a step of exactly zero flow gradient is skipped."""
    del gradient_step, params
    still = optax.tree.norm(updates) == 0
    return still, {"should_skip": still}


def fce_optimizer(optimizer: optax.GradientTransformation,
                  flow_optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optimizer`` for the EBM (``energy``, ``log_z``), ``flow_optimizer`` for the flow,
    whose state stays as it was on the steps the flow sits out (its gradient is exactly zero
    there: ``fce``'s rule).

    Example::

      >>> opt = fce_optimizer(optax.adam(1e-3), optax.adam(1e-4))
      >>> params = fce_params(jnp.ones(2), {"shift": jnp.ones(2)})
      >>> state = opt.init(params)
      >>> grads = fce_params(jnp.ones(2), {"shift": jnp.zeros(2)}, log_z=1.0)  # a still step
      >>> updates, state = opt.update(grads, state, params)
      >>> [float(v) for v in updates["flow"]["shift"]]
      [0.0, 0.0]
    """
    flow_steps = optax.MultiSteps(flow_optimizer, every_k_schedule=1,
                                  should_skip_update_fn=_still)

    def labels(params):
        return {k: jax.tree.map(lambda _, k=k: FLOW_KEY if k == FLOW_KEY else "ebm", v)
                for k, v in params.items()}

    return optax.multi_transform({"ebm": optimizer, FLOW_KEY: flow_steps.gradient_transformation()},
                                 labels)
