"""The papers' image networks (Flax NNX): JEM's Wide-ResNet, IGEBM's ResNet, DRL's conditioned ResNet.

* :class:`WideResNet`: Wide-ResNet-``depth``-``widen_factor`` (Zagoruyko &
  Komodakis 2016) as JEM (Grathwohl et al. 2020) trains it: pre-activation
  basic blocks with no batch norm, leaky ReLU(0.2), global mean pooling and a
  dense head (``num_classes`` logits, or 1 for an energy).
* :class:`IGEBMResNet`: the CIFAR-10 energy of IGEBM (Du & Mordatch 2019):
  spectrally normalised residual blocks, 2x2 average pooling when a stage
  starts, ReLU, global sum pooling and a dense head to one energy.
* :class:`ConditionedResNet`: the noise-level-conditioned energy ``E(x, t)`` of
  diffusion recovery likelihood (DRL, Gao et al. 2021): the embedding of the
  level ``t`` shifts (or FiLM-modulates) the hidden channels of every residual
  block and weighs the pooled features of the head.

Mixed precision: every network takes ``dtype`` (the compute dtype, for example
``jnp.bfloat16``) and ``param_dtype`` (the storage dtype of the parameters,
float32 by default). Convolutions and matmuls run in ``dtype`` (inputs and
kernels are cast); spectral normalisation is computed in float32 on the
float32 kernel before the cast; pooling and the head accumulate in float32 and
the output is float32, so that samplers' noise and losses stay in float32.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ebm_jax._checks import check_int, is_int
from ebm_jax.nets.batch_norm import BatchNorm
from ebm_jax.nets.conditioned import CONDITIONINGS, EMBEDDINGS, sinusoidal_embedding
from ebm_jax.nets.layers import (
    PowerIterationVector,
    _top_right_singular_vector,
    get_activation,
    spectral_normalize,
)

_KERNEL_INIT = nnx.initializers.lecun_normal()


# --------------------------------------------------------------------------- validation


def _check_float_dtype(name: str, value: Any) -> jnp.dtype:
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name}={value!r}: expected a floating dtype such as jnp.float32 "
                         "or jnp.bfloat16")
    return dtype


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(image_shape)
    if len(shape) != 3 or any(not is_int(d) or d < 1 for d in shape):
        raise ValueError(f"image_shape={image_shape!r}: expected (H, W, C), three positive ints")
    return tuple(int(d) for d in shape)


def _check_multipliers(value: Sequence[int]) -> tuple[int, ...]:
    mults = tuple(value)
    if not mults or any(not is_int(m) or m < 1 for m in mults):
        raise ValueError(f"channel_multipliers={value!r}: expected a non-empty sequence of "
                         "positive ints")
    return tuple(int(m) for m in mults)


def _as_images(x: jax.Array, image_shape: tuple[int, int, int], dtype: jnp.dtype) -> jax.Array:
    """``[B, H*W*C]`` or ``[B, H, W, C]`` -> ``[B, H, W, C]`` in the compute dtype."""
    if x.ndim < 2 or math.prod(x.shape[1:]) != math.prod(image_shape):
        raise ValueError(f"x has shape {x.shape}: expected [B, {math.prod(image_shape)}] or "
                         f"[B, {', '.join(map(str, image_shape))}] for image_shape={image_shape}")
    return x.reshape(x.shape[0], *image_shape).astype(dtype)


def _channels_last(v: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector ``[C]`` shaped ``[1, ..., 1, C]`` to broadcast against rank ``ndim``."""
    return v.reshape((1,) * (ndim - 1) + v.shape)


