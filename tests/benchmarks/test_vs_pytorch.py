"""benchmarks/vs_pytorch.py: its command line without torch, and torch's SGLD step == JAX's."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "vs_pytorch.py")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import vs_pytorch  # noqa: E402

# Mostly compilation of tiny networks: see the fast_compile marker in tests/conftest.py.
pytestmark = pytest.mark.fast_compile

TINY = vs_pytorch.Arch("conv", (8, 8, 3), 3, (4, 8, 8), 10)  # JEM-style: -logsumexp of logits
TINY_ENERGY = vs_pytorch.Arch("conv", (7, 7, 1), 2, (4, 8), 1)  # odd size, energy = output
TINY_MLP = vs_pytorch.Arch("mlp", (2,), 5, (16, 16), 1)
# WideResNet-10-1 on 8x8: an identity-shortcut block, then two stride-2 blocks with 1x1
# shortcut convs (8 -> 4 -> 2), so padding, stride placement and layer order all show.
TINY_WRN = vs_pytorch.Arch("wrn", (8, 8, 3), 3, (), 10, depth=10, widen_factor=1)


@pytest.mark.slow
def test_help_without_torch():
    # `import torch` fails in the child (a None entry in sys.modules), as when it is not installed.
    code = ("import runpy, sys; sys.modules['torch'] = None; "
            f"sys.argv = [{SCRIPT!r}, '--help']; runpy.run_path({SCRIPT!r}, run_name='__main__')")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout and "torch==2.13.0" in result.stdout


def test_torch_missing_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert vs_pytorch.torch_available() is None


def _jax_update(arch, energy_fn, params, x, noise):
    grad = vs_pytorch.summed_grad(energy_fn)(params, x)
    return x - vs_pytorch.STEP_SIZE * grad + vs_pytorch.NOISE * noise


@pytest.mark.slow
@pytest.mark.parametrize("arch", [TINY, TINY_MLP, TINY_WRN], ids=["conv", "mlp", "wrn"])
def test_jax_rows_compute_the_same_chains(arch, monkeypatch):
    # Without noise every JAX row (toolkit, batched, patches, NCHW, fused...) is the same map.
    monkeypatch.setattr(vs_pytorch, "NOISE", 0.0)
    names = ["plain_scan", "toolkit", "batched_scan", "vmap_plain", "plain_scan_fused"]
    if arch.kind == "wrn":
        names = ["plain_scan", "toolkit"]  # (WideResNet compiles slowly on CPU)
    if arch.kind == "conv":
        names += ["plain_scan_nchw", "toolkit_lax", "plain_scan_patches_fused",
                  "plain_scan_patchgrad"]
    key = jax.random.PRNGKey(0)
    results = {}
    for name in names:
        run, x, params = vs_pytorch.jax_program(arch, vs_pytorch.VARIANTS[name], 2)
        out = np.asarray(jax.jit(run)(key, x, params))
        results[name] = np.transpose(out, (0, 2, 3, 1)) if out.ndim == 4 and \
            vs_pytorch.VARIANTS[name].layout == "NCHW" else out
    for name in names[1:]:
        np.testing.assert_allclose(results[name], results["plain_scan"], rtol=1e-5, atol=1e-5,
                                   err_msg=name)
    assert not np.allclose(results["plain_scan"], np.asarray(vs_pytorch.start_positions(arch)))


@pytest.mark.parametrize("arch", [TINY, TINY_ENERGY, TINY_MLP, TINY_WRN],
                         ids=["jem", "energy", "mlp", "wrn"])
def test_torch_and_jax_sgld_steps_agree(arch):
    torch = pytest.importorskip("torch")
    x = vs_pytorch.start_positions(arch)
    noise = jax.random.normal(jax.random.PRNGKey(3), x.shape)
    energy_fn, params = vs_pytorch.jax_network(arch)
    expected = np.asarray(_jax_update(arch, energy_fn, params, x, noise))
    # The patch convolution computes the same update from the same params.
    patch_fn, patch_params = vs_pytorch.jax_network(arch, "patches")
    np.testing.assert_allclose(np.asarray(_jax_update(arch, patch_fn, patch_params, x, noise)),
                               expected, rtol=1e-5, atol=1e-5)
    net = vs_pytorch.torch_network(arch, jax_same_padding=True)
    vs_pytorch.load_jax_params(arch, net, params)
    to_torch = (lambda a: np.transpose(np.asarray(a), (0, 3, 1, 2))) if arch.kind != "mlp" \
        else np.asarray
    got = vs_pytorch.torch_sgld_update(arch, net, torch.from_numpy(np.array(to_torch(x))),
                                       torch.from_numpy(np.array(to_torch(noise))))
    np.testing.assert_allclose(got.numpy(), to_torch(expected), rtol=1e-4, atol=1e-5)


def _to_nchw(torch, a):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(a), (0, 3, 1, 2))))


def test_wrn_bfloat16_runs_on_both_sides():
    # bfloat16: JAX computes in bf16 (WideResNet(dtype=...)), torch under autocast; both round
    # differently, so only the gradient's direction is compared (a few % apart; no noise, so
    # the step is the gradient alone), and each must differ from its float32 step (the bf16
    # path is really taken).
    torch = pytest.importorskip("torch")
    arch = TINY_WRN._replace(dtype="bfloat16")
    x = vs_pytorch.start_positions(arch)
    noise = jnp.zeros_like(x)
    energy_fn, params = vs_pytorch.jax_network(arch)
    f32_fn, _ = vs_pytorch.jax_network(TINY_WRN)
    jax_step = np.asarray(_jax_update(arch, energy_fn, params, x, noise) - x)
    jax_f32_step = np.asarray(_jax_update(TINY_WRN, f32_fn, params, x, noise) - x)
    assert np.abs(jax_step - jax_f32_step).max() > 1e-5
    net = vs_pytorch.torch_network(arch)
    vs_pytorch.load_jax_params(arch, net, params)
    xt, nt = _to_nchw(torch, x), _to_nchw(torch, noise)
    torch_step = (vs_pytorch.torch_sgld_update(arch, net, xt, nt) - xt).numpy()
    torch_f32_step = (vs_pytorch.torch_sgld_update(TINY_WRN, net, xt, nt) - xt).numpy()
    assert np.abs(torch_step - torch_f32_step).max() > 1e-5
    expected = np.transpose(jax_step, (0, 3, 1, 2))
    cosine = np.sum(torch_step * expected) / np.linalg.norm(torch_step) / np.linalg.norm(expected)
    assert cosine > 0.99, cosine


def test_wrn_arch_defaults_and_rows():
    wrn = vs_pytorch.ARCHS["wrn28_10"]
    assert (wrn.kind, wrn.shape, wrn.chains, wrn.out, wrn.depth, wrn.widen_factor) == \
        ("wrn", (32, 32, 3), 64, 10, 28, 10)
    if jax.default_backend() == "cpu":  # minutes a step on CPU: only on request there
        assert "wrn28_10" not in vs_pytorch.default_archs()
        assert vs_pytorch.compute_dtype("auto") == "float32"
    else:
        assert "wrn28_10" in vs_pytorch.default_archs()
        assert vs_pytorch.compute_dtype("auto") == "bfloat16"
    assert vs_pytorch.with_dtype(wrn, "bfloat16").dtype == "bfloat16"
    assert vs_pytorch.with_dtype(vs_pytorch.ARCHS["jem32"], "bfloat16").dtype == "float32"
    rows = [name for name in vs_pytorch.VARIANTS if vs_pytorch.applies(name, wrn)]
    assert {"toolkit", "toolkit_u4", "toolkit_full", "plain_scan", "plain_scan_u4",
            "plain_scan_full", "plain_scan_fused", "plain_scan_donate"} <= set(rows)
    assert not [r for r in rows if "patch" in r or "nchw" in r or "_lax" in r]


@pytest.mark.slow
def test_torch_wrn28_10_has_the_papers_parameter_count():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = vs_pytorch.torch_network(vs_pytorch.ARCHS["wrn28_10"])
    assert sum(p.numel() for p in net.parameters()) == 36_471_338  # as ebm_jax's WideResNet
