"""A pilot that tells the user before they spend hours: ``ebm-jax doctor``.

:func:`pilot` trains a config for a few hundred steps (:func:`pilot_config`: the same
config with ``run.num_steps`` set, about 20 log windows, evaluation and checkpoints at
the end only), reads its ``metrics.jsonl`` and, for an EBM classifier (JEM), trains the
plain classifier of the same network and data beside it (its *twin*: the registered
baseline objective, ``--set objective=softmax``). It reports the trends that precede a
blow-up and diagnoses, each a rule with a threshold that names the setting to change
and a value to try. Only settings that the config has are suggested.

The trends compare the *early* windows (the first quarter of the log windows) with the
*late* ones (the last quarter); energies and gaps smaller than :data:`ENERGY_FLOOR` count
as that floor, so that a start near zero does not read as growth.

Rules (:func:`diagnose`):

* ``diverged``: the divergence guard skipped a step, rolled back or stopped the pilot,
  or the log holds a non-finite loss or energy -> ``objective.energy_l2=0.1`` (ten times
  the current value if it is already >= 0.1; it trained a JEM that otherwise diverged on
  unit-variance signals) and ``optimizer.learning_rate`` halved.
* ``energy_growth``: the largest |energy| (data or samples) of the late windows is more
  than :data:`ENERGY_GROWTH_LIMIT` (10) times that of the early windows -> the same two
  settings.
* ``sample_gap_growth``: the largest |E(samples) - E(data)| of the late windows is more
  than :data:`GAP_GROWTH_LIMIT` (10) times that of the early windows: the chains no longer
  follow the model -> the training chains' step size halved and their number of steps
  doubled (``objective.sampler.step_size`` and ``objective.num_steps`` for CD and JEM,
  ``objective.step_size_scale`` and ``objective.num_langevin_steps`` for recovery
  likelihood).
* ``sampler_nonfinite``: a chain met a non-finite energy or gradient (``nonfinite_steps``
  in the log, or the guard's ``sampler`` cause) -> ``objective.sampler.grad_clip=0.01``
  (half the current clip if it is already <= 0.01), or a halved
  ``objective.step_size_scale`` where the chains take no clip.
* ``classifier_behind``: from the first window to the late windows, the classifier's loss
  fell by less than :data:`CLASSIFIER_PROGRESS_MIN` (a quarter) of what its twin's fell at
  the same steps, both measured from the larger of the two first-window losses (compared
  only once the twin's loss fell by :data:`TWIN_DROP_MIN`, 10%, of that start: a shorter
  pilot is too short to tell) -> ``objective.generative_weight`` halved.

A pilot where no rule fires is healthy. ``ebm-jax doctor`` exits with
:data:`EXIT_HEALTHY` (0) or :data:`EXIT_PROBLEM` (3), and writes the report as
``doctor.json`` in its workdir (the pilot's run in ``pilot/``, the twin's in
``softmax_twin/``).

Example::

    >>> from ebm_jax.experiments import make_config
    >>> report = pilot(make_config("jem_digits"), steps=300)   # doctest: +SKIP
    >>> report.healthy, report.exit_code                        # doctest: +SKIP
    (True, 0)
    >>> config = pilot_config(make_config("cd_digits", ["objective.energy_l2=0"]), 300)
    >>> config.run.log_every, config.run.eval_every
    (15, 300)
    >>> records = [{"step": 15 * (i + 1), "loss": 0.0, "energy_data": -3.0 ** i,
    ...             "energy_sample": -3.0 ** i} for i in range(20)]   # energies run away
    >>> [d.overrides() for d in analyse(config, records).diagnoses]
    [['objective.energy_l2=0.1', 'optimizer.learning_rate=0.0005']]
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from typing import Any, NamedTuple, Optional, Sequence, Union

from ebm_jax.experiments.config import Config, ConfigError, apply_overrides, flatten
from ebm_jax.experiments.data import with_measured_data
from ebm_jax.experiments.objectives import get_objective, objective_kinds, objective_of
from ebm_jax.experiments.presets import make_config
from ebm_jax.experiments.run import TrainingDiverged, train

EXIT_HEALTHY = 0
EXIT_PROBLEM = 3
DEFAULT_STEPS = 300
LOG_WINDOWS = 20            # log records of a pilot (log_every = steps // 20)
EARLY_FRACTION = 0.25       # the early and the late windows: the first and last quarter
ENERGY_FLOOR = 1.0          # energies and gaps below this count as this much
ENERGY_GROWTH_LIMIT = 10.0  # late max |E| over early max |E|
GAP_GROWTH_LIMIT = 10.0     # late max |E_sample - E_data| over early
CLASSIFIER_PROGRESS_MIN = 0.25  # the classifier's loss drop over its twin's
TWIN_DROP_MIN = 0.1         # compared once the twin's loss fell by 10% of where it started
SUGGESTED_ENERGY_L2 = 0.1
SUGGESTED_GRAD_CLIP = 0.01
PILOT_DIR, TWIN_DIR, REPORT_FILE = "pilot", "softmax_twin", "doctor.json"

# The training chains' settings, by the fields that name them: (steps, step size, clip).
# Recovery likelihood's chains are set by its own fields (its `sampler` only draws for the
# evaluation); CD's and JEM's by `num_steps` and the `sampler` section.
TRAINING_CHAINS = (
    ("objective.num_langevin_steps", "objective.step_size_scale", None),
    ("objective.num_steps", "objective.sampler.step_size", "objective.sampler.grad_clip"),
)


class Diagnosis(NamedTuple):
    """One rule that fired.

    Attributes:
      rule: its name (``energy_growth``, ...; see the module docstring).
      finding: what was measured, against which threshold.
      settings: ``{dotted key: suggested value}`` to change (empty when the config has no
        setting that addresses it).
    """

    rule: str
    finding: str
    settings: dict

    def overrides(self) -> list[str]:
        """The settings as ``key=value`` overrides (``--set`` arguments)."""
        return [f"{k}={_fmt(v)}" for k, v in self.settings.items()]

    def to_dict(self) -> dict:
        return {"rule": self.rule, "finding": self.finding, "settings": dict(self.settings),
                "overrides": self.overrides()}


@dataclasses.dataclass
class PilotReport:
    """What a pilot found (``to_dict()`` is ``doctor.json``; ``text()`` the printed report).

    Attributes:
      config, objective, steps, steps_run, workdir, windows: the pilot's config name and
        objective kind, its requested and reached steps, where it ran, its log windows.
      divergence: ``diverged_steps``, ``rollbacks``, ``causes`` (``{cause: steps}`` of the
        guard), ``stopped`` and its ``message``, ``nonfinite_values`` (in the log).
      energy: ``data_first``/``data_last``, ``sample_first``/``sample_last`` (first and
        last window), ``early_max``/``late_max`` (max |E|), ``growth`` (late over early,
        :data:`ENERGY_FLOOR` at least below) and ``growth_per_100_steps``.
      gap: ``first``, ``last``, ``early_max``, ``late_max``, ``growth`` of
        ``E_sample - E_data``.
      sampler: ``grad_norm_first``/``grad_norm_last`` (``sample_grad_norm``) and
        ``nonfinite_steps`` (non-finite chain steps over the log).
      classifier: ``loss_first``, ``loss_late`` (mean of the late windows), ``test_accuracy``,
        ``ece`` and, beside the twin, ``twin``, ``twin_loss_first``, ``twin_loss_late`` (at
        the same steps), ``twin_test_accuracy``, ``twin_ece`` and ``progress``.
      diagnoses: the :class:`Diagnosis` of every rule that fired.

    ``energy``, ``gap``, ``sampler`` and ``classifier`` are None where the objective logs no
    such metric.
    """

    config: str
    objective: str
    steps: int
    steps_run: int
    workdir: str
    windows: int
    divergence: dict
    energy: Optional[dict] = None
    gap: Optional[dict] = None
    sampler: Optional[dict] = None
    classifier: Optional[dict] = None
    diagnoses: list = dataclasses.field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.diagnoses

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_HEALTHY` or :data:`EXIT_PROBLEM` (``ebm-jax doctor``'s status)."""
        return EXIT_HEALTHY if self.healthy else EXIT_PROBLEM

    def suggested_overrides(self) -> list[str]:
        """Every diagnosis's settings, once each (the first suggestion of a key wins)."""
        seen: dict = {}
        for diagnosis in self.diagnoses:
            for key, value in diagnosis.settings.items():
                seen.setdefault(key, value)
        return [f"{k}={_fmt(v)}" for k, v in seen.items()]

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["diagnoses"] = [d.to_dict() for d in self.diagnoses]
        out.update(healthy=self.healthy, exit_code=self.exit_code,
                   suggested_overrides=self.suggested_overrides())
        return _json_safe(out)

    def text(self) -> str:
        """A short human-readable report."""
        lines = [f"pilot: {self.config} ({self.objective}), {self.steps_run} of {self.steps} "
                 f"steps, {self.windows} log windows, in {self.workdir}"]
        if self.energy:
            e = self.energy
            lines.append(f"  energies   data {_g(e['data_first'])} -> {_g(e['data_last'])}"
                         + (f", samples {_g(e['sample_first'])} -> {_g(e['sample_last'])}"
                            if e.get("sample_first") is not None else "")
                         + f"; max |E| x{_g(e['growth'])} from the early to the late windows"
                         + (f" (x{_g(e['growth_per_100_steps'])} per 100 steps)"
                            if e.get("growth_per_100_steps") is not None else ""))
        if self.gap:
            g = self.gap
            lines.append(f"  gap        E_sample - E_data {_g(g['first'])} -> {_g(g['last'])}; "
                         f"max |gap| x{_g(g['growth'])}")
        if self.sampler:
            s = self.sampler
            grad = (f"input-gradient norm {_g(s['grad_norm_first'])} -> "
                    f"{_g(s['grad_norm_last'])}; " if s.get("grad_norm_first") is not None
                    else "")
            lines.append(f"  sampler    {grad}non-finite chain steps {s['nonfinite_steps']}")
        if self.classifier:
            c = self.classifier
            line = f"  classifier loss {_g(c['loss_first'])} -> {_g(c['loss_late'])}"
            if c.get("twin_loss_late") is not None:
                line += (f", {c['twin']} twin {_g(c['twin_loss_first'])} -> "
                         f"{_g(c['twin_loss_late'])} at the same steps")
                line += (f" ({c['progress']:.0%} of the twin's drop)"
                         if c.get("progress") is not None
                         else " (the twin barely learned: too short to compare)")
            lines.append(line)
            for name, label in (("test_accuracy", "test accuracy"), ("ece", "ECE")):
                if c.get(name) is not None or c.get(f"twin_{name}") is not None:
                    lines.append(f"             {label} {_g(c.get(name))}"
                                 + (f" ({c['twin']} {_g(c.get(f'twin_{name}'))})"
                                    if c.get("twin") else ""))
        d = self.divergence
        lines.append(f"  divergence {d['diverged_steps']} diverged steps, {d['rollbacks']} "
                     "rollbacks" + (f", stopped: {d['message']}" if d["stopped"] else ""))
        if self.healthy:
            lines.append("healthy: no rule fired")
        else:
            lines.append(f"problems ({len(self.diagnoses)}):")
            for diagnosis in self.diagnoses:
                lines.append(f"  - {diagnosis.rule}: {diagnosis.finding}")
                lines.append("    try: " + (" ".join(f"--set {o}" for o in diagnosis.overrides())
                                            or "(no setting of this objective addresses it)"))
        return "\n".join(lines)


