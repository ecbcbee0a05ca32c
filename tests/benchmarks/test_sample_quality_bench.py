"""benchmarks/sample_quality.py: its rows, the sets it draws from a run, and its command line
over stand-in runs (the presets' own training is tested in tests/experiments)."""
import json
import os
import sys

import numpy as np
import pytest

from ebm_jax.data import load_digits
from ebm_jax.metrics.digit_yardstick import YARDSTICK_KEYS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import sample_quality as bench  # noqa: E402

DIGITS = load_digits()


def test_the_floor_scores_the_data_as_the_data():
    sets = bench.floor_sets(200, seed=0)
    assert list(sets) == ["train digits", "train digits, 200 resampled"]
    for name, (samples, labels) in sets.items():
        row = bench.score_row(bench.FLOOR, name, samples, labels, seed=0)
        assert set(bench.ROW_KEYS) <= set(row) and row["benchmark"] == "sample_quality"
        assert row["num_samples"] == len(samples) and row["preset"] == "floor"
        assert row["precision"] > 0.85 and row["coverage"] > 0.8
        assert 0.85 < row["diversity"] < 1.15
    picked, labels = sets["train digits, 200 resampled"]
    rows = {row.tobytes(): label for row, label in zip(DIGITS.x_train, DIGITS.y_train)}
    assert all(rows[row.tobytes()] == label for row, label in zip(picked, labels))
    assert not np.array_equal(picked, DIGITS.x_train[:200])   # drawn at random


def test_a_row_without_labels_has_no_diversity_and_a_blown_up_set_no_scores():
    row = bench.score_row("cd_digits", "replay buffer", DIGITS.x_train[:100], steps=3)
    assert row["diversity"] is None and row["steps"] == 3 and row["kid"] is not None
    bad = bench.score_row("cd_digits", "fresh", np.full((20, 64), np.nan))
    assert bad["non_finite_values"] == 20 * 64 and all(bad[k] is None for k in YARDSTICK_KEYS)


def _stand_in_sets(exp, state, num_samples, seed):
    sets = {"fresh: SGLD from noise": (DIGITS.x_train[:num_samples], None)}
    if exp == "jem_digits":
        labels = np.repeat(np.arange(10), num_samples // 10)
        sets["class-conditional"] = (DIGITS.x_train[:num_samples], labels)
    return sets


class _State:
    step = 7


@pytest.mark.slow
def test_the_command_line_scores_every_set_of_each_preset(monkeypatch, capsys, tmp_path):
    calls = []

    def stand_in_run(preset, seed, overrides, workdir):
        calls.append((preset, seed, tuple(overrides), os.path.basename(workdir)))
        return preset, _State(), 1.5

    monkeypatch.setattr(bench, "trained_run", stand_in_run)
    monkeypatch.setattr(bench, "model_sets", _stand_in_sets)
    monkeypatch.setattr(bench, "RESULTS_DIR", str(tmp_path))
    rows = bench.main(["--quick", "--no-save", "--num-samples", "50", "--presets", "jem_digits",
                       "rl_digits", "--set", "model.hidden=16"])
    steps = bench.QUICK_STEPS
    assert calls == [(p, 0, ("model.hidden=16", f"run.num_steps={steps}",
                             f"run.eval_every={steps}", f"run.checkpoint_every={steps}"), p)
                     for p in ("jem_digits", "rl_digits")]
    assert [(r["preset"], r["samples"]) for r in rows] == [
        ("floor", "train digits"), ("floor", "train digits, 50 resampled"),
        ("jem_digits", "fresh: SGLD from noise"), ("jem_digits", "class-conditional"),
        ("rl_digits", "fresh: SGLD from noise")]
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows
    assert all(r["steps"] == 7 and r["train_seconds"] == 1.5 for r in rows[2:])
    assert rows[3]["diversity"] is not None and rows[2]["diversity"] is None
    assert sorted(os.listdir(tmp_path)) == [f"sample_quality_{name}.png" for name in
                                            ("floor", "jem_digits", "rl_digits")]


@pytest.mark.parametrize("argv, message", [
    (["--presets", "nce_digits"], "invalid choice: 'nce_digits'"),
    (["--num-samples", "55"], "--num-samples 55: expected a positive multiple of 10"),
])
def test_bad_arguments_are_refused_before_any_run(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_the_sets_of_an_untrained_jem_run():
    """The replay buffer, the generator and class-conditional chains of a tiny JEM (no
    training: the sets' shapes and labels are the point)."""
    from ebm_jax.experiments import build, initial_state
    from tests.experiments.tiny import tiny

    exp = build(tiny("jem_digits"))
    sets = bench.model_sets(exp, initial_state(exp), 20, seed=0)
    assert list(sets) == ["replay buffer", "fresh: SGLD from noise", "class-conditional"]
    for samples, labels in sets.values():
        assert samples.shape == (20, 64) and np.all(np.isfinite(samples))
    np.testing.assert_array_equal(sets["class-conditional"][1], np.repeat(np.arange(10), 2))
    assert sets["replay buffer"][1] is None
