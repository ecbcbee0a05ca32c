"""`ebm-jax evaluate`: the report's keys and values, the baseline table, and its errors."""
import json
import os

import pytest

from ebm_jax import cli
from ebm_jax.config import ConfigError, make_config
from ebm_jax.evaluation import comparison_table, evaluate_run, find_baseline
from ebm_jax.experiment import train

TINY = ["hidden=32", "buffer_size=200", "sgld_steps=5", "batch_size=32", "log_every=5",
        "eval_every=20", "checkpoint_every=20", "num_eval_samples=50", "fresh_sample_steps=5",
        "num_steps=20"]


# 20-step runs and their evaluation: mostly compilation (see conftest.fast_compile).
pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, preset in (("jem", "jem_digits"), ("softmax", "softmax_digits"),
                         ("cd", "cd_digits")):
        train(make_config(preset, TINY), str(root / name), progress=False)
    return root


@pytest.mark.slow
def test_report_has_the_named_metrics_and_they_are_consistent(runs):
    report = evaluate_run(str(runs / "jem"), linf_budgets=(0.1,), l2_budgets=(1.0,),
                          pgd_steps=5)
    with open(runs / "jem" / "evaluation" / "report.json") as f:
        assert json.load(f) == report
    assert 0.0 <= report["accuracy"] <= 1.0 and report["nll"] > 0 and 0 <= report["ece"] <= 1
    assert set(report["ood"]) == {"uniform_noise", "gaussian_noise", "inverted", "vflip",
                                  "hflip", "interpolations"}
    for by_score in report["ood"].values():
        assert set(by_score) == {"log_px", "max_softmax", "grad_norm"}
        assert all(0.0 <= v <= 1.0 for v in by_score.values())
    robust = report["robust_accuracy"]
    assert set(robust) == {"linf:0", "linf:0.1", "l2:0", "l2:1"}
    # Budget 0 is the clean accuracy; an attack never helps.
    assert robust["linf:0"] == pytest.approx(report["accuracy"], abs=1e-6)
    assert robust["linf:0.1"] <= robust["linf:0"] and robust["l2:1"] <= robust["l2:0"]
    inpainting = report["inpainting"]
    assert inpainting["mse"] > 0 and inpainting["mse_mean_fill"] > 0
    assert 0.0 <= report["conditional_accuracy"] <= 1.0 and 0.0 <= report["composed_3_or_8"] <= 1
    for name in ("reliability.png", "ood_histograms.png", "ood_roc.png", "robustness_linf.png",
                 "generation.png"):
        assert os.path.getsize(runs / "jem" / "evaluation" / name) > 1000


@pytest.mark.slow
def test_baseline_is_found_and_tabled_beside_the_run(runs):
    assert find_baseline(str(runs / "jem")) == str(runs / "softmax")
    assert find_baseline(str(runs / "softmax")) is None
    a = {"config": "jem", "accuracy": 0.9, "ood": {"inverted": {"log_px": 0.8}}}
    b = {"config": "softmax", "accuracy": 0.95, "ood": {"inverted": {"log_px": 0.7}}}
    table = comparison_table(a, b).splitlines()
    assert table[0] == "| metric | jem | softmax |"
    assert "| accuracy | 0.9000 | 0.9500 |" in table
    assert "| ood inverted log_px | 0.8000 | 0.7000 |" in table


@pytest.mark.slow
def test_unconditional_ebm_gets_the_energy_ood_score_only(runs):
    report = evaluate_run(str(runs / "cd"), figures=False)
    assert "accuracy" not in report and "robust_accuracy" not in report
    assert "inpainting" in report and "conditional_accuracy" not in report
    assert all(set(s) == {"log_px"} for s in report["ood"].values())


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--metrics", "robustness"], "metric 'robustness' needs a classifier: the run's "
                                  "objective='cd' is an unconditional EBM"),
    (["--metrics", "fid"], "metrics=['fid']: expected a subset of"),
])
def test_cli_refuses_metrics_the_model_cannot_provide(runs, capsys, argv, message):
    code = cli.main(["evaluate", str(runs / "cd"), "--no-figures", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_cli_errors_for_a_directory_without_a_run_or_checkpoint(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps(make_config("jem_digits").to_dict()))
    assert cli.main(["evaluate", str(tmp_path)]) == 2
    assert "no checkpoint in" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no checkpoint"):
        evaluate_run(str(tmp_path))