# --------------------------------------------------------------------------- running


def pilot_config(config: Config, steps: int = DEFAULT_STEPS) -> Config:
    """``config`` shortened to ``steps`` steps: about :data:`LOG_WINDOWS` log windows
    (``run.log_every = max(1, steps // 20)``), evaluation and checkpoints at the end only."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"steps={steps!r}: expected a positive int")
    run = dataclasses.replace(config.run, num_steps=steps,
                              log_every=max(1, steps // LOG_WINDOWS),
                              eval_every=steps, checkpoint_every=steps)
    return dataclasses.replace(config, run=run)


def twin_config(config: Config) -> Optional[Config]:
    """The plain classifier of ``config``'s network and data (the registered baseline
    objective, with its defaults), for an EBM classifier; None for any other objective, or
    where the baseline cannot take this config."""
    objective = objective_of(config)
    baselines = [k for k in objective_kinds() if get_objective(k).is_baseline]
    if not objective.classifier or objective.is_baseline or not baselines:
        return None
    try:
        twin = apply_overrides(config, [f"objective={baselines[0]}"])
    except ConfigError:
        return None
    return dataclasses.replace(twin, name=f"{config.name}_{baselines[0]}_twin")


def pilot(config: Union[Config, str], steps: int = DEFAULT_STEPS,
          workdir: Optional[str] = None, *, devices: Optional[int] = None,
          progress: bool = False) -> PilotReport:
    """Train ``config`` (a :class:`Config` or a preset name) for ``steps`` steps and diagnose
    the run before it is started for hours.

    The pilot runs in ``workdir/pilot`` and, for an EBM classifier, its twin in
    ``workdir/softmax_twin`` (both replaced if present; ``workdir`` defaults to a new
    temporary directory); the report is written to ``workdir/doctor.json``. A pilot that
    the divergence guard stops is a finding, not an error. See the module docstring for
    the rules.

    Example::

        >>> from ebm_jax.experiments import make_config
        >>> report = pilot(make_config("cd_2d_rings"), steps=200)   # doctest: +SKIP
        >>> print(report.text())                                    # doctest: +SKIP
        >>> report.exit_code                                        # doctest: +SKIP
        0
    """
    if isinstance(config, str):
        config = make_config(config)
    # a user's file: its measurements and derived settings, as the run itself will have them
    config = pilot_config(with_measured_data(config), steps)
    workdir = workdir or tempfile.mkdtemp(prefix="ebm-jax-doctor-")
    run_dir, twin_dir = os.path.join(workdir, PILOT_DIR), os.path.join(workdir, TWIN_DIR)
    if os.path.isdir(twin_dir):  # an earlier pilot's twin: not this run's baseline
        shutil.rmtree(twin_dir)
    records, summary, stop = _train_reading(config, run_dir, devices, progress)
    twin = twin_config(config)
    twin_records = twin_summary = None
    if twin is not None:
        twin_records, twin_summary, _ = _train_reading(twin, twin_dir, devices, progress)
    report = analyse(config, records, summary=summary, stopped=stop, twin_records=twin_records,
                     twin_summary=twin_summary, workdir=workdir)
    with open(os.path.join(workdir, REPORT_FILE), "w") as f:
        json.dump(report.to_dict(), f, indent=2)
    return report


def _train_reading(config: Config, run_dir: str, devices, progress):
    """Train into ``run_dir``: ``(metrics records, summary or None, divergence message or
    None)``."""
    summary, stop = None, None
    try:
        summary = train(config, run_dir, overwrite=True, progress=progress, devices=devices)
    except TrainingDiverged as error:
        stop = str(error)
    return read_records(os.path.join(run_dir, "metrics.jsonl")), summary, stop


def read_records(path: str) -> list[dict]:
    """The records of a ``metrics.jsonl`` (none if it is missing)."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------- analysis


