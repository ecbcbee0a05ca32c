"""One tiny config for every end-to-end test of the application layer: the preset's own
objective and data, shrunk so that a run of a few steps is mostly compilation."""
import os

from ebm_jax.experiments import make_config
from ebm_jax.experiments.config import field_names

# Applied where the preset's objective has the field (dotted keys of the nested config).
TINY = {
    "model.hidden": "32",
    "data.batch_size": "32",
    "run.log_every": "5",
    "run.eval_every": "10",
    "run.checkpoint_every": "10",
    "run.num_eval_samples": "100",
    "run.fresh_sample_steps": "5",
    "run.robust_eval_examples": "0",       # two PGD programs: the robustness tests set it
    "objective.chain_start.capacity": "200",
    "objective.num_steps": "5",            # SGLD steps per training step (CD, JEM)
    "objective.num_langevin_steps": "3",   # recovery likelihood's chains
}


def tiny_overrides(preset: str) -> list[str]:
    """The :data:`TINY` overrides that apply to ``preset`` (a multiple of the noise levels for
    recovery likelihood's split batch)."""
    names = set(field_names(make_config(preset)))
    overrides = [f"{k}={v}" for k, v in TINY.items() if k in names]
    if "objective.split_batch" in names:
        overrides = [o for o in overrides if not o.startswith("data.batch_size")]
        overrides.append("data.batch_size=36")
    return overrides


def tiny(preset: str = "jem_digits", *extra: str):
    """``preset`` with the tiny overrides, then ``extra`` (dotted ``key=value``)."""
    return make_config(preset, tiny_overrides(preset) + list(extra))


def run_records(workdir) -> list[dict]:
    """The records of ``workdir/metrics.jsonl``."""
    import json

    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_resumes_bit_exactly(workdir, summary: dict, capsys, *, stopped: int = 10,
                               last: int = 20) -> None:
    """Drop the run's last checkpoint (as if stopped after step ``stopped``), resume it with
    ``ebm-jax train --resume`` and check it ends on the uninterrupted run's parameters."""
    import json
    import shutil

    from ebm_jax import cli

    shutil.rmtree(os.path.join(workdir, "checkpoints", str(last)))
    os.remove(os.path.join(workdir, "summary.json"))
    assert cli.main(["train", "--workdir", str(workdir), "--resume", "--no-progress",
                     "--devices", "1"]) == 0
    assert f"resumed from step {stopped}" in capsys.readouterr().out
    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f)["params_fingerprint"] == summary["params_fingerprint"]
