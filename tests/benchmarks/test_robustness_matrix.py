"""benchmarks/robustness_matrix.py: the onset and detection read from a run's records, the
target each row is held to, and one tiny cell end to end (nothing written to results)."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import robustness_matrix as matrix  # noqa: E402

from ebm_jax.data import procedural  # noqa: E402
from tests.experiments.tiny import tiny_overrides  # noqa: E402


def _windows(energies, every=20):
    return [{"step": every * (i + 1), "loss": 0.0, "generative/energy_data": -e,
             "generative/energy_sample": -e, "diverged/energy_scale": 0.0}
            for i, e in enumerate(energies)]


def test_onset_is_the_first_window_past_10x_the_early_scale_and_detection_the_first_event():
    # Early scale (steps <= 200): mean 2.0. Growth 1.5x a window from step 220 (2 x 1.5):
    # 10 x 2 = 20 is passed at the window of 2 x 1.5^6 = 22.8, step 320.
    energies = [2.0] * 10 + [2.0 * 1.5 ** k for k in range(1, 12)]
    records = _windows(energies)
    records.append({"step": 360, "event": "rollback", "to_step": 300, "diverged_step": 345,
                    "causes": ["energy_scale"]})
    onset, detected, events = matrix.onset_and_detection(records)
    assert onset == 320 and detected == 345 and len(events) == 1
    # The guard's own flags (keys "diverged/energy...") are not energies.
    assert matrix.onset_and_detection(_windows([2.0] * 20))[0] is None


def _row(**kw):
    row = {"hybrid_classifier": True, "outcome": "trained", "cause": None, "onset": None,
           "detected": None, "accuracy": 0.90, "ece": 0.05, "softmax_accuracy": 0.92,
           "softmax_ece": 0.045}
    row.update(kw)
    return row


@pytest.mark.parametrize("row, expected", [
    (_row(), True),                                             # within 3 points, ECE + 0.005
    (_row(accuracy=0.88), False),                               # 4 points below softmax
    (_row(ece=0.06), False),                                    # ECE 0.015 above softmax's
    (_row(outcome="stopped", cause=["energy_scale"]), True),    # stopped, naming the cause
    (_row(outcome="stopped", cause=[]), False),                 # stopped without a cause
    (_row(hybrid_classifier=False, onset=400), False),          # blew up, nothing fired
    (_row(hybrid_classifier=False, onset=400, detected=420), True),
])
def test_meets_target(row, expected):
    assert matrix.meets_target(row) is expected


@pytest.mark.slow
def test_a_tiny_cell_trains_and_reports_every_summary_key(tmp_path):
    data = procedural.subsample(procedural.signals(0, num_train=400, num_test=360, length=64),
                                200, seed=0)
    path = matrix.write_npz(data, str(tmp_path / "data.npz"))
    rows = [matrix.run_cell(path, "tiny", objective, 0, 10, str(tmp_path), log_every=5,
                            extra=tuple(tiny_overrides(matrix.PRESETS[objective])))
            for objective in (matrix.BASELINE, matrix.DEFAULT_JEM)]
    jem = rows[1]
    for key in ("dataset", "objective", "seed", "outcome", "cause", "accuracy", "ece",
                "softmax_accuracy", "softmax_ece", "steps_to_detection", "meets_target"):
        assert key in jem, key
    assert jem["outcome"] == "trained" and jem["softmax_accuracy"] == rows[0]["accuracy"]
    assert 0.0 <= jem["accuracy"] <= 1.0 and np.isfinite(jem["ece"])