def analyse(config: Config, records: Sequence[dict], *, summary: Optional[dict] = None,
            stopped: Optional[str] = None, twin_records: Optional[Sequence[dict]] = None,
            twin_summary: Optional[dict] = None, workdir: str = "") -> PilotReport:
    """The report of a pilot from its metrics records (and its twin's): the trends, then
    :func:`diagnose`. ``stopped`` is the message of a pilot that the guard stopped."""
    windows = [r for r in records if "event" not in r and "step" in r
               and not any(k.startswith("eval/") for k in r)]
    events = [r for r in records if "event" in r]
    early, late = _early_late(windows)
    e_data, e_sample = _key(windows, "energy_data"), _key(windows, "energy_sample")
    report = PilotReport(config=config.name, objective=config.objective.kind,
                         steps=config.run.num_steps,
                         steps_run=max([r["step"] for r in records if "step" in r], default=0),
                         workdir=workdir, windows=len(windows),
                         divergence=_divergence(windows, events, stopped,
                                                    config.run.log_every))
    if e_data and windows:
        report.energy = _energy_trend(windows, early, late, e_data, e_sample)
    if e_data and e_sample and windows:
        report.gap = _gap_trend(windows, early, late, e_data, e_sample)
    grad, nonfinite = _key(windows, "sample_grad_norm"), _key(windows, "nonfinite_steps")
    if (grad or nonfinite) and windows:
        report.sampler = {
            "grad_norm_first": windows[0].get(grad) if grad else None,
            "grad_norm_last": windows[-1].get(grad) if grad else None,
            "nonfinite_steps": _nonfinite_steps(windows, nonfinite, config.run.log_every),
        }
    if objective_of(config).classifier and windows:
        report.classifier = _classifier(windows, late, summary, twin_records, twin_summary)
    report.diagnoses = diagnose(config, report)
    return report


