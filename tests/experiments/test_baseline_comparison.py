"""A JEM run's summary beside its finished softmax baseline: the baseline's accuracy and ECE, and
a warning when the run is less calibrated than the plain classifier (JEM's promise broken)."""
import json
import os

import pytest

from ebm_jax.experiments import make_config
from ebm_jax.experiments.evaluation import ACCURACY_SLACK, ECE_SLACK, baseline_comparison


def _run(root, name, preset, summary=None, overrides=()):
    os.makedirs(root / name)
    with open(root / name / "config.json", "w") as f:
        json.dump(make_config(preset, list(overrides)).to_dict(), f)
    if summary is not None:
        with open(root / name / "summary.json", "w") as f:
            json.dump(summary, f)
    return str(root / name)


@pytest.mark.parametrize("ece, warned", [(0.031 + ECE_SLACK, True), (0.029 + ECE_SLACK, False),
                                         (0.01, False)])
def test_warning_only_past_the_slack(tmp_path, ece, warned):
    jem = _run(tmp_path, "jem", "jem_digits")
    _run(tmp_path, "softmax", "softmax_digits", {"test_accuracy": 0.95, "ece": 0.03})
    out = baseline_comparison(jem, {"test_accuracy": 0.94, "ece": ece})
    assert out["softmax_accuracy"] == 0.95 and out["softmax_ece"] == 0.03
    assert ("calibration_warning" in out) == warned
    if warned:
        assert "worse than the softmax baseline's 0.0300" in out["calibration_warning"]


@pytest.mark.parametrize("accuracy, warned", [(0.949 - ACCURACY_SLACK, True),
                                              (0.951 - ACCURACY_SLACK, False), (0.97, False)])
def test_accuracy_warning_only_past_the_slack(tmp_path, accuracy, warned):
    """A JEM run that trained quietly but learned less than the plain classifier is flagged
    (the robustness matrix's heavy-tailed table in its own units: 0.49 against 0.81)."""
    jem = _run(tmp_path, "jem", "jem_digits")
    _run(tmp_path, "softmax", "softmax_digits", {"test_accuracy": 0.95, "ece": 0.03})
    out = baseline_comparison(jem, {"test_accuracy": accuracy, "ece": 0.03})
    assert ("accuracy_warning" in out) == warned and "calibration_warning" not in out
    if warned:
        assert "below the softmax baseline's 0.9500" in out["accuracy_warning"]
        assert "objective.generative_weight" in out["accuracy_warning"]


def test_nothing_without_a_finished_matching_baseline(tmp_path):
    jem = _run(tmp_path, "jem", "jem_digits")
    assert baseline_comparison(jem, {"ece": 0.5}) == {}                  # no baseline
    _run(tmp_path, "other_net", "softmax_digits", {"ece": 0.01}, ["model.hidden=8"])
    assert baseline_comparison(jem, {"ece": 0.5}) == {}                  # another network
    _run(tmp_path, "softmax", "softmax_digits")                          # not finished
    assert baseline_comparison(jem, {"ece": 0.5}) == {}
    softmax = str(tmp_path / "softmax")
    assert baseline_comparison(softmax, {"ece": 0.5}) == {}              # a baseline itself
    assert baseline_comparison(jem, {"test_accuracy": 0.9}) == {}        # no ECE


def test_siblings_that_are_not_runs_are_skipped(tmp_path):
    jem = _run(tmp_path, "jem", "jem_digits")
    os.makedirs(tmp_path / "broken")
    (tmp_path / "broken" / "config.json").write_text('{"run": {"num_steps": 10,}}')
    _run(tmp_path, "softmax", "softmax_digits", {"test_accuracy": 0.9, "ece": 0.05})
    assert baseline_comparison(jem, {"ece": 0.01})["softmax_ece"] == 0.05
