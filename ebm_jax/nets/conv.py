"""A small convolutional energy / classifier for digit-sized images (Flax NNX)."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ebm_jax.nets.layers import SNConv, SNLinear, get_activation


class ConvNet(nnx.Module):
    """Stacked 3x3 convolutions, global mean pooling and a dense head.

    Inputs are NHWC images ``[B, H, W, C]``; a flat input ``[B, H*W*C]`` is
    reshaped with ``image_shape``. Every convolution after the first halves
    the resolution (stride 2), as in JEM/IGEBM-style small energies.

    Args:
      image_shape: ``(H, W, C)``.
      channels: output channels of each convolution.
      out_features: 1 for an energy, K for a classifier.
      activation: a name from :data:`ebm_jax.nets.layers.ACTIVATIONS`.
      spectral_norm: spectrally normalise every kernel.
      conv_impl: how the convolutions are computed (same parameters and values):
        "auto" (patches + matmul on CPU, where SGLD's input gradient through
        ``lax.conv`` is slow; ``lax.conv`` on GPU/TPU), "lax", "patches" or
        "patch_grad" (see :mod:`ebm_jax.nets.patch_conv`).
      rngs: ``nnx.Rngs``.

    Example::

      >>> net = ConvNet((8, 8, 1), (32, 64), 10, rngs=nnx.Rngs(0))
      >>> net(jnp.zeros((3, 64))).shape
      (3, 10)
    """

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], out_features: int, *,
                 activation: str = "leaky_relu", spectral_norm: bool = False,
                 conv_impl: str = "auto", rngs: nnx.Rngs):
        self.image_shape = tuple(image_shape)
        self.activation = get_activation(activation)
        in_channels = [self.image_shape[-1], *channels[:-1]]
        self.convs = nnx.List([
            SNConv(c_in, c_out, 3, strides=1 if i == 0 else 2, spectral_norm=spectral_norm,
                   conv_impl=conv_impl, rngs=rngs)
            for i, (c_in, c_out) in enumerate(zip(in_channels, channels))])
        self.head = SNLinear(channels[-1], out_features, spectral_norm=spectral_norm, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], *self.image_shape)
        for conv in self.convs:
            h = self.activation(conv(h))
        return self.head(jnp.mean(h, axis=(1, 2)))
