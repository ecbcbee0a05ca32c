"""benchmarks/samplers.py, benchmarks/train_step.py and benchmarks/objectives_2d.py: command
lines, rows, FLOP counts and the configs they build.

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

import objectives_2d  # noqa: E402
import samplers as sampler_bench  # noqa: E402
import train_step as train_bench  # noqa: E402

from ebm_jax.experiments import ConfigError, get_objective, make_config  # noqa: E402
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
    overrides = ["model.hidden=16", f"data.batch_size={batch}", f"objective.num_steps={k}",
                 "model.spectral_norm=false", "objective.kl_weight=0",
                 "objective.entropy_weight=0", "objective.energy_l2=0"]
    row = train_bench.measure("cd_2d_8gaussians", overrides, 2)
    assert row["objective"] == "cd" and row["chains"] == batch and row["sampler_steps"] == k
    assert row["sgld_steps"] == k and row["batch_size"] == batch and row["dtype"] == "float32"
    assert row["overrides"] == overrides
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
    for preset in ("dsm_2d_8gaussians", "nce_2d_8gaussians", "softmax_digits"):
        assert train_bench.sampling(make_config(preset, [])) == (None, None), preset
    for preset in ("jem_digits", "cd_digits"):  # persistent chains: one per example
        config = make_config(preset, ["data.batch_size=32", "objective.num_steps=7"])
        assert train_bench.sampling(config) == (32, 7), preset
    rl = make_config("rl_digits", [])
    assert rl.objective.split_batch  # the batch split across the levels: one chain each
    assert train_bench.sampling(rl) == (rl.data.batch_size, rl.objective.num_langevin_steps)
    every_level = make_config("rl_digits", ["objective.split_batch=false",
                                            "objective.num_langevin_steps=4"])
    assert train_bench.sampling(every_level) == (6 * rl.data.batch_size, 4)  # T6: 6 levels
    ddpm = make_config("rl_digits", ["objective.split_batch=false", "objective.schedule=ddpm",
                                     "objective.num_levels=10"])
    assert train_bench.sampling(ddpm) == (10 * rl.data.batch_size, 30)


def test_train_step_batches_carry_the_objectives_extras():
    """A concept objective's step reads the concepts ``c`` from its batch: the benchmark draws
    the run's own batches (it drew x and y only, and ecbm_digits failed)."""
    _, _, _, batches = train_bench.program("ecbm_digits", ["model.hidden=16"], 2)
    assert len(batches) == 2 and set(batches[0]) == {"x", "y", "c"}


def test_train_step_overrides_are_dotted_keys():
    config, _, _, batches = train_bench.program("nce_2d_8gaussians",
                                                ["model.hidden=8", "data.batch_size=16"], 2)
    assert config.model.hidden == (8,) and config.data.batch_size == 16
    assert len(batches) == 2 and batches[0]["x"].shape == (16, 2)
    with pytest.raises(ConfigError, match="batch_size"):  # a flat key of ebm_jax 0.1
        train_bench.program("nce_2d_8gaussians", ["batch_size=16"], 1)


def test_objectives_2d_presets_and_quick_overrides(monkeypatch):
    # Every objective x toy of the benchmark is a preset of that objective on that toy.
    for objective in objectives_2d.OBJECTIVES:
        assert get_objective(objective).unsupervised
        for toy in objectives_2d.TOYS:
            config = make_config(f"{objective}_2d_{toy}", ["run.seed=2"])
            assert (config.objective.kind, config.data.dataset, config.run.seed) == \
                (objective, toy, 2)
    seen = {}

    def fake_train(config, workdir, progress):
        seen["config"] = config
        with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:  # the last log_z is kept
            f.write('{"step": 1, "log_z": 0.5}\n{"step": 2, "loss": 1.0}\n'
                    '{"step": 3, "log_z": 0.75}\n')
        return {"kl_nats": 0.1, "mmd": 0.01, "steps": config.run.num_steps, "wall_seconds": 1.0,
                "train_seconds": 0.5, "log_z_quadrature": 0.8}

    monkeypatch.setattr(objectives_2d, "train", fake_train)
    row = objectives_2d.run("nce", "rings", 1, quick=True)
    full = make_config("nce_2d_rings")
    assert seen["config"].run.num_steps == full.run.num_steps // 4
    assert seen["config"].run.seed == 1
    assert (row["objective"], row["toy"], row["seed"], row["steps"]) == \
        ("nce", "rings", 1, full.run.num_steps // 4)
    assert row["quick"] is True and row["kl_nats"] == 0.1
    assert (row["log_z"], row["log_z_quadrature"]) == (0.75, 0.8)
