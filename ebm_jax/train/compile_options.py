"""XLA compile options for the train step: on CPU, settings that compile a step in half to
two thirds of the time.

XLA:CPU spends most of a train step's compile time in LLVM, generating code for each fused
kernel at ``-O3`` with its MLIR fusion emitters. :data:`CPU_COMPILE_MODES` names three
settings:

* ``"xla"``: XLA's defaults.
* ``"o2"``: LLVM at ``-O2``. Measured on the slowest CPU presets' train steps (2 cores,
  README, "Compile time"): about two thirds of the compile time at the same step throughput
  (paired ratios 0.98-1.02). What ``ebm-jax train`` uses on CPU.
* ``"fast"``: ``-O2`` and XLA's older loop emitters instead of the fusion emitters: about
  half the compile time, steps 3-14% slower. For short runs and tests, where compiling is
  most of the wall time.

Values agree across the modes to float rounding, not to the bit, so a run keeps the mode it
started with (``run.cpu_compile``; a run saved before the setting existed resumes with
``"xla"``).

Pass the options to ``jax.jit(..., compiler_options=...)``,
:func:`~ebm_jax.train.sharded_train_step` or :func:`~ebm_jax.train.setup_training`. They are
empty off CPU, under ``JAX_DISABLE_MOST_OPTIMIZATIONS`` (which already asks for fewer
optimisations), and leave out any flag that ``XLA_FLAGS`` sets: the caller's choice wins.
"""
from __future__ import annotations

import os
from typing import Optional

import jax

from ebm_jax._checks import check_choice

LLVM_O2 = {"xla_backend_optimization_level": 2}  # XLA:CPU's default is 3
CPU_COMPILE_MODES = {
    "xla": {},
    "o2": LLVM_O2,
    "fast": {**LLVM_O2, "xla_cpu_use_fusion_emitters": False},
}


def _flags_named_in_env() -> set[str]:
    """The XLA flags that ``XLA_FLAGS`` sets (names without the dashes)."""
    return {token.split("=")[0].lstrip("-") for token in os.environ.get("XLA_FLAGS", "").split()}


def cpu_compile_options(mode: str = "o2", platform: Optional[str] = None) -> dict:
    """``compiler_options`` for a train step in ``mode`` (:data:`CPU_COMPILE_MODES`) on
    ``platform`` (default: jax's default backend); ``{}`` off CPU.

    Flags named in ``XLA_FLAGS`` are left out (the environment's value holds), and nothing is
    returned when jax already compiles with most optimisations disabled.

    Raises:
      ValueError: an unknown ``mode``.

    Example::

      >>> set(cpu_compile_options("fast", "cpu")) <= set(CPU_COMPILE_MODES["fast"])
      True
      >>> cpu_compile_options("o2", "gpu")
      {}
      >>> step = jax.jit(lambda x: 2.0 * x, compiler_options=cpu_compile_options())
      >>> float(step(1.5))
      3.0
    """
    check_choice("mode", mode, tuple(CPU_COMPILE_MODES))
    platform = platform or jax.default_backend()
    if platform != "cpu" or jax.config.values["jax_disable_most_optimizations"]:
        return {}
    named = _flags_named_in_env()
    return {flag: value for flag, value in CPU_COMPILE_MODES[mode].items() if flag not in named}


__all__ = ["CPU_COMPILE_MODES", "LLVM_O2", "cpu_compile_options"]
