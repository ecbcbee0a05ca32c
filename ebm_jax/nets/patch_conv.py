"""Convolution as patches + one matmul: a faster 3x3 conv for SGLD on CPU.

SGLD differentiates the energy with respect to its *input* at every step, so the
speed of a conv energy's sampler is the speed of the convolution's input
gradient. On XLA's CPU backend that gradient (a convolution with ``lhs_dilation``
for a strided layer, with a flipped kernel for any layer) runs far below the
machine's peak, while its matmul runs close to it. Here a convolution is written
as what it is, ``patches(x) @ kernel``:

* the patches are ``kh * kw`` shifted (strided) slices of the padded input,
  concatenated along the channel axis: ``[N, H', W', kh*kw*C]``;
* the kernel ``[kh, kw, C, O]`` (HWIO) is read as a matrix ``[kh*kw*C, O]``
  (the same order), and one matmul gives the output.

Its input gradient is a matmul (``dy @ kernel.T``) and the transpose of the
slices (pads and adds: memory work, no FLOPs), so both directions run on
XLA's matmul. The result equals ``lax.conv_general_dilated`` (NHWC, HWIO,
NHWC) within float tolerance; the FLOPs are the same up to the padding taps
(the matmul multiplies the zeros at the border, a convolution skips them).

``benchmarks/vs_pytorch.py`` measures it against ``lax.conv`` and PyTorch.
:class:`~ebm_jax.nets.SNConv` and :class:`~ebm_jax.nets.ConvNet` take
``conv_impl`` ("auto": patches on CPU, ``lax.conv`` elsewhere); the parameters
are the same whichever is chosen.

Example::

    >>> x, kernel = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    >>> jnp.allclose(conv2d_patches(x, kernel, 2), conv2d(x, kernel, 2, conv_impl="lax"))
    Array(True, dtype=bool)
"""
from __future__ import annotations

from functools import partial
from typing import Sequence, Union

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero


Pair = Union[int, Sequence[int]]


