"""Inference with a trained energy: find what makes it low.

Over a conditional energy ``energy_fn(params, x, y, *cond) -> scalar`` (one input ``x``, one
candidate output ``y``; low = compatible), every function is pure and per example (batch with
``jax.vmap``, compile with ``jax.jit``):

* :func:`minimize`: ``y_hat = argmin_y E(x, y)`` by descent from a start (the descent
  sampler), differentiable with respect to params and a traced step size;
* :func:`best_of_n`: minimise from ``N`` starts, keep the lowest final energy;
* :func:`rank` and :func:`more_compatible`: order candidate outputs by energy;
* :func:`conditional_density`: ``p(y | x) ∝ exp(-E(x, y))`` normalised over a candidate set
  or a 1-D/2-D grid (:func:`make_grid`);
* :func:`minimize_latent` and :func:`latent_outputs`: joint descent over an output and a
  latent ``energy_fn(params, x, y, z, *cond)``, several outputs from several latent starts.

And for a classifier read as an EBM, :func:`predict`: labels, probabilities and energies over
any number of examples.
"""
from ebm_jax.inference.best_of_n import BestOfN, best_of_n
from ebm_jax.inference.density import ConditionalDensity, Grid, conditional_density, make_grid
from ebm_jax.inference.latent import LatentResult, latent_outputs, minimize_latent
from ebm_jax.inference.minimize import MinimizeResult, minimize
from ebm_jax.inference.prediction import Prediction, predict
from ebm_jax.inference.rank import Ranking, more_compatible, rank

__all__ = [
    "BestOfN",
    "ConditionalDensity",
    "Grid",
    "LatentResult",
    "MinimizeResult",
    "Prediction",
    "Ranking",
    "best_of_n",
    "conditional_density",
    "latent_outputs",
    "make_grid",
    "minimize",
    "minimize_latent",
    "more_compatible",
    "predict",
    "rank",
]
