"""benchmarks/fit_loop.py: a tiny measurement gives a full row (nothing is written)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import fit_loop  # noqa: E402

TINY = ["model.hidden=16,16", "objective.num_steps=1", "objective.energy_l2=0.1",
        "run.log_every=10", "run.num_steps=20"]


@pytest.mark.slow
@pytest.mark.parametrize("per_call", [1, 5])
def test_a_tiny_measurement_gives_a_full_row(per_call):
    row = fit_loop.measure("cd_2d_rings", 20, 2, TINY + [f"run.steps_per_call={per_call}"])
    assert row["benchmark"] == "fit_loop" and row["steps_per_call"] == per_call
    assert len(row["pairs_measured"]) == 2
    ratios = [f / b for b, f in row["pairs_measured"]]
    assert row["fit_vs_bare_step_min"] <= row["fit_vs_bare_step"] <= row["fit_vs_bare_step_max"]
    assert min(ratios) == pytest.approx(row["fit_vs_bare_step_min"], rel=1e-2)
    assert row["bare_steps_per_s"] > 0 and row["fit_steps_per_s"] > 0
    assert row["cpu_model"] and row["load_average_1min"] >= 0
