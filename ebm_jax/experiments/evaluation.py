"""What a trained run is worth: the summary written after training, the cheap periodic
evaluation, and ``ebm-jax evaluate RUN_DIR`` (classification, OOD detection, generation and
robustness, beside a softmax baseline).

Every sample here is drawn with the run's own pieces: its generator for fresh samples and
its sampler settings (``exp.make_sampler``) for class-conditional and composed samples,
inpainting and purification; nothing is rebuilt from config fields.

``evaluate_run`` computes, from a run directory written by ``ebm-jax train`` (its
``config.json`` and latest checkpoint, evaluated with the EMA parameters):

* classification: ``accuracy``, ``nll``, ``ece`` (15 bins) and a reliability diagram;
* OOD detection: ``ood[set][score] = AUROC`` (and ``ood_aupr``) for the JEM paper's
  scores, log p(x) (= -E(x)), max p(y|x) and the input-gradient norm, against the offline
  sets of :func:`ebm_jax.data.offline_ood_sets` and, for CIFAR-10 models, the papers'
  SVHN, CIFAR-100 and CelebA test sets when tfds has them prepared (:data:`PAPER_OOD_SETS`;
  else ``ood_unavailable`` says how to prepare them); histograms and ROC curves;
* generation: ``inpainting`` (the bottom half of 100 test digits filled by the run's sampler
  on E(x) over the masked pixels only: MSE and PSNR against the held-out truth, beside
  filling with the training mean) and, for classifiers, ``conditional_accuracy``,
  ``composed_3_or_8`` and, on the digits, ``conditional_diversity`` (the class-conditional
  samples' mean pairwise distance within a class relative to the test digits', 1 = as
  varied as the data, :func:`ebm_jax.metrics.digit_diversity`);
* adversarial robustness: ``robust_accuracy["linf:EPS"]`` / ``["l2:EPS"]`` under PGD, and
  with ``purify`` the same attacks classified after 10 steps of the run's sampler.

Unconditional EBMs get the OOD section with the log p(x) score only; asking them for a
classifier's metric is an error. 2-D toy runs report ``kl_nats`` and ``mmd``. An objective
that is not a density (a conditional energy ``E(x, y)``, EBT) reports its own metrics
(``Pieces.evaluate``: a denoiser's PSNR, a regression's hits on the exact answers), listed in
``method_metrics``; asking it for OOD, generation or a classifier's metric is an error.

Example::

    >>> report = evaluate_run("runs/jem_digits")  # doctest: +SKIP
    >>> report["ood"]["inverted"]["log_px"]       # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import metrics, plots
from ebm_jax.data import is_data_file, offline_ood_sets
from ebm_jax.energies import batch_energy, joint_energy_from_logits
from ebm_jax.energies.composition import composed_class_energy
from ebm_jax.experiments.build import Experiment, build, find_buffer, initial_state
from ebm_jax.experiments.config import Config, ConfigError
from ebm_jax.experiments.data import TOY_LIMIT, Data
from ebm_jax.experiments.objectives import objective_of
from ebm_jax.experiments.presets import load_config_file
from ebm_jax.experiments.sampling import generator_from_noise
from ebm_jax.metrics.digit_yardstick import MIN_SAMPLES as YARDSTICK_MIN_SAMPLES
from ebm_jax.metrics.digit_yardstick import YARDSTICK_KEYS, digit_diversity, score_digits
from ebm_jax.samplers import Sampler, init_chains, run_chains, uniform_init
from ebm_jax.train import Checkpointer, TrainState
from ebm_jax.train.checkpoint import params_fingerprint

CURVE_PANELS = (
    ("loss", "classification/loss", "generative/loss"),
    ("energy_data", "energy_sample", "generative/energy_data", "generative/energy_sample"),
    ("classification/accuracy", "accuracy", "eval/test_accuracy"),
    ("eval/ece", "eval/auroc_uniform_noise"),
    ("reconstruction", "reconstruction_start"),  # a prediction's error (EBT)
)
CLASSIFIER_METRICS = ("classification", "robustness")
DENSITY_METRICS = ("ood", "generation")  # they read energy_fn(params, x) as a model of the data
PREDICTIONS_FIGURE = "predictions.png"  # the picture of Pieces.evaluate, where it draws one
METRICS = ("classification", "ood", "robustness", "generation")
COMPOSED_CLASSES = (3, 8)  # "a 3 or an 8"
LINF_BUDGETS = (0.05, 0.1, 0.2)   # digits live in [-1, 1]: 0.1 is 5% of the range
L2_BUDGETS = (0.5, 1.0, 2.0)      # over 64 pixels
PGD_STEPS = 20
PURIFICATION_STEPS = 10
DIGITS = "digits"  # the dataset the digit yardstick (ebm_jax.metrics.digit_yardstick) measures
CONDITIONAL_PER_CLASS = 10  # class-conditional samples per class in `ebm-jax evaluate`


# --------------------------------------------------------------------------- after training


def method_key(config: Config) -> jax.Array:
    """The key of the objective's own metrics (``Pieces.evaluate``) in the summary and in
    ``ebm-jax evaluate``: the same draws, so both report the same values."""
    return jax.random.fold_in(jax.random.PRNGKey(config.run.seed + 7919), 1)


def fresh_samples(exp: Experiment, params: Any, rng_key: jax.Array, num: int) -> np.ndarray:
    """``num`` fresh samples from the run's own generator."""
    return np.asarray(jax.jit(exp.generate, static_argnums=2)(rng_key, params, num))


