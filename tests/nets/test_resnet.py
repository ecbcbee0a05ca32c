"""Tests for ebm_jax.nets.resnet: JEM's Wide-ResNet, IGEBM's ResNet and DRL's conditioned ResNet."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.nets import as_conditioned_energy_fn, as_energy_fn, pure
from ebm_jax.nets.resnet import ConditionedResNet, IGEBMResNet, WideResNet

# Small networks, mostly compilation: see the fast_compile marker in tests/conftest.py.
pytestmark = pytest.mark.fast_compile

# Building a network eagerly compiles each random initialiser once per kernel
# shape (~0.7 s on a 2-core CPU with the default threefry keys, about a third of
# that with "unsafe_rbg" keys). The tiny networks below share their shapes:
# every convolution is one of 3x3x3x16, 3x3x16x16, 3x3x16x32, 3x3x32x32 (plus
# the Wide-ResNet's last group at 64 channels), on 8x8x3 images. Output shapes
# are checked with jax.eval_shape (nothing compiled) and the jitted programs
# are shared between tests.
IMAGE = (8, 8, 3)
SMALL_WRN = {"depth": 10, "widen_factor": 1}
SMALL = {"channels": 16, "channel_multipliers": (1, 2), "num_blocks_per_stage": 1}


def _rngs():
    return nnx.Rngs(jax.random.key(0, impl="unsafe_rbg"))


def _np_normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@functools.cache
def _wrn(num_classes=3, dtype=jnp.float32):
    return WideResNet(IMAGE, num_classes, **SMALL_WRN, dtype=dtype, rngs=_rngs())


@functools.cache
def _igebm():
    return IGEBMResNet(IMAGE, **SMALL, rngs=_rngs())


@functools.cache
def _conditioned():
    return ConditionedResNet(IMAGE, 4, **SMALL, embedding_dim=32, rngs=_rngs())


@functools.cache
def _wrn_logits():
    """``pure``'s per-example apply of the float32 :func:`_wrn`, vmapped and jitted, and its params."""
    model = pure(_wrn())
    return model.params, jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))


@functools.cache
def _conditioned_energies():
    """``(params, x [B, ...], t [B]) -> (energies [B], d sum(energies) / d params)``, jitted."""
    model = as_conditioned_energy_fn(_conditioned())
    energies = jax.vmap(model.apply, in_axes=(None, 0, 0))
    return model.params, jax.jit(lambda params, x, t: (
        energies(params, x, t), jax.grad(lambda p: jnp.sum(energies(p, x, t)))(params)))


def _module_output(net, x, *cond):
    """The module's output on a batch, as a ``jax.ShapeDtypeStruct`` (nothing compiled)."""
    graphdef, state = nnx.split(net)
    return jax.eval_shape(lambda state, x, *cond: nnx.merge(graphdef, state)(x, *cond),
                          state, x, *cond)


def _num_params(module):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _wrn_num_params(depth, k, in_channels, num_classes):
    """Parameters of a Wide-ResNet without batch norm, convolutions and head with biases."""
    def conv(size, c_in, c_out):
        return size * size * c_in * c_out + c_out

    n = (depth - 4) // 6
    total, c = conv(3, in_channels, 16), 16
    for width, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
        for i in range(n):
            total += conv(3, c, width) + conv(3, width, width)
            if c != width or (i == 0 and stride != 1):
                total += conv(1, c, width)  # 1x1 shortcut
            c = width
    return total + c * num_classes + num_classes


# --------------------------------------------------------------------------- WideResNet


@pytest.mark.slow
def test_wide_resnet_shapes_flat_and_image_inputs_and_pure_adapter():
    x = jnp.asarray(_np_normal(0, (4, *IMAGE)))
    for batch in (x, x.reshape(4, -1)):
        out = _module_output(_wrn(), batch)
        assert out.shape == (4, 3) and out.dtype == jnp.float32
    params, logits = _wrn_logits()
    out = logits(params, x)  # per example: [8, 8, 3] -> [3]
    assert out.shape == (4, 3) and out.dtype == jnp.float32
    # Flat per-example inputs [192] give the same logits.
    np.testing.assert_allclose(np.asarray(logits(params, x.reshape(4, -1))), np.asarray(out),
                               rtol=1e-5, atol=1e-6)
    assert len(np.unique(np.asarray(out[:, 0]))) == 4


