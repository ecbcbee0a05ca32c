"""ConvNet over signals: a true 1-D convolution along the signal (no kernel column reads
padding), and kernel sizes and strides per layer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ebm_jax.nets import ConvNet

pytestmark = pytest.mark.fast_compile  # tiny networks: mostly compilation


def _reference(net, x):
    """The same network written with 1-D lax convolutions on ``[B, L, C]``."""
    h = x
    for conv in net.convs:
        kernel = conv.conv.kernel[...][:, 0]                  # [k, 1, C_in, C_out] -> [k, C_in, C_out]
        h = jax.lax.conv_general_dilated(h, kernel, conv.strides[:1], "SAME",
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        h = net.activation(h + conv.conv.bias[...])
    return net.head(jnp.mean(h, axis=1))


@pytest.mark.parametrize("conv_impl", ["lax", "patches"])
def test_signal_convnet_is_a_1d_convolution_along_the_signal(conv_impl):
    net = ConvNet((20, 3), (4, 6, 5), 2, kernel_sizes=(7, 5, 3), strides=(1, 2, 3),
                  conv_impl=conv_impl, rngs=nnx.Rngs(0))
    assert [c.conv.kernel.shape for c in net.convs] == [(7, 1, 3, 4), (5, 1, 4, 6), (3, 1, 6, 5)]
    x = jax.random.normal(jax.random.key(1), (4, 20, 3))
    ours, reference, flat = nnx.jit(lambda n, x: (n(x), _reference(n, x), n(x.reshape(4, -1))))(
        net, x)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flat, ours, rtol=1e-6)  # a flat input is reshaped


def test_image_kernels_and_strides_per_layer():
    # shapes only: built abstractly, no array computed
    net = nnx.eval_shape(lambda: ConvNet((8, 8, 1), (4, 4), 3, kernel_sizes=(5, (3, 1)),
                                         strides=(2, 1), rngs=nnx.Rngs(0)))
    assert [c.conv.kernel.shape for c in net.convs] == [(5, 5, 1, 4), (3, 1, 4, 4)]
    assert [c.strides for c in net.convs] == [(2, 2), (1, 1)]
    default = nnx.eval_shape(lambda: ConvNet((8, 8, 1), (4, 4), 3, rngs=nnx.Rngs(0)))
    assert [c.conv.kernel.shape for c in default.convs] == [(3, 3, 1, 4), (3, 3, 4, 4)]
    assert [c.strides for c in default.convs] == [(1, 1), (2, 2)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_shape=(8,)), r"image_shape=\(8,\): expected \(H, W, C\) for images or \(L, C\)"),
    (dict(kernel_sizes=(3, 3, 3)), r"kernel_sizes=\[3, 3, 3\]: expected one value for all 2"),
    (dict(strides=(1,)), r"strides=\[1\]: expected one value for all 2 layers or one per layer"),
])
def test_bad_shapes_are_refused(kwargs, message):
    args = dict(image_shape=(8, 8, 1), channels=(4, 4), out_features=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=message):
        ConvNet(**{**args, **kwargs})