def conditional_samples(exp: Experiment, params: Any, rng_key: jax.Array,
                        per_class: int = CONDITIONAL_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """Class-conditional samples of a classifier run (JEM's ``p(x | y)``, energy
    ``-f(x)[y]``): ``per_class`` chains per class from uniform noise, the run's sampler
    settings for ``config.run.fresh_sample_steps`` steps. Returns ``samples [K * per_class,
    ...]`` and the labels they were generated for ``[K * per_class]`` (class by class)."""
    from ebm_jax.applications import sample_conditional

    data = exp.data
    labels = jnp.repeat(jnp.arange(data.num_classes), per_class)
    samples = sample_conditional(
        rng_key, exp.logits_fn, params, labels, shape=data.x_train.shape[1:],
        num_steps=exp.config.run.fresh_sample_steps, init_range=data.data_range,
        sampler=exp.make_sampler(joint_energy_from_logits(exp.logits_fn)))
    return np.asarray(samples), np.asarray(labels)


def digit_yardstick_summary(samples: np.ndarray, prefix: str = "sample_") -> dict:
    """The digit yardstick of ``samples`` (:func:`ebm_jax.metrics.score_digits`: Fréchet
    distance, KID, precision, recall, density and coverage against the test digits, on the
    digit classifier's features) as summary keys ``{prefix}{name}``. NaN values for samples
    that are not finite (a run that blew up); empty for fewer than 4 samples."""
    samples = np.asarray(samples)
    if len(samples) < YARDSTICK_MIN_SAMPLES:
        return {}
    if not np.all(np.isfinite(samples)):
        return {f"{prefix}{key}": math.nan for key in YARDSTICK_KEYS}
    scores = score_digits(samples)
    return {f"{prefix}{key}": scores[key] for key in YARDSTICK_KEYS}


def evaluate(exp: Experiment, state: TrainState, *, workdir: Optional[str] = None) -> dict:
    """Summary metrics of a trained state; with ``workdir``, also write ``samples.png``.

    Keys (where they apply): ``test_accuracy``, ``nll``, ``ece`` (15 bins),
    ``energy_data_mean``, ``energy_noise_mean``, ``auroc_uniform_noise``,
    ``sample_confidence``, ``sample_class_fractions``, ``sample_in_range_fraction``,
    on the digits the yardstick of the samples against the test digits
    (``sample_frechet_distance``, ``sample_kid``, ``sample_precision``, ``sample_recall``,
    ``sample_density``, ``sample_coverage``; the same with ``fresh_`` for the fresh samples
    where the run also keeps a replay buffer), ``kl_nats`` (2-D toys with a closed-form
    density), ``mmd`` (2-D toys: model samples vs true samples), ``steps``,
    ``params_fingerprint``.
    Everything is measured with ``state.ema_params`` (the raw params when the
    run keeps no moving average); the fingerprint is of the raw params.

    An objective with its own metrics (``exp.evaluate``) adds them (and with ``workdir`` its
    picture, :data:`PREDICTIONS_FIGURE`); one that is not a density (a conditional energy
    ``E(x, y)``, see :class:`~ebm_jax.experiments.objectives.Objective`) reports only those,
    ``steps`` and the fingerprint.
    """
    cfg, data, params = exp.config, exp.data, state.ema_params
    key = jax.random.PRNGKey(cfg.run.seed + 7919)
    k_noise, k_pick, k_fresh = jax.random.split(key, 3)
    summary: dict[str, Any] = {"steps": int(state.step)}
    if exp.evaluate is not None:
        figure = None if workdir is None else os.path.join(workdir, PREDICTIONS_FIGURE)
        summary.update(exp.evaluate(params, method_key(cfg), figure=figure))
    if not exp.density:
        summary["params_fingerprint"] = params_fingerprint(state.params)
        return summary
    if exp.logits_fn is not None:
        logits = jax.jit(jax.vmap(exp.logits_fn, (None, 0)))(params, data.x_test)
        report = metrics.classification_report(logits, jnp.asarray(data.y_test))
        summary.update(test_accuracy=report["accuracy"], nll=report["nll"], ece=report["ece"])
    energy = jax.jit(batch_energy(exp.energy_fn))
    noise = uniform_init(*data.data_range)(k_noise, (1000, *data.x_test.shape[1:]))
    e_data, e_noise = energy(params, data.x_test), energy(params, noise)
    summary.update(energy_data_mean=float(e_data.mean()), energy_noise_mean=float(e_noise.mean()),
                   auroc_uniform_noise=float(metrics.auroc(-e_data, -e_noise)))

    buffer = find_buffer(state.loss_state)
    num = cfg.run.num_eval_samples
    num_fresh = 100 if data.image_shape else 2000
    if buffer is not None:
        pick = jax.random.choice(k_pick, buffer.samples.shape[0],
                                 (min(num, buffer.samples.shape[0]),), replace=False)
        samples = np.asarray(buffer.samples[pick])
        fresh = fresh_samples(exp, params, k_fresh, num_fresh)
    else:  # one draw serves both roles (a second draw of another size would compile again)
        fresh = fresh_samples(exp, params, k_fresh, max(num, num_fresh))
        samples = fresh[:num]
    source = "replay buffer" if buffer is not None else exp.generator_name
    fresh_panel = {} if buffer is None else {f"fresh: {exp.generator_name}": fresh}

    if data.num_classes is not None:
        labelled = data.y_train >= 0  # the judge learns from the labelled training rows
        judge = metrics.fit_reference_classifier(data.x_train[labelled], data.y_train[labelled],
                                                 seed=cfg.run.seed)
        summary.update(metrics.classifier_sample_quality(samples, judge.predict_proba,
                                                         data.num_classes, data.data_range))
    if cfg.data.dataset == DIGITS:
        summary.update(digit_yardstick_summary(samples))
        if buffer is not None:
            summary.update(digit_yardstick_summary(fresh, "fresh_sample_"))
    if data.log_prob is not None:
        summary["kl_nats"] = float(metrics.kl_by_quadrature(
            data.log_prob, lambda x: exp.energy_fn(params, x), limit=TOY_LIMIT))
        summary["log_z_quadrature"] = float(metrics.log_z_by_quadrature(
            lambda x: exp.energy_fn(params, x), limit=TOY_LIMIT))
    if data.image_shape is None:  # 2-D toys, signals, tables: compare with true samples
        summary["mmd"] = float(metrics.mmd(samples[:2000], data.x_test[:2000]))
    summary["params_fingerprint"] = params_fingerprint(state.params)

    if workdir is not None:
        path = os.path.join(workdir, "samples.png")
        if data.image_shape is not None:
            panels = {f"{source} (100 of {len(samples)})": samples[:100]}
            panels.update({k: v[:100] for k, v in fresh_panel.items()})
            plots.save_image_grids(path, panels, data.image_shape, value_range=data.data_range)
        elif data.x_test.shape[1:] != (2,):  # signals and feature vectors: as lines
            plots.save_sequence_panels(path, {"data": data.x_test, source: samples,
                                              **fresh_panel}, value_range=data.data_range)
        else:
            plots.save_scatter(path, {"data": data.x_test[:2000], source: samples[:2000],
                                      **fresh_panel})
            plots.save_energy_landscape(os.path.join(workdir, "landscape.png"),
                                        lambda x: exp.energy_fn(params, x),
                                        true_log_prob=data.log_prob, samples=samples[:2000],
                                        limit=TOY_LIMIT)
    return summary


def quick_eval_fn(exp: Experiment) -> Callable[[TrainState], dict]:
    """Cheap periodic evaluation during training: test accuracy/ECE, data and noise energies
    (for a density), and the objective's own quick metrics (``exp.evaluate``).

    A model whose logits or energies are not finite (a run that blew up) gets NaN metrics
    rather than an error from the metric functions, so the evaluation never ends the run.
    """
    data = exp.data
    energy, noise = None, None  # data against uniform noise, for an energy of the data only
    if exp.density:
        energy = jax.jit(batch_energy(exp.energy_fn))
        noise = uniform_init(*data.data_range)(jax.random.PRNGKey(1),
                                               (500, *data.x_test.shape[1:]))
    logits = jax.jit(jax.vmap(exp.logits_fn, (None, 0))) if exp.logits_fn else None
    own_key = None if exp.evaluate is None else method_key(exp.config)

    def finite(*arrays) -> bool:  # on the host: small arrays, no program per shape
        return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in arrays)

    def eval_fn(state):
        out = {}
        params = state.ema_params
        if logits is not None:
            z = logits(params, data.x_test)
            if finite(z):
                report = metrics.classification_report(z, jnp.asarray(data.y_test))
                out.update(test_accuracy=report["accuracy"], ece=report["ece"])
            else:
                out.update(test_accuracy=math.nan, ece=math.nan)
        if energy is not None:
            e_data, e_noise = energy(params, data.x_test), energy(params, noise)
            out["auroc_uniform_noise"] = (float(metrics.auroc(-e_data, -e_noise))
                                          if finite(e_data, e_noise) else math.nan)
        if exp.evaluate is not None:
            out.update(exp.evaluate(params, own_key, quick=True))
        return out

    return eval_fn


