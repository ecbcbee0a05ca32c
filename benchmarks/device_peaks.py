"""Peak dense FLOP/s of the device a benchmark runs on, and the FLOPs of a program.

    >>> import jax
    >>> from device_peaks import device_peak_flops, compiled_flops, jaxpr_flops
    >>> device_peak_flops(jax.devices()[0], "bfloat16")
    (989400000000000.0, 'NVIDIA H100 SXM: ...')        # on an H100 SXM
    >>> compiled_flops(jax.jit(f).lower(x).compile())   # XLA's cost analysis
    >>> jaxpr_flops(f, x).flops                         # dot/conv FLOPs, scan trip counts applied

Accelerators: a table of published per-chip peaks (dense, no 2:4 sparsity) from the
vendors' datasheets, per JAX device (TPU v2/v3 expose each of a chip's two TensorCores
as a device). CPUs: derived from this machine (cores x SIMD lanes x 2 x FMA units x
clock), see :func:`cpu_peak_from_cpuinfo`.

Two ways to count a program's FLOPs, and why both are here:

* :func:`compiled_flops` reads XLA's ``cost_analysis()`` of a compiled program. Under
  SPMD (a ``jit`` over a mesh) that is the per-device program. XLA's HloCostAnalysis
  counts the body of a ``while`` loop once, whatever its trip count (measured with
  jax 0.10.2: a ``lax.scan`` of 20 matmuls reports the FLOPs of one), so any program
  whose work sits in a ``lax.scan`` (SGLD chains, for one) is undercounted.
* :func:`jaxpr_flops` walks the jaxpr instead and counts the FLOPs of ``dot_general``
  and ``conv_general_dilated`` (2 per multiply-accumulate, padding taps excluded as XLA
  does), multiplying ``scan`` bodies by their length. It ignores elementwise work (the
  usual "model FLOPs" of MFU), and shapes are global: divide by the device count for
  per-device.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
from typing import Any, Mapping, NamedTuple, Optional

T = 1e12

# --------------------------------------------------------------------------- accelerators


class AcceleratorPeak(NamedTuple):
    """Published per-chip peaks (FLOP/s, dense) of one accelerator model."""

    name: str
    float32: Optional[float]
    bfloat16: Optional[float]
    devices_per_chip: int  # JAX devices one chip appears as
    source: str
    float32_note: str = ""
    bfloat16_note: str = ""


_NVIDIA_F32 = ("plain FP32 on CUDA cores (not TF32); f32 matmuls and convs that XLA runs "
               "as TF32 on tensor cores (JAX's default precision allows it on Ampere and "
               "later) can exceed it")
_NO_BF16 = "no bf16 hardware (before Ampere): bf16 is computed in fp32, so the fp32 peak"
_TPU_F32 = ("no published fp32 peak: at JAX's default precision f32 matmuls and convs run as "
            "one bf16 pass on the MXU, so the bf16 peak (HIGHEST precision is ~1/6 of it)")

# Figures are the vendors' datasheet numbers, dense (the NVIDIA datasheets print tensor-core
# numbers "with sparsity"; those are halved here). Checked against stored copies of the
# sources named, where the search tool found one; the rest are the well-known datasheet
# values, marked "(not re-checked here)".
ACCELERATORS: dict[str, AcceleratorPeak] = {
    # NVIDIA V100 datasheet (2020): SXM2 FP32 15.7 TFLOPS, PCIe 14, V100S 16.4; tensor cores are
    # FP16 only (125 TFLOPS), no BF16 (not re-checked here).
    "v100_sxm2": AcceleratorPeak("NVIDIA V100 SXM2", 15.7 * T, 15.7 * T, 1,
                                 "NVIDIA V100 datasheet (not re-checked here)",
                                 bfloat16_note=_NO_BF16),
    "v100_pcie": AcceleratorPeak("NVIDIA V100 PCIe", 14.0 * T, 14.0 * T, 1,
                                 "NVIDIA V100 datasheet (not re-checked here)",
                                 bfloat16_note=_NO_BF16),
    "v100s": AcceleratorPeak("NVIDIA V100S PCIe", 16.4 * T, 16.4 * T, 1,
                             "NVIDIA V100S datasheet (not re-checked here)",
                             bfloat16_note=_NO_BF16),
    # NVIDIA A100 datasheet: FP32 19.5, TF32 156 (312 sparse), BF16 312 (624 sparse); the same
    # for 40GB/80GB, SXM4 and PCIe. Cross-checked: hmc-tech.com "NVIDIA L4 vs A100 40GB"
    # (FP32 19.49, BF16 tensor 311.87 dense).
    "a100": AcceleratorPeak("NVIDIA A100", 19.5 * T, 312.0 * T, 1,
                            "NVIDIA A100 datasheet (40GB/80GB, SXM4/PCIe)",
                            float32_note=f"{_NVIDIA_F32} (TF32 peak 156)"),
    # NVIDIA H100 datasheet: SXM FP32 67 (66.9), TF32 989 sparse, BF16 1,979 sparse -> 989.4
    # dense; PCIe FP32 51, BF16 1,513 sparse -> 756.5; NVL FP32 60, BF16 1,671 sparse -> 835.5.
    # Checked: archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html (SXM/PCIe, "specifications
    # 1/2 lower without sparsity"); glennklockwood.com/garden/processors/h100 (SXM dense 989.4).
    "h100_sxm": AcceleratorPeak("NVIDIA H100 SXM", 66.9 * T, 989.4 * T, 1,
                                "NVIDIA H100 datasheet (SXM5)",
                                float32_note=f"{_NVIDIA_F32} (TF32 peak 494.7)"),
    "h100_pcie": AcceleratorPeak("NVIDIA H100 PCIe", 51.0 * T, 756.5 * T, 1,
                                 "NVIDIA H100 datasheet (PCIe)",
                                 float32_note=f"{_NVIDIA_F32} (TF32 peak 378)"),
    "h100_nvl": AcceleratorPeak("NVIDIA H100 NVL", 60.0 * T, 835.5 * T, 1,
                                "NVIDIA H100 NVL datasheet (not re-checked here)",
                                float32_note=_NVIDIA_F32),
    # GH200 Grace Hopper: the H100 SXM compute figures (NVIDIA GH200 datasheet, not re-checked).
    "gh200": AcceleratorPeak("NVIDIA GH200", 66.9 * T, 989.4 * T, 1,
                             "NVIDIA GH200 datasheet (not re-checked here)",
                             float32_note=_NVIDIA_F32),
    # NVIDIA H200 datasheet: SXM FP32 67, BF16 1,979 sparse -> 989.4 dense (the H100 SXM
    # compute with more, faster HBM3e; glennklockwood.com/garden/processors/h100 "H200");
    # H200 NVL FP32 60, BF16 1,671 sparse -> 835.5 (not re-checked here).
    "h200": AcceleratorPeak("NVIDIA H200 SXM", 66.9 * T, 989.4 * T, 1,
                            "NVIDIA H200 datasheet (SXM)", float32_note=_NVIDIA_F32),
    "h200_nvl": AcceleratorPeak("NVIDIA H200 NVL", 60.0 * T, 835.5 * T, 1,
                                "NVIDIA H200 NVL datasheet (not re-checked here)",
                                float32_note=_NVIDIA_F32),
    # NVIDIA L4 datasheet: FP32 30.3, BF16 242 sparse -> 121 dense, TF32 120 sparse.
    # Cross-checked: sourcecode.com L4 spec page (TF32 120 sparse); hmc-tech.com lists the
    # boost-clock theoretical 31.3 / 125.3, the datasheet figures are used here.
    "l4": AcceleratorPeak("NVIDIA L4", 30.3 * T, 121.0 * T, 1, "NVIDIA L4 datasheet",
                          float32_note=_NVIDIA_F32),
    # NVIDIA T4 datasheet: FP32 8.1, FP16 tensor 65; Turing has no BF16 (not re-checked here).
    "t4": AcceleratorPeak("NVIDIA T4", 8.1 * T, 8.1 * T, 1,
                          "NVIDIA T4 datasheet (not re-checked here)", bfloat16_note=_NO_BF16),
    # NVIDIA A10 datasheet: FP32 31.2, BF16 125 dense (250 sparse), TF32 62.5 (not re-checked).
    "a10": AcceleratorPeak("NVIDIA A10", 31.2 * T, 125.0 * T, 1,
                           "NVIDIA A10 datasheet (not re-checked here)", float32_note=_NVIDIA_F32),
    # A10G (AWS G5): NVIDIA publishes no datasheet. The figures AWS-side write-ups give (e.g.
    # baseten.co "NVIDIA A10 vs A10G for ML model inference": the A10G has more CUDA-core and
    # less tensor-core throughput than the A10) are FP32 35, BF16 tensor 70 dense; the page
    # was found but its table was not readable here, so these are recalled values.
    "a10g": AcceleratorPeak("NVIDIA A10G", 35.0 * T, 70.0 * T, 1,
                            "AWS/third-party figures; no NVIDIA datasheet (not re-checked here)",
                            float32_note=_NVIDIA_F32),
    # Google Cloud TPU docs, "Peak compute per chip (bf16)": v2 45 (180 per 4-chip board;
    # not re-checked here), v3 123, v4 275, v5e 197, v5p 459, v6e 918 (cloud.google.com/tpu/
    # docs/v3, /v4, /v5e, /v5p, /v6e). v2 and v3 chips hold two TensorCores, each a JAX device;
    # v4 and v5p chips are one "megacore" device; v5e and v6e chips have one TensorCore.
    "tpu_v2": AcceleratorPeak("TPU v2", 45.0 * T, 45.0 * T, 2,
                              "Google Cloud TPU docs (not re-checked here)", float32_note=_TPU_F32),
    "tpu_v3": AcceleratorPeak("TPU v3", 123.0 * T, 123.0 * T, 2, "cloud.google.com/tpu/docs/v3",
                              float32_note=_TPU_F32),
    "tpu_v4": AcceleratorPeak("TPU v4", 275.0 * T, 275.0 * T, 1, "cloud.google.com/tpu/docs/v4",
                              float32_note=_TPU_F32),
    "tpu_v5e": AcceleratorPeak("TPU v5e", 197.0 * T, 197.0 * T, 1,
                               "cloud.google.com/tpu/docs/v5e", float32_note=_TPU_F32),
    "tpu_v5p": AcceleratorPeak("TPU v5p", 459.0 * T, 459.0 * T, 1,
                               "cloud.google.com/tpu/docs/v5p", float32_note=_TPU_F32),
    "tpu_v6e": AcceleratorPeak("TPU v6e (Trillium)", 918.0 * T, 918.0 * T, 1,
                               "cloud.google.com/tpu/docs/v6e", float32_note=_TPU_F32),
}

# (pattern on the normalised device_kind, table key); the first match wins, so the more
# specific names come first ("A100" before "A10", "H100 PCIe" before "H100", "v5 lite"
# before "v5"). ``None`` as key: a known model with no entry here (reported as unknown).
_KIND_PATTERNS: tuple[tuple[str, Optional[str]], ...] = (
    (r"\bgh200\b", "gh200"),
    (r"\bh200\b.*\bnvl\b", "h200_nvl"),
    (r"\bh200\b", "h200"),
    (r"\bh100\b.*\bnvl\b", "h100_nvl"),
    (r"\bh100\b.*\bpcie\b", "h100_pcie"),
    (r"\bh100\b", "h100_sxm"),  # "NVIDIA H100 80GB HBM3" is the SXM part
    (r"\ba100\b", "a100"),
    (r"\ba10g\b", "a10g"),
    (r"\ba10\b", "a10"),
    (r"\bl4\b", "l4"),
    (r"\bt4\b", "t4"),
    (r"\bv100s\b", "v100s"),
    (r"\bv100\b.*\bpcie\b", "v100_pcie"),
    (r"\bv100\b", "v100_sxm2"),
    (r"\btpu v6 ?(e|lite)\b", "tpu_v6e"),
    (r"\btpu v5 ?(e|lite|litepod)\b", "tpu_v5e"),
    (r"\btpu v5 ?p?\b", "tpu_v5p"),  # JAX calls v5p "TPU v5"
    (r"\btpu v4 ?(i|lite)\b", None),  # the inference v4i: not in the table
    (r"\btpu v4\b", "tpu_v4"),
    (r"\btpu v3\b", "tpu_v3"),
    (r"\btpu v2\b", "tpu_v2"),
)


def _normalise_kind(device_kind: str) -> str:
    text = re.sub(r"[-_/]+", " ", device_kind.lower())
    return re.sub(r"\s+", " ", text).strip()


def match_accelerator(device_kind: str) -> Optional[AcceleratorPeak]:
    """The table entry for a ``device.device_kind`` string, or None.

    Example::

      >>> match_accelerator("NVIDIA H100 80GB HBM3").name
      'NVIDIA H100 SXM'
      >>> match_accelerator("TPU v5 lite").name
      'TPU v5e'
    """
    kind = _normalise_kind(device_kind)
    for pattern, key in _KIND_PATTERNS:
        if re.search(pattern, kind):
            return None if key is None else ACCELERATORS[key]
    return None


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, str):
        name = dtype.lower()
    else:
        try:
            import numpy as np

            name = np.dtype(dtype).name
        except TypeError:
            name = getattr(dtype, "__name__", None) or getattr(dtype, "name", None) or str(dtype)
    return {"f32": "float32", "bf16": "bfloat16", "fp32": "float32"}.get(name, name)


# --------------------------------------------------------------------------- CPU


class CpuPeak(NamedTuple):
    """A CPU's peak, derived: ``cores * lanes * 2 * fma_units * ghz`` (float32)."""

    cores: int
    lanes: int  # float32 SIMD lanes
    fma_units: int  # FMA pipes per core (of ``lanes`` width)
    ghz: Optional[float]
    float32: Optional[float]  # FLOP/s; None when the clock is unknown
    bfloat16: Optional[float]
    isa: str
    notes: tuple


