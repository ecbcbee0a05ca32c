"""The network of a config's ``model`` section, for the shape of the data.

Example::

    >>> from flax import nnx
    >>> from ebm_jax.experiments import make_config
    >>> net = make_network(make_config("cd_digits").model, 64, None, 1, nnx.Rngs(0))
    >>> type(net).__name__
    'MLP'
"""
from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
from flax import nnx

from ebm_jax.experiments.config import ConfigError, ModelConfig
from ebm_jax.nets import MLP, ConditionedMLP, ConditionedResNet, ConvNet, IGEBMResNet, WideResNet


def compute_dtype(model: ModelConfig):
    """The network's compute dtype (parameters, energies and chains stay float32)."""
    return jnp.bfloat16 if model.dtype == "bfloat16" else jnp.float32


def _resnet_blocks(model: ModelConfig) -> dict:
    return {} if model.resnet_blocks is None else {"num_blocks_per_stage": model.resnet_blocks}


def network_shape(data) -> Optional[tuple]:
    """The example shape a conv network reads from a run's
    :class:`~ebm_jax.experiments.data.Data`: ``(H, W, C)`` images, ``(L, C)`` signals, or
    None (vectors: MLPs only)."""
    return data.image_shape if data.image_shape is not None else data.signal_shape


def _per_layer(values: Optional[tuple]):
    """A config's one-for-all or per-layer list as ConvNet takes it (None stays None)."""
    if values is None:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _require_images(model: ModelConfig, image_shape: Optional[tuple]) -> None:
    if model.kind != "mlp" and image_shape is None:
        raise ConfigError(f"model.kind={model.kind!r} on a dataset without images or signals: "
                          "expected 'mlp'")
    if model.kind not in ("mlp", "conv") and image_shape is not None and len(image_shape) == 2:
        raise ConfigError(f"model.kind={model.kind!r} on signals of shape {image_shape}: "
                          "expected 'mlp' or 'conv' (1-D convolutions)")


def make_network(model: ModelConfig, in_features: int, image_shape: Optional[tuple], out: int,
                 rngs: nnx.Rngs) -> nnx.Module:
    """The network of ``model.kind`` with ``out`` outputs (K logits, or 1 for an energy)."""
    _require_images(model, image_shape)
    common = dict(activation=model.activation, spectral_norm=model.spectral_norm, rngs=rngs)
    if model.kind == "mlp":
        return MLP(in_features, model.hidden, out, batch_norm=model.batch_norm, **common)
    if model.kind == "conv":
        return ConvNet(image_shape, model.channels, out, conv_impl=model.conv_impl,
                       kernel_sizes=_per_layer(model.kernel_sizes),
                       strides=_per_layer(model.strides), **common)
    dtype = compute_dtype(model)
    if model.kind == "wrn":
        return WideResNet(image_shape, out, depth=model.depth, widen_factor=model.widen_factor,
                          batch_norm=model.batch_norm, dtype=dtype, **common)
    if model.kind == "igebm_resnet":
        return IGEBMResNet(image_shape, channels=model.resnet_channels, dtype=dtype,
                           **_resnet_blocks(model), **common)
    raise ConfigError(f"model.kind={model.kind!r}: expected 'mlp', 'conv', 'wrn' or "
                      "'igebm_resnet' (the level-conditioned 'resnet' is built by "
                      "make_level_network)")


def make_level_network(model: ModelConfig, in_features: int, image_shape: Optional[tuple],
                       num_levels: int, rngs: nnx.Rngs) -> nnx.Module:
    """A network ``E(x, level)`` conditioned on a noise level: an MLP or a ResNet."""
    _require_images(model, image_shape)
    common = dict(activation=model.activation, spectral_norm=model.spectral_norm, rngs=rngs)
    if model.kind == "resnet":
        return ConditionedResNet(image_shape, num_levels, **_resnet_blocks(model),
                                 channels=model.resnet_channels, dtype=compute_dtype(model),
                                 **common)
    if model.kind == "mlp":
        return ConditionedMLP(in_features, model.hidden, num_levels, **common)
    raise ConfigError(f"model.kind={model.kind!r}: expected 'mlp' or 'resnet' (the "
                      "level-conditioned networks)")


__all__ = ["compute_dtype", "make_level_network", "make_network"]
