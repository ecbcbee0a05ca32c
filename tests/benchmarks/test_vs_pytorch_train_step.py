"""benchmarks/vs_pytorch_train_step.py: the toolkit's rows without torch, and torch's JEM step
doing the work the toolkit's step does (same loss on the same chains, the buffer written back)."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import vs_pytorch_train_step as bench  # noqa: E402

pytestmark = pytest.mark.fast_compile

TINY = ("objective.num_steps=2", "objective.chain_start.capacity=32", "data.batch_size=8")


@pytest.mark.slow
def test_toolkit_rows_without_torch():
    rows = bench.measure_arch("conv_digits", 2, torch_rows=False, min_seconds=0.0,
                              num_batches=2, extra=TINY)
    (row,) = rows
    assert row["row"] == "toolkit" and row["framework"] == "jax"
    assert row["batch"] == 8 and row["sgld_steps"] == 2 and row["buffer"] == 32
    assert row["steps_per_s"] > 0 and row["compile_seconds"] > 0
    assert row["flops_per_step"] > 0 and 0 < row["mfu"]
    assert "ratio_vs_torch_eager" not in row


def test_wrn_is_accelerator_only_and_net_follows_the_config():
    if bench.vs_pytorch.on_accelerator():
        pytest.skip("the default list holds wrn28_10 on accelerators")
    assert "wrn28_10" not in bench.default_archs()
    config = bench.step_config("wrn28_10", "bfloat16", ("model.depth=10", "model.widen_factor=1"))
    arch = bench.net_arch("wrn28_10", config)
    assert (arch.depth, arch.widen_factor, arch.dtype, arch.chains) == (10, 1, "bfloat16", 64)


def _setup(name, torch):
    config = bench.step_config(name, extra=TINY)
    data = bench.step_data(name, config)
    arch = bench.net_arch(name, config)
    _, _, batches, params = bench.toolkit_program(config, data, 1)
    jem = bench.torch_jem(config, arch, params, "cpu")
    return config, arch, batches[0], params, jem


def _logits_fn(name, config, params):
    from ebm_jax.experiments import build
    exp = build(config, data=bench.step_data(name, config))
    return exp.logits_fn


@pytest.mark.parametrize("name", ["mlp_digits", "conv_digits"])
def test_torch_loss_is_the_toolkits_jem_loss(name):
    torch = pytest.importorskip("torch")
    config, arch, batch, params, jem = _setup(name, torch)
    logits_fn = _logits_fn(name, config, params)
    x, y = batch["x"], batch["y"]
    chains = jax.random.uniform(jax.random.key(5), x.shape, minval=-1.0, maxval=1.0)
    logits = jax.vmap(logits_fn, (None, 0))(params, x)

    def energy(z):
        return -jax.nn.logsumexp(jax.vmap(logits_fn, (None, 0))(params, z), axis=1)

    cross_entropy = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
    expected = cross_entropy + jnp.mean(energy(x)) - jnp.mean(energy(chains))
    tx, ty = bench.to_torch_batch(arch, batch, "cpu")
    tchains, _ = bench.to_torch_batch(arch, {"x": chains, "y": y}, "cpu")
    # Padding differs only at stride-2 borders (JEM's padding=1 vs "SAME"): compare on the
    # MLP exactly, on the conv through the exact-padding net.
    if arch.kind != "mlp":
        net = bench.vs_pytorch.torch_network(arch, jax_same_padding=True)
        bench.vs_pytorch.load_jax_params(arch, net, params)
        jem.net = net
    got = float(jem.loss(tx, ty, tchains).detach())
    np.testing.assert_allclose(got, float(expected), rtol=1e-5, atol=1e-5)


def test_torch_sampling_restarts_runs_sgld_and_writes_back():
    torch = pytest.importorskip("torch")
    config, arch, batch, params, jem = _setup("mlp_digits", torch)
    jem.noise, jem.num_steps, jem.reinit_prob = 0.0, 1, 0.0
    before = jem.buffer.clone()
    torch.manual_seed(3)
    chains = jem.sample(8)
    changed = torch.nonzero((jem.buffer != before).any(dim=1)).flatten()
    assert 1 <= len(changed) <= 8  # the drawn rows (repeats possible), nothing else
    # Each written row is one SGLD step (noise 0, clamped) from the buffer row it replaced.
    x0 = before[changed].requires_grad_(True)
    grad = torch.autograd.grad(jem.energy(x0)[0].sum(), [x0])[0]
    expected = (x0 - jem.step_size * grad).clamp(-1.0, 1.0).detach()
    torch.testing.assert_close(jem.buffer[changed], expected, rtol=1e-5, atol=1e-6)
    assert all(any(torch.equal(jem.buffer[i], c) for c in chains) for i in changed)
    # With restarts always on, the starts are fresh uniform noise, not buffer rows.
    jem.reinit_prob, jem.num_steps = 1.0, 0
    starts = jem.sample(8)
    assert not any(torch.equal(s, b) for s in starts for b in before)


def test_torch_step_updates_the_weights():
    torch = pytest.importorskip("torch")
    config, arch, batch, params, jem = _setup("mlp_digits", torch)
    weights = [p.detach().clone() for p in jem.net.parameters()]
    loss = jem.step(*bench.to_torch_batch(arch, batch, "cpu"))
    assert bool(torch.isfinite(loss.detach()))
    moved = [not torch.equal(w, p) for w, p in zip(weights, jem.net.parameters())]
    assert all(moved)
    lr = config.optimizer.learning_rate  # Adam's first step moves each weight by ~lr
    first = next(iter(jem.net.parameters()))
    assert float((first.detach() - weights[0]).abs().max()) == pytest.approx(lr, rel=1e-2)