def diagnose(config: Config, report: PilotReport) -> list[Diagnosis]:
    """The rules of the module docstring, on a report's trends; settings only where
    ``config`` has them."""
    flat = flatten(config)
    found = []
    div = report.divergence
    calm = _calming_settings(flat)
    if div["stopped"] or div["rollbacks"] or div["diverged_steps"] or div["nonfinite_values"]:
        parts = [f"{div['diverged_steps']} diverged steps", f"{div['rollbacks']} rollbacks"]
        if div["causes"]:
            parts.append("causes " + ", ".join(f"{k} {v}" for k, v in div["causes"].items()))
        if div["nonfinite_values"]:
            parts.append("non-finite loss or energies in the log")
        if div["stopped"]:
            parts.append("the guard stopped the pilot")
        found.append(Diagnosis("diverged", "; ".join(parts) + " (limit: 0)", calm))
    energy = report.energy
    if energy and energy["growth"] > ENERGY_GROWTH_LIMIT:
        found.append(Diagnosis(
            "energy_growth",
            f"max |E| grew x{_g(energy['growth'])} from the early to the late windows "
            f"({_g(energy['early_max'])} -> {_g(energy['late_max'])}; limit "
            f"x{_g(ENERGY_GROWTH_LIMIT)})", calm))
    gap = report.gap
    chain = _training_chain(flat)
    if gap and gap["growth"] > GAP_GROWTH_LIMIT:
        settings = {}
        if chain is not None:
            steps_key, size_key, _ = chain
            settings = {size_key: flat[size_key] / 2, steps_key: flat[steps_key] * 2}
        found.append(Diagnosis(
            "sample_gap_growth",
            f"max |E_sample - E_data| grew x{_g(gap['growth'])} from the early to the late "
            f"windows ({_g(gap['early_max'])} -> {_g(gap['late_max'])}; limit "
            f"x{_g(GAP_GROWTH_LIMIT)}): the chains no longer follow the model", settings))
    sampler_steps = (report.sampler or {}).get("nonfinite_steps") or 0
    sampler_causes = div["causes"].get("sampler", 0)
    if sampler_steps > 0 or sampler_causes > 0:
        settings = {}
        if chain is not None and chain[2] is not None:
            clip = flat[chain[2]]
            settings = {chain[2]: SUGGESTED_GRAD_CLIP if clip is None
                        or clip > SUGGESTED_GRAD_CLIP else clip / 2}
        elif chain is not None:
            settings = {chain[1]: flat[chain[1]] / 2}
        found.append(Diagnosis(
            "sampler_nonfinite",
            f"{sampler_steps} non-finite chain steps in the log, {sampler_causes} steps "
            "skipped for the sampler (limit: 0)", settings))
    classifier = report.classifier or {}
    progress = classifier.get("progress")
    if progress is not None and progress < CLASSIFIER_PROGRESS_MIN:
        weight = flat.get("objective.generative_weight")
        settings = {"objective.generative_weight": weight / 2} if weight else {}
        found.append(Diagnosis(
            "classifier_behind",
            f"the classification loss dropped {progress:.0%} of the {classifier['twin']} "
            f"twin's drop at the same steps ({_g(classifier['loss_late'])} against "
            f"{_g(classifier['twin_loss_late'])}; limit {CLASSIFIER_PROGRESS_MIN:.0%})",
            settings))
    return found