def _avg_pool2(h: jax.Array) -> jax.Array:
    """2x2 average pooling with stride 2 (an odd last row/column is dropped, as 'VALID')."""
    b, height, width, c = h.shape
    h = h[:, :height - height % 2, :width - width % 2]
    pooled = h.reshape(b, height // 2, 2, width // 2, 2, c).astype(jnp.float32).mean(axis=(2, 4))
    return pooled.astype(h.dtype)


# --------------------------------------------------------------------------- layers


class _Conv(nnx.Module):
    """A square NHWC convolution, padded by ``kernel_size // 2`` on each side (PyTorch-style).

    The kernel ``[k, k, in, out]`` and the bias are stored in ``param_dtype``;
    the call casts input and (spectrally normalised, in float32) kernel to
    ``dtype``.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *,
                 strides: int = 1, spectral_norm: bool = False, power_iterations: int = 3,
                 dtype: Any = jnp.float32, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        check_int("power_iterations", power_iterations)
        self.kernel = nnx.Param(_KERNEL_INIT(
            rngs.params(), (kernel_size, kernel_size, in_features, out_features), param_dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype))
        self.strides = int(strides)
        self.padding = kernel_size // 2
        self.spectral_norm = spectral_norm
        self.power_iterations = int(power_iterations)
        self.dtype = dtype
        if spectral_norm:
            self.u0 = PowerIterationVector(
                _top_right_singular_vector(self.kernel[...].astype(jnp.float32)))

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.spectral_norm:
            kernel = spectral_normalize(kernel.astype(jnp.float32), self.u0[...],
                                        self.power_iterations)
        p = self.padding
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), kernel.astype(self.dtype), (self.strides, self.strides),
            ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + _channels_last(self.bias[...].astype(self.dtype), y.ndim)


class _Dense(nnx.Module):
    """A dense layer stored in ``param_dtype`` and computed in ``dtype``.

    With ``float32_output`` the matmul accumulates into float32 and the output
    is float32 (for heads).
    """

    def __init__(self, in_features: int, out_features: int, *, spectral_norm: bool = False,
                 power_iterations: int = 3, float32_output: bool = False,
                 dtype: Any = jnp.float32, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        check_int("power_iterations", power_iterations)
        self.kernel = nnx.Param(_KERNEL_INIT(rngs.params(), (in_features, out_features),
                                             param_dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype))
        self.spectral_norm = spectral_norm
        self.power_iterations = int(power_iterations)
        self.float32_output = float32_output
        self.dtype = dtype
        if spectral_norm:
            self.u0 = PowerIterationVector(
                _top_right_singular_vector(self.kernel[...].astype(jnp.float32)))

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.spectral_norm:
            kernel = spectral_normalize(kernel.astype(jnp.float32), self.u0[...],
                                        self.power_iterations)
        out_dtype = jnp.float32 if self.float32_output else self.dtype
        y = jnp.matmul(x.astype(self.dtype), kernel.astype(self.dtype),
                       preferred_element_type=out_dtype)
        return y + _channels_last(self.bias[...].astype(out_dtype), y.ndim)


# --------------------------------------------------------------------------- Wide-ResNet


class _WideBlock(nnx.Module):
    """JEM's ``wide_basic`` without norm: ``conv2(act(conv1(act(x)))) + shortcut(x)``, or
    with ``batch_norm`` the original pre-activation block ``conv2(act(bn2(conv1(act(bn1(
    x)))))) + shortcut(x)``.

    ``conv2`` carries the stride; the shortcut is a 1x1 convolution when the
    shape changes, else the identity.
    """

    def __init__(self, in_features: int, out_features: int, strides: int, *,
                 activation: Callable[[jax.Array], jax.Array], conv_kwargs: dict, rngs: nnx.Rngs,
                 batch_norm: bool = False):
        self.activation = activation
        self.bn1 = BatchNorm(in_features) if batch_norm else None
        self.bn2 = BatchNorm(out_features) if batch_norm else None
        self.conv1 = _Conv(in_features, out_features, 3, rngs=rngs, **conv_kwargs)
        self.conv2 = _Conv(out_features, out_features, 3, strides=strides, rngs=rngs,
                           **conv_kwargs)
        self.shortcut = (_Conv(in_features, out_features, 1, strides=strides, rngs=rngs,
                               **conv_kwargs)
                         if strides != 1 or in_features != out_features else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(self.activation(x if self.bn1 is None else self.bn1(x)))
        h = self.conv2(self.activation(h if self.bn2 is None else self.bn2(h)))
        return h + (x if self.shortcut is None else self.shortcut(x))


class WideResNet(nnx.Module):
    """JEM's Wide-ResNet-``depth``-``widen_factor`` without batch norm.

    A 3x3 convolution to 16 channels, three groups of ``n = (depth - 4) / 6``
    pre-activation basic blocks of widths ``16k, 32k, 64k`` (``k =
    widen_factor``) whose first blocks have strides 1, 2, 2, the activation,
    global mean pooling and a dense head. Convolutions have biases and
    PyTorch-style padding (``kernel_size // 2``), as in JEM's code; there is no
    dropout (JEM trains with none). WRN-28-10 on 32x32x3 with 10 classes has
    36,471,338 parameters.

    Args:
      image_shape: ``(H, W, C)``; inputs are ``[B, H, W, C]`` or flat ``[B, H*W*C]``.
      num_classes: width of the head: ``K`` logits (JEM reads them as
        energies), or 1 for an energy (:func:`ebm_jax.nets.as_energy_fn`).
      depth: ``6n + 4`` with ``n >= 1`` (10, 16, 22, 28, ...).
      widen_factor: ``k``.
      activation: a name from :data:`ebm_jax.nets.layers.ACTIVATIONS`
        (``"leaky_relu"`` has slope 0.2, JEM's).
      spectral_norm: spectrally normalise every kernel (head included).
      power_iterations: power iterations of spectral normalisation.
      batch_norm: the original WRN's batch norm before every activation
        (:class:`~ebm_jax.nets.batch_norm.BatchNorm`: its statistics are params; build the
        pure functions with :func:`~ebm_jax.nets.batch_norm.pure_batch_norm`). JEM drops it.
      dtype: compute dtype of convolutions and matmuls (e.g. ``jnp.bfloat16``).
      param_dtype: storage dtype of the parameters.
      rngs: ``nnx.Rngs``.

    Call: ``net(x) -> [B, num_classes]`` float32.

    Example::

      >>> net = WideResNet((8, 8, 3), 10, depth=10, widen_factor=1, rngs=nnx.Rngs(0))
      >>> net(jnp.zeros((2, 8, 8, 3))).shape
      (2, 10)
    """

    def __init__(self, image_shape: Sequence[int], num_classes: int, *, depth: int = 28,
                 widen_factor: int = 10, activation: str = "leaky_relu",
                 spectral_norm: bool = False, power_iterations: int = 3,
                 batch_norm: bool = False, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.image_shape = _check_image_shape(image_shape)
        num_classes = check_int("num_classes", num_classes)
        if not is_int(depth) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth={depth!r}: expected 6n + 4 with n >= 1 "
                             "(10, 16, 22, 28, ...)")
        k = check_int("widen_factor", widen_factor)
        self.dtype = _check_float_dtype("dtype", dtype)
        param_dtype = _check_float_dtype("param_dtype", param_dtype)
        self.depth, self.widen_factor, self.num_classes = int(depth), k, num_classes
        self.activation = get_activation(activation)
        n = (self.depth - 4) // 6
        conv_kwargs = {"spectral_norm": spectral_norm, "power_iterations": power_iterations,
                           "dtype": self.dtype, "param_dtype": param_dtype}
        self.stem = _Conv(self.image_shape[-1], 16, 3, rngs=rngs, **conv_kwargs)
        blocks = []
        in_features = 16
        for width, strides in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
            for i in range(n):
                blocks.append(_WideBlock(in_features, width, strides if i == 0 else 1,
                                         activation=self.activation, conv_kwargs=conv_kwargs,
                                         rngs=rngs, batch_norm=batch_norm))
                in_features = width
        self.blocks = nnx.List(blocks)
        self.final_bn = BatchNorm(in_features) if batch_norm else None
        self.head = _Dense(in_features, num_classes, float32_output=True, rngs=rngs,
                           **conv_kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.stem(_as_images(x, self.image_shape, self.dtype))
        for block in self.blocks:
            h = block(h)
        if self.final_bn is not None:
            h = self.final_bn(h)
        pooled = jnp.mean(self.activation(h).astype(jnp.float32), axis=(1, 2))
        return self.head(pooled).astype(jnp.float32)


# --------------------------------------------------------------------------- IGEBM ResNet


class _IGEBMBlock(nnx.Module):
    """IGEBM's residual block: ``act(pool(g * conv2(act(conv1(x))) + shortcut(x)))``.

    ``g`` is a learned per-channel gain (ones at start), the shortcut a 3x3
    convolution when the width changes (IGEBM's "adaptive" bypass), ``pool``
    a 2x2 average pooling when ``downsample``.
    """

    def __init__(self, in_features: int, out_features: int, downsample: bool, *,
                 activation: Callable[[jax.Array], jax.Array], conv_kwargs: dict,
                 param_dtype: Any, rngs: nnx.Rngs):
        self.activation = activation
        self.downsample = downsample
        self.conv1 = _Conv(in_features, out_features, 3, rngs=rngs, **conv_kwargs)
        self.conv2 = _Conv(out_features, out_features, 3, rngs=rngs, **conv_kwargs)
        self.gain = nnx.Param(jnp.ones((out_features,), param_dtype))
        self.shortcut = (_Conv(in_features, out_features, 3, rngs=rngs, **conv_kwargs)
                         if in_features != out_features else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv2(self.activation(self.conv1(x)))
        h = h * _channels_last(self.gain[...].astype(h.dtype), h.ndim)
        h = h + (x if self.shortcut is None else self.shortcut(x))
        if self.downsample:
            h = _avg_pool2(h)
        return self.activation(h)


class IGEBMResNet(nnx.Module):
    """IGEBM's ResNet energy for 32x32 images (Du & Mordatch 2019, ``ResNet32Large``).

    A 3x3 convolution to ``channels`` and the activation, then stages of
    ``num_blocks_per_stage`` residual blocks of widths ``channels * m`` for
    ``m`` in ``channel_multipliers``. The first block of every stage halves the
    resolution by 2x2 average pooling after its residual sum (32 -> 16 -> 8 -> 4
    with the defaults, IGEBM's 128-256-512 stages of 3 blocks). Then ReLU,
    global sum pooling and a dense layer (not normalised) to one energy.
    Every convolution is spectrally normalised by default, and each block's
    second convolution has a learned per-channel gain, as in IGEBM. Unlike
    IGEBM's convolutions, which shift their inputs by a learned bias, ours add
    the bias after the convolution.

    Args:
      image_shape: ``(H, W, C)``; ``H`` and ``W`` at least
        ``2**len(channel_multipliers)``.
      channels: base width.
      channel_multipliers: one multiplier per stage.
      num_blocks_per_stage: residual blocks per stage.
      activation: a name from :data:`ebm_jax.nets.layers.ACTIVATIONS`
        (IGEBM: leaky ReLU with slope 0.2).
      spectral_norm: spectrally normalise every convolution.
      power_iterations: power iterations of spectral normalisation.
      dtype: compute dtype of convolutions and matmuls.
      param_dtype: storage dtype of the parameters.
      rngs: ``nnx.Rngs``.

    Call: ``net(x) -> [B, 1]`` float32 energies.

    Example::

      >>> net = IGEBMResNet((8, 8, 3), channels=8, rngs=nnx.Rngs(0))
      >>> from ebm_jax.nets import as_energy_fn
      >>> model = as_energy_fn(net)
      >>> model.apply(model.params, jnp.zeros((8, 8, 3))).shape
      ()
    """

    def __init__(self, image_shape: Sequence[int], *, channels: int = 128,
                 channel_multipliers: Sequence[int] = (1, 2, 4), num_blocks_per_stage: int = 3,
                 activation: str = "leaky_relu", spectral_norm: bool = True,
                 power_iterations: int = 3, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.image_shape = _check_image_shape(image_shape)
        channels = check_int("channels", channels)
        mults = _check_multipliers(channel_multipliers)
        num_blocks = check_int("num_blocks_per_stage", num_blocks_per_stage)
        smallest = 2 ** len(mults)
        if min(self.image_shape[:2]) < smallest:
            raise ValueError(f"image_shape={self.image_shape!r}: expected H and W >= {smallest} "
                             f"for {len(mults)} stages that each halve the resolution")
        self.dtype = _check_float_dtype("dtype", dtype)
        param_dtype = _check_float_dtype("param_dtype", param_dtype)
        self.activation = get_activation(activation)
        conv_kwargs = {"spectral_norm": spectral_norm, "power_iterations": power_iterations,
                           "dtype": self.dtype, "param_dtype": param_dtype}
        self.stem = _Conv(self.image_shape[-1], channels, 3, rngs=rngs, **conv_kwargs)
        blocks = []
        in_features = channels
        for m in mults:
            for i in range(num_blocks):
                blocks.append(_IGEBMBlock(in_features, channels * m, i == 0,
                                          activation=self.activation, conv_kwargs=conv_kwargs,
                                          param_dtype=param_dtype, rngs=rngs))
                in_features = channels * m
        self.blocks = nnx.List(blocks)
        self.head = _Dense(in_features, 1, float32_output=True, dtype=self.dtype,
                           param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.activation(self.stem(_as_images(x, self.image_shape, self.dtype)))
        for block in self.blocks:
            h = block(h)
        pooled = jnp.sum(jax.nn.relu(h).astype(jnp.float32), axis=(1, 2))
        return self.head(pooled).astype(jnp.float32)


# --------------------------------------------------------------------------- DRL ResNet


class _ConditionedBlock(nnx.Module):
    """DRL's residual block::

        h = conv1(act(x)) + β(t)                      # "add"
        h = conv1(act(x)) * (1 + γ(t)) + β(t)         # "film"
        out = shortcut(x) + g * conv2(act(h))

    ``β, γ`` are a dense projection of ``act(temb)``; ``g`` is a per-channel
    gain that starts at zero (DRL starts the second convolution near zero), so
    every block starts as the identity. The shortcut is a 3x3 convolution when
    the width changes.
    """

    def __init__(self, in_features: int, out_features: int, embedding_dim: int, *,
                 conditioning: str, activation: Callable[[jax.Array], jax.Array],
                 conv_kwargs: dict, param_dtype: Any, rngs: nnx.Rngs):
        self.activation = activation
        self.conditioning = conditioning
        self.conv1 = _Conv(in_features, out_features, 3, rngs=rngs, **conv_kwargs)
        factor = 2 if conditioning == "film" else 1
        self.projection = _Dense(embedding_dim, factor * out_features, rngs=rngs, **conv_kwargs)
        self.conv2 = _Conv(out_features, out_features, 3, rngs=rngs, **conv_kwargs)
        self.gain = nnx.Param(jnp.zeros((out_features,), param_dtype))
        self.shortcut = (_Conv(in_features, out_features, 3, rngs=rngs, **conv_kwargs)
                         if in_features != out_features else None)

    def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
        h = self.conv1(self.activation(x))
        mod = self.projection(self.activation(temb))[:, None, None, :]
        if self.conditioning == "film":
            scale, shift = jnp.split(mod, 2, axis=-1)
            h = h * (1 + scale) + shift
        else:
            h = h + mod
        h = self.conv2(self.activation(h))
        h = h * _channels_last(self.gain[...].astype(h.dtype), h.ndim)
        return h + (x if self.shortcut is None else self.shortcut(x))


class ConditionedResNet(nnx.Module):
    """DRL's noise-level-conditioned ResNet energy ``E(x, t)`` (Gao et al. 2021).

    The level ``t`` is embedded (sinusoidal features of width ``channels``, or a
    learned vector per level, then ``dense -> act -> dense`` to
    ``embedding_dim``). A 3x3 convolution to ``channels`` is followed by stages
    of ``num_blocks_per_stage`` pre-activation residual blocks of widths
    ``channels * m`` for ``m`` in ``channel_multipliers``, with 2x2 average
    pooling between stages. In every block the embedding shifts
    (``conditioning="add"``, DRL's) or scales and shifts (``"film"``) the hidden
    channels. The blocks' residual branches start at zero (a per-channel gain
    initialised to 0). The head is DRL's: ReLU, global sum pooling, and the
    inner product of the pooled features with a level-dependent vector
    ``dense(act(temb))``::

        E(x, t) = <sum_hw relu(h(x, t)), w(t)>

    Args:
      image_shape: ``(H, W, C)``; ``H`` and ``W`` at least
        ``2**(len(channel_multipliers) - 1)``.
      num_levels: number of noise levels; ``t`` lies in ``[0, num_levels)``.
      channels: base width.
      channel_multipliers: one multiplier per stage (DRL's CIFAR-10: ``(1, 2, 2, 2)``).
      num_blocks_per_stage: residual blocks per stage.
      embedding: ``"sinusoidal"`` (DRL's) or ``"learned"``.
      embedding_dim: width of the level embedding (default ``4 * channels``, DRL's).
      conditioning: ``"add"`` or ``"film"``.
      activation: a name from :data:`ebm_jax.nets.layers.ACTIVATIONS`.
      spectral_norm: spectrally normalise every convolution, the embedding's
        dense layers and the blocks' projections (not the head), as DRL does.
      power_iterations: power iterations of spectral normalisation.
      dtype: compute dtype of convolutions and matmuls.
      param_dtype: storage dtype of the parameters.
      rngs: ``nnx.Rngs``.

    Call: ``net(x [B, ...], t [B] int) -> [B, 1]`` float32 energies; use
    :func:`ebm_jax.nets.as_conditioned_energy_fn` for ``energy_fn(params, x, t)``.

    Example::

      >>> net = ConditionedResNet((8, 8, 3), 6, channels=8, channel_multipliers=(1, 2),
      ...                         num_blocks_per_stage=1, rngs=nnx.Rngs(0))
      >>> energies = net(jnp.zeros((1, 8, 8, 3)), jnp.array([5]))   # x [B, H, W, C], t [B]
      >>> energies.shape
      (1, 1)
      >>> from ebm_jax.nets import as_conditioned_energy_fn
      >>> model = as_conditioned_energy_fn(net)
      >>> energy = model.apply(model.params, jnp.zeros(192), 5)     # one flat example
      >>> energy.shape, bool(energy == energies[0, 0])
      ((), True)
    """

    def __init__(self, image_shape: Sequence[int], num_levels: int, *, channels: int = 128,
                 channel_multipliers: Sequence[int] = (1, 2, 2, 2),
                 num_blocks_per_stage: int = 2, embedding: str = "sinusoidal",
                 embedding_dim: int | None = None, conditioning: str = "add",
                 activation: str = "leaky_relu", spectral_norm: bool = True,
                 power_iterations: int = 3, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.image_shape = _check_image_shape(image_shape)
        self.num_levels = check_int("num_levels", num_levels)
        channels = check_int("channels", channels)
        mults = _check_multipliers(channel_multipliers)
        num_blocks = check_int("num_blocks_per_stage", num_blocks_per_stage)
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding={embedding!r}: expected one of {list(EMBEDDINGS)}")
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning={conditioning!r}: expected one of "
                             f"{list(CONDITIONINGS)}")
        embedding_dim = 4 * channels if embedding_dim is None else check_int(
            "embedding_dim", embedding_dim)
        if embedding == "sinusoidal" and channels % 2:
            raise ValueError(f"channels={channels!r}: expected an even number with "
                             "embedding='sinusoidal' (the sinusoidal features have that width)")
        smallest = 2 ** (len(mults) - 1)
        if min(self.image_shape[:2]) < smallest:
            raise ValueError(f"image_shape={self.image_shape!r}: expected H and W >= {smallest} "
                             f"for {len(mults)} stages with average pooling between them")
        self.dtype = _check_float_dtype("dtype", dtype)
        param_dtype = _check_float_dtype("param_dtype", param_dtype)
        self.embedding_kind = embedding
        self.channels, self.embedding_dim = channels, embedding_dim
        self.activation = get_activation(activation)
        conv_kwargs = {"spectral_norm": spectral_norm, "power_iterations": power_iterations,
                           "dtype": self.dtype, "param_dtype": param_dtype}
        if embedding == "learned":
            self.embed = nnx.Embed(self.num_levels, channels, param_dtype=param_dtype,
                                   embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
        self.embed_dense0 = _Dense(channels, embedding_dim, rngs=rngs, **conv_kwargs)
        self.embed_dense1 = _Dense(embedding_dim, embedding_dim, rngs=rngs, **conv_kwargs)
        self.stem = _Conv(self.image_shape[-1], channels, 3, rngs=rngs, **conv_kwargs)
        stages = []
        in_features = channels
        for m in mults:
            stage = []
            for _ in range(num_blocks):
                stage.append(_ConditionedBlock(
                    in_features, channels * m, embedding_dim, conditioning=conditioning,
                    activation=self.activation, conv_kwargs=conv_kwargs,
                    param_dtype=param_dtype, rngs=rngs))
                in_features = channels * m
            stages.append(nnx.List(stage))
        self.stages = nnx.List(stages)
        self.head = _Dense(embedding_dim, in_features, float32_output=True, dtype=self.dtype,
                           param_dtype=param_dtype, rngs=rngs)

    def level_embedding(self, t: jax.Array) -> jax.Array:
        """``[B]`` integer levels -> ``[B, embedding_dim]`` embedding (in the compute dtype)."""
        t = jnp.asarray(t)
        if self.embedding_kind == "learned":
            features = self.embed(t.astype(jnp.int32))
        else:
            features = sinusoidal_embedding(t, self.channels)
        return self.embed_dense1(self.activation(self.embed_dense0(features)))

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        h = _as_images(x, self.image_shape, self.dtype)
        temb = self.level_embedding(jnp.broadcast_to(jnp.asarray(t), (x.shape[0],)))
        h = self.stem(h)
        for i, stage in enumerate(self.stages):
            if i:
                h = _avg_pool2(h)
            for block in stage:
                h = block(h, temb)
        pooled = jnp.sum(jax.nn.relu(h).astype(jnp.float32), axis=(1, 2))
        weights = self.head(self.activation(temb))
        return jnp.sum(pooled * weights, axis=-1, keepdims=True).astype(jnp.float32)