# --------------------------------------------------------------------------- a run directory


def read_run_config(run_dir: str) -> Config:
    """The config saved in ``run_dir/config.json`` (nested, or the flat one of 0.1).

    Raises:
      ConfigError: no ``config.json``, or one that does not validate.
    """
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ConfigError(f"run_dir={run_dir!r}: no config.json: expected a run directory "
                          "written by `ebm-jax train --workdir RUN_DIR`")
    return load_config_file(config_path, saved_run=True)


def load_run(run_dir: str) -> tuple[Experiment, TrainState]:
    """The experiment of ``run_dir`` and its latest checkpoint.

    Raises:
      ConfigError: no ``config.json`` or no checkpoint (naming what is missing).
    """
    config = read_run_config(run_dir)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(ckpt_dir) or not os.listdir(ckpt_dir):
        raise ConfigError(f"run_dir={run_dir!r}: no checkpoint in {ckpt_dir}: expected a trained "
                          f"run (`ebm-jax train --workdir {run_dir}`)")
    exp = build(config)
    checkpointer = Checkpointer(ckpt_dir)
    try:
        state = checkpointer.restore_latest(initial_state(exp))
    except ValueError as error:  # Orbax: the saved tree differs from the config's state
        first = str(error).splitlines()[0]
        raise ConfigError(f"run_dir={run_dir!r}: the checkpoint in {ckpt_dir} does not match "
                          f"the state its config.json builds ({first}): expected a run written "
                          "by this version of ebm_jax; retrain it with --overwrite") from None
    finally:
        checkpointer.close()
    if state is None:
        raise ConfigError(f"run_dir={run_dir!r}: no complete checkpoint in {ckpt_dir}: expected "
                          "a trained run")
    return exp, state