def as_pair(value: Pair, name: str) -> tuple[int, int]:
    """``value`` as ``(h, w)``: an int is square; raises ValueError naming ``name``."""
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or any(v < 1 for v in value):
        raise ValueError(f"{name}={value!r}: expected a positive int or a pair of them")
    return value


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """``(output size, pad low, pad high)`` of one spatial dim under "SAME" (as ``lax``)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def extract_patches(x: jax.Array, kernel_size: Pair, strides: Pair = 1,
                    padding: str = "SAME") -> jax.Array:
    """The ``[N, H', W', kh*kw*C]`` patches of an NHWC batch, in ``(kh, kw, C)`` order.

    Built from ``kh * kw`` strided slices of the padded input (not from
    ``lax.conv_general_dilated_patches``, whose gradient is itself a convolution).

    Args:
      x: ``[N, H, W, C]``.
      kernel_size: ``kh`` or ``(kh, kw)``.
      strides: ``s`` or ``(sh, sw)``.
      padding: "SAME" or "VALID", as in ``lax.conv_general_dilated``.
    """
    if x.ndim != 4:
        raise ValueError(f"x has shape {tuple(x.shape)}: expected an NHWC batch [N, H, W, C]")
    (kh, kw), (sh, sw) = as_pair(kernel_size, "kernel_size"), as_pair(strides, "strides")
    n, h, w, c = x.shape
    if padding == "SAME":
        ho, hlo, hhi = _same_padding(h, kh, sh)
        wo, wlo, whi = _same_padding(w, kw, sw)
        x = jnp.pad(x, ((0, 0), (hlo, hhi), (wlo, whi), (0, 0)))
    elif padding == "VALID":
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"x has spatial shape {(h, w)}: smaller than the kernel {(kh, kw)}")
    else:
        raise ValueError(f"padding={padding!r}: expected 'SAME' or 'VALID'")
    taps = [jax.lax.slice(x, (0, i, j, 0), (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c),
                          (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]
    return taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)


def conv2d_patches(x: jax.Array, kernel: jax.Array, strides: Pair = 1,
                   padding: str = "SAME") -> jax.Array:
    """A 2-D convolution (NHWC input, HWIO kernel, NHWC output) as patches @ kernel.

    Equals ``lax.conv_general_dilated(x, kernel, strides, padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))`` within float tolerance.
    """
    if kernel.ndim != 4 or kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"kernel has shape {tuple(kernel.shape)} for x of shape "
                         f"{tuple(x.shape)}: expected HWIO [kh, kw, {x.shape[-1]}, out]")
    kh, kw, c, o = kernel.shape
    patches = extract_patches(x, (kh, kw), strides, padding)
    return patches @ kernel.reshape(kh * kw * c, o)


def _lax_conv(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, as_pair(strides, "strides"), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def conv2d_patch_grad(x: jax.Array, kernel: jax.Array, strides: Pair = 1,
                      padding: str = "SAME") -> jax.Array:
    """``lax.conv_general_dilated`` forward, derivatives through patches + matmul.

    The value is XLA's convolution (the fastest forward on CPU for the larger
    layers); the derivative (a ``custom_jvp``, so forward mode, reverse mode and
    higher orders all work) is :func:`conv2d_patches`' linear map, whose transpose
    (the input gradient) is a matmul and pad/add work instead of XLA's convolution
    with ``lhs_dilation``.
    """
    return _lax_conv(x, kernel, strides, padding)


def _conv2d_patch_grad_jvp(strides, padding, primals, tangents):
    x, kernel = primals
    x_dot, kernel_dot = tangents
    out = _lax_conv(x, kernel, strides, padding)
    # Symbolic zeros: SGLD differentiates x only, training the kernel only; skip the other term.
    terms = []
    if not isinstance(x_dot, SymbolicZero):
        terms.append(conv2d_patches(x_dot, kernel, strides, padding))
    if not isinstance(kernel_dot, SymbolicZero):
        terms.append(conv2d_patches(x, kernel_dot, strides, padding))
    tangent = terms[0] if len(terms) == 1 else terms[0] + terms[1] if terms else jnp.zeros_like(out)
    return out, tangent


conv2d_patch_grad.defjvp(_conv2d_patch_grad_jvp, symbolic_zeros=True)


CONV_IMPLS = ("auto", "lax", "patches", "patch_grad")


def resolve_conv_impl(conv_impl: str) -> str:
    """The implementation ``conv_impl`` stands for on the default backend.

    "auto" is "patches" on CPU (where XLA's convolution input gradient is the
    slow part of SGLD; ``benchmarks/vs_pytorch.py`` measures it) and "lax"
    elsewhere (GPU/TPU convolutions are fast in both directions).
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl={conv_impl!r}: expected one of {CONV_IMPLS}")
    if conv_impl == "auto":
        return "patches" if jax.default_backend() == "cpu" else "lax"
    return conv_impl


def conv2d(x: jax.Array, kernel: jax.Array, strides: Pair = 1, padding: str = "SAME",
           conv_impl: str = "lax") -> jax.Array:
    """A 2-D convolution (NHWC input, HWIO kernel, NHWC output) by the chosen implementation.

    Args:
      x: ``[N, H, W, C]``.
      kernel: ``[kh, kw, C, O]``.
      conv_impl: "lax" (``lax.conv_general_dilated``), "patches"
        (:func:`conv2d_patches`), "patch_grad" (:func:`conv2d_patch_grad`) or
        "auto" (:func:`resolve_conv_impl`). All give the same values up to
        float rounding.

    Example::

      >>> y = conv2d(jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4)), 2, conv_impl="patches")
      >>> y.shape
      (2, 4, 4, 4)
    """
    impl = resolve_conv_impl(conv_impl)
    if impl == "patches":
        return conv2d_patches(x, kernel, strides, padding)
    if impl == "patch_grad":
        return conv2d_patch_grad(x, kernel, strides, padding)
    return _lax_conv(x, kernel, strides, padding)


__all__ = ["CONV_IMPLS", "conv2d", "conv2d_patch_grad", "conv2d_patches", "extract_patches",
           "resolve_conv_impl"]