def test_wide_resnet_energy_head():
    net = _wrn(num_classes=1)
    assert _module_output(net, jnp.zeros((2, *IMAGE))).shape == (2, 1)
    energy = as_energy_fn(net)
    e = jax.eval_shape(energy.apply, energy.params, jnp.zeros(IMAGE))
    assert e.shape == () and e.dtype == jnp.float32


def test_wide_resnet_28_10_parameter_count():
    net = nnx.eval_shape(lambda: WideResNet((32, 32, 3), 10, rngs=nnx.Rngs(0)))
    expected = _wrn_num_params(28, 10, 3, 10)
    assert _num_params(net) == expected == 36_471_338
    assert abs(expected - 36.5e6) / 36.5e6 < 0.01  # Zagoruyko & Komodakis: 36.5M
    assert len(net.blocks) == 12
    # The formula also holds where the first block needs no shortcut (16 -> 16 channels).
    assert _num_params(_wrn()) == _wrn_num_params(10, 1, 3, 3)
    assert _wrn().blocks[0].shortcut is None and net.blocks[0].shortcut is not None


@pytest.mark.parametrize("depth", [4, 12, 27, 29, 28.0])
def test_wide_resnet_rejects_depth_not_6n_plus_4(depth):
    with pytest.raises(ValueError, match=rf"depth={depth!r}.*6n \+ 4"):
        WideResNet(IMAGE, 10, depth=depth, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("kwargs, field", [
    ({"widen_factor": 0}, "widen_factor=0"),
    ({"num_classes": 0}, "num_classes=0"),
    ({"image_shape": (8, 8)}, r"image_shape=\(8, 8\)"),
    ({"dtype": jnp.int32}, "dtype="),
    ({"activation": "gelu"}, "activation='gelu'"),
])
def test_wide_resnet_rejects_bad_arguments(kwargs, field):
    args = dict(image_shape=IMAGE, num_classes=10, **SMALL_WRN)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        WideResNet(args.pop("image_shape"), args.pop("num_classes"), **args, rngs=nnx.Rngs(0))


def test_wrong_input_size_raises():
    with pytest.raises(ValueError, match=r"x has shape \(2, 10\).*\[B, 192\]"):
        _wrn()(jnp.zeros((2, 10)))


# --------------------------------------------------------------------------- mixed precision


def test_bfloat16_compute_float32_params_and_outputs():
    net16 = _wrn(dtype=jnp.bfloat16)
    for leaf in jax.tree.leaves(nnx.state(net16, nnx.Param)):
        assert leaf.dtype == jnp.float32
    params, logits32 = _wrn_logits()
    batched16 = jax.vmap(pure(net16).apply, in_axes=(None, 0))

    @jax.jit
    def logits_and_input_grad(params, x):
        out, vjp = jax.vjp(lambda x: batched16(params, x), x)
        return out, vjp(jnp.ones_like(out))[0]

    x = jnp.asarray(_np_normal(0, (4, *IMAGE)))
    out16, grad_x = logits_and_input_grad(params, x)  # the float32 network's params
    out32 = logits32(params, x)
    assert out16.dtype == jnp.float32
    rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert 0 < rel < 5e-2, rel
    # Every convolution really runs in bfloat16.
    jaxpr = jax.make_jaxpr(batched16)(params, x)
    convs = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "conv_general_dilated"]
    assert len(convs) == 1 + 2 * 3 + 2  # stem, 2 per block, 2 shortcuts
    for eqn in convs:
        assert all(v.aval.dtype == jnp.bfloat16 for v in eqn.invars), eqn
    # The gradient with respect to the input comes back in float32.
    assert grad_x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(grad_x)))
    assert float(jnp.abs(grad_x).max()) > 0


