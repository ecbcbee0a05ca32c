"""A small convolutional energy / classifier for digit-sized images and 1-D signals (Flax NNX)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
from flax import nnx

from ebm_jax.nets.layers import SNConv, SNLinear, get_activation
from ebm_jax.nets.patch_conv import Pair, as_pair


def _per_layer(value, count: int, name: str) -> list:
    """One entry per layer: an int for all, or a sequence of ``count`` entries."""
    if isinstance(value, int):
        return [value] * count
    value = list(value)
    if len(value) != count:
        raise ValueError(f"{name}={value!r}: expected one value for all {count} layers or one "
                         f"per layer ({count})")
    return value


class ConvNet(nnx.Module):
    """Stacked convolutions, global mean pooling and a dense head, over images or signals.

    Images are NHWC ``[B, H, W, C]`` (``image_shape=(H, W, C)``); signals and sequences are
    ``[B, L, C]`` (``image_shape=(L, C)``), convolved along ``L`` only (kernels ``(k, 1)``, so
    no kernel reads padding across a width of 1). A flat input ``[B, prod(image_shape)]`` is
    reshaped. By default every convolution is 3 (3x3 for images) and every one after the
    first halves the resolution (stride 2), as in JEM/IGEBM-style small energies.

    Args:
      image_shape: ``(H, W, C)`` for images, ``(L, C)`` for signals.
      channels: output channels of each convolution.
      out_features: 1 for an energy, K for a classifier.
      kernel_sizes: an int for every layer, or one entry per layer (for images an int is a
        square kernel and an entry may be a pair ``(kh, kw)``).
      strides: an int for every layer or one per layer (default: 1, then 2s).
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
      >>> signal_net = ConvNet((40, 1), (16, 32), 10, kernel_sizes=(7, 5), rngs=nnx.Rngs(0))
      >>> signal_net(jnp.zeros((3, 40, 1))).shape, signal_net.convs[0].conv.kernel.shape
      ((3, 10), (7, 1, 1, 16))
    """

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], out_features: int, *,
                 kernel_sizes: Union[Pair, Sequence[Pair]] = 3,
                 strides: Optional[Union[Pair, Sequence[Pair]]] = None,
                 activation: str = "leaky_relu", spectral_norm: bool = False,
                 conv_impl: str = "auto", rngs: nnx.Rngs):
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) not in (2, 3) or min(self.image_shape) < 1:
            raise ValueError(f"image_shape={tuple(image_shape)!r}: expected (H, W, C) for "
                             "images or (L, C) for signals")
        signal = len(self.image_shape) == 2
        # a signal [L, C] runs as an image [L, 1, C]
        self.conv_shape = (self.image_shape[0], 1, self.image_shape[1]) if signal \
            else self.image_shape
        count = len(channels)
        kernels = _per_layer(kernel_sizes, count, "kernel_sizes")
        strides = [1] + [2] * (count - 1) if strides is None else \
            _per_layer(strides, count, "strides")
        if signal:
            kernels = [(int(k), 1) for k in kernels]
            strides = [(int(t), 1) for t in strides]
        else:
            kernels = [as_pair(k, "kernel_sizes") for k in kernels]
            strides = [as_pair(t, "strides") for t in strides]
        self.activation = get_activation(activation)
        in_channels = [self.conv_shape[-1], *channels[:-1]]
        self.convs = nnx.List([
            SNConv(c_in, c_out, k, strides=t, spectral_norm=spectral_norm,
                   conv_impl=conv_impl, rngs=rngs)
            for c_in, c_out, k, t in zip(in_channels, channels, kernels, strides)])
        self.head = SNLinear(channels[-1], out_features, spectral_norm=spectral_norm, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], *self.conv_shape)
        for conv in self.convs:
            h = self.activation(conv(h))
        return self.head(jnp.mean(h, axis=(1, 2)))