# The real OOD sets of the papers (JEM, IGEBM) for a model of each tfds dataset.
PAPER_OOD_SETS = {
    "cifar10": ("svhn_cropped", "cifar100", "celeb_a"),
    "cifar100": ("svhn_cropped", "cifar10", "celeb_a"),
    "svhn_cropped": ("cifar10", "cifar100", "celeb_a"),
}


def paper_ood_sets(config: Config, limit: int) -> tuple[dict, Optional[str]]:
    """SVHN / CIFAR-100 / CelebA test images against a CIFAR-10 model (and the analogues for
    CIFAR-100 and SVHN models), read through tfds when they are prepared.

    Returns ``({name: images}, None)``, or ``({}, message)`` naming the command that prepares
    them when they are not (the offline sets are still evaluated).
    """
    from ebm_jax.data.tfds_source import DatasetNotPreparedError, tfds_ood_sets

    names = PAPER_OOD_SETS.get(config.data.dataset)
    if names is None:
        return {}, None
    try:
        return tfds_ood_sets(config.data.dataset, names, limit=limit,
                             data_dir=config.data.data_dir), None
    except DatasetNotPreparedError as error:
        return {}, str(error)


def data_metrics(config: Config, data: Data) -> tuple[str, ...]:
    """The metrics a run's data allows: every one on images; classification, OOD (the
    vector sets, :data:`~ebm_jax.data.VECTOR_OOD_SET_NAMES`) and robustness on a user's
    signals or features; classification only on the 2-D toys (which have their own KL and
    MMD instead)."""
    if data.image_shape is not None:
        return METRICS
    if is_data_file(config.data.dataset):
        return ("classification", "ood", "robustness")
    return ("classification",)


