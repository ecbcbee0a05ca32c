"""benchmarks/world_models.py: its rows per method, and its command line over a stand-in run
(the runs themselves are the presets' own, tested in tests/experiments/test_world_model.py
and test_ebt_policy.py)."""
import json
import os
import sys

import pytest

from ebm_jax.experiments import make_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import world_models as bench  # noqa: E402

SUMMARIES = {
    "ball_fork": {"valid_frame_rate": 0.9, "valid_frame_rate_mse": 0.02,
                  "rollout_valid_rate": 0.8, "rollout_valid_rate_mse": 0.0,
                  "failure_auroc": 0.85, "steps": 10, "train_seconds": 2.0},
    "reach": {"success_rate": 0.99, "success_rate_bc": 0.1, "success_by_steps": {"2": 0.99},
              "success_rate_shifted": 0.97, "success_rate_bc_shifted": 0.4,
              "failure_auroc": 0.9, "steps": 10, "train_seconds": 3.0},
}


def test_each_method_reads_its_own_metrics_and_has_every_summary_key():
    for task, summary in SUMMARIES.items():
        energy, baseline = bench.method_rows(task, 1, summary)
        for row in (energy, baseline):
            assert set(bench.SUMMARY_KEYS) <= set(row)
            assert (row["task"], row["seed"], row["steps"]) == (task, 1, 10)
        assert baseline["failure_auroc"] is None and energy["failure_auroc"] is not None
    fork = bench.method_rows("ball_fork", 0, SUMMARIES["ball_fork"])
    assert [(r["method"], r["valid_frame_rate"], r["rollout_valid_rate"]) for r in fork] == [
        ("ebt", 0.9, 0.8), ("mse", 0.02, 0.0)]
    reach = bench.method_rows("reach", 0, SUMMARIES["reach"])
    assert [(r["method"], r["success_rate"], r["success_rate_shifted"]) for r in reach] == [
        ("ebt_policy", 0.99, 0.97), ("bc_mlp", 0.1, 0.4)]


def test_the_command_line_trains_each_preset_per_seed_and_prints_json_lines(monkeypatch,
                                                                            capsys):
    calls = []

    def stand_in(task, seed, overrides, workdir):
        make_config(bench.PRESETS[task], [f"run.seed={seed}"] + overrides)  # they resolve
        calls.append((task, seed, tuple(overrides)))
        return SUMMARIES[task]

    monkeypatch.setattr(bench, "run_task", stand_in)
    rows = bench.main(["--quick", "--no-save", "--set", "model.hidden=16"])
    steps = bench.QUICK_STEPS
    assert calls == [(task, 0, ("model.hidden=16", f"run.num_steps={steps}",
                                f"run.eval_every={steps}", f"run.checkpoint_every={steps}"))
                     for task in bench.PRESETS]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == rows and len(rows) == 2 * len(bench.PRESETS)
    assert bench.main(["--seeds", "0", "1", "--tasks", "reach", "--no-save"])[-1]["seed"] == 1
    assert calls[-1] == ("reach", 1, ())   # the presets' own steps


def test_an_unknown_task_is_refused_before_any_run(capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(["--tasks", "pong"])
    assert stop.value.code == 2 and "invalid choice: 'pong'" in capsys.readouterr().err
