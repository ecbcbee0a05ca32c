"""``ebm-jax doctor``: a short pilot, its trends and the diagnoses that name a setting.

The pilots are tiny (a 16-unit MLP, batches of 16, 40 steps) and compiled with fewer XLA
optimisations: they are mostly compilation, and ``slow`` like every test that trains
through the runner. The rules themselves are checked on hand-written metrics records,
without training, in the inner loop."""
import contextlib
import io
import json

import pytest

from ebm_jax import cli
from ebm_jax.experiments import make_config, pilot
from ebm_jax.experiments.config import apply_overrides
from ebm_jax.experiments.doctor import (CLASSIFIER_PROGRESS_MIN, ENERGY_GROWTH_LIMIT,
                                        EXIT_HEALTHY, EXIT_PROBLEM, analyse, pilot_config,
                                        read_records)
from tests.experiments.tiny import tiny, tiny_overrides

pytestmark = pytest.mark.fast_compile

SMALL = ("model.hidden=16", "data.batch_size=16")
# CD on the digits without the energy penalty, with Adam at rate 1: the energies run away
# (measured: max |E| from ~4e3 in the first quarter of the windows to ~3e5 in the last).
BLOW_UP = ("objective.energy_l2=0", "optimizer.learning_rate=1.0")


def _rules(report) -> dict:
    return {d.rule: d for d in report.diagnoses}


@pytest.mark.slow
def test_healthy_jem_pilot_finds_no_problem_beside_its_softmax_twin(tmp_path):
    # Rate 0.01: the tiny classifier learns within the 40 steps (both runs).
    config = tiny("jem_digits", *SMALL, "optimizer.learning_rate=0.01")
    report = pilot(config, steps=40, workdir=str(tmp_path), devices=1)
    assert report.healthy and report.exit_code == EXIT_HEALTHY, report.text()
    assert report.windows == 20 and report.steps_run == 40
    assert report.energy["growth"] < ENERGY_GROWTH_LIMIT
    classifier = report.classifier
    assert classifier["twin"] == "softmax"
    assert classifier["twin_loss_late"] < 0.9 * classifier["twin_loss_first"]
    assert classifier["progress"] > CLASSIFIER_PROGRESS_MIN
    assert classifier["test_accuracy"] is not None and classifier["twin_test_accuracy"] is not None
    with open(tmp_path / "doctor.json") as f:
        saved = json.load(f)
    assert saved["healthy"] and saved["exit_code"] == EXIT_HEALTHY
    assert saved["classifier"]["twin_loss_late"] == pytest.approx(classifier["twin_loss_late"])
    assert (tmp_path / "softmax_twin" / "summary.json").is_file()
    assert "healthy" in report.text()


@pytest.fixture(scope="module")
def blown_up(tmp_path_factory):
    """``ebm-jax doctor`` on a tiny config that blows up: (exit code, stdout, workdir, config).
    One pilot serves the report's test and the command's."""
    workdir = tmp_path_factory.mktemp("doctor")
    overrides = tiny_overrides("cd_digits") + list(SMALL + BLOW_UP)
    argv = ["doctor", "--config", "cd_digits", "--steps", "40", "--workdir", str(workdir),
            "--no-progress", "--devices", "1"]
    for item in overrides:
        argv += ["--set", item]
    with contextlib.redirect_stdout(io.StringIO()) as out:  # the module's fast_compile is on
        code = cli.main(argv)
    return code, out.getvalue(), workdir, make_config("cd_digits", overrides)


@pytest.mark.slow
def test_pilot_that_blows_up_names_the_settings_and_values_to_try(blown_up):
    _, _, workdir, config = blown_up
    with open(workdir / "doctor.json") as f:
        saved = json.load(f)
    assert not saved["healthy"] and saved["classifier"] is None  # CD: no twin
    assert saved["energy"]["growth"] > ENERGY_GROWTH_LIMIT
    rules = {d["rule"]: d for d in saved["diagnoses"]}
    assert rules["energy_growth"]["settings"] == {"objective.energy_l2": 0.1,
                                                  "optimizer.learning_rate": 0.5}
    assert rules["sample_gap_growth"]["settings"] == {"objective.sampler.step_size": 0.5,
                                                      "objective.num_steps": 10}
    # The same report from the pilot's own metrics, through the Python API.
    records = read_records(str(workdir / "pilot" / "metrics.jsonl"))
    report = analyse(pilot_config(config, 40), records)
    assert _rules(report)["energy_growth"].settings == rules["energy_growth"]["settings"]
    assert report.exit_code == EXIT_PROBLEM
    # Every suggestion is a setting of this config, with a valid value.
    fixed = apply_overrides(config, saved["suggested_overrides"])
    assert fixed.objective.energy_l2 == 0.1 and fixed.optimizer.learning_rate == 0.5


