"""``ebm-jax evaluate RUN_DIR``: what a trained EBM is for, measured beside its baseline.

From a run directory written by ``ebm-jax train`` (its ``config.json`` and latest
checkpoint, evaluated with the EMA parameters) this computes:

* classification: ``accuracy``, ``nll``, ``ece`` (15 bins) and a reliability diagram;
* OOD detection: ``ood[set][score] = AUROC`` (and ``ood_aupr``) for the JEM paper's
  scores, log p(x) (= -E(x)), max p(y|x) and the input-gradient norm, against the offline
  sets of :func:`ebm_jax.data.offline_ood_sets` (noise, inverted, flipped, interpolated
  digits) and, for CIFAR-10 models, the papers' SVHN, CIFAR-100 and CelebA test sets when
  tfds has them prepared (:data:`PAPER_OOD_SETS`; else ``ood_unavailable`` says how to
  prepare them); histograms and ROC curves;
* generation: ``inpainting`` (the bottom half of 100 test digits filled by Langevin on
  E(x) over the masked pixels only: MSE and PSNR against the held-out truth, beside filling
  with the training mean) and, for classifiers, ``conditional_accuracy`` (an independent
  logistic regression's agreement with the requested class of 100 class-conditional
  samples) and ``composed_3_or_8`` (the share of "3 or 8" samples it calls a 3 or an 8);
* adversarial robustness: ``robust_accuracy["linf:EPS"]`` / ``["l2:EPS"]`` under PGD, and
  with ``purify`` the same attacks classified after SGLD purification (the transfer
  setting: the attack sees the undefended classifier);

writes ``report.json`` and the figures into ``RUN_DIR/evaluation/`` and returns the report.
Unconditional EBMs (``cd_digits``, ``rl_digits``) get the OOD section with the log p(x)
score only; asking them for a classifier's metric is an error. 2-D toy runs report
``kl_nats`` and ``mmd``.

Example::

    >>> report = evaluate_run("runs/jem_digits")
    >>> report["ood"]["inverted"]["log_px"]
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import metrics, plots
from ebm_jax.config import ConfigError, Config, config_from_dict
from ebm_jax.data import offline_ood_sets
from ebm_jax.experiment import Experiment, build, evaluate, initial_state
from ebm_jax.train import Checkpointer, TrainState

CLASSIFIER_METRICS = ("classification", "robustness")
METRICS = ("classification", "ood", "robustness", "generation")
COMPOSED_CLASSES = (3, 8)  # "a 3 or an 8"
LINF_BUDGETS = (0.05, 0.1, 0.2)   # digits live in [-1, 1]: 0.1 is 5% of the range
L2_BUDGETS = (0.5, 1.0, 2.0)      # over 64 pixels
PGD_STEPS = 20


def load_run(run_dir: str) -> tuple[Experiment, TrainState]:
    """The experiment of ``run_dir`` and its latest checkpoint.

    Raises:
      ConfigError: no ``config.json`` or no checkpoint (naming what is missing).
    """
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ConfigError(f"run_dir={run_dir!r}: no config.json: expected a run directory "
                          "written by `ebm-jax train --workdir RUN_DIR`")
    with open(config_path) as f:
        config = config_from_dict(json.load(f))
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

    names = PAPER_OOD_SETS.get(config.dataset)
    if names is None:
        return {}, None
    try:
        return tfds_ood_sets(config.dataset, names, limit=limit, data_dir=config.data_dir), None
    except DatasetNotPreparedError as error:
        return {}, str(error)


def _check_requested(config: Config, requested: Sequence[str], is_classifier: bool,
                     has_images: bool) -> tuple[str, ...]:
    unknown = [m for m in requested if m not in METRICS]
    if unknown:
        raise ConfigError(f"metrics={unknown}: expected a subset of {list(METRICS)}")
    for metric in requested:
        if metric in CLASSIFIER_METRICS and not is_classifier:
            raise ConfigError(f"metric {metric!r} needs a classifier: the run's objective="
                              f"{config.objective!r} is an unconditional EBM (expected a 'jem' or "
                              "'softmax' run)")
        if metric in ("ood", "robustness", "generation") and not has_images:
            raise ConfigError(f"metric {metric!r} needs an image dataset: dataset="
                              f"{config.dataset!r} is a 2-D toy")
    return tuple(requested)


def _batched(fn, params, x, batch_size=512):
    return np.concatenate([np.asarray(fn(params, x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def evaluate_run(run_dir: str, *, metrics_requested: Optional[Sequence[str]] = None,
                 purify: bool = False, linf_budgets: Sequence[float] = LINF_BUDGETS,
                 l2_budgets: Sequence[float] = L2_BUDGETS, pgd_steps: int = PGD_STEPS,
                 figures: bool = True) -> dict:
    """Evaluate a trained run; write ``RUN_DIR/evaluation/report.json`` and figures.

    Args:
      run_dir: a directory written by ``ebm-jax train``.
      metrics_requested: a subset of ``("classification", "ood", "robustness")``; default:
        every one that applies to the run.
      purify: also report ``robust_accuracy_purified`` (attacks classified after 10 SGLD
        steps on E(x), step 1, noise 0.01: the run's own sampler settings).
      linf_budgets, l2_budgets: PGD budgets (``pgd_steps`` steps each).
      figures: write the PNGs.

    Returns:
      The report: ``run``, ``config``, ``steps``; with classification ``accuracy``, ``nll``,
      ``ece``; ``ood`` (``{set: {score: auroc}}``) and ``ood_aupr``; ``robust_accuracy``
      (``{"linf:0.1": acc, ...}``); for 2-D toys ``kl_nats`` and ``mmd``.
    """
    exp, state = load_run(run_dir)
    cfg, data, params = exp.config, exp.data, state.ema_params
    is_classifier = exp.logits_fn is not None
    has_images = data.image_shape is not None
    if metrics_requested is None:
        metrics_requested = tuple(m for m in METRICS
                                  if (is_classifier or m not in CLASSIFIER_METRICS)
                                  and (has_images or m == "classification"))
    requested = _check_requested(cfg, metrics_requested, is_classifier, has_images)
    out_dir = os.path.join(run_dir, "evaluation")
    os.makedirs(out_dir, exist_ok=True)
    report: dict[str, Any] = {"run": os.path.abspath(run_dir), "config": cfg.name,
                              "objective": cfg.objective, "steps": int(state.step)}
    if not has_images:  # 2-D toys: the density's own measures
        summary = evaluate(exp, state, workdir=out_dir if figures else None)
        report.update({k: summary[k] for k in ("kl_nats", "mmd") if k in summary})
    key = jax.random.PRNGKey(cfg.seed + 104_729)
    k_ood, k_attack, k_purify = jax.random.split(key, 3)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test) if is_classifier else None

    if "classification" in requested:
        logits = _batched(jax.jit(jax.vmap(exp.logits_fn, (None, 0))), params, x_test)
        rep = metrics.classification_report(jnp.asarray(logits), y_test)
        report.update(accuracy=rep["accuracy"], nll=rep["nll"], ece=rep["ece"])
        if figures:
            plots.save_reliability_diagram(os.path.join(out_dir, "reliability.png"),
                                           np.asarray(jax.nn.softmax(logits)), np.asarray(y_test),
                                           title=f"{cfg.name}: reliability")

    if "ood" in requested:
        if is_classifier:
            scores = {"log_px": metrics.log_px_score(exp.logits_fn),
                      "max_softmax": metrics.max_softmax_score(exp.logits_fn),
                      "grad_norm": metrics.grad_norm_score(exp.logits_fn)}
        else:
            energy = jax.vmap(exp.energy_fn, (None, 0))
            scores = {"log_px": lambda p, x: -energy(p, x)}
        ood_sets = offline_ood_sets(k_ood, data.x_test, data.image_shape, data.data_range,
                                    y=data.y_test)
        real_sets, missing = paper_ood_sets(cfg, len(data.x_test))
        ood_sets.update(real_sets)
        if missing:
            report["ood_unavailable"] = missing
            print(f"ebm-jax evaluate: the papers' OOD sets are skipped: {missing}")
        full = metrics.ood_report(scores, params, data.x_test, ood_sets)
        report["ood"] = {s: {n: v["auroc"] for n, v in by.items()} for s, by in full.items()}
        report["ood_aupr"] = {s: {n: v["aupr"] for n, v in by.items()} for s, by in full.items()}
        if figures:
            score = jax.jit(scores["log_px"])
            in_scores = _batched(score, params, data.x_test)
            out_scores = {name: _batched(score, params, x) for name, x in ood_sets.items()}
            plots.save_ood_histograms(os.path.join(out_dir, "ood_histograms.png"), out_scores,
                                      in_scores, "log p(x) (= -E(x))")
            plots.save_roc_curves(os.path.join(out_dir, "ood_roc.png"), {
                name: metrics.roc_curve(jnp.asarray(in_scores), jnp.asarray(s))
                for name, s in out_scores.items()}, title=f"{cfg.name}: OOD ROC, log p(x)")

    if "robustness" in requested:
        curves = {}
        defences = [("robust_accuracy", None)]
        if purify:
            defences.append(("robust_accuracy_purified", metrics.sgld_purification(
                exp.energy_fn, num_steps=10, step_size=cfg.sgld_step_size,
                noise_scale=cfg.sgld_noise if cfg.sgld_noise is not None else 0.01,
                clip_range=data.data_range)))
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


def _generation(exp: Experiment, params: Any, rng_key: jax.Array, out_dir: str,
                figures: bool) -> dict:
    """Inpainting error and (classifiers) conditional and composed sampling quality."""
    from ebm_jax.applications import (half_image_mask, inpaint, reconstruction_error,
                                      sample_composed, sample_conditional)

    cfg, data = exp.config, exp.data
    k_fill, k_cond, k_comp = jax.random.split(rng_key, 3)
    sgld = dict(num_steps=cfg.fresh_sample_steps, step_size=cfg.sgld_step_size,
                noise_scale=cfg.sgld_noise, clip_range=data.data_range)
    if cfg.sgld_noise is None:  # temperature form
        sgld.pop("noise_scale")
    x_true = jnp.asarray(data.x_test[:100])
    mask = jnp.asarray(half_image_mask(data.image_shape, "bottom").reshape(1, -1))
    filled = inpaint(k_fill, exp.energy_fn, params, x_true, mask, **sgld)
    error = reconstruction_error(filled, x_true, mask,
                                 data_range=data.data_range[1] - data.data_range[0])
    mean_fill = jnp.where(mask > 0, jnp.asarray(data.x_train.mean(0)), x_true)
    mean_error = reconstruction_error(mean_fill, x_true, mask,
                                      data_range=data.data_range[1] - data.data_range[0])
    out: dict[str, Any] = {"inpainting": {"mse": float(error.mse), "psnr": float(error.psnr),
                                          "mse_mean_fill": float(mean_error.mse)}}
    grids = {"truth": np.asarray(x_true[:30]),
             "observed (bottom half hidden)": np.asarray(jnp.where(mask > 0, 0.0, x_true)[:30]),
             "inpainted by Langevin": np.asarray(filled[:30])}
    if exp.logits_fn is not None:
        labels = jnp.repeat(jnp.arange(data.num_classes), 10)
        shape = data.x_train.shape[1:]
        conditional = sample_conditional(k_cond, exp.logits_fn, params, labels, shape=shape,
                                         init_range=data.data_range, **sgld)
        composed = sample_composed(k_comp, exp.logits_fn, params, 100, shape=shape,
                                   any_of=COMPOSED_CLASSES, init_range=data.data_range, **sgld)
        labelled = data.y_train >= 0
        judge = metrics.fit_reference_classifier(data.x_train[labelled], data.y_train[labelled],
                                                 seed=cfg.seed)
        predicted = judge.predict(np.asarray(conditional))
        out["conditional_accuracy"] = float(np.mean(predicted == np.asarray(labels)))
        out["composed_3_or_8"] = float(np.mean(np.isin(judge.predict(np.asarray(composed)),
                                                       COMPOSED_CLASSES)))
        grids["class-conditional, 10 per class"] = np.asarray(conditional)
        grids["composed: a 3 or an 8"] = np.asarray(composed[:30])
    if figures:
        plots.save_image_grids(os.path.join(out_dir, "generation.png"), grids, data.image_shape,
                               value_range=data.data_range)
    return out


def find_baseline(run_dir: str) -> Optional[str]:
    """A sibling run directory holding the matching softmax baseline: objective 'softmax', the
    same dataset, network and label fraction. None when there is none."""
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    parent = os.path.dirname(os.path.abspath(run_dir))
    match = ("dataset", "model", "hidden", "channels", "activation", "label_fraction")
    for name in sorted(os.listdir(parent)):
        candidate = os.path.join(parent, name)
        path = os.path.join(candidate, "config.json")
        if os.path.abspath(candidate) == os.path.abspath(run_dir) or not os.path.isfile(path):
            continue
        with open(path) as f:
            other = json.load(f)
        if other.get("objective") == "softmax" and all(other.get(k) == config.get(k)
                                                       for k in match):
            return candidate
    return None


def comparison_table(report: dict, baseline: Optional[dict]) -> str:
    """A markdown table of the report's scalar metrics, beside the baseline's."""
    rows = []
    for key in ("accuracy", "nll", "ece", "kl_nats", "mmd", "conditional_accuracy",
                "composed_3_or_8"):
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


__all__ = ["comparison_table", "evaluate_run", "find_baseline", "load_run"]