def _check_requested(config: Config, requested: Sequence[str], is_classifier: bool,
                     data: Data) -> tuple[str, ...]:
    unknown = [m for m in requested if m not in METRICS]
    if unknown:
        raise ConfigError(f"metrics={unknown}: expected a subset of {list(METRICS)}")
    allowed = data_metrics(config, data)
    density = objective_of(config).density
    for metric in requested:
        if metric in DENSITY_METRICS and not density:
            raise ConfigError(f"metric {metric!r} needs an energy of the data E(x): the run's "
                              f"objective={config.objective.kind!r} learns a conditional "
                              "energy E(x, y) (expected none of "
                              f"{list(DENSITY_METRICS + CLASSIFIER_METRICS)}: its own metrics "
                              "are always reported)")
        if metric in CLASSIFIER_METRICS and not is_classifier:
            what = "an unconditional EBM" if density else "a conditional energy E(x, y)"
            raise ConfigError(f"metric {metric!r} needs a classifier: the run's objective="
                              f"{config.objective.kind!r} is {what} (expected a "
                              "run of a classifier objective)")
        if metric not in allowed:
            what = ("a 2-D toy" if data.image_shape is None and not is_data_file(
                config.data.dataset) else f"examples of shape {data.x_test.shape[1:]}")
            raise ConfigError(f"metric {metric!r} needs an image dataset: data.dataset="
                              f"{config.data.dataset!r} holds {what} (expected one of "
                              f"{list(allowed)})")
    return tuple(requested)