@pytest.mark.slow
def test_cli_doctor_exits_3_on_a_problem_and_says_what_to_try(blown_up, tmp_path, capsys):
    code, out, workdir, _ = blown_up
    assert code == EXIT_PROBLEM == 3
    assert "energy_growth: max |E| grew x" in out and "limit x10" in out
    assert "    try: --set objective.energy_l2=0.1 --set optimizer.learning_rate=0.5" in out
    assert out.rstrip().endswith("--set optimizer.learning_rate=0.5 --set "
                                 "objective.sampler.step_size=0.5 --set objective.num_steps=10"
                                 f"\nreport: {workdir / 'doctor.json'}")
    assert "suggested: ebm-jax train --config cd_digits --set" in out
    # A pilot length that is no length: a config error, before any compute.
    assert cli.main(["doctor", "--steps", "0", "--workdir", str(tmp_path)]) == 2
    assert "steps=0: expected a positive int" in capsys.readouterr().err


# --------------------------------------------------------------------------- the rules alone


def _windows(n=20, every=5, **series):
    """``n`` log records; ``series[key](i)`` is the value of window ``i``."""
    return [{"step": every * (i + 1), "loss": 1.0, "grad_norm": 1.0, "diverged": 0.0,
             **{k.replace("__", "/"): f(i) for k, f in series.items()}} for i in range(n)]


def _config(preset, *extra):
    return pilot_config(make_config(preset, list(extra)), 100)


def test_rollbacks_and_sampler_failures_suggest_only_the_objectives_settings():
    flat = _windows(energy_data=lambda i: -1.0, energy_sample=lambda i: -1.2,
                    nonfinite_steps=lambda i: 0.0, sample_grad_norm=lambda i: 0.5)
    events = [{"step": 40, "event": "rollback", "to_step": 0, "retry": 1, "lr_scale": 0.5,
               "diverged_steps": 3, "causes": ["nonfinite", "sampler"],
               "cause_steps": {"sampler": 3, "nonfinite": 1}}]
    stopped = "training diverged at step 60 after 3 rollbacks: stopped"
    expected = {
        # CD: an energy penalty, the rate, and a clip inside the SGLD chains
        "cd_2d_rings": ({"objective.energy_l2": 0.1, "optimizer.learning_rate": 0.0005},
                        {"objective.sampler.grad_clip": 0.01}),
        # recovery likelihood: its chains take no clip; their step size is step_size_scale
        "rl_2d_rings": ({"objective.energy_l2": 0.1, "optimizer.learning_rate": 0.0005},
                        {"objective.step_size_scale": 0.025}),
        # NCE has no energy penalty and no training chains
        "nce_2d_rings": ({"optimizer.learning_rate": 0.0005}, {}),
    }
    for preset, (calm, sampler) in expected.items():
        config = _config(preset)
        report = analyse(config, flat + events, stopped=stopped)
        rules = _rules(report)
        assert set(rules) == {"diverged", "sampler_nonfinite"}, (preset, report.text())
        assert rules["diverged"].settings == calm and rules["sampler_nonfinite"].settings == sampler
        assert report.divergence["rollbacks"] == 1 and report.divergence["stopped"]
        assert report.divergence["causes"] == {"sampler": 3, "nonfinite": 1}
        apply_overrides(config, report.suggested_overrides())
    # an energy penalty already at 0.1 is suggested ten times stronger; a clip halved
    config = _config("cd_digits", "objective.sampler.grad_clip=0.01")
    rules = _rules(analyse(config, flat + events))
    assert rules["diverged"].settings["objective.energy_l2"] == pytest.approx(1.0)
    assert rules["sampler_nonfinite"].settings == {"objective.sampler.grad_clip": 0.005}


def test_a_classifier_far_behind_its_twin_suggests_a_lower_generative_weight():
    config = _config("jem_digits")
    jem = _windows(classification__loss=lambda i: 2.3 - 0.01 * i,
                   generative__energy_data=lambda i: -3.0,
                   generative__energy_sample=lambda i: -3.1)
    twin = _windows(loss=lambda i: 2.3 - 0.1 * i)
    rules = _rules(analyse(config, jem, twin_records=twin))
    assert rules["classifier_behind"].settings == {"objective.generative_weight": 0.5}
    assert set(rules) == {"classifier_behind"}
    # close enough behind the twin: healthy
    close = _windows(classification__loss=lambda i: 2.3 - 0.08 * i,
                     generative__energy_data=lambda i: -3.0,
                     generative__energy_sample=lambda i: -3.1)
    assert analyse(config, close, twin_records=twin).healthy
    # a twin that barely learned: too short to tell, no verdict
    slow = _windows(loss=lambda i: 2.3 - 0.005 * i)
    report = analyse(config, jem, twin_records=slow)
    assert report.healthy and report.classifier["progress"] is None
    assert "too short to compare" in report.text()