def _calming_settings(flat: dict) -> dict:
    """A stronger energy penalty (where the objective has one) and half the learning rate."""
    settings = {}
    if "objective.energy_l2" in flat:
        l2 = flat["objective.energy_l2"]
        settings["objective.energy_l2"] = SUGGESTED_ENERGY_L2 if l2 < SUGGESTED_ENERGY_L2 \
            else l2 * 10
    settings["optimizer.learning_rate"] = flat["optimizer.learning_rate"] / 2
    return settings


def _training_chain(flat: dict) -> Optional[tuple]:
    """``(steps key, step size key, clip key or None)`` of the chains that training runs,
    or None for an objective that samples no chains in training."""
    for chain in TRAINING_CHAINS:
        if chain[0] in flat and chain[1] in flat:
            return chain
    return None


def _key(windows: Sequence[dict], name: str) -> Optional[str]:
    """The logged key of metric ``name``: itself or a prefixed ``<group>/name`` (JEM's
    ``generative/energy_data``)."""
    for record in windows[:1]:
        for key in sorted(record):
            if key == name or key.endswith("/" + name):
                return key
    return None


def _early_late(windows: Sequence[dict]) -> tuple[list, list]:
    k = max(1, math.ceil(len(windows) * EARLY_FRACTION))
    return list(windows[:k]), list(windows[-k:])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _max_abs(values) -> float:
    """The largest |value|, inf if any value is not finite."""
    values = list(values)
    if any(not _finite(v) for v in values):
        return math.inf
    return max((abs(v) for v in values), default=0.0)