def test_bfloat16_param_storage_keeps_float32_output():
    # Shapes only: nnx.eval_shape allocates nothing (spectral norm's SVD included).
    def build():
        return IGEBMResNet(IMAGE, **SMALL, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16,
                           rngs=nnx.Rngs(0))

    net = nnx.eval_shape(build)
    for leaf in jax.tree.leaves(nnx.state(net, nnx.Param)):
        assert leaf.dtype == jnp.bfloat16
    out = _module_output(net, jax.ShapeDtypeStruct((2, *IMAGE), jnp.float32))
    assert out.shape == (2, 1) and out.dtype == jnp.float32


# --------------------------------------------------------------------------- IGEBMResNet


def test_igebm_resnet_shapes_and_energy_adapter():
    x = jnp.asarray(_np_normal(3, (3, *IMAGE)))
    for batch in (x, x.reshape(3, -1)):
        out = _module_output(_igebm(), batch)
        assert out.shape == (3, 1) and out.dtype == jnp.float32
    energy = as_energy_fn(_igebm())
    e = jax.eval_shape(energy.apply, energy.params, x[0].reshape(-1))  # per example: a scalar
    assert e.shape == () and e.dtype == jnp.float32
    energies = jax.jit(jax.vmap(energy.apply, in_axes=(None, 0)))(energy.params, x)
    assert energies.shape == (3,) and energies.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(energies))) and len(np.unique(np.asarray(energies))) == 3


