"""Small building blocks shared by the networks: activations and spectral normalisation."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ebm_jax._checks import check_int
from ebm_jax.nets.patch_conv import CONV_IMPLS, Pair, as_pair, conv2d

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "swish": jax.nn.swish,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.2),
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Look an activation up by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r}: expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class PowerIterationVector(nnx.Variable):
    """The fixed start vector of spectral normalisation's power iteration (not trained)."""


def _top_right_singular_vector(kernel: jax.Array) -> jax.Array:
    """Start the power iteration at the initial kernel's exact top singular vector.

    The kernel drifts slowly during training, so a few iterations from this
    start keep the estimate of its largest singular value close (a random
    start with 3 iterations overestimates the normalised norm by 7-15%).
    """
    _, _, vt = jnp.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), full_matrices=False)
    return vt[0]


def spectral_normalize(kernel: jax.Array, u0: jax.Array, num_iterations: int) -> jax.Array:
    """Divide ``kernel`` by an estimate of its largest singular value.

    The kernel is read as a matrix ``[fan_in, fan_out]`` (conv kernels are
    flattened over their spatial and input axes). The estimate is
    ``num_iterations`` power iterations from the fixed vector ``u0[fan_out]``,
    done inside the forward pass and outside the gradient (Miyato et al. 2018),
    so the energy stays a pure function of its parameters.
    """
    check_int("num_iterations", num_iterations)
    w = kernel.reshape(-1, kernel.shape[-1])
    u = u0
    v = None
    for _ in range(num_iterations):
        v = w @ u
        v = v / (jnp.linalg.norm(v) + 1e-12)
        u = w.T @ v
        u = u / (jnp.linalg.norm(u) + 1e-12)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    sigma = v @ w @ u
    return kernel / sigma


class SNLinear(nnx.Module):
    """A dense layer with optional spectral normalisation of its kernel."""

    def __init__(self, in_features: int, out_features: int, *, spectral_norm: bool = False,
                 power_iterations: int = 3, rngs: nnx.Rngs):
        self.linear = nnx.Linear(in_features, out_features, rngs=rngs)
        check_int("power_iterations", power_iterations)
        self.spectral_norm = spectral_norm
        self.power_iterations = power_iterations
        if spectral_norm:
            self.u0 = PowerIterationVector(_top_right_singular_vector(self.linear.kernel[...]))

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.linear.kernel[...]
        if self.spectral_norm:
            kernel = spectral_normalize(kernel, self.u0[...], self.power_iterations)
        return x @ kernel + self.linear.bias[...]


class SNConv(nnx.Module):
    """A 2-D convolution (NHWC) with optional spectral normalisation of its kernel.

    ``kernel_size`` and ``strides`` are an int (square) or a pair ``(h, w)``; a kernel
    ``(k, 1)`` on ``[B, L, 1, C]`` is a 1-D convolution along ``L``.

    ``conv_impl`` picks how the convolution is computed (same parameters, same
    values up to float rounding): "lax" (``lax.conv_general_dilated``),
    "patches" (patches + one matmul, whose input gradient is fast on CPU),
    "patch_grad" or "auto"; see :mod:`ebm_jax.nets.patch_conv`.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: Pair = 3, *,
                 strides: Pair = 1, spectral_norm: bool = False, power_iterations: int = 3,
                 conv_impl: str = "lax", rngs: nnx.Rngs):
        if conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl={conv_impl!r}: expected one of {CONV_IMPLS}")
        self.conv_impl = conv_impl
        kernel_size, strides = as_pair(kernel_size, "kernel_size"), as_pair(strides, "strides")
        self.conv = nnx.Conv(in_features, out_features, kernel_size, strides=strides,
                             padding="SAME", rngs=rngs)
        check_int("power_iterations", power_iterations)
        self.spectral_norm = spectral_norm
        self.power_iterations = power_iterations
        self.strides = strides
        if spectral_norm:
            self.u0 = PowerIterationVector(_top_right_singular_vector(self.conv.kernel[...]))

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.conv.kernel[...]
        if self.spectral_norm:
            kernel = spectral_normalize(kernel, self.u0[...], self.power_iterations)
        return conv2d(x, kernel, self.strides, "SAME", self.conv_impl) + self.conv.bias[...]
