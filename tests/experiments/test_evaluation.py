"""`ebm-jax evaluate`: the report's keys and values, the baseline table, and its errors."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import cli
from ebm_jax.experiments import ConfigError, evaluation, make_config
from ebm_jax.experiments.evaluation import comparison_table, evaluate_run, find_baseline
from ebm_jax.samplers import langevin
from tests.experiments.conftest import copy_run

# 20-step runs and their evaluation: mostly compilation (see conftest.fast_compile).
pytestmark = pytest.mark.fast_compile


@pytest.fixture(scope="module")
def runs(tmp_path_factory, jem_run_dir, softmax_run_dir, cd_run_dir):
    """Copies of the session's tiny runs, side by side (as `ebm-jax evaluate` finds a
    baseline: a sibling directory)."""
    root = tmp_path_factory.mktemp("runs")
    for name, (source, _) in (("jem", jem_run_dir), ("softmax", softmax_run_dir),
                              ("cd", cd_run_dir)):
        copy_run(source, root / name)
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
    assert report["conditional_diversity"] >= 0.0   # 10 samples of each class vs the test digits
    for name in ("reliability.png", "ood_histograms.png", "ood_roc.png", "robustness_linf.png",
                 "generation.png"):
        assert os.path.getsize(runs / "jem" / "evaluation" / name) > 1000


def test_the_digit_yardstick_in_a_summary_names_its_sample_set():
    """Keys ``{prefix}{measure}`` of the yardstick; NaN for a blown-up run's samples (written
    as null), nothing for fewer samples than precision and recall need."""
    from ebm_jax.data import load_digits
    from ebm_jax.metrics.digit_yardstick import YARDSTICK_KEYS

    train = load_digits().x_train
    scores = evaluation.digit_yardstick_summary(train[:50], "fresh_sample_")
    assert set(scores) == {f"fresh_sample_{key}" for key in YARDSTICK_KEYS}
    assert scores["fresh_sample_precision"] > 0.8 and scores["fresh_sample_frechet_distance"] < 5
    blown_up = evaluation.digit_yardstick_summary(np.full((50, 64), np.nan))
    assert set(blown_up) == {f"sample_{key}" for key in YARDSTICK_KEYS}
    assert all(np.isnan(v) for v in blown_up.values())
    assert evaluation.digit_yardstick_summary(train[:3]) == {}


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


@pytest.mark.slow
def test_purification_runs_the_runs_own_sampler_temperature_form_included(runs, tmp_path,
                                                                          monkeypatch):
    """``--purify`` runs the run's own sampler (``exp.sampler``). Changed behaviour: 0.1
    purified a temperature-form run (noise_scale none) with a fixed noise 0.01; now it gets the
    temperature form's noise sqrt(2 step_size), as in training."""
    run_dir = tmp_path / "jem_temperature"
    shutil.copytree(runs / "jem", run_dir)
    values = json.loads((run_dir / "config.json").read_text())
    values["objective"]["sampler"]["noise_scale"] = None  # the same checkpoint tree
    (run_dir / "config.json").write_text(json.dumps(values))
    built, purifiers = [], []
    real_load, real_purification = evaluation.load_run, evaluation.chain_purification
    monkeypatch.setattr(evaluation, "load_run",
                        lambda path: built.append(real_load(path)) or built[-1])
    monkeypatch.setattr(evaluation, "chain_purification",
                        lambda sampler, steps: purifiers.append((sampler, steps))
                        or real_purification(sampler, steps))
    # The attacks of test_report_has_the_named_metrics... (5 PGD steps): their programs repeat.
    report = evaluate_run(str(run_dir), metrics_requested=["robustness"], purify=True,
                          linf_budgets=(0.1,), l2_budgets=(), pgd_steps=5, figures=False)
    assert set(report["robust_accuracy_purified"]) == {"linf:0", "linf:0.1", "l2:0"}
    assert all(0.0 <= v <= 1.0 for v in report["robust_accuracy_purified"].values())
    (exp, state), = built
    (sampler, steps), = purifiers
    assert sampler is exp.sampler and steps == evaluation.PURIFICATION_STEPS
    settings = exp.config.objective.sampler
    assert settings.noise_scale is None and settings.clamp and settings.grad_clip is None

    x = jnp.asarray(exp.data.x_test[:16])

    def one_step(s):
        return np.asarray(real_purification(s, 1)(jax.random.PRNGKey(3), state.ema_params, x))

    own = one_step(sampler)
    temperature = one_step(langevin(exp.energy_fn, settings.step_size, None,
                                    clip_range=exp.data.data_range))
    old = one_step(langevin(exp.energy_fn, settings.step_size, 0.01,
                            clip_range=exp.data.data_range))
    np.testing.assert_allclose(own, temperature, atol=1e-6)
    assert np.max(np.abs(own - old)) > 0.1  # noise sqrt(2) per pixel, not 0.01