def _energy_trend(windows, early, late, e_data, e_sample) -> dict:
    keys = [k for k in (e_data, e_sample) if k]

    def scale(records):
        return _max_abs(r[k] for r in records for k in keys if k in r)

    early_max, late_max = scale(early), scale(late)
    growth = late_max / max(early_max, ENERGY_FLOOR)
    span = _mean_step(late) - _mean_step(early)
    per_100 = growth ** (100.0 / span) if span > 0 and _finite(growth) and growth > 0 else None
    return {"data_first": windows[0].get(e_data), "data_last": windows[-1].get(e_data),
            "sample_first": windows[0].get(e_sample) if e_sample else None,
            "sample_last": windows[-1].get(e_sample) if e_sample else None,
            "early_max": early_max, "late_max": late_max, "growth": growth,
            "growth_per_100_steps": per_100}


def _gap_trend(windows, early, late, e_data, e_sample) -> dict:
    def gap(record):
        return record[e_sample] - record[e_data]

    early_max = _max_abs(gap(r) for r in early)
    late_max = _max_abs(gap(r) for r in late)
    return {"first": gap(windows[0]), "last": gap(windows[-1]), "early_max": early_max,
            "late_max": late_max, "growth": late_max / max(early_max, ENERGY_FLOOR)}


def _mean_step(records) -> float:
    return sum(r["step"] for r in records) / len(records)


