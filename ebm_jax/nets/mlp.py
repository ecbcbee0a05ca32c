"""Multi-layer perceptron energies and classifiers (Flax NNX)."""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

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
      rngs: ``nnx.Rngs`` for initialisation.

    Example::

      >>> net = MLP(2, (64, 64), 1, rngs=nnx.Rngs(0))
      >>> net(jnp.zeros((5, 2))).shape
      (5, 1)
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *,
                 activation: str = "swish", spectral_norm: bool = False, rngs: nnx.Rngs):
        self.activation_name = activation
        self.activation = get_activation(activation)
        widths = [in_features, *hidden, out_features]
        self.layers = nnx.List([SNLinear(a, b, spectral_norm=spectral_norm, rngs=rngs)
                                for a, b in zip(widths[:-1], widths[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)