def test_igebm_resnet_structure():
    net = _igebm()
    # Spectral norm on every convolution by default, not on the head (as IGEBM).
    convs = [net.stem] + [c for b in net.blocks for c in (b.conv1, b.conv2, b.shortcut) if c]
    assert len(convs) == 1 + 2 * 2 + 1
    assert all(c.spectral_norm for c in convs) and not net.head.spectral_norm
    assert [b.downsample for b in net.blocks] == [True, True]
    assert net.blocks[0].shortcut is None and net.blocks[1].shortcut.kernel.shape == (3, 3, 16, 32)
    full = nnx.eval_shape(lambda: IGEBMResNet((32, 32, 3), rngs=nnx.Rngs(0)))
    assert len(full.blocks) == 9 and full.head.kernel.shape == (512, 1)
    with pytest.raises(ValueError, match=r"image_shape=\(2, 2, 3\).*H and W >= 4"):
        IGEBMResNet((2, 2, 3), **SMALL, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"channel_multipliers=\(\)"):
        IGEBMResNet(IMAGE, channel_multipliers=(), rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------- ConditionedResNet


def _open_residual_branches(params):
    """A copy of the params with every block's residual gain set to 1 (they start at 0)."""
    params = jax.tree.map(lambda a: a, params)
    for stage in params["stages"].values():
        for block in stage.values():
            block["gain"] = jnp.ones_like(block["gain"])
    return params


@pytest.mark.slow
def test_conditioned_resnet_shapes_and_conditioned_energy_adapter():
    net = _conditioned()
    x = jnp.asarray(_np_normal(4, (4, *IMAGE)))
    t = jnp.array([0, 1, 2, 3])
    for batch in (x, x.reshape(4, -1)):
        out = _module_output(net, batch, t)
        assert out.shape == (4, 1) and out.dtype == jnp.float32
    model = as_conditioned_energy_fn(net)
    one = jax.eval_shape(model.apply, model.params, x[1].reshape(-1), 1)
    assert one.shape == () and one.dtype == jnp.float32
    with pytest.raises(ValueError, match=r"t=4.*\[0, 4\)"):
        model.apply(model.params, x[0], 4)
    params, energies_and_grads = _conditioned_energies()
    e, _ = energies_and_grads(params, x, t)
    assert e.shape == (4,) and e.dtype == jnp.float32
    # Per-example energies do not depend on the rest of the batch.
    e_reversed, _ = energies_and_grads(params, x[::-1], t[::-1])
    np.testing.assert_allclose(np.asarray(e_reversed), np.asarray(e[::-1]), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.slow
def test_conditioned_resnet_levels_change_the_energy_and_gradients_reach_the_embedding():
    params, energies_and_grads = _conditioned_energies()
    x = jnp.broadcast_to(jnp.asarray(_np_normal(5, IMAGE)), (4, *IMAGE))
    levels = jnp.arange(4)
    e, grads = energies_and_grads(params, x, levels)
    assert len(np.unique(np.asarray(e))) == 4, e  # one x, four levels, four energies
    for name in ("embed_dense0", "embed_dense1", "head"):
        g = grads[name]["kernel"]
        assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0, name

    # The residual branches start at zero; once open, the gradient reaches every
    # block's level projection too.
    _, grads = energies_and_grads(_open_residual_branches(params), x, levels)
    for leaf in jax.tree.leaves(grads):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    for stage in grads["stages"].values():
        for block in stage.values():
            assert float(jnp.abs(block["projection"]["kernel"]).max()) > 0


@pytest.mark.slow
def test_conditioned_resnet_blocks_read_the_level():
    # With a level-independent head weight (zero head kernel, so w(t) = bias),
    # the only way t can reach the energy is through the blocks' projections.
    params, energies_and_grads = _conditioned_energies()
    params = _open_residual_branches(params)
    params["head"] = {"kernel": jnp.zeros_like(params["head"]["kernel"]),
                      "bias": jnp.ones_like(params["head"]["bias"])}
    x = jnp.broadcast_to(jnp.asarray(_np_normal(6, IMAGE)), (4, *IMAGE))
    e, _ = energies_and_grads(params, x, jnp.arange(4))
    assert len(np.unique(np.asarray(e))) == 4, e
    # ... and with the projections zeroed too, the levels give one energy.
    for stage in params["stages"].values():
        for block in stage.values():
            block["projection"] = jax.tree.map(jnp.zeros_like, block["projection"])
    e, _ = energies_and_grads(params, x, jnp.arange(4))
    np.testing.assert_allclose(np.asarray(e), float(e[0]), rtol=1e-6)


def test_conditioned_resnet_film_learned_embedding_and_bad_arguments():
    def build():
        return ConditionedResNet(IMAGE, 4, **SMALL, embedding_dim=32, conditioning="film",
                                 embedding="learned", rngs=nnx.Rngs(0))

    net = nnx.eval_shape(build)
    assert net.stages[0][0].projection.kernel.shape == (32, 32)  # scale and shift of 16
    assert net.embed.embedding.shape == (4, 16)
    out = _module_output(net, jnp.zeros((2, *IMAGE)), jnp.zeros(2, jnp.int32))
    assert out.shape == (2, 1) and out.dtype == jnp.float32
    full = nnx.eval_shape(lambda: ConditionedResNet((32, 32, 3), 6, rngs=nnx.Rngs(0)))
    assert [len(stage) for stage in full.stages] == [2, 2, 2, 2]
    assert full.head.kernel.shape == (512, 256)  # w(t) over the last 256 channels
    with pytest.raises(ValueError, match="conditioning='mul'"):
        ConditionedResNet(IMAGE, 4, **SMALL, conditioning="mul", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_levels=0"):
        ConditionedResNet(IMAGE, 0, **SMALL, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="embedding='onehot'"):
        ConditionedResNet(IMAGE, 4, **SMALL, embedding="onehot", rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------- training


@pytest.mark.slow
def test_wide_resnet_adam_step_lowers_a_loss_and_every_gradient_is_finite():
    model = pure(_wrn())
    x = jnp.asarray(_np_normal(7, (8, *IMAGE)))
    y = jnp.arange(8) % 3
    optimizer = optax.adam(1e-3)

    @jax.jit
    def loss_and_grad(params):
        def loss(params):
            logits = jax.vmap(model.apply, in_axes=(None, 0))(params, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return jax.value_and_grad(loss)(params)

    @jax.jit
    def adam_step(params, grads):
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        return optax.apply_updates(params, updates)

    before, grads = loss_and_grad(model.params)
    leaves = jax.tree.leaves(grads)
    assert len(leaves) == len(jax.tree.leaves(model.params))
    for g in leaves:
        assert bool(jnp.all(jnp.isfinite(g)))
        assert float(jnp.abs(g).max()) > 0
    after, _ = loss_and_grad(adam_step(model.params, grads))
    assert float(after) < float(before)
