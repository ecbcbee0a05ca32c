"""Tests for ebm_jax.nets: NNX networks, pure adapters and spectral normalisation."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ebm_jax.nets import (ACTIVATIONS, MLP, ConvNet, SNConv, SNLinear, as_energy_fn, pure,
                          spectral_normalize)

# Small networks, mostly compilation: see the fast_compile marker in tests/conftest.py.
pytestmark = pytest.mark.fast_compile


def _np_normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _batched(apply):
    return jax.jit(jax.vmap(apply, in_axes=(None, 0)))


def _top_singular_value(kernel):
    w = np.asarray(kernel, np.float64)
    return np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]


def _assert_plain_dict_of_arrays(tree):
    assert type(tree) is dict, type(tree)
    for value in tree.values():
        if isinstance(value, dict):
            _assert_plain_dict_of_arrays(value)
        else:
            assert isinstance(value, jax.Array), type(value)


# Building a network compiles its initialisers once per kernel shape (~0.5-3 s
# each on a 2-core CPU), so the tests share a few cached networks whose layers
# reuse the same shapes: widths 2 -> 8 -> 8 -> {1, 3}; every convolution kernel is
# 3x3x4x4 (4-channel 6x6 images), rank-4 random draws being the slowest to compile.
@functools.lru_cache(maxsize=None)
def _mlp(out=3, spectral_norm=False, depth=2, activation="swish"):
    return MLP(2, (8,) * depth, out, activation=activation, spectral_norm=spectral_norm,
               rngs=nnx.Rngs(0))


@functools.lru_cache(maxsize=None)
def _convnet(spectral_norm=False):
    return ConvNet((6, 6, 4), (4, 4), 3, spectral_norm=spectral_norm, rngs=nnx.Rngs(0))


def _call(module, x):
    return nnx.jit(lambda m, x: m(x))(module, x)


# --------------------------------------------------------------------------- shapes


def test_mlp_output_shapes():
    net = _mlp()
    x = jnp.asarray(_np_normal(0, (5, 2)))
    assert net(x).shape == (5, 3)
    # Inputs are flattened after the batch axis.
    x3 = x.reshape(5, 1, 2)
    np.testing.assert_allclose(np.asarray(net(x3)), np.asarray(net(x)), rtol=1e-6)
    assert _mlp(out=1)(x).shape == (5, 1)


@pytest.mark.slow
def test_convnet_output_shapes_flat_and_image_inputs():
    net = _convnet()
    x = jnp.asarray(_np_normal(0, (3, 144)))
    out = net(x)
    assert out.shape == (3, 3)
    np.testing.assert_allclose(np.asarray(net(x.reshape(3, 6, 6, 4))), np.asarray(out), rtol=1e-6)
    assert _convnet(spectral_norm=True)(x).shape == (3, 3)


def test_convnet_matches_documented_architecture():
    # 3x3 SAME convolutions, the first with stride 1 and every later one with
    # stride 2, leaky_relu(0.2), global mean pooling, dense head.
    net = _convnet()
    x = jnp.asarray(_np_normal(1, (2, 6, 6, 4)))
    h = x
    for i, layer in enumerate(net.convs):
        stride = 1 if i == 0 else 2
        h = jax.lax.conv_general_dilated(h, layer.conv.kernel[...], (stride, stride), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jax.nn.leaky_relu(h + layer.conv.bias[...], 0.2)
    assert h.shape == (2, 3, 3, 4)
    expected = jnp.mean(h, axis=(1, 2)) @ net.head.linear.kernel[...] + net.head.linear.bias[...]
    np.testing.assert_allclose(np.asarray(net(x)), np.asarray(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_builds(name):
    net = _mlp(activation=name)
    x = jnp.asarray(_np_normal(0, (2, 2)))
    assert net(x).shape == (2, 3)
    # The activation is applied between layers: recompute by hand.
    h = x
    for layer in net.layers[:-1]:
        h = ACTIVATIONS[name](h @ layer.linear.kernel[...] + layer.linear.bias[...])
    h = h @ net.layers[-1].linear.kernel[...] + net.layers[-1].linear.bias[...]
    np.testing.assert_allclose(np.asarray(net(x)), np.asarray(h), rtol=1e-5, atol=1e-6)


def test_unknown_activation_raises():
    with pytest.raises(ValueError, match=r"activation='gelu': expected one of \[.*'swish'.*\]"):
        MLP(2, (8,), 1, activation="gelu", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"activation='Swish': expected one of"):
        ConvNet((6, 6, 4), (4,), 1, activation="Swish", rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------- pure adapters


@pytest.mark.parametrize("spectral_norm", [False, True])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_pure_apply_matches_module(kind, spectral_norm):
    if kind == "mlp":
        net = _mlp(spectral_norm=spectral_norm)
        x = jnp.asarray(_np_normal(0, (5, 2)))
    else:
        net = _convnet(spectral_norm=spectral_norm)
        x = jnp.asarray(_np_normal(0, (5, 144)))
    model = pure(net)
    expected = np.asarray(net(x))
    one = jax.jit(model.apply)(model.params, x[0])  # per-example: no batch axis in, none out
    assert one.shape == (3,)
    batched = _batched(model.apply)(model.params, x)  # jit of vmapped apply
    np.testing.assert_allclose(np.asarray(batched), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(one), expected[0], rtol=1e-5, atol=1e-6)


def test_pure_with_many_layers_keeps_layer_order():
    # 12 layers: integer list indices 10, 11 must not sort between 1 and 2.
    net = _mlp(depth=11)
    model = pure(net)
    assert sorted(model.params["layers"]) == list(range(12))
    x = jnp.asarray(_np_normal(2, (3, 2)))
    np.testing.assert_allclose(np.asarray(_batched(model.apply)(model.params, x)),
                               np.asarray(_call(net, x)), rtol=1e-5, atol=1e-6)


def test_params_are_plain_nested_dict_without_power_iteration_vectors():
    model = pure(_mlp(spectral_norm=True))
    _assert_plain_dict_of_arrays(model.params)
    assert set(model.params["layers"][0]) == {"linear"}  # u0 is not trained
    assert set(model.params["layers"][0]["linear"]) == {"kernel", "bias"}
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(model.params))


def test_apply_uses_the_params_argument():
    model = pure(_mlp())
    apply = jax.jit(model.apply)
    x = jnp.ones(2)
    zeros = jax.tree.map(jnp.zeros_like, model.params)
    np.testing.assert_array_equal(np.asarray(apply(zeros, x)), 0.0)
    # Shifting the last bias shifts the output by exactly that much.
    shifted = jax.tree.map(lambda a: a, model.params)
    shifted["layers"][2]["linear"]["bias"] = shifted["layers"][2]["linear"]["bias"] + 1.5
    np.testing.assert_allclose(np.asarray(apply(shifted, x) - apply(model.params, x)), 1.5,
                               rtol=1e-5)


def _squared_output_loss(model, x):
    @jax.jit
    def loss(params):
        return jnp.sum(jax.vmap(model.apply, in_axes=(None, 0))(params, x) ** 2)

    return loss


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_apply_is_differentiable_wrt_params(spectral_norm):
    model = pure(_mlp(spectral_norm=spectral_norm))
    loss = _squared_output_loss(model, jnp.asarray(_np_normal(0, (4, 2))))
    grads = jax.jit(jax.grad(loss))(model.params)
    assert jax.tree.structure(grads) == jax.tree.structure(model.params)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)  # every leaf gets a gradient


def test_apply_gradient_matches_finite_differences():
    # Without spectral normalisation (whose gradient deliberately ignores the
    # power iteration's dependence on the kernel, so it is not the derivative
    # of the forward map until the iteration has converged).
    model = pure(_mlp())
    loss = _squared_output_loss(model, jnp.asarray(_np_normal(0, (4, 2))))
    leaves = jax.tree.leaves(jax.jit(jax.grad(loss))(model.params))
    # Directional derivative vs central finite difference (float32, eps = 1e-3:
    # truncation O(eps²) and rounding O(1e-7 / eps) are both well below 2%).
    direction = jax.tree.map(lambda a: jnp.asarray(_np_normal(a.size, a.shape)), model.params)
    eps = 1e-3
    plus = loss(jax.tree.map(lambda a, d: a + eps * d, model.params, direction))
    minus = loss(jax.tree.map(lambda a, d: a - eps * d, model.params, direction))
    fd = (plus - minus) / (2 * eps)
    analytic = sum(float(jnp.vdot(g, d)) for g, d in zip(leaves, jax.tree.leaves(direction)))
    assert analytic == pytest.approx(float(fd), rel=2e-2, abs=1e-3)


def test_as_energy_fn_returns_scalar_and_gradients():
    net = _mlp(out=1)
    energy = as_energy_fn(net)
    x = jnp.asarray(_np_normal(0, (6, 2)))
    e = jax.jit(energy.apply)(energy.params, x[0])
    assert e.shape == () and e.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(_batched(energy.apply)(energy.params, x)),
                               np.asarray(_call(net, x))[:, 0], rtol=1e-5, atol=1e-6)
    g = jax.jit(jax.grad(energy.apply, argnums=1))(energy.params, x[0])
    assert g.shape == (2,) and np.all(np.isfinite(np.asarray(g)))


def test_as_energy_fn_rejects_wide_output():
    energy = as_energy_fn(_mlp(out=3))
    with pytest.raises(ValueError, match=r"output has shape \(3,\): expected \(1,\)"):
        energy.apply(energy.params, jnp.ones(2))


# --------------------------------------------------------------------------- spectral normalisation


def _exact_power_estimate(kernel, u0, k):
    """σ estimate after k iterations, from the SVD (independent of the implementation).

    With ``u0 = Σ c_i r_i`` on the right singular vectors, the iteration's
    ``σ = |Wᵀ v_k|`` equals ``sqrt(Σ c_i² σ_i^{4k} / Σ c_i² σ_i^{4k-2})``.
    """
    w = np.asarray(kernel, np.float64)
    w = w.reshape(-1, w.shape[-1])
    _, s, vt = np.linalg.svd(w, full_matrices=False)
    c = vt @ np.asarray(u0, np.float64)
    return np.sqrt(np.sum(c**2 * s ** (4 * k)) / np.sum(c**2 * s ** (4 * k - 2))), s, c


@pytest.mark.parametrize("shape", [(16, 8), (8, 16), (3, 3, 4, 8)])
def test_spectral_normalize_many_iterations_gives_unit_norm(shape):
    kernel = jnp.asarray(_np_normal(0, shape))
    u0 = jnp.asarray(_np_normal(1, shape[-1]))
    u0 = u0 / jnp.linalg.norm(u0)
    normalized = spectral_normalize(kernel, u0, 50)
    assert normalized.shape == kernel.shape
    assert _top_singular_value(normalized) == pytest.approx(1.0, abs=1e-3)


def test_spectral_normalize_three_iterations_bound():
    # A kernel with a known spectrum (2, 1, 0.5, 0.25) and random singular vectors.
    # The estimate after k iterations never exceeds σ1 (it is |Wᵀv| for a unit v),
    # so the normalised top singular value is >= 1, and
    #   σ1² / σ_est² <= 1 + tan²θ (σ2/σ1)^(4k-2),
    # θ the angle between u0 and the top right singular vector (expand
    # σ_est² = Σ c_i² σ_i^{4k} / Σ c_i² σ_i^{4k-2} and drop all but c_1 from the
    # denominator). For k = 3 and σ2/σ1 = 1/2 that is 1 + tan²θ / 1024.
    rng = np.random.default_rng(0)
    left, _ = np.linalg.qr(rng.normal(size=(6, 4)))
    right, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    spectrum = np.array([2.0, 1.0, 0.5, 0.25])
    kernel = jnp.asarray(left @ np.diag(spectrum) @ right.T, jnp.float32)
    u0 = jnp.asarray(_np_normal(5, 4))
    top = _top_singular_value(spectral_normalize(kernel, u0, 3))
    c = right.T @ np.asarray(u0, np.float64)
    tan2 = np.sum(c[1:] ** 2) / c[0] ** 2
    bound = np.sqrt(1 + tan2 * 0.5 ** (4 * 3 - 2))
    assert 1.0 - 1e-5 <= top <= bound + 1e-5, (top, bound)
    assert bound < 1.05  # the bound is informative for this u0


@pytest.mark.parametrize("shape, k", [((16, 8), 1), ((16, 8), 3), ((3, 3, 4, 8), 3)])
def test_spectral_normalize_matches_power_iteration_theory(shape, k):
    # For a random Gaussian kernel (small spectral gap) 3 iterations are far from
    # converged; the result must still equal σ1 / σ_est with σ_est from the SVD.
    kernel = jnp.asarray(_np_normal(2, shape))
    u0 = jnp.asarray(_np_normal(3, shape[-1]))
    sigma_est, s, _ = _exact_power_estimate(kernel, u0, k)
    top = _top_singular_value(spectral_normalize(kernel, u0, k))
    assert top == pytest.approx(s[0] / sigma_est, rel=1e-4)
    assert top >= 1.0 - 1e-5


def test_spectral_normalize_gradient_does_not_flow_through_power_iteration():
    kernel = jnp.asarray(_np_normal(0, (6, 4)))
    u0 = jnp.asarray(_np_normal(1, 4))
    weights = jnp.asarray(_np_normal(2, (6, 4)))

    def objective(kernel, u0):
        return jnp.sum(weights * spectral_normalize(kernel, u0, 3))

    g_kernel, g_u0 = jax.grad(objective, argnums=(0, 1))(kernel, u0)
    np.testing.assert_array_equal(np.asarray(g_u0), 0.0)  # u0 enters only through u, v

    # The kernel gradient treats u and v as constants (Miyato et al. 2018):
    # d/dW [W / (vᵀ W u)] with u, v frozen at their forward values.
    u = np.asarray(u0, np.float64)
    w = np.asarray(kernel, np.float64)
    for _ in range(3):
        v = w @ u
        v /= np.linalg.norm(v)
        u = w.T @ v
        u /= np.linalg.norm(u)
    u_c, v_c = jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32)
    frozen = jax.grad(lambda kk: jnp.sum(weights * kk / (v_c @ kk @ u_c)))(kernel)
    np.testing.assert_allclose(np.asarray(g_kernel), np.asarray(frozen), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer_cls", ["linear", "conv"])
def test_sn_layers_use_the_normalised_kernel(layer_cls):
    if layer_cls == "linear":
        layer = SNLinear(8, 8, spectral_norm=True, power_iterations=50, rngs=nnx.Rngs(0))
        kernel = layer.linear.kernel[...]
        bias = layer.linear.bias[...]
        x = jnp.asarray(_np_normal(0, (3, 8)))
    else:
        layer = SNConv(4, 4, 3, spectral_norm=True, power_iterations=50, rngs=nnx.Rngs(0))
        kernel = layer.conv.kernel[...]
        bias = layer.conv.bias[...]
        x = jnp.asarray(_np_normal(0, (2, 5, 5, 4)))
    effective = spectral_normalize(kernel, layer.u0[...], 50)
    assert _top_singular_value(effective) == pytest.approx(1.0, abs=1e-3)
    assert _top_singular_value(kernel) > 1.05  # so normalisation did change something
    if layer_cls == "linear":
        expected = x @ effective + bias
    else:
        expected = jax.lax.conv_general_dilated(
            x, effective, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(expected),
                               rtol=1e-5, atol=1e-5)


def test_spectral_norm_off_leaves_kernel_alone():
    layer = SNLinear(2, 8, spectral_norm=False, rngs=nnx.Rngs(0))
    x = jnp.asarray(_np_normal(0, (4, 2)))
    np.testing.assert_allclose(np.asarray(layer(x)),
                               np.asarray(x @ layer.linear.kernel[...] + layer.linear.bias[...]),
                               rtol=1e-6)
    assert not hasattr(layer, "u0")


def test_apply_refuses_params_of_another_structure():
    model = pure(MLP(3, (4, 4), 1, rngs=nnx.Rngs(0)))
    renamed = {"layers": {str(k): v for k, v in model.params["layers"].items()}}
    with pytest.raises(ValueError, match="expected .*the structure of PureModel.params"):
        model.apply(renamed, jnp.zeros(3))


def test_power_iterations_must_be_positive():
    with pytest.raises(ValueError, match="num_iterations=0: expected a positive int"):
        spectral_normalize(jnp.eye(3), jnp.ones(3), 0)
    with pytest.raises(ValueError, match="power_iterations=0: expected a positive int"):
        SNLinear(3, 3, spectral_norm=True, power_iterations=0, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("iterations", [1, 3])
def test_spectral_norm_starts_exact_at_initialisation(iterations):
    # u0 is the initial kernel's top singular vector, so even one power iteration recovers
    # sigma_max to float precision (a random start gives 1.07-1.15 after 3 iterations).
    layer = SNLinear(64, 64, spectral_norm=True, power_iterations=iterations, rngs=nnx.Rngs(3))
    w = spectral_normalize(layer.linear.kernel[...], layer.u0[...], iterations)
    assert np.linalg.svd(np.asarray(w), compute_uv=False)[0] == pytest.approx(1.0, abs=1e-4)
