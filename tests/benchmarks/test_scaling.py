"""benchmarks/device_peaks.py (peaks, FLOP counts) and benchmarks/scaling.py: its command line,
its configs and one tiny measured row."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCHMARKS)

import device_peaks  # noqa: E402
import scaling  # noqa: E402
from device_peaks import (compiled_flops, cpu_peak_from_cpuinfo, device_peak_flops,  # noqa: E402
                          jaxpr_flops, match_accelerator)

from ebm_jax.experiments import make_config  # noqa: E402


def cpuinfo(vendor, family, flags, mhz, *, siblings, cores, processors=1):
    block = (f"processor\t: {{i}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
             f"model name\t: test cpu\ncpu MHz\t\t: {mhz}\nsiblings\t: {siblings}\n"
             f"cpu cores\t: {cores}\nflags\t\t: {flags}\n\n")
    return "".join(block.format(i=i) for i in range(processors))


XEON = cpuinfo("GenuineIntel", 6, "fpu sse sse2 avx fma avx2 avx512f avx512bw", "2000.000",
               siblings=8, cores=4, processors=8)
ZEN4 = cpuinfo("AuthenticAMD", 25, "sse2 avx fma avx2 avx512f avx512_bf16", "2596.142",
               siblings=2, cores=2, processors=2)


def test_cpu_peak_stated_example():
    # 8 logical CPUs, 2 threads per core -> 4 cores; avx512f -> 16 fp32 lanes; 2 FMA units;
    # 2.0 GHz: 4 * 16 * 2 (FMA) * 2 * 2.0e9 = 512 GFLOP/s; no bf16 instructions -> the same.
    peak = cpu_peak_from_cpuinfo(XEON, cpus=8, env={})
    assert (peak.cores, peak.lanes, peak.fma_units, peak.ghz) == (4, 16, 2, 2.0)
    assert peak.float32 == pytest.approx(512e9)
    assert peak.bfloat16 == pytest.approx(512e9)


def test_cpu_peak_zen4_avx2_overrides_and_amx():
    zen4 = cpu_peak_from_cpuinfo(ZEN4, cpus=2, env={})
    assert zen4.fma_units == 1  # 512-bit FMAs on two 256-bit pipes
    assert zen4.float32 == pytest.approx(2 * 16 * 2 * 1 * 2.596142e9)
    assert zen4.bfloat16 == pytest.approx(2 * zen4.float32)  # avx512_bf16
    avx2 = cpuinfo("GenuineIntel", 6, "sse2 avx fma avx2", "1200.0", siblings=4, cores=4)
    # lscpu's max MHz wins over the current "cpu MHz": 4 * 8 * 2 * 2 * 3.5e9.
    assert cpu_peak_from_cpuinfo(avx2, cpus=4, max_mhz=3500.0, env={}).float32 == \
        pytest.approx(448e9)
    env = {"EBM_JAX_CPU_FMA_UNITS": "1", "EBM_JAX_CPU_GHZ": "1.5"}
    assert cpu_peak_from_cpuinfo(XEON, cpus=8, max_mhz=9999.0, env=env).float32 == \
        pytest.approx(4 * 16 * 2 * 1 * 1.5e9)
    no_clock = cpu_peak_from_cpuinfo("flags : sse2\n", cpus=2, env={})
    assert no_clock.float32 is None and no_clock.lanes == 4
    amx = cpuinfo("GenuineIntel", 6, "avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile", "2000",
                  siblings=2, cores=2)
    assert cpu_peak_from_cpuinfo(amx, cpus=2, env={}).bfloat16 == pytest.approx(2 * 1024 * 2e9)


class FakeDevice:
    def __init__(self, device_kind, platform="gpu"):
        self.device_kind, self.platform = device_kind, platform


@pytest.mark.parametrize("kind, dtype, expected", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.4e12),
    ("NVIDIA H100 80GB HBM3", "float32", 66.9e12),
    ("NVIDIA H100 PCIe", "bfloat16", 756.5e12),
    ("NVIDIA A100-SXM4-40GB", "float32", 19.5e12),
    ("NVIDIA A100 80GB PCIe", jnp.bfloat16, 312e12),
    ("NVIDIA A10G", "bfloat16", 70e12),
    ("Tesla T4", "bfloat16", 8.1e12),  # no bf16 hardware: the fp32 peak
    ("NVIDIA L4", "bfloat16", 121e12),
    ("TPU v4", "bfloat16", 275e12),
    ("TPU v5 lite", "bfloat16", 197e12),
    ("TPU v5", "bfloat16", 459e12),
    ("TPU v6 lite", "bfloat16", 918e12),
    ("TPU v3", "bfloat16", 61.5e12),  # one of the chip's two TensorCores
])
def test_accelerator_peaks(kind, dtype, expected):
    peak, description = device_peak_flops(FakeDevice(kind), dtype)
    assert peak == pytest.approx(expected)
    assert description
    assert device_peak_flops(kind, dtype)[0] == pytest.approx(expected)  # a kind string


def test_unknown_devices_and_dtypes():
    for kind in ("NVIDIA L40S", "Mystery Accelerator 9000", "TPU v4 lite"):
        peak, description = device_peak_flops(FakeDevice(kind), "bfloat16")
        assert peak is None and "unknown" in description
    assert match_accelerator("NVIDIA A100-SXM4-80GB").name == "NVIDIA A100"  # not A10
    assert device_peak_flops(FakeDevice("NVIDIA H100 80GB HBM3"), "float64")[0] is None


def test_cpu_device_uses_this_machine():
    peak, description = device_peak_flops(jax.devices("cpu")[0], "float32")
    assert peak == device_peaks.this_cpu_peak().float32
    assert description.startswith("cpu:")


def test_compiled_flops_of_a_matmul():
    a, b = jnp.ones((128, 256)), jnp.ones((256, 64))
    compiled = jax.jit(lambda a, b: a @ b).lower(a, b).compile()
    assert compiled_flops(compiled) == pytest.approx(2 * 128 * 256 * 64, rel=0.01)

    class ListCosts:  # older JAX: a list of per-module dicts
        def cost_analysis(self):
            return [{"flops": 10.0}, {"flops": 5.0, "bytes accessed": 1.0}]

    assert compiled_flops(ListCosts()) == 15.0


def test_jaxpr_flops_counts_scan_trip_counts_and_convs():
    a, b = jnp.ones((128, 256)), jnp.ones((256, 64))
    assert jaxpr_flops(lambda a, b: a @ b, a, b).flops == 2 * 128 * 256 * 64
    x, w = jnp.ones((128, 256)), jnp.ones((256, 256))

    def chain(x, w):
        return jax.lax.scan(lambda x, _: (x @ w, None), x, None, length=20)[0]

    counted = jaxpr_flops(chain, x, w)
    assert counted.flops == 20 * 2 * 128 * 256 * 256 and counted.while_loops == 0

    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 8))

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    compiled = jax.jit(conv).lower(x, w).compile()
    assert jaxpr_flops(conv, x, w).conv_flops == pytest.approx(compiled_flops(compiled), rel=0.01)


@pytest.mark.slow
def test_scaling_help_exits_zero():
    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "scaling.py"), "--help"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "--cpu-devices" in result.stdout and "--quick" in result.stdout


def test_scaling_defaults_are_dotted_overrides_of_the_preset():
    cpu = make_config(scaling.PRESET, scaling.CPU_DEFAULTS)
    assert (cpu.model.kind, cpu.model.depth, cpu.model.widen_factor, cpu.model.dtype) == \
        ("wrn", 16, 2, "float32")
    quick = make_config(scaling.PRESET, scaling.CPU_DEFAULTS + scaling.QUICK)
    assert (quick.model.depth, quick.model.widen_factor, quick.data.batch_size) == (10, 1, 16)
    assert scaling.model_name(quick.model) == "wrn-10-1"
    assert quick.objective.chain_start is not None  # JEM: SGLD chains from a replay buffer


@pytest.mark.slow
@pytest.mark.fast_compile
def test_scaling_measures_a_tiny_row():
    # The jem_cifar10 step as `ebm-jax train` builds it, with a tiny ConvNet: one timed step.
    overrides = ["model.kind=conv", "model.channels=4", "model.dtype=float32",
                 "data.batch_size=4", "objective.chain_start.capacity=8",
                 "objective.num_steps=2"]
    config = make_config(scaling.PRESET, overrides)
    data = scaling.synthetic_cifar(num_train=16, num_test=8)
    assert data.x_train.shape == (16, 32, 32, 3) and data.num_classes == 10
    row = scaling.measure(config, data, 1, 1)
    assert (row["model"], row["dtype"], row["devices"]) == ("conv", "float32", 1)
    assert (row["global_batch"], row["per_device_batch"], row["sgld_steps"]) == (4, 4, 2)
    assert row["steps"] == 1 and row["steps_per_s"] > 0 and row["images_per_s"] > 0
    assert row["model_flops_per_step"] > 0 and row["model_flops_unknown_while_loops"] == 0
    assert "final_loss" in row and "fraction_of_peak" in row
