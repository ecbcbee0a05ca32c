"""benchmarks/concepts.py on a tiny setting: every method trains, predicts and is scored."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import concepts as bench  # noqa: E402

pytestmark = pytest.mark.slow


def test_quick_rows_summary_and_figures(capsys, tmp_path):
    rows = bench.main(["--seeds", "1", "--train-steps", "300", "--no-save",
                       "--methods", "ecbm", "cbm", "--figures", str(tmp_path)])
    assert [r["method"] for r in rows] == ["ecbm", "cbm"]
    keys = {"method", "dataset", "seed", "class_accuracy", "concept_accuracy",
            "overall_concept_accuracy", "intervention_curve", "one_concept_gain",
            "conditional_mae"}
    assert all(keys <= set(r) for r in rows)
    ecbm, cbm = rows
    # 300 steps already separate a learning model from chance (0.1 for classes, 1/128 for
    # whole concept vectors); telling every concept pins the class for the CBM's classifier
    # and ECBM's exact inference alike.
    assert ecbm["class_accuracy"] > 0.8 and ecbm["overall_concept_accuracy"] > 0.7
    assert [r for r in ecbm["intervention_curve"]][-1][1] >= ecbm["class_accuracy"]
    assert ecbm["conditional_mae"] < 0.15
    assert cbm["conditional_mae"] is None and cbm["one_concept_gain"] == 0.0
    summary = bench.summarise(rows)
    assert {s["method"] for s in summary} == {"ecbm", "cbm"}
    assert "total" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["concepts_conditionals.png",
                                                          "concepts_intervention_curves.png"]
    assert len(ecbm["concept_marginals"]) == 10 and len(ecbm["concept_marginals"][0]) == 7
