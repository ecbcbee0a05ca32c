"""Multi-layer perceptron energies and classifiers (Flax NNX)."""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from ebm_jax.nets.batch_norm import BatchNorm
from ebm_jax.nets.layers import SNLinear, get_activation


class MLP(nnx.Module):
    """``in_features -> hidden... -> out_features`` with a nonlinearity between layers.

    With ``out_features=1`` it is an energy network (use
    :func:`ebm_jax.nets.as_energy_fn`); with ``K`` outputs a classifier whose
    logits read as an energy (JEM).

    Args:
      in_features: input width (inputs are flattened first).
      hidden: widths of the hidden layers.
      out_features: output width.
      activation: a name from :data:`ebm_jax.nets.layers.ACTIVATIONS`.
      spectral_norm: spectrally normalise every kernel.
      batch_norm: a :class:`~ebm_jax.nets.batch_norm.BatchNorm` after every hidden layer,
        before its nonlinearity (its statistics are params; build the pure functions with
        :func:`~ebm_jax.nets.batch_norm.pure_batch_norm`).
      rngs: ``nnx.Rngs`` for initialisation.

    Example::

      >>> net = MLP(2, (64, 64), 1, rngs=nnx.Rngs(0))
      >>> net(jnp.zeros((5, 2))).shape
      (5, 1)
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *,
                 activation: str = "swish", spectral_norm: bool = False,
                 batch_norm: bool = False, rngs: nnx.Rngs):
        self.activation_name = activation
        self.activation = get_activation(activation)
        widths = [in_features, *hidden, out_features]
        self.layers = nnx.List([SNLinear(a, b, spectral_norm=spectral_norm, rngs=rngs)
                                for a, b in zip(widths[:-1], widths[1:])])
        self.norms = nnx.List([BatchNorm(w) for w in hidden]) if batch_norm else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers[:-1]):
            h = layer(h)
            if self.norms is not None:
                h = self.norms[i](h)
            h = self.activation(h)
        return self.layers[-1](h)