def parse_cpuinfo(text: str) -> dict:
    """Vendor, family, model name, flags, clocks and core counts from /proc/cpuinfo text."""
    info: dict[str, Any] = {"flags": set(), "mhz": [], "vendor": "", "family": None,
                            "model_name": "", "siblings": None, "cpu_cores": None}
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        key = key.lower()
        if key in ("flags", "features"):  # x86 "flags", aarch64 "Features"
            info["flags"].update(value.lower().split())
        elif key == "cpu mhz":
            try:
                info["mhz"].append(float(value))
            except ValueError:
                pass
        elif key == "vendor_id" and not info["vendor"]:
            info["vendor"] = value
        elif key == "cpu family" and info["family"] is None:
            info["family"] = int(value) if value.isdigit() else None
        elif key == "model name" and not info["model_name"]:
            info["model_name"] = value
        elif key == "siblings" and info["siblings"] is None and value.isdigit():
            info["siblings"] = int(value)
        elif key == "cpu cores" and info["cpu_cores"] is None and value.isdigit():
            info["cpu_cores"] = int(value)
    return info


def cpu_peak_from_cpuinfo(text: str, *, cpus: int, max_mhz: Optional[float] = None,
                          env: Optional[Mapping[str, str]] = None) -> CpuPeak:
    """The peak FLOP/s of ``cpus`` logical CPUs of the machine ``text`` (/proc/cpuinfo) describes.

    * cores: ``cpus`` divided by the threads per core (``siblings / cpu cores``);
      hyperthreads share one core's FMA pipes. (In a VM, vCPUs that are host
      hyperthreads cannot be told apart and count as cores.)
    * lanes (float32 per vector): 16 with ``avx512f``, 8 with ``avx2`` or ``fma``, else 4.
    * FMA units per core: 2 (two FMA ports: Intel Skylake-SP Gold/Platinum and later
      server parts for AVX-512; Haswell and later and AMD Zen 2 and later for AVX2),
      except AMD family 25 with AVX-512 (Zen 4), which runs a 512-bit FMA on its
      two 256-bit pipes at once: 1 of 16 lanes. Without ``fma``, a separate add and
      multiply port count as 1. Parts with one 512-bit FMA port (Xeon Silver/Bronze,
      many client cores) need ``EBM_JAX_CPU_FMA_UNITS=1``.
    * clock: ``EBM_JAX_CPU_GHZ``, else ``max_mhz`` (lscpu's "CPU max MHz"), else the
      highest "cpu MHz" in ``text`` (in a VM: the nominal clock the hypervisor reports).
    * float32 peak = cores * lanes * 2 (an FMA is 2 FLOPs) * fma_units * GHz.
    * bfloat16 peak: with ``amx_bf16``, 1,024 FLOPs per cycle per core (Intel AMX tile
      multiply, Sapphire Rapids and later); with ``avx512_bf16`` (VDPBF16PS: two bf16
      products per fp32 lane) twice the float32 peak; else the float32 peak. This is the
      hardware's; XLA's CPU backend does not necessarily use these instructions.

    Example (the case tests/benchmarks/test_scaling.py states): an Intel part with
    ``avx512f``, "siblings 8" and "cpu cores 4" at "cpu MHz 2000", seen through 8 logical
    CPUs, is 4 cores, and its float32 peak is 4 * 16 * 2 * 2 * 2.0e9 = 512 GFLOP/s::

      >>> text = ("vendor_id : GenuineIntel\\nsiblings : 8\\ncpu cores : 4\\n"
      ...         "cpu MHz : 2000.000\\nflags : fma avx2 avx512f\\n")
      >>> cpu_peak_from_cpuinfo(text, cpus=8, env={}).float32
      512000000000.0
    """
    env = os.environ if env is None else env
    info = parse_cpuinfo(text)
    flags = info["flags"]
    notes = []
    threads = 1
    if info["siblings"] and info["cpu_cores"] and info["siblings"] >= info["cpu_cores"]:
        threads = max(1, info["siblings"] // info["cpu_cores"])
    cores = max(1, cpus // threads)
    if threads > 1:
        notes.append(f"{cpus} logical CPUs / {threads} threads per core = {cores} cores")
    if "avx512f" in flags:
        lanes, isa = 16, "avx512f"
    elif "avx2" in flags or "fma" in flags:
        lanes, isa = 8, "avx2" if "avx2" in flags else "fma"
    else:
        lanes, isa = 4, "sse/neon (128-bit)"
    amd_zen4 = info["vendor"] == "AuthenticAMD" and info["family"] == 25 and lanes == 16
    if env.get("EBM_JAX_CPU_FMA_UNITS"):
        fma_units = int(env["EBM_JAX_CPU_FMA_UNITS"])
        notes.append(f"FMA units from EBM_JAX_CPU_FMA_UNITS={fma_units}")
    elif amd_zen4:
        fma_units = 1
        notes.append("AMD family 25 (Zen 4): 512-bit FMAs run on two 256-bit pipes, "
                     "1 FMA of 16 lanes per cycle")
    elif lanes == 4 and "fma" not in flags and "asimd" not in flags:
        fma_units = 1
        notes.append("no FMA: one add and one multiply port counted as 1 FMA unit")
    else:
        fma_units = 2
        notes.append("assumed 2 FMA units per core (override: EBM_JAX_CPU_FMA_UNITS)")
    ghz = None
    if env.get("EBM_JAX_CPU_GHZ"):
        ghz = float(env["EBM_JAX_CPU_GHZ"])
        notes.append(f"clock from EBM_JAX_CPU_GHZ={ghz}")
    elif max_mhz:
        ghz = max_mhz / 1000.0
        notes.append(f"clock: lscpu max {max_mhz:.0f} MHz")
    elif info["mhz"]:
        ghz = max(info["mhz"]) / 1000.0
        notes.append(f"clock: /proc/cpuinfo cpu MHz {max(info['mhz']):.0f} (override: "
                     "EBM_JAX_CPU_GHZ)")
        if "hypervisor" in flags:
            notes.append("in a VM that is the nominal clock: boost clocks can exceed it")
    else:
        notes.append("clock unknown: set EBM_JAX_CPU_GHZ")
    if ghz is None:
        return CpuPeak(cores, lanes, fma_units, None, None, None, isa, tuple(notes))
    fp32 = cores * lanes * 2 * fma_units * ghz * 1e9
    if "amx_bf16" in flags:
        bf16 = cores * 1024 * ghz * 1e9
        notes.append("bfloat16: AMX, 1,024 FLOPs/cycle/core")
    elif "avx512_bf16" in flags:
        bf16 = 2 * fp32
        notes.append("bfloat16: avx512_bf16 dot products, 2x the float32 peak")
    else:
        bf16 = fp32
        notes.append("bfloat16: no bf16 instructions, the float32 peak")
    return CpuPeak(cores, lanes, fma_units, ghz, fp32, bf16, isa, tuple(notes))


def _lscpu_max_mhz() -> Optional[float]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^CPU max MHz:\s*([\d.]+)", out, re.MULTILINE)
    return float(match.group(1)) if match else None


def this_cpu_peak() -> CpuPeak:
    """:func:`cpu_peak_from_cpuinfo` of this machine, for the CPUs this process may run on."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return cpu_peak_from_cpuinfo(text, cpus=cpus, max_mhz=_lscpu_max_mhz())


# --------------------------------------------------------------------------- per device


def device_peak_flops(device: Any, dtype: Any = "float32") -> tuple[Optional[float], str]:
    """``(peak FLOP/s or None, description)`` of one JAX device computing in ``dtype``.

    Args:
      device: a ``jax.Device``, or a ``device_kind`` string ("NVIDIA H100 80GB HBM3",
        "TPU v5 lite", "cpu").
      dtype: "float32" or "bfloat16" (or the dtype objects).

    A CPU device's peak is the whole machine's (every core this process may use):
    virtual CPU devices (``jax_num_cpu_devices``) share those cores, so N of them
    have the same peak as one. Unknown devices and dtypes give None.
    """
    kind = device if isinstance(device, str) else getattr(device, "device_kind", str(device))
    platform = "cpu" if isinstance(device, str) and device.lower() == "cpu" else \
        getattr(device, "platform", "")
    name = _dtype_name(dtype)
    if name not in ("float32", "bfloat16"):
        return None, f"{kind}: no peak for dtype {name!r} (expected float32 or bfloat16)"
    if platform == "cpu":
        peak = this_cpu_peak()
        flops = peak.float32 if name == "float32" else peak.bfloat16
        ghz = "unknown" if peak.ghz is None else f"{peak.ghz:.3f}"
        return flops, (f"cpu: {peak.cores} cores x {peak.lanes} fp32 lanes ({peak.isa}) x 2 "
                       f"(FMA) x {peak.fma_units} FMA units x {ghz} GHz; "
                       + "; ".join(peak.notes))
    entry = match_accelerator(kind)
    if entry is None:
        return None, f"{kind!r}: unknown device, no published peak in benchmarks/device_peaks.py"
    chip = entry.float32 if name == "float32" else entry.bfloat16
    if chip is None:
        return None, f"{entry.name}: no {name} peak"
    per_device = chip / entry.devices_per_chip
    split = (f", 1/{entry.devices_per_chip} of the chip's {chip / T:g} TFLOP/s (one JAX device "
             "per TensorCore)" if entry.devices_per_chip > 1 else "")
    note = entry.float32_note if name == "float32" else entry.bfloat16_note
    note = f"; {note}" if note else ""
    return per_device, (f"{entry.name}: {per_device / T:g} TFLOP/s dense {name}{split} "
                        f"({entry.source}){note}")


# --------------------------------------------------------------------------- program FLOPs


def compiled_flops(compiled: Any) -> float:
    """FLOPs of a compiled (or lowered) program by XLA's cost analysis; NaN when absent.

    ``cost_analysis()`` returns a dict (recent JAX) or a list of dicts, one per
    HLO module (older JAX); the ``flops`` of all of them are summed. Under SPMD this
    is the per-device program. XLA counts a ``while`` loop's body once, whatever its
    trip count (see the module docstring and :func:`jaxpr_flops`).
    """
    costs = compiled.cost_analysis()
    if costs is None:
        return float("nan")
    if isinstance(costs, Mapping):
        costs = [costs]
    values = [c.get("flops") for c in costs if isinstance(c, Mapping)]
    values = [float(v) for v in values if v is not None]
    return float(sum(values)) if values else float("nan")


class ModelFlops(NamedTuple):
    """Dot and convolution FLOPs of a jaxpr (global shapes)."""

    flops: float  # dot_flops + conv_flops
    dot_flops: float
    conv_flops: float
    while_loops: int  # while loops with unknown trip counts, counted once


def _valid_taps(in_size: int, kernel: int, out_size: int, stride: int, pad_lo: int,
                lhs_dilation: int, rhs_dilation: int) -> int:
    """(output position, kernel tap) pairs of one spatial dim that read a real input."""
    span = (in_size - 1) * lhs_dilation + 1 if in_size else 0
    count = 0
    for o in range(out_size):
        base = o * stride - pad_lo
        for k in range(kernel):
            p = base + k * rhs_dilation
            if 0 <= p < span and p % lhs_dilation == 0:
                count += 1
    return count


def _conv_flops(eqn) -> float:
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    out = eqn.outvars[0].aval.shape
    dn = eqn.params["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    strides = eqn.params["window_strides"]
    padding = eqn.params["padding"]
    lhs_dil = eqn.params.get("lhs_dilation") or (1,) * len(strides)
    rhs_dil = eqn.params.get("rhs_dilation") or (1,) * len(strides)
    taps = 1
    for i in range(len(strides)):
        taps *= _valid_taps(lhs[lhs_spec[2 + i]], rhs[rhs_spec[2 + i]], out[out_spec[2 + i]],
                            strides[i], padding[i][0], lhs_dil[i], rhs_dil[i])
    return 2.0 * out[out_spec[0]] * out[out_spec[1]] * taps * rhs[rhs_spec[1]]


def _dot_flops(eqn) -> float:
    lhs = eqn.invars[0].aval.shape
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)


def _sub_jaxprs(value):
    """The jaxprs in an equation parameter (a jaxpr, a closed jaxpr, or a sequence of them)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value, "consts"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)


def _count(jaxpr) -> tuple[float, float, int]:
    dot = conv = 0.0
    loops = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            dot += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            conv += _conv_flops(eqn)
        elif name == "cond":
            branches = [_count(j) for j in _sub_jaxprs(eqn.params["branches"])]
            d, c, n = max(branches, key=lambda b: b[0] + b[1])
            dot, conv, loops = dot + d, conv + c, loops + n
        else:
            scale = 1.0
            if name == "scan":
                scale = float(eqn.params["length"])
            elif name == "while":
                loops += 1
            elif name == "shard_map":  # the body sees per-device shapes
                mesh = eqn.params.get("mesh")
                axes = eqn.params.get("axis_names") or getattr(mesh, "axis_names", ())
                scale = float(math.prod(mesh.shape[a] for a in axes)) if mesh is not None else 1.0
            for value in eqn.params.values():
                for sub in _sub_jaxprs(value):
                    d, c, n = _count(sub)
                    dot, conv, loops = dot + scale * d, conv + scale * c, loops + n
    return dot, conv, loops


def jaxpr_flops(fn, *args, **kwargs) -> ModelFlops:
    """Dot and convolution FLOPs of ``fn(*args, **kwargs)``, with ``lax.scan`` trip counts.

    Traces ``fn`` with :func:`jax.make_jaxpr` (nothing runs) and counts
    ``2 * M * N * K`` per ``dot_general`` and 2 per multiply-accumulate of each
    ``conv_general_dilated`` (taps that fall in padding excluded, as XLA does).
    ``scan`` bodies count ``length`` times, ``cond`` its costliest branch, ``while``
    loops of unknown trip count once (reported in ``while_loops``). Shapes are the
    global ones: under data parallelism each device does ``flops / n``.

    It counts the program as written: work XLA merges or drops still counts. (Per
    convolution the count equals XLA's; on the jem_cifar10 step with one SGLD step it
    is 8% above XLA's whole-program count, because JEM runs the classifier forward on
    the same batch twice, for the logits and for the energy, and XLA computes it once.)

    Example::

      >>> jaxpr_flops(lambda a, b: a @ b, jnp.ones((128, 256)), jnp.ones((256, 64))).flops
      4194304.0
    """
    import jax

    closed = jax.make_jaxpr(fn)(*args, **kwargs)
    dot, conv, loops = _count(closed.jaxpr)
    return ModelFlops(dot + conv, dot, conv, loops)


__all__ = ["ACCELERATORS", "AcceleratorPeak", "CpuPeak", "ModelFlops", "compiled_flops",
           "cpu_peak_from_cpuinfo", "device_peak_flops", "jaxpr_flops", "match_accelerator",
           "parse_cpuinfo", "this_cpu_peak"]
