"""benchmarks/adversarial.py: its configs, its rows per method, and its command line over
stand-in runs (the runs themselves are the presets' own; the DAT run's stage-1 figures and the
baselines' generation sweep are tested on a tiny DAT run in
tests/experiments/test_dat_objective.py)."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import adversarial as bench  # noqa: E402


def test_each_method_is_its_preset_and_dat_keeps_its_stage_one_checkpoint():
    for method in bench.METHODS:
        config, stage1 = bench.method_config(method, 1, None)
        assert config.name == bench.METHODS[method][0] and config.run.seed == 1
        assert (stage1 is not None) == method.startswith("dat")
    config, stage1 = bench.method_config("dat_unfrozen", 0, None)
    assert stage1 == config.objective.stage1_steps == config.run.checkpoint_every == 1500
    assert config.run.num_steps == 6000 and not config.objective.freeze_statistics
    config, stage1 = bench.method_config("pgd_at", 0, 600)
    assert (stage1, config.run.num_steps, config.run.checkpoint_every) == (None, 600, 600)


SUMMARY = {"test_accuracy": 0.99, "robust_accuracy_linf": 0.86, "robust_accuracy_l2": 0.8,
           "energy_sign_untargeted": 0.1, "energy_sign_targeted": 0.98, "steps": 6000,
           "fresh_sample_frechet_distance": 2.5, "fresh_sample_kid": 0.2,
           "ascent_frechet_distance": 1.2, "ascent_kid": 0.06, "ascent_best_steps": 300,
           "ascent_precision": 0.8, "ascent_recall": 0.4, "ascent_coverage": 0.9,
           "ascent_diversity": 1.1, "train_seconds": 200.0, "wall_seconds": 250.0}


def test_rows_read_the_generator_of_each_method():
    dat = bench.method_row("dat", 2, SUMMARY, SUMMARY, {"curriculum_T": 50.0, "rollbacks": 0})
    assert set(bench.ROW_KEYS) <= set(dat)
    assert (dat["generator"], dat["frechet_distance"], dat["kid"], dat["diversity"]) == (
        "pgd_ascent", 1.2, 0.06, 1.1)
    assert (dat["clean_accuracy"], dat["curriculum_T"], dat["seed"]) == (0.99, 50.0, 2)
    jem = bench.method_row("jem", 0, SUMMARY, {"ascent_frechet_distance": 9.0}, {})
    assert (jem["generator"], jem["frechet_distance"], jem["kid"]) == ("sgld_fresh", 2.5, 0.2)
    assert jem["ascent_frechet_distance"] == 9.0 and jem["curriculum_T"] is None


def test_the_command_line_runs_each_method_per_seed_and_prints_json_lines(monkeypatch, capsys):
    calls = []

    def stand_in(method, seed, steps, workdir, figure_dir=None):
        bench.method_config(method, seed, steps)   # they resolve
        calls.append((method, seed, steps))
        return bench.method_row(method, seed, SUMMARY, SUMMARY, {})

    monkeypatch.setattr(bench, "run_method", stand_in)
    rows = bench.main(["--quick", "--no-save"])
    assert calls == [(m, 0, bench.QUICK_STEPS) for m in bench.METHODS]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == rows and [r["method"] for r in rows] == list(bench.METHODS)
    bench.main(["--seeds", "1", "2", "--methods", "weat", "--no-save"])
    assert calls[-2:] == [("weat", 1, None), ("weat", 2, None)]
