"""ebm_jax.nets.patch_conv: convolution as patches + matmul equals lax.conv, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ebm_jax.nets import ConvNet, SNConv, pure
from ebm_jax.nets.patch_conv import (conv2d, conv2d_patch_grad, conv2d_patches, extract_patches,
                                    resolve_conv_impl)

# Small networks, mostly compilation: see the fast_compile marker in tests/conftest.py.
pytestmark = pytest.mark.fast_compile


def lax_conv(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, strides, padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [1, 2, 3, (2, 1)])
@pytest.mark.parametrize("hw,kernel_hw", [((8, 8), (3, 3)), ((7, 9), (3, 2)), ((5, 6), (1, 1))])
def test_conv2d_patches_equals_lax_conv(padding, strides, hw, kernel_hw):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, *hw, 3))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (*kernel_hw, 3, 5))
    s = (strides, strides) if isinstance(strides, int) else strides
    expected = lax_conv(x, kernel, s, padding)
    got = conv2d_patches(x, kernel, strides, padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["patches", "patch_grad"])
@pytest.mark.parametrize("strides", [1, 2])
def test_input_and_kernel_gradients_equal_lax_conv(strides, impl):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 4, 6))
    cot = jax.random.normal(jax.random.PRNGKey(2), (2, 8 // strides, 8 // strides, 6))

    def loss(impl):
        return lambda x, k: jnp.sum(conv2d(x, k, strides, conv_impl=impl) * cot)

    expected = jax.grad(loss("lax"), argnums=(0, 1))(x, kernel)
    got = jax.grad(loss(impl), argnums=(0, 1))(x, kernel)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
    # forward mode too (patch_grad is a custom_jvp), and the second derivative score matching uses
    tangent = jax.random.normal(jax.random.PRNGKey(3), x.shape)
    _, expected_t = jax.jvp(lambda x: loss("lax")(x, kernel), (x,), (tangent,))
    _, got_t = jax.jvp(lambda x: loss(impl)(x, kernel), (x,), (tangent,))
    np.testing.assert_allclose(got_t, expected_t, rtol=1e-4, atol=1e-3)


def test_patch_grad_value_is_lax_conv():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 4, 6))
    np.testing.assert_array_equal(conv2d_patch_grad(x, kernel, 2), conv2d(x, kernel, 2))


def test_auto_is_patches_on_cpu_and_unknown_impls_are_refused():
    assert resolve_conv_impl("auto") == ("patches" if jax.default_backend() == "cpu" else "lax")
    assert resolve_conv_impl("lax") == "lax"
    with pytest.raises(ValueError, match="conv_impl='fft'"):
        resolve_conv_impl("fft")
    with pytest.raises(ValueError, match="conv_impl='fft'"):
        SNConv(3, 8, conv_impl="fft", rngs=nnx.Rngs(0))


def test_patches_order_is_kh_kw_c():
    x = jnp.arange(2 * 3 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 3, 2)
    patches = extract_patches(x, 3, 1, "VALID")
    assert patches.shape == (2, 1, 1, 18)
    np.testing.assert_array_equal(patches[:, 0, 0], x.reshape(2, 18))


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="NHWC"):
        extract_patches(jnp.zeros((3, 3, 2)), 3)
    with pytest.raises(ValueError, match="padding"):
        extract_patches(jnp.zeros((1, 3, 3, 2)), 3, padding="FULL")
    with pytest.raises(ValueError, match="strides"):
        extract_patches(jnp.zeros((1, 3, 3, 2)), 3, strides=0)
    with pytest.raises(ValueError, match="HWIO"):
        conv2d_patches(jnp.zeros((1, 3, 3, 2)), jnp.zeros((3, 3, 4, 5)))


@pytest.mark.parametrize("impl", ["patches", "patch_grad"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_conv_impl_is_a_drop_in_for_snconv(spectral_norm, impl):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
    ref = SNConv(3, 8, 3, strides=2, spectral_norm=spectral_norm, conv_impl="lax", rngs=nnx.Rngs(0))
    layer = SNConv(3, 8, 3, strides=2, spectral_norm=spectral_norm, conv_impl=impl,
                   rngs=nnx.Rngs(0))
    np.testing.assert_allclose(layer(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_convnet_impls_share_params_outputs_and_input_gradients():
    ref = pure(ConvNet((8, 8, 3), (8, 16, 16), 10, conv_impl="lax", rngs=nnx.Rngs(0)))
    net = pure(ConvNet((8, 8, 3), (8, 16, 16), 10, conv_impl="patches", rngs=nnx.Rngs(0)))
    assert jax.tree.structure(net.params) == jax.tree.structure(ref.params)
    jax.tree.map(np.testing.assert_array_equal, net.params, ref.params)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 3))
    # Jitted: op by op, the two networks and their gradients compile ~140 small programs.
    np.testing.assert_allclose(jax.jit(net.apply)(ref.params, x),
                               jax.jit(ref.apply)(ref.params, x), rtol=1e-5, atol=1e-5)

    def input_grad(model):  # the gradient SGLD follows: of -logsumexp of the logits
        return jax.jit(jax.grad(lambda x: -jax.nn.logsumexp(model.apply(ref.params, x))))(x)

    np.testing.assert_allclose(input_grad(net), input_grad(ref), rtol=1e-4, atol=1e-5)
