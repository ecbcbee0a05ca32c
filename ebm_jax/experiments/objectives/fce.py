"""Flow contrastive estimation (Gao et al. 2020): NCE whose noise is a normalising flow
trained jointly and adversarially (the flow moves while the EBM's accuracy is above
``threshold``). Both networks, their optimizers' states and the normaliser are in one
``TrainState``. NCE never samples the model in training; ``sampler`` draws the pictures'
samples (SGLD from noise).

The flow is a :class:`~ebm_jax.nets.NeuralSplineFlow` (``flow="spline"``) or a
:class:`~ebm_jax.nets.RealNVP` (``flow="realnvp"``) over the flattened examples, starting at
the identity (a standard normal), trained by Adam at ``flow_learning_rate``. The run's
evaluation adds ``flow_kl_nats`` (the flow's own KL, by quadrature on a 2-D toy) and
``predictions.png``: the true density, the flow's and the EBM's side by side.

Example::

    >>> from ebm_jax.experiments import make_config
    >>> make_config("fce_2d_checkerboard").objective.threshold
    0.6
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optax
from flax import nnx

from ebm_jax import metrics, plots
from ebm_jax.experiments.config import (NON_NEGATIVE, POSITIVE, POSITIVE_INT, WIDTHS, Config,
                                        ObjectiveConfig, one_of, section, setting)
from ebm_jax.experiments.objectives import Objective, Pieces
from ebm_jax.experiments.objectives._common import (ENERGY_MODELS, ENERGY_MODELS_NOTE, TOYS,
                                                    TOY_SAMPLER, build_energy, toy_preset)
from ebm_jax.experiments.sampling import LangevinConfig, langevin_sampling
from ebm_jax.losses.fce import fce, fce_optimizer, fce_params
from ebm_jax.nets import NeuralSplineFlow, RealNVP, flow_functions

FLOWS = ("spline", "realnvp")
THRESHOLD = (lambda v: 0 <= v < 1), "an accuracy in [0, 1)"


@dataclass(frozen=True)
class FCEConfig(ObjectiveConfig):
    """``fce(energy_fn, flow, threshold=, noise_ratio=)`` with the flow named by ``flow`` and
    its sizes; ``sampler`` draws samples for evaluation."""

    kind = "fce"
    sampler: LangevinConfig = section(LangevinConfig)
    flow: str = setting("spline", *one_of(*FLOWS))
    flow_layers: int = setting(4, *POSITIVE_INT)
    flow_hidden: tuple[int, ...] = setting((64, 64), *WIDTHS)
    flow_bins: int = setting(8, (lambda v: v >= 2), "an int >= 2")   # spline bins
    flow_bound: float = setting(4.5, *POSITIVE)   # the spline's interval [-bound, bound]
    flow_learning_rate: float = setting(1e-4, *POSITIVE)
    threshold: float = setting(0.6, *THRESHOLD)
    noise_ratio: float = setting(1.0, *POSITIVE)   # flow samples per data sample
    flow_likelihood_weight: float = setting(0.0, *NON_NEGATIVE)  # λ of the flow's own NLL


def make_flow(settings: FCEConfig, dim: int, rngs: nnx.Rngs):
    """The config's flow over ``dim``-vectors, as pure functions (at the identity)."""
    if settings.flow == "realnvp":
        module = RealNVP(dim, num_layers=settings.flow_layers,
                         hidden=tuple(settings.flow_hidden), rngs=rngs)
    else:
        module = NeuralSplineFlow(dim, num_layers=settings.flow_layers,
                                  hidden=tuple(settings.flow_hidden), num_bins=settings.flow_bins,
                                  bound=settings.flow_bound, rngs=rngs)
    return flow_functions(module)


def build(config: Config, data, rngs, *, num_devices: int = 1) -> Pieces:
    del num_devices
    settings = config.objective
    energy_params, base_energy = build_energy(config, data, rngs)
    dim = int(np.prod(data.x_train.shape[1:]))
    flow = make_flow(settings, dim, rngs)
    shape = data.x_train.shape[1:]

    def energy_fn(params, x):  # params = fce_params(...): the EBM reads its own part
        return base_energy(params["energy"], x)

    def flat_energy(energy_params, x):
        return base_energy(energy_params, x.reshape(shape))

    loss = fce(flat_energy, flow, threshold=settings.threshold,
               noise_ratio=settings.noise_ratio,
               flow_likelihood_weight=settings.flow_likelihood_weight)
    if len(shape) != 1:  # the flow models flat vectors: flatten the batch for the loss
        flat_loss = loss

        def loss_fn(params, state, batch, rng_key):
            return flat_loss.loss(params, state, _flat(batch), rng_key)

        loss = flat_loss._replace(
            init=lambda key, params, batch: flat_loss.init(key, params, _flat(batch)),
            loss=loss_fn)
    sampling = langevin_sampling(config, data, energy_fn)

    def evaluate(params, rng_key, *, quick=False, figure=None):
        del rng_key
        if quick or data.log_prob is None:
            return {}

        def flow_log_prob(x):
            return flow.log_prob(params["flow"], x)

        flow_kl = metrics.kl_by_quadrature(data.log_prob, lambda x: -flow_log_prob(x))
        out = {"flow_kl_nats": float(flow_kl)}
        if figure is not None:
            plots.save_density_panels(figure, {
                "true density": data.log_prob, "flow q(x)": flow_log_prob,
                "EBM exp(-E(x))": lambda x: -energy_fn(params, x)})
        return out

    def wrap(optimizer):
        return fce_optimizer(optimizer, optax.adam(settings.flow_learning_rate))

    return Pieces(fce_params(energy_params, flow.params), energy_fn, None, loss, *sampling,
                  evaluate=evaluate, wrap_optimizer=wrap)


def _flat(batch):
    x = batch["x"]
    return {**batch, "x": x.reshape(x.shape[0], -1)}


PRESETS = {
    # NCE's network, batch and budget (nce_2d_<toy>) against a RealNVP of 4 couplings: 2.3x
    # NCE's step on 2 cores, where the spline flow's is 5x (and fits the checkerboard better).
    f"fce_2d_{toy}": toy_preset(toy, FCEConfig(sampler=TOY_SAMPLER, flow="realnvp",
                                               flow_layers=4),
                                batch_size=512, num_steps=16_000, fresh_sample_steps=500,
                                eval_every=4000, checkpoint_every=4000)
    for toy in TOYS
}

OBJECTIVE = Objective(
    kind="fce", config=FCEConfig, build=build, needs_labels=False, classifier=False,
    unsupervised=True, models=ENERGY_MODELS, models_note=ENERGY_MODELS_NOTE, presets=PRESETS,
    summary="flow contrastive estimation: NCE against a flow trained adversarially")