def _nonfinite_steps(windows, key, log_every) -> int:
    """Non-finite chain steps over the log (a window's value is a mean over its steps)."""
    if not key:
        return 0
    return int(round(sum(r.get(key, 0.0) * log_every for r in windows
                         if _finite(r.get(key, 0.0)))))


def _divergence(windows, events, stopped, log_every) -> dict:
    rollbacks = [e for e in events if e.get("event") == "rollback"]
    causes: dict = {}
    diverged = 0
    for event in events:
        if event.get("event") in ("rollback", "stopped"):
            diverged += event.get("diverged_steps", 0)
            for cause, n in event.get("cause_steps", {}).items():
                causes[cause] = causes.get(cause, 0) + n
    # Windows logged with diverged steps (a guard without rollback): the flag's mean over
    # the window's steps, at least one step each.
    diverged += sum(max(1, round(r["diverged"] * log_every)) for r in windows
                    if r.get("diverged", 0) > 0)
    watched = [k for k in (windows[0] if windows else {})
               if k == "loss" or k.endswith("loss") or "energy" in k]
    nonfinite = any(not _finite(r[k]) for r in windows for k in watched if k in r)
    return {"diverged_steps": diverged, "rollbacks": len(rollbacks), "causes": causes,
            "stopped": stopped is not None, "message": stopped, "nonfinite_values": nonfinite}


def _classifier(windows, late, summary, twin_records, twin_summary) -> dict:
    loss = "classification/loss" if "classification/loss" in windows[0] else "loss"
    late_values = [r[loss] for r in late]
    out = {"loss_key": loss, "loss_first": windows[0][loss],
           "loss_late": sum(late_values) / len(late_values),
           "test_accuracy": (summary or {}).get("test_accuracy"),
           "ece": (summary or {}).get("ece"), "twin": None, "twin_loss_first": None,
           "twin_loss_late": None, "progress": None}
    if twin_records is None:
        return out
    baselines = [k for k in objective_kinds() if get_objective(k).is_baseline]
    out["twin"] = baselines[0] if baselines else "baseline"
    twin = [r for r in twin_records if "event" not in r and "step" in r and "loss" in r
            and not any(k.startswith("eval/") for k in r)]
    if not twin:
        return out
    twin_key = "classification/loss" if "classification/loss" in twin[0] else "loss"
    at_same_steps = [_value_at(twin, twin_key, r["step"]) for r in late]
    twin_late = sum(at_same_steps) / len(at_same_steps)
    out.update(twin_loss_first=twin[0][twin_key], twin_loss_late=twin_late,
               twin_test_accuracy=(twin_summary or {}).get("test_accuracy"),
               twin_ece=(twin_summary or {}).get("ece"))
    start = max(out["loss_first"], out["twin_loss_first"])
    if _finite(start) and _finite(twin_late) and start - twin_late > TWIN_DROP_MIN * abs(start):
        drop = start - out["loss_late"]
        out["progress"] = drop / (start - twin_late) if _finite(drop) else -math.inf
    return out


def _value_at(records, key, step):
    """``key`` of the last record at or before ``step`` (the first record if none is)."""
    before = [r for r in records if r["step"] <= step]
    return (before[-1] if before else records[0])[key]


def _fmt(value: Any) -> str:
    """A suggested value as ``--set`` text: floats with 3 significant digits."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _g(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _json_safe(node: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(node, dict):
        return {k: _json_safe(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_json_safe(v) for v in node]
    if isinstance(node, float) and not math.isfinite(node):
        return None
    return node


__all__ = ["CLASSIFIER_PROGRESS_MIN", "Diagnosis", "ENERGY_FLOOR", "ENERGY_GROWTH_LIMIT",
           "EXIT_HEALTHY", "EXIT_PROBLEM", "GAP_GROWTH_LIMIT", "PilotReport", "TWIN_DROP_MIN",
           "analyse", "diagnose", "pilot", "pilot_config", "read_records", "twin_config"]
