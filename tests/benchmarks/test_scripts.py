"""benchmarks/samplers.py and benchmarks/train_step.py: command lines, rows and FLOP counts.

Nothing here writes to benchmarks/results: the scripts' measure functions are called
in-process with tiny settings, and the command lines only print --help.
"""
import math
import os
import subprocess
import sys

import jax
import pytest
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCHMARKS)

import samplers as sampler_bench  # noqa: E402
import train_step as train_bench  # noqa: E402

from ebm_jax.nets import MLP, as_energy_fn  # noqa: E402

SCRIPTS = ("samplers.py", "train_step.py")


@pytest.mark.slow
def test_help_of_both_scripts():
    procs = {name: subprocess.Popen([sys.executable, os.path.join(BENCHMARKS, name), "--help"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    cwd=ROOT)
             for name in SCRIPTS}  # both at once: each is mostly JAX's import
    outputs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "--quick" in out and "--no-save" in out, name
        outputs[name] = out
    assert "--chains" in outputs["samplers.py"] and "wrn28_10" in outputs["samplers.py"]
    assert "--config" in outputs["train_step.py"] and "--set" in outputs["train_step.py"]


def _tiny_mlp(conv_impl="auto"):
    model = as_energy_fn(MLP(2, (16,), 1, activation="swish", rngs=nnx.Rngs(0)))
    return model.apply, model.params


TINY = sampler_bench.Arch(_tiny_mlp, (2,), (4,), (4,), 3, 3, ("sgld", "plain_scan"), ("1",))


def _check_peak_fraction(row):
    if row["peak_flops_per_s"]:  # a known peak: a plausible fraction
        assert 0.0 < row["fraction_of_peak"] < 1.5
    else:
        assert row["fraction_of_peak"] is None


@pytest.mark.slow
def test_sampler_rows_and_hand_counted_flops():
    chains = 4
    rows = sampler_bench.measure(TINY, num_steps=3, repeats=1, chains=[chains])
    assert [r["sampler"] for r in rows] == ["sgld", "plain_scan"]
    for row in rows:
        assert row["chains"] == chains and row["unroll"] == "1" and row["steps"] == 3
        assert math.isfinite(row["chain_steps_per_s"]) and row["chain_steps_per_s"] > 0
        assert row["compile_seconds"] > 0
        assert row["xla_flops_per_chain_step"] > 0
        assert "while loop" in row["flops_note"]
        _check_peak_fraction(row)
    by_name = {r["sampler"]: r for r in rows}
    assert by_name["sgld"]["ratio_vs_plain_scan"] > 0
    # MLP 2-16-1, per chain: forward x[2] @ W1[2,16] = 2*2*16 = 64 and h[16] @ W2[16,1] = 32;
    # the input gradient back through W2 (2*16 = 32) and W1 (2*16*2 = 64): 192 FLOPs.
    assert by_name["plain_scan"]["flops_per_chain_step"] == 192
    # The toolkit takes the gradient per chain under vmap: the energy's cotangent is the
    # constant 1 for every chain, so the product 1 x W2^T (32 FLOPs) is left unbatched and
    # computed once for all chains: 64 + 32 + 32 / C + 64.
    assert by_name["sgld"]["flops_per_chain_step"] == 160 + 32 / chains
    # XLA's count of the same one-step program adds the elementwise work.
    assert by_name["plain_scan"]["xla_flops_per_chain_step"] >= 192


@pytest.mark.slow
def test_sampler_step_flops_scale_with_leapfrog_and_archs():
    energy_fn, params = _tiny_mlp()
    x = jax.numpy.zeros((8, 2))
    hmc = sampler_bench.step_flops("hmc", energy_fn, params, x, leapfrog=3)
    sgld = sampler_bench.step_flops("sgld", energy_fn, params, x)
    # One HMC step is 3 leapfrog gradients (plus the proposal's energy, whose forward the
    # last gradient shares): at least 3 SGLD steps' worth, under 4.
    assert 3 * sgld["flops"] <= hmc["flops"] < 4 * sgld["flops"]
    assert set(sampler_bench.ARCHS) >= {"mlp2d", "conv_digits", "jem28", "jem32", "wrn28_10"}
    assert sampler_bench.ARCHS["wrn28_10"].dtype == "bfloat16"
    if jax.default_backend() == "cpu":
        assert "wrn28_10" not in sampler_bench.default_archs()
        assert sampler_bench.default_archs(quick=True) == ["mlp2d", "conv_digits"]


@pytest.mark.slow
def test_train_step_row_and_hand_counted_flops():
    batch, k = 32, 5
    overrides = ["hidden=16", f"batch_size={batch}", f"sgld_steps={k}", "spectral_norm=false",
                 "kl_weight=0", "entropy_weight=0", "energy_l2=0"]
    row = train_bench.measure("cd_2d_8gaussians", overrides, 2)
    assert row["objective"] == "cd" and row["chains"] == batch and row["sampler_steps"] == k
    for key in ("steps_per_s", "examples_per_s", "chain_steps_per_s"):
        assert math.isfinite(row[key]) and row[key] > 0
    assert row["compile_seconds"] > 0 and row["flops_while_loops"] == 0
    _check_peak_fraction(row)
    # CD on the MLP 2-16-1, by hand: k SGLD steps of B chains (160 per chain + 32 once, see
    # the sampler test), the energies of B data and B samples (96 each), and the parameter
    # gradient through both (W2: 2*16, back to h: 2*16, W1: 2*2*16 = 128 each).
    expected = k * (160 * batch + 32) + 2 * batch * 96 + 2 * batch * 128
    assert row["flops_per_step"] == expected  # 40,096: the scan counted k times
    # XLA's cost analysis counts the SGLD scan body once: below the jaxpr count here.
    assert 0 < row["xla_flops_per_step"]


def test_train_step_no_sampling_presets_and_defaults():
    assert train_bench.PRESETS == ["jem_digits", "cd_digits", "nce_2d_8gaussians", "rl_digits",
                                   "dsm_2d_8gaussians"]
    from ebm_jax.config import make_config

    assert train_bench.sampling(make_config("dsm_2d_8gaussians", [])) == (None, None)
    rl = make_config("rl_digits", [])
    chains, steps = train_bench.sampling(rl)
    assert steps == rl.rl_langevin_steps and chains in (rl.batch_size,
                                                        rl.batch_size * rl.rl_num_levels)