def _batched(fn, params, x, batch_size=512):
    return np.concatenate([np.asarray(fn(params, x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def chain_purification(sampler: Sampler, num_steps: int) -> Callable:
    """``purify(rng_key, params, x [B, ...])``: ``num_steps`` steps of ``sampler`` from each
    example (the JEM-line defence), a :data:`ebm_jax.metrics.robustness` defence."""

    def purify(rng_key, params, x):
        states = init_chains(sampler, x, params)
        states, _ = run_chains(rng_key, sampler, states, params, num_steps)
        return states.position

    return purify


def evaluate_run(run_dir: str, *, metrics_requested: Optional[Sequence[str]] = None,
                 purify: bool = False, linf_budgets: Sequence[float] = LINF_BUDGETS,
                 l2_budgets: Sequence[float] = L2_BUDGETS, pgd_steps: int = PGD_STEPS,
                 figures: bool = True) -> dict:
    """Evaluate a trained run; write ``RUN_DIR/evaluation/report.json`` and figures.

    Args:
      run_dir: a directory written by ``ebm-jax train``.
      metrics_requested: a subset of :data:`METRICS`; default: every one that applies.
      purify: also report ``robust_accuracy_purified`` (attacks classified after
        :data:`PURIFICATION_STEPS` steps of the run's own sampler on E(x)).
      linf_budgets, l2_budgets: PGD budgets (``pgd_steps`` steps each).
      figures: write the PNGs.

    Returns:
      The report: ``run``, ``config``, ``objective``, ``steps``; with classification
      ``accuracy``, ``nll``, ``ece``; ``ood`` (``{set: {score: auroc}}``) and ``ood_aupr``;
      ``robust_accuracy`` (``{"linf:0.1": acc, ...}``); for 2-D toys ``kl_nats`` and ``mmd``.
    """
    exp, state = load_run(run_dir)
    cfg, data, params = exp.config, exp.data, state.ema_params
    is_classifier = exp.logits_fn is not None
    has_images = data.image_shape is not None
    density = exp.density
    if metrics_requested is None:
        metrics_requested = tuple(m for m in data_metrics(cfg, data)
                                  if (is_classifier or m not in CLASSIFIER_METRICS)
                                  and (density or m not in DENSITY_METRICS))
    requested = _check_requested(cfg, metrics_requested, is_classifier, data)
    out_dir = os.path.join(run_dir, "evaluation")
    os.makedirs(out_dir, exist_ok=True)
    report: dict[str, Any] = {"run": os.path.abspath(run_dir), "config": cfg.name,
                              "objective": cfg.objective.kind, "steps": int(state.step)}
    if not has_images and density:  # 2-D toys (the density's own measures), signals, features
        summary = evaluate(exp, state, workdir=out_dir if figures else None)
        report.update({k: summary[k] for k in ("kl_nats", "mmd") if k in summary})
    if exp.evaluate is not None:  # the objective's own metrics, as in its summary
        own = exp.evaluate(params, method_key(cfg), figure=os.path.join(
            out_dir, PREDICTIONS_FIGURE) if figures else None)
        report.update(own, method_metrics=sorted(own))
    key = jax.random.PRNGKey(cfg.run.seed + 104_729)
    k_ood, k_attack, _ = jax.random.split(key, 3)
    x_test = jnp.asarray(data.x_test)
    y_test = jnp.asarray(data.y_test) if is_classifier else None

    if "classification" in requested:
        logits = _batched(jax.jit(jax.vmap(exp.logits_fn, (None, 0))), params, x_test)
        rep = metrics.classification_report(jnp.asarray(logits), y_test)
        report.update(accuracy=rep["accuracy"], nll=rep["nll"], ece=rep["ece"])
        if figures:
            plots.save_reliability_diagram(os.path.join(out_dir, "reliability.png"),
                                           np.asarray(jax.nn.softmax(logits)), np.asarray(y_test),
                                           title=f"{cfg.name}: reliability")

    if "ood" in requested:
        report.update(_ood(exp, params, k_ood, out_dir, figures))

    if "robustness" in requested:
        curves = {}
        defences = [("robust_accuracy", None)]
        if purify:
            defences.append(("robust_accuracy_purified",
                             chain_purification(exp.sampler, PURIFICATION_STEPS)))
        for name, defence in defences:
            result = {}
            for norm, budgets in (("linf", linf_budgets), ("l2", l2_budgets)):
                curve = metrics.robust_accuracy_curve(
                    k_attack, exp.logits_fn, params, x_test, y_test, norm=norm,
                    epsilons=[0.0, *budgets], num_steps=pgd_steps, batch_size=360,
                    defence=defence, clip_range=data.data_range)
                result.update({f"{norm}:{eps:g}": float(acc) for eps, acc in curve.items()})
                curves.setdefault(norm, {})[name] = curve
            report[name] = result
        if figures:
            for norm, by_model in curves.items():
                plots.save_robustness_curve(os.path.join(out_dir, f"robustness_{norm}.png"),
                                            by_model, norm)
    if "generation" in requested:
        report.update(_generation(exp, params, jax.random.fold_in(key, 7), out_dir, figures))
    report["metrics"] = list(requested)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def _ood(exp: Experiment, params: Any, rng_key: jax.Array, out_dir: str, figures: bool) -> dict:
    cfg, data = exp.config, exp.data
    if exp.logits_fn is not None:
        scores = {"log_px": metrics.log_px_score(exp.logits_fn),
                  "max_softmax": metrics.max_softmax_score(exp.logits_fn),
                  "grad_norm": metrics.grad_norm_score(exp.logits_fn)}
    else:
        energy = jax.vmap(exp.energy_fn, (None, 0))
        scores = {"log_px": lambda p, x: -energy(p, x)}
    ood_sets = offline_ood_sets(rng_key, data.x_test, data.image_shape, data.data_range,
                                y=data.y_test)
    real_sets, missing = paper_ood_sets(cfg, len(data.x_test))
    ood_sets.update(real_sets)
    out: dict[str, Any] = {}
    if missing:
        out["ood_unavailable"] = missing
        print(f"ebm-jax evaluate: the papers' OOD sets are skipped: {missing}")
    full = metrics.ood_report(scores, params, data.x_test, ood_sets)
    out["ood"] = {s: {n: v["auroc"] for n, v in by.items()} for s, by in full.items()}
    out["ood_aupr"] = {s: {n: v["aupr"] for n, v in by.items()} for s, by in full.items()}
    if figures:
        score = jax.jit(scores["log_px"])
        in_scores = _batched(score, params, data.x_test)
        out_scores = {name: _batched(score, params, x) for name, x in ood_sets.items()}
        plots.save_ood_histograms(os.path.join(out_dir, "ood_histograms.png"), out_scores,
                                  in_scores, "log p(x) (= -E(x))")
        plots.save_roc_curves(os.path.join(out_dir, "ood_roc.png"), {
            name: metrics.roc_curve(jnp.asarray(in_scores), jnp.asarray(s))
            for name, s in out_scores.items()}, title=f"{cfg.name}: OOD ROC, log p(x)")
    return out


def _generation(exp: Experiment, params: Any, rng_key: jax.Array, out_dir: str,
                figures: bool) -> dict:
    """Inpainting error and (classifiers) conditional and composed sampling quality, all with
    the run's sampler settings."""
    from ebm_jax.applications import (half_image_mask, inpaint, masked_energy,
                                      reconstruction_error)

    cfg, data = exp.config, exp.data
    num_steps = cfg.run.fresh_sample_steps
    k_fill, k_cond, k_comp, k_init = jax.random.split(rng_key, 4)
    low, high = data.data_range
    x_true = jnp.asarray(data.x_test[:100])
    mask = jnp.asarray(half_image_mask(data.image_shape, "bottom").reshape(1, -1))
    start = jax.random.uniform(k_init, x_true.shape, minval=low, maxval=high)
    filled = inpaint(k_fill, exp.make_sampler(masked_energy(exp.energy_fn)), params, x_true,
                     mask, num_steps=num_steps, init=start)
    error = reconstruction_error(filled, x_true, mask, data_range=high - low)
    mean_fill = jnp.where(mask > 0, jnp.asarray(data.x_train.mean(0)), x_true)
    mean_error = reconstruction_error(mean_fill, x_true, mask, data_range=high - low)
    out: dict[str, Any] = {"inpainting": {"mse": float(error.mse), "psnr": float(error.psnr),
                                          "mse_mean_fill": float(mean_error.mse)}}
    grids = {"truth": np.asarray(x_true[:30]),
             "observed (bottom half hidden)": np.asarray(jnp.where(mask > 0, 0.0, x_true)[:30]),
             f"inpainted ({num_steps} sampler steps)": np.asarray(filled[:30])}
    if exp.logits_fn is not None:
        conditional, labels = conditional_samples(exp, params, k_cond)
        shape = data.x_train.shape[1:]
        composed_sampler = exp.make_sampler(composed_class_energy(exp.logits_fn,
                                                                  any_of=COMPOSED_CLASSES))
        composed = jax.jit(generator_from_noise(composed_sampler, data.data_range, shape,
                                                num_steps), static_argnums=2)(k_comp, params,
                                                                              100)
        labelled = data.y_train >= 0
        judge = metrics.fit_reference_classifier(data.x_train[labelled], data.y_train[labelled],
                                                 seed=cfg.run.seed)
        predicted = judge.predict(np.asarray(conditional))
        out["conditional_accuracy"] = float(np.mean(predicted == labels))
        if cfg.data.dataset == DIGITS and np.all(np.isfinite(conditional)):
            out["conditional_diversity"] = digit_diversity(conditional, labels).ratio
        out["composed_3_or_8"] = float(np.mean(np.isin(judge.predict(np.asarray(composed)),
                                                       COMPOSED_CLASSES)))
        grids["class-conditional, 10 per class"] = np.asarray(conditional)
        grids["composed: a 3 or an 8"] = np.asarray(composed[:30])
    if figures:
        plots.save_image_grids(os.path.join(out_dir, "generation.png"), grids, data.image_shape,
                               value_range=data.data_range)
    return out


def find_baseline(run_dir: str) -> Optional[str]:
    """A sibling run directory holding the matching baseline classifier (an objective flagged
    ``is_baseline``, the same dataset, network and label fraction). None when there is none."""
    config = read_run_config(run_dir)
    parent = os.path.dirname(os.path.abspath(run_dir))
    for name in sorted(os.listdir(parent)):
        candidate = os.path.join(parent, name)
        if os.path.abspath(candidate) == os.path.abspath(run_dir) \
                or not os.path.isfile(os.path.join(candidate, "config.json")):
            continue
        try:
            other = read_run_config(candidate)
        except (ConfigError, ValueError, OSError):  # not a run of ours (or a damaged one)
            continue
        if objective_of(other).is_baseline and other.model == config.model \
                and other.data.dataset == config.data.dataset \
                and other.data.label_fraction == config.data.label_fraction:
            return candidate
    return None


ECE_SLACK = 0.01  # a JEM run may be this much less calibrated than its baseline
ACCURACY_SLACK = 0.03  # ... and this much less accurate
BASELINE_WARNINGS = ("accuracy_warning", "calibration_warning")  # what baseline_comparison adds


def baseline_comparison(run_dir: str, summary: dict) -> dict:
    """This classifier run against its baseline (:func:`find_baseline`), when that one has
    finished (its ``summary.json``): ``softmax_accuracy``, ``softmax_ece`` and, when this
    run's ECE is worse than the baseline's by more than :data:`ECE_SLACK` (JEM promises the
    opposite), a ``calibration_warning`` saying so, and when its test accuracy is below the
    baseline's by more than :data:`ACCURACY_SLACK`, an ``accuracy_warning`` (a run that trained
    without a blow-up but learned less than a plain classifier). Empty for a baseline itself,
    for a run without a test ECE, or without a finished baseline beside it.

    Example::

      >>> import os, tempfile
      >>> from ebm_jax.experiments import make_config
      >>> root = tempfile.mkdtemp()
      >>> for name, summary in (("jem", None), ("softmax", {"test_accuracy": 0.95, "ece": 0.02})):
      ...     os.makedirs(os.path.join(root, name))
      ...     with open(os.path.join(root, name, "config.json"), "w") as f:
      ...         json.dump(make_config(f"{name}_digits").to_dict(), f)
      ...     if summary:
      ...         with open(os.path.join(root, name, "summary.json"), "w") as f:
      ...             json.dump(summary, f)
      >>> out = baseline_comparison(os.path.join(root, "jem"), {"test_accuracy": 0.93, "ece": 0.2})
      >>> out["softmax_ece"], out["calibration_warning"][:43]
      (0.02, 'ECE 0.2000 is worse than the softmax baseli')
    """
    if "ece" not in summary or objective_of(read_run_config(run_dir)).is_baseline:
        return {}
    baseline = find_baseline(run_dir)
    path = None if baseline is None else os.path.join(baseline, "summary.json")
    if path is None or not os.path.isfile(path):
        return {}
    with open(path) as f:
        other = json.load(f)
    if "ece" not in other:
        return {}
    out = {"softmax_accuracy": other.get("test_accuracy"), "softmax_ece": other["ece"]}
    if summary["ece"] > other["ece"] + ECE_SLACK:
        out["calibration_warning"] = (
            f"ECE {summary['ece']:.4f} is worse than the softmax baseline's {other['ece']:.4f} "
            f"({baseline}) by more than {ECE_SLACK}: this run is less calibrated than a plain "
            "classifier of the same network (where its confidence is below its accuracy, a "
            "temperature fitted on held-out logits, ebm_jax.metrics.fit_temperature, restores "
            "it; see the README, 'JEM calibration on signals and other user data')")
    accuracy, other_accuracy = summary.get("test_accuracy"), other.get("test_accuracy")
    if accuracy is not None and other_accuracy is not None \
            and accuracy < other_accuracy - ACCURACY_SLACK:
        out["accuracy_warning"] = (
            f"test accuracy {accuracy:.4f} is below the softmax baseline's {other_accuracy:.4f} "
            f"({baseline}) by more than {ACCURACY_SLACK}: the generative term held the classifier "
            "back (expected data at about unit scale: data.normalize=auto; or try half "
            "objective.generative_weight; `ebm-jax doctor` compares the two losses)")
    return out


def comparison_table(report: dict, baseline: Optional[dict]) -> str:
    """A markdown table of the report's scalar metrics, beside the baseline's."""
    rows = []
    own = [k for k in report.get("method_metrics", ()) if isinstance(report[k], (int, float))]
    for key in ("accuracy", "nll", "ece", "kl_nats", "mmd", "conditional_accuracy",
                "conditional_diversity", "composed_3_or_8", *own):
        if key in report:
            rows.append((key, report[key], (baseline or {}).get(key)))
    for section in ("inpainting", "ood", "robust_accuracy", "robust_accuracy_purified"):
        for name, value in report.get(section, {}).items():
            other = (baseline or {}).get(section, {}).get(name)
            if isinstance(value, dict):
                rows.extend((f"{section} {name} {score}", v,
                             (other or {}).get(score)) for score, v in value.items())
            else:
                rows.append((f"{section} {name}", value, other))
    head = f"| metric | {report['config']} |" + (f" {baseline['config']} |" if baseline else "")
    sep = "|---|---|" + ("---|" if baseline else "")
    lines = [head, sep]
    for name, value, other in rows:
        cell = " - |" if other is None else f" {other:.4f} |"
        lines.append(f"| {name} | {value:.4f} |" + (cell if baseline else ""))
    return "\n".join(lines)


__all__ = ["ACCURACY_SLACK", "BASELINE_WARNINGS", "CURVE_PANELS", "DENSITY_METRICS",
           "ECE_SLACK", "PREDICTIONS_FIGURE", "method_key",
           "baseline_comparison", "chain_purification", "comparison_table",
           "conditional_samples", "data_metrics", "digit_yardstick_summary", "evaluate",
           "evaluate_run", "find_baseline", "fresh_samples", "load_run", "quick_eval_fn",
           "read_run_config"]
