"""Write the Colab notebooks of ``notebooks/``: ``python notebooks/build_notebooks.py``.

The notebooks are the source of truth for users; this script is how they are kept
consistent (one badge, one install cell, one small-mode switch, one display helper).
Edit the cells here, regenerate, and run
``python -m pytest -n 0 tests/notebooks/test_notebooks.py``.
"""
from __future__ import annotations

import json
import os
import textwrap

REPO = "https://github.com/ebm-jax/ebm_jax"
COLAB = "https://colab.research.google.com/github/ebm-jax/ebm_jax/blob/main/notebooks/{name}"
INSTALL = f"ebm-jax @ git+{REPO}"
HERE = os.path.dirname(os.path.abspath(__file__))


def _lines(text: str) -> list[str]:
    text = textwrap.dedent(text).strip("\n")
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": _lines(text)}


def code(text: str, **metadata) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": metadata, "outputs": [],
            "source": _lines(text)}


def header(name: str, title: str, intro: str) -> list[dict]:
    """The badge and title, the Colab-only install cell."""
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"({COLAB.format(name=name)})")
    install = f'''
        # Colab only: install ebm_jax from GitHub (a no-op anywhere else; locally, run
        # `pip install -e .` in a checkout). If pip upgrades jax, restart the runtime once.
        import subprocess
        import sys

        IN_COLAB = "google.colab" in sys.modules
        if IN_COLAB:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                            "{INSTALL}"], check=True)
        '''
    return [md(f"{badge}\n\n# {title}\n\n" + textwrap.dedent(intro).strip("\n")),
            code(install, tags=["colab-install"])]


SMALL_MD = md("""
    `SMALL` mode (environment variable `EBM_JAX_NOTEBOOK_SMALL=1`, set by the tests) shrinks
    steps, chains and sizes so that the notebook runs top to bottom in seconds on a CPU; its
    numbers are then meaningless. Leave it off to get the real results.
    """)

# ebm_jax.plots saves PNGs and switches matplotlib to the Agg backend when it does, which in
# Jupyter/Colab leaves the inline backend (and closes open figures): `subplots` switches back.
DISPLAY = '''
    import matplotlib
    import matplotlib.pyplot as plt

    BACKEND = matplotlib.get_backend()  # inline in Colab/Jupyter


    def subplots(*args, **kwargs):
        """plt.subplots, after undoing the switch to Agg that ebm_jax.plots makes when it saves."""
        matplotlib.use(BACKEND)
        return plt.subplots(*args, **kwargs)


    def show(path, width=12):
        """Display a PNG written by ebm_jax.plots."""
        image = plt.imread(path)
        fig, ax = subplots(figsize=(width, width * image.shape[0] / image.shape[1]))
        ax.imshow(image), ax.axis("off"), plt.show()
    '''


def setup(body: str) -> dict:
    """The setup cell: the small-mode switch, the display helpers, then ``body``."""
    small = '''
        import os

        SMALL = os.environ.get("EBM_JAX_NOTEBOOK_SMALL") == "1"  # CI: seconds on a CPU
        '''
    return code("\n\n".join(textwrap.dedent(part).strip("\n") for part in (small, DISPLAY, body)))


NEXT = md("""
    ## Where next

    * [01_quickstart](01_quickstart.ipynb): energies, SGLD chains, composition.
    * [02_jem_digits](02_jem_digits.ipynb): a JEM hybrid classifier: accuracy, calibration,
      OOD, samples.
    * [03_nce_and_recovery_likelihood_2d](03_nce_and_recovery_likelihood_2d.ipynb): NCE and
      diffusion recovery likelihood against a known density.
    * [04_composition_and_inpainting](04_composition_and_inpainting.ipynb): class compositions,
      inpainting and denoising.
    * [05_scaling_up](05_scaling_up.ipynb): CIFAR-10 through tfds, every device, bfloat16,
      checkpoints and resume.
    * [06_inference_and_thinking](06_inference_and_thinking.ipynb): predict, rank, best-of-N
      and thinking longer with an energy over (input, output).
    * [07_world_models_and_policies](07_world_models_and_policies.ipynb): predict the next
      frame and act by minimising energy, where a regressor averages two futures.
    * [08_tabular_augmentation](08_tabular_augmentation.ipynb): synthetic rows for a small
      table from one energy per class (TabEBM), and whether they help a classifier.
    """)


# --------------------------------------------------------------------------- 01 quickstart

QUICKSTART = header("01_quickstart.ipynb",
                    "ebm_jax quickstart: an energy, SGLD chains, composition", """
    An energy-based model (EBM) is a scalar function $E(x)$ that defines a density
    $p(x) = e^{-E(x)} / Z$. **Low energy means likely.** In `ebm_jax` an energy is a pure,
    per-example function `energy_fn(params, x, *cond) -> scalar`: parameters are an explicit
    pytree (here `None`), batches come from `jax.vmap`, and everything jits.

    This notebook writes an energy by hand, samples it with many SGLD chains run as one XLA
    program, checks the samples against the exact moments, and composes energies:
    a sum of energies is AND (a product of densities), a `-logsumexp` of energies is OR
    (a mixture), a difference is NOT. A CPU runtime is enough.
    """) + [SMALL_MD, setup('''
    import jax
    import jax.numpy as jnp
    import numpy as np

    import ebm_jax as ej
    from ebm_jax import energies, plots
    from ebm_jax.samplers import init_chains, run_chains

    NUM_CHAINS = 1000 if SMALL else 4000  # independent chains, run in parallel by vmap
    NUM_STEPS = 500 if SMALL else 2000    # SGLD steps per chain
    LIMIT = 4.5                           # plots show [-LIMIT, LIMIT]^2
    print("devices:", jax.devices())
    '''), md("""
    ## 1. An energy is a pure function

    A mixture of two isotropic Gaussians, written by hand:
    $E(x) = -\\log \\sum_k w_k \\, \\mathcal{N}(x; \\mu_k, \\sigma_k^2 I)$. It is normalised
    ($Z = 1$), and `ebm_jax.energies.gaussian_mixture` builds the same density with its exact
    mean and covariance, which we use as the known answer.
    """), code('''
    WEIGHTS = jnp.array([0.3, 0.7])
    MEANS = jnp.array([[-1.0, -0.5], [1.0, 0.5]])
    STDS = jnp.array([0.7, 0.9])


    def energy_fn(params, x):
        """-log p(x) for one point x[2] (params unused: None)."""
        sq = jnp.sum((x - MEANS) ** 2, axis=-1)
        log_components = -0.5 * sq / STDS**2 - 2 * jnp.log(STDS) - jnp.log(2 * jnp.pi)
        return -jax.nn.logsumexp(jnp.log(WEIGHTS) + log_components)


    target = energies.gaussian_mixture(WEIGHTS, MEANS, STDS)  # the same density, exact moments
    points = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
    print("hand-written E:", jax.vmap(energy_fn, (None, 0))(None, points))
    print("library E:     ", energies.batch_energy(target.energy_fn)(None, points))
    '''), md("""
    ## 2. Sampling with vmapped SGLD chains

    Langevin dynamics moves a point down the energy gradient and adds noise,
    $x' = x - h \\nabla E(x) + \\sqrt{2h}\\, \\varepsilon$; for small $h$ its stationary law is
    $e^{-E}$. `ej.langevin` builds the sampler for **one** chain (`init`, `step`, key first);
    `init_chains` and `run_chains` vmap it over chains, and each chain's steps are one
    `lax.scan`, so the whole run below is a single jitted program. The chains start from
    uniform noise over the box.
    """), code('''
    sampler = ej.langevin(energy_fn, step_size=0.02)  # noise sqrt(2 * 0.02): temperature 1
    key_init, key_run = jax.random.split(jax.random.PRNGKey(1))
    x0 = ej.uniform_init(-LIMIT, LIMIT)(key_init, (NUM_CHAINS, 2))
    states = init_chains(sampler, x0, None)
    run = jax.jit(lambda key, states: run_chains(key, sampler, states, None, NUM_STEPS, trace=True))
    states, info = run(key_run, states)
    samples = np.asarray(states.position)  # [NUM_CHAINS, 2]: one draw per chain
    print("mean energy of the chains, first and last step:",
          info.energy[:, 0].mean(), info.energy[:, -1].mean())
    '''), md("""
    The sample moments against the exact ones. With one draw per independent chain the
    Monte Carlo error of the mean is about $\\sigma / \\sqrt{\\text{chains}}$; SGLD adds a small
    bias of order $h$ (MALA, `ebm_jax.samplers.mala`, removes it with a Metropolis test).
    """), code('''
    stderr = samples.std(0) / np.sqrt(len(samples))
    print(f"exact mean {np.round(target.mean, 3)}   SGLD mean {np.round(samples.mean(0), 3)}"
          f"   (standard error {np.round(stderr, 3)})")
    print("exact covariance\\n", np.round(target.covariance, 3))
    print("SGLD covariance\\n", np.round(np.cov(samples.T), 3))
    assert np.allclose(samples.mean(0), target.mean, atol=0.15), "SGLD should find the mean"
    '''), md("""
    The true density, the density $\\propto e^{-E}$ of the hand-written energy (the same
    picture), the energy itself (light = low = likely) and the samples; then the mean energy
    of the chains along the run: it falls from the noise's level to the equilibrium one
    within a few dozen steps.
    """), code('''
    plots.save_energy_landscape("landscape.png", lambda x: energy_fn(None, x),
                                true_log_prob=target.log_prob, samples=samples, limit=LIMIT)
    show("landscape.png")
    plots.save_energy_trace("trace.png", info.energy, title="SGLD: energy along the chains")
    show("trace.png", width=6)
    '''), md("""
    ## 3. Composing energies: AND, OR, NOT

    Energies compose by arithmetic, and the result is again an ordinary `energy_fn`, so the
    same sampler runs it. The params of a composition are the tuple of the parts' params.

    | composition | energy | density |
    |---|---|---|
    | `product` (AND) | $E_a + E_b$ | $\\propto p_a\\, p_b$ |
    | `mixture` (OR) | $-\\log(w_a e^{-E_a} + w_b e^{-E_b})$ | $w_a p_a + w_b p_b$ (normalised) |
    | `negation` (NOT) | $E_a - \\alpha E_b$ | $\\propto p_a / p_b^{\\alpha}$ |

    With two Gaussians every answer is known in closed form: the product and the negation
    are Gaussians with precision $P_a \\pm \\alpha P_b$, the mixture's mean is the weighted mean.
    """), code('''
    a = energies.gaussian(jnp.array([-1.0, 0.0]), jnp.array([[1.0, 0.6], [0.6, 1.0]]))
    b = energies.gaussian(jnp.array([1.5, 1.0]), 1.5 * jnp.eye(2))
    ALPHA = 0.3
    composed = {
        "A AND B": energies.product(a.energy_fn, b.energy_fn),
        # a mixture is of normalised parts: add each part's log Z to its energy
        "A OR B": energies.mixture(lambda p, x: a.energy_fn(p, x) + a.log_z,
                                   lambda p, x: b.energy_fn(p, x) + b.log_z),
        "A AND NOT B": energies.negation(a.energy_fn, b.energy_fn, alpha=ALPHA),
    }
    Pa, Pb = np.linalg.inv(a.covariance), np.linalg.inv(b.covariance)
    exact_means = {
        "A AND B": np.linalg.solve(Pa + Pb, Pa @ a.mean + Pb @ b.mean),
        "A OR B": 0.5 * (a.mean + b.mean),
        "A AND NOT B": np.linalg.solve(Pa - ALPHA * Pb, Pa @ a.mean - ALPHA * Pb @ b.mean),
    }
    draws = {}
    for name, energy in composed.items():
        composed_sampler = ej.langevin(energy, step_size=0.02)
        start = init_chains(composed_sampler, x0, (None, None))
        run = jax.jit(lambda k, s: run_chains(k, composed_sampler, s, (None, None), NUM_STEPS))
        draws[name] = np.asarray(run(key_run, start)[0].position)
        print(f"{name:12s} exact mean {np.round(exact_means[name], 2)}"
              f"   SGLD mean {np.round(draws[name].mean(0), 2)}")
    '''), md("""
    Each density on a grid (`ebm_jax.plots.density_on_grid` normalises $e^{-E}$ numerically)
    with the SGLD samples of the compositions on top.
    """), code('''
    panels = {"A": (a.energy_fn, None), "B": (b.energy_fn, None),
              **{name: (energy, (None, None)) for name, energy in composed.items()}}
    fig, axes = subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (name, (energy, params)) in zip(axes, panels.items()):
        density = plots.density_on_grid(lambda x: -energy(params, x), LIMIT, 100 if SMALL else 200)
        ax.imshow(density, origin="lower", extent=(-LIMIT, LIMIT, -LIMIT, LIMIT))
        if name in draws:
            ax.scatter(*draws[name][:400].T, s=2, c="white", alpha=0.5)
        ax.set(xlim=(-LIMIT, LIMIT), ylim=(-LIMIT, LIMIT), title=f"{name}: exp(-E)")
    plt.show()
    '''), NEXT]


# --------------------------------------------------------------------------- 02 JEM digits

JEM = header("02_jem_digits.ipynb",
             "JEM on the embedded digits: a classifier that is also an EBM", """
    A classifier's logits $f(x) \\in \\mathbb{R}^K$ define energies (Grathwohl et al. 2020,
    *Your classifier is secretly an energy based model*): $E(x, y) = -f(x)[y]$ and
    $E(x) = -\\log\\sum_y e^{f(x)[y]}$, so $\\log p(x) = -E(x) - \\log Z$ (**low energy =
    likely**) while $p(y \\mid x)$ is the usual softmax. JEM trains both: cross-entropy for
    $p(y \\mid x)$ plus maximum likelihood for $p(x)$, whose gradient needs samples of the
    model, drawn by short SGLD chains that restart from a replay buffer.

    Here: train the `jem_digits` preset (an MLP on scikit-learn's 8x8 digits, which ship with
    the package, so nothing is downloaded), then measure what the energy buys: calibration,
    out-of-distribution scores and samples. Full mode: 6,000 steps, about 2 minutes on a
    2-core CPU runtime.
    """) + [SMALL_MD, setup('''
    import jax
    import jax.numpy as jnp
    import numpy as np

    import ebm_jax as ej
    from ebm_jax import experiments, metrics, plots
    from ebm_jax.data import offline_ood_sets
    from ebm_jax.experiments import make_config

    print("devices:", jax.devices())
    '''), md("""
    ## 1. The config

    `ebm_jax.experiments` is the layer that turns a config into a trained run directory. A
    config is a tree of frozen dataclasses, one section each for `data`, `model`, `objective`,
    `optimizer`, `guard` (the divergence guard) and `run`; the `objective` section is the
    hyperparameters of one learning method (here `jem`: its SGLD `sampler`, its replay-buffer
    `chain_start`, `num_steps` SGLD steps per train step, ...). `make_config` takes a named
    preset plus `key=value` overrides with dotted keys, checked (type, range, consistency)
    before any compute. The same strings work on the command line,
    `ebm-jax train --config jem_digits --set run.num_steps=2000`, and
    `ebm-jax config jem_digits --set objective.sampler.step_size=0.5` prints the resolved
    config; `--set objective=softmax` switches to another objective's defaults.
    """), code('''
    overrides = ["run.num_steps=40", "run.log_every=10", "run.eval_every=40",
                 "run.checkpoint_every=40", "run.num_eval_samples=200",
                 "run.fresh_sample_steps=20"] if SMALL else []
    config = make_config("jem_digits", overrides)
    for section in ("data", "model", "objective", "optimizer", "run"):
        print(f"{section:10s} {getattr(config, section)}")
    '''), md("""
    ## 2. Train

    `experiments.train` builds the pieces (data, network, energy, SGLD sampler, JEM loss, optax
    optimizer), jits one train step and writes a run directory: `config.json`,
    `metrics.jsonl`, Orbax `checkpoints/`, `curves.png`, `samples.png` and `summary.json`.
    With `resume=True`, running the cell again continues from the latest checkpoint (a
    finished run is only evaluated again). The digits are small, so one device is fastest.
    """), code('''
    WORKDIR = "runs/jem_digits"
    summary = experiments.train(config, WORKDIR, resume=True, devices=1, progress=not SMALL)
    for key in ("test_accuracy", "ece", "auroc_uniform_noise", "train_seconds"):
        print(f"{key:22s} {summary[key]:.3f}")
    show(f"{WORKDIR}/curves.png")
    '''), md("""
    ## 3. The trained model

    `experiments.load_run` rebuilds the experiment from `config.json` and restores the latest
    checkpoint: `exp.logits_fn(params, x) -> [10]` is the classifier, `exp.energy_fn(params, x)`
    its energy $E(x)$. `state.ema_params` are the weights to evaluate (the raw weights when the
    run keeps no moving average, as here).
    """), code('''
    exp, state = experiments.load_run(WORKDIR)
    params, data = state.ema_params, exp.data
    logits = jax.jit(jax.vmap(exp.logits_fn, (None, 0)))(params, data.x_test)
    print(metrics.classification_report(logits, jnp.asarray(data.y_test)))
    '''), md("""
    ## 4. Calibration

    A reliability diagram bins the test digits by confidence (max softmax probability) and
    compares each bin's accuracy with its confidence; the expected calibration error (ECE) is
    the weighted gap. JEM's README numbers: ECE 0.019 against 0.025 for the same network
    trained as a plain softmax classifier.
    """), code('''
    plots.save_reliability_diagram("reliability.png", jax.nn.softmax(logits), data.y_test,
                                   title="JEM, digits")
    show("reliability.png", width=5)
    '''), md("""
    ## 5. Out-of-distribution detection

    A score says how in-distribution an input looks (higher = more): JEM's $\\log p(x)$ is
    $-E(x)$ up to the constant $\\log Z$, which does not change any ranking; the baseline is
    the classifier's max $p(y \\mid x)$; the third is minus the norm of $\\nabla_x \\log p(x)$.
    The OOD sets are built offline from the test digits: noise, inverted, flipped and
    interpolated digits. AUROC 1 separates perfectly, 0.5 is chance.
    """), code('''
    ood_sets = offline_ood_sets(jax.random.PRNGKey(0), data.x_test, data.image_shape,
                                data.data_range, y=data.y_test)
    plots.save_image_grids("ood_sets.png", {name: x[:25] for name, x in ood_sets.items()},
                           data.image_shape, columns=5, value_range=data.data_range)
    show("ood_sets.png")

    scores = {"log p(x)": metrics.log_px_score(exp.logits_fn),
              "max p(y|x)": metrics.max_softmax_score(exp.logits_fn),
              "grad norm": metrics.grad_norm_score(exp.logits_fn)}
    report = metrics.ood_report(scores, params, data.x_test, ood_sets)
    print("AUROC".ljust(16) + "".join(name.rjust(12) for name in scores))
    for set_name, row in report.items():
        print(set_name.ljust(16) + "".join(f"{row[name]['auroc']:12.3f}" for name in scores))
    '''), code('''
    log_px = jax.jit(scores["log p(x)"])
    plots.save_ood_histograms("ood_log_px.png",
                              {name: log_px(params, x) for name, x in ood_sets.items()},
                              log_px(params, data.x_test), "log p(x) + log Z = -E(x)")
    show("ood_log_px.png")
    '''), md("""
    What to expect in full mode (seed 0): $\\log p(x)$ separates noise and inverted digits
    perfectly (AUROC 1.00), but flipped digits and interpolations of two digits keep
    digit-like strokes and score almost as high as real digits (0.67-0.71), where max
    $p(y \\mid x)$ and the gradient norm do better (0.87-0.97). Likelihood alone is not a
    reliable OOD detector, a known lesson of deep generative models.

    ## 6. Samples

    The replay buffer holds the persistent SGLD chains of training: samples of the model.
    The run also drew fresh chains from uniform noise (`run.fresh_sample_steps` steps of the
    run's own sampler, `experiments.evaluation.fresh_samples`): what the energy alone
    generates. An independent
    logistic regression, fitted on the training digits, judged the buffer samples: its mean
    confidence and the share of each class (README, full mode: 0.96 and 8-12% per class).
    Last, the energies: test digits and buffer samples should sit at similar, low energies.
    """), code('''
    show(f"{WORKDIR}/samples.png")
    print("judge's confidence on buffer samples:", round(summary["sample_confidence"], 3))
    print("class shares:", np.round(summary["sample_class_fractions"], 2))

    buffer = experiments.find_buffer(state.loss_state)
    energy = jax.jit(ej.batch_energy(exp.energy_fn))
    plots.save_energy_histogram("energies.png", energy(params, data.x_test),
                                energy(params, buffer.samples[:1000]),
                                labels=("test digits", "replay buffer"), title="E(x): low = likely")
    show("energies.png", width=6)
    '''), md("""
    The command line does all of this too: `ebm-jax train` then `ebm-jax evaluate runs/jem_digits`
    (which adds adversarial robustness and a comparison with the softmax baseline).
    """), NEXT]


# --------------------------------------------------------------------------- 03 NCE and RL

TOYS = header("03_nce_and_recovery_likelihood_2d.ipynb",
              "NCE and diffusion recovery likelihood on a 2-D toy", """
    Two ways to train an EBM without long MCMC chains during training:

    * **Noise-contrastive estimation** (NCE) trains $E$ and a scalar $\\log Z$ to tell data
      from draws of a known noise density (here a Gaussian fitted to the data) by logistic
      regression; the model density is $\\log p(x) = -E(x) - \\log Z$.
    * **Diffusion recovery likelihood** (RL) learns a sequence of conditional EBMs
      $p(x_t \\mid x_{t+1})$, one per noise level of a diffusion; each is nearly unimodal, so
      30 short Langevin steps sample it, and generation runs from noise down the levels.

    On a 2-D toy with a closed-form density we can look at the learned landscapes beside the
    true density and measure $\\mathrm{KL}(p_\\text{true} \\,\\|\\, p_\\text{model})$ exactly, by
    quadrature on a grid. **Low energy = likely**: the model density is $\\propto e^{-E}$.
    Full mode takes a few minutes per objective on a CPU runtime.
    """) + [SMALL_MD, setup('''
    import jax
    import numpy as np

    import ebm_jax as ej
    from ebm_jax import experiments, metrics, plots
    from ebm_jax.data import Batches, get_toy
    from ebm_jax.experiments import make_config
    from ebm_jax.experiments.data import TOY_LIMIT
    from ebm_jax.experiments.evaluation import fresh_samples

    TOY = "8gaussians"            # also: rings, checkerboard, two_spirals (closed-form densities)
    LIMIT = TOY_LIMIT             # the toys live in [-4.5, 4.5]^2
    GRID = 100 if SMALL else 400  # quadrature and plots: GRID x GRID cells
    NUM_SAMPLES = 500 if SMALL else 2000
    toy = get_toy(TOY)
    print("devices:", jax.devices())
    '''), md("""
    ## 1. The data and its density

    `toy.sample(key, n)` draws exact samples and `toy.log_prob(x)` is the normalised
    log-density: $-\\log p$ is the true energy.
    """), code('''
    x_true = np.asarray(toy.sample(jax.random.PRNGKey(0), NUM_SAMPLES))
    fig, axes = subplots(1, 2, figsize=(8, 4))
    axes[0].imshow(plots.density_on_grid(toy.log_prob, LIMIT, GRID), origin="lower",
                   extent=(-LIMIT, LIMIT, -LIMIT, LIMIT))
    axes[0].set_title("true density")
    axes[1].scatter(*x_true.T, s=1, alpha=0.5)
    axes[1].set(xlim=(-LIMIT, LIMIT), ylim=(-LIMIT, LIMIT), aspect="equal", title="samples")
    plt.show()
    '''), md("""
    ## 2. Build and fit

    A named preset gives the whole recipe; `experiments.build` turns it into pure pieces
    (data, network, energy, sampler, loss transform, optax optimizer, and the objective's own
    generator of fresh samples, `exp.generate`), and the training loop is the one of the
    README's *Composing the pure functions*: one jitted train step, fed deterministic batches
    by `ej.fit`. (`experiments.train` does the same and also writes a run directory with
    checkpoints; notebook 02 uses it.) The evaluation uses the moving average of the weights,
    `state.ema_params`, as these presets keep one (`optimizer.ema_decay`).
    """), code('''
    def build_and_fit(config):
        """experiments.train without a run directory; fit returns (state, metrics history)."""
        exp, ema, run = experiments.build(config), config.optimizer.ema_decay, config.run
        step = jax.jit(ej.make_train_step(exp.loss, exp.optimizer, ema_decay=ema))
        batches = Batches(exp.data.x_train, exp.data.y_train, config.data.batch_size, seed=run.seed)
        return exp, ej.fit(step, experiments.initial_state(exp), batches, run.num_steps)[0]
    '''), md("""
    ## 3. Noise-contrastive estimation

    The preset `nce_2d_8gaussians`: an MLP energy 2-128-128-128-1, noise a Gaussian fitted to
    the data (`objective.noise`), 16,000 steps. NCE never samples the model while training;
    the pictures below draw samples afterwards by Langevin dynamics from noise with the
    objective's `sampler` settings (`fresh_samples`, which runs the run's generator).
    """), code('''
    small = ["run.num_steps=100", "run.fresh_sample_steps=50"]
    nce_exp, nce_state = build_and_fit(make_config(f"nce_2d_{TOY}", small if SMALL else []))
    nce_params = nce_state.ema_params  # {"energy": MLP params, "log_z": the learned log Z}
    nce_energy = lambda x: nce_exp.energy_fn(nce_params, x)  # one point x[2] -> E(x)
    '''), md("""
    NCE learns the normaliser too: compare its $\\log Z$ with the one computed by quadrature,
    $\\log \\sum_\\text{cells} e^{-E} \\cdot \\text{area}$. Then the landscape: true density, model
    density, energy, and Langevin samples of the model.
    """), code('''
    points, area = metrics.grid_points(LIMIT, GRID)
    log_z_grid = jax.nn.logsumexp(-jax.jit(jax.vmap(nce_energy))(points)) + np.log(area)
    print(f"log Z learned by NCE {float(nce_params['log_z']):.3f},"
          f" by quadrature {float(log_z_grid):.3f}")

    nce_samples = fresh_samples(nce_exp, nce_params, jax.random.PRNGKey(1), NUM_SAMPLES)
    plots.save_energy_landscape("nce.png", nce_energy, true_log_prob=toy.log_prob,
                                samples=nce_samples, limit=LIMIT, size=GRID)
    show("nce.png")
    '''), md("""
    ## 4. Diffusion recovery likelihood

    The preset `rl_2d_8gaussians`: the same MLP conditioned on the noise level $t$ (6 levels,
    the paper's T6 schedule, `objective.schedule`), 30 MALA steps per level
    (`objective.num_langevin_steps`), 4,000 steps. Its model of the data is the level-0
    energy $E(x, 0)$ (`rl_exp.energy_fn`), and its generator, which `fresh_samples` runs,
    samples progressively from noise through all the levels.
    """), code('''
    small = ["run.num_steps=10", "data.batch_size=60", "objective.num_langevin_steps=5"]
    rl_exp, rl_state = build_and_fit(make_config(f"rl_2d_{TOY}", small if SMALL else []))
    rl_params = rl_state.ema_params
    rl_energy = lambda x: rl_exp.energy_fn(rl_params, x)  # level 0, one point x[2] -> E(x, 0)

    rl_samples = fresh_samples(rl_exp, rl_params, jax.random.PRNGKey(1), NUM_SAMPLES)
    plots.save_energy_landscape("rl.png", rl_energy, true_log_prob=toy.log_prob,
                                samples=rl_samples, limit=LIMIT, size=GRID)
    show("rl.png")
    '''), md("""
    ## 5. KL by quadrature

    Both densities are normalised on the same grid, so any energy works:
    $\\mathrm{KL}(p \\,\\|\\, q) = \\sum_\\text{cells} p \\,(\\log p - \\log q) \\cdot \\text{area}$.
    The README's medians over three seeds on 8 Gaussians: NCE 0.0017, recovery likelihood
    0.0085 nats (and 0.031 for contrastive divergence with a replay buffer). The MMD compares
    the samples with true samples (near 0 when they come from the same law).
    """), code('''
    models = {"NCE": (nce_energy, nce_samples), "recovery likelihood": (rl_energy, rl_samples)}
    for name, (energy, samples) in models.items():
        kl = metrics.kl_by_quadrature(toy.log_prob, energy, limit=LIMIT, size=GRID)
        mmd = metrics.mmd(samples, x_true)
        print(f"{name:20s} KL {float(kl):.4f} nats   MMD {float(mmd):.4f}")
    '''), NEXT]


# --------------------------------------------------------------------------- 04 composition

COMPOSE = header("04_composition_and_inpainting.ipynb",
                 "Compositional generation, inpainting and denoising with a JEM", """
    A JEM classifier (notebook 02) is a family of energies: $E(x, y) = -f(x)[y]$ for each
    class, $E(x) = -\\log\\sum_y e^{f(x)[y]}$ for the digits at large. **Low energy = likely.**
    Because they are energies, they compose (Du, Li & Mordatch 2020): "a 3 OR an 8" is
    $-\\log(e^{f_3} + e^{f_8})$, "a 3 AND an 8" is $-(f_3 + f_8)$, "NOT an 8" subtracts
    $\\alpha E_8$. And they complete partial inputs: Langevin dynamics over the missing pixels
    only samples $p(x_\\text{missing} \\mid x_\\text{observed})$ (inpainting), gradient descent
    from a noisy image walks to a likely one (denoising).

    Everything is scored against held-out truth or an independent judge. Full mode trains
    the `jem_digits` preset first (about 2 minutes on a CPU runtime).
    """) + [SMALL_MD, setup('''
    import jax
    import jax.numpy as jnp
    import numpy as np

    import ebm_jax as ej
    from ebm_jax import applications, energies, experiments, metrics, plots
    from ebm_jax.data import Batches
    from ebm_jax.experiments import make_config
    from ebm_jax.samplers import init_chains, run_chains

    STEPS = 20 if SMALL else 200   # SGLD steps from noise
    N = 40 if SMALL else 100       # test digits to inpaint and denoise
    SGLD = dict(step_size=1.0, noise_scale=0.01, clip_range=(-1.0, 1.0))  # JEM's objective.sampler
    print("devices:", jax.devices())
    '''), md("""
    ## 1. A JEM classifier

    Build the `jem_digits` preset's pieces with `experiments.build` and fit them with one
    jitted train step (as in the README's *Composing the pure functions*; notebook 02 trains
    the same preset with `experiments.train`, which also writes checkpoints). Then an
    independent judge: a logistic regression fitted on the training digits, which never sees
    the EBM.
    """), code('''
    def build_and_fit(config):
        """experiments.train without a run directory; fit returns (state, metrics history)."""
        exp, ema, run = experiments.build(config), config.optimizer.ema_decay, config.run
        step = jax.jit(ej.make_train_step(exp.loss, exp.optimizer, ema_decay=ema))
        batches = Batches(exp.data.x_train, exp.data.y_train, config.data.batch_size, seed=run.seed)
        return exp, ej.fit(step, experiments.initial_state(exp), batches, run.num_steps)[0]


    exp, state = build_and_fit(make_config("jem_digits", ["run.num_steps=30"] if SMALL else []))
    params, data = state.ema_params, exp.data
    shape = data.x_train.shape[1:]  # one digit: 64 pixels in [-1, 1]
    judge = metrics.fit_reference_classifier(data.x_train, data.y_train)
    logits = jax.vmap(exp.logits_fn, (None, 0))(params, data.x_test)
    print("test accuracy: JEM", float(metrics.accuracy(logits, jnp.asarray(data.y_test))),
          "  judge", judge.score(data.x_test, data.y_test))
    '''), md("""
    ## 2. Class-conditional samples

    `sample_conditional` runs SGLD on $E(x, y) = -f(x)[y]$ from uniform noise, one chain per
    requested label. Each row below holds the classes 0-9; the judge says how many samples
    are of the class asked for.
    """), code('''
    labels = jnp.tile(jnp.arange(10), 5)
    conditional = applications.sample_conditional(jax.random.PRNGKey(0), exp.logits_fn, params,
                                                  labels, shape=shape, num_steps=STEPS, **SGLD)
    print("judge agrees with the requested class:",
          np.mean(judge.predict(np.asarray(conditional)) == np.asarray(labels)))
    plots.save_image_grids("conditional.png", {"p(x | y), y = 0..9 per row": conditional},
                           data.image_shape, value_range=data.data_range)
    show("conditional.png", width=5)
    '''), md("""
    ## 3. Composing class energies

    `ebm_jax.energies` builds the class energies of one classifier (they all take the
    classifier's params): `class_energy(f, y)`, `classes_or(f, classes)`,
    `classes_and(f, classes)`, and `composed_class_energy` for a whole query
    (`any_of` / `all_of` / `none_of` with a strength `alpha`, e.g. "a 3 or a 5, not an 8").
    `applications.sample_composed` samples a query by SGLD from noise. Any composition is an
    ordinary `energy_fn`, so the generic sampler runs it too: "3 OR 8" is sampled by hand
    with `ej.langevin` and `run_chains`, "3 AND 8" by `sample_composed`. The judge's class
    shares tell what came out.
    """), code('''
    three_or_eight = energies.classes_or(exp.logits_fn, (3, 8))  # E = -log(e^f3 + e^f8)
    sampler = ej.langevin(three_or_eight, **SGLD)
    x0 = ej.uniform_init(-1.0, 1.0)(jax.random.PRNGKey(1), (30, *shape))
    final, _ = jax.jit(lambda key, s: run_chains(key, sampler, s, params, STEPS))(
        jax.random.PRNGKey(2), init_chains(sampler, x0, params))

    key = jax.random.PRNGKey(3)
    queries = {
        "3 OR 8": final.position,
        "3 AND 8": applications.sample_composed(key, exp.logits_fn, params, 30, shape=shape,
                                                num_steps=STEPS, all_of=(3, 8), **SGLD),
    }
    for name, x in queries.items():
        shares = np.bincount(judge.predict(np.asarray(x)), minlength=10) / len(x)
        listed = " ".join(f"{c}:{s:.2f}" for c, s in enumerate(shares) if s > 0)
        print(f"{name:8s} judge's class shares {listed}")
    plots.save_image_grids("composed.png", queries, data.image_shape, columns=6,
                           value_range=data.data_range)
    show("composed.png")
    '''), md("""
    What to expect in full mode: "3 OR 8" gives 3s and 8s, unevenly (the OR of unnormalised
    class energies weights each class by its normaliser $Z_c$, the mass the model gives it:
    mostly 3s here). "3 AND 8" asks for images that both logits score highly; no digit is both, and
    SGLD finds blotchy images that excite both logits, which the judge calls 3s, 8s, or
    something else: a product of experts needs experts that agree somewhere.

    ## 4. Inpainting

    A mask marks the pixels to fill (1 = missing). `applications.inpaint` runs Langevin
    dynamics over the missing pixels only, on $E(x)$ evaluated at the observed pixels
    completed by the sampled ones; the observed pixels come back exactly. The error is
    measured on the filled pixels only, against the held-out truth, beside the naive fill
    with the mean training digit. With the label given (the joint energy
    $E(x, y) = -f(x)[y]$, the label passed as a per-example `cond`), the fill is a digit of
    the right class.
    """), code('''
    x_true, y_true = data.x_test[:N], data.y_test[:N]
    mask = applications.half_image_mask(data.image_shape, "bottom").reshape(1, -1)  # bottom half
    filled = applications.inpaint(jax.random.PRNGKey(4), exp.energy_fn, params, x_true, mask,
                                  num_steps=STEPS, **SGLD)
    joint = ej.joint_energy_from_logits(exp.logits_fn)  # E(x, y) = -f(x)[y]
    filled_y = applications.inpaint(jax.random.PRNGKey(4), joint, params, x_true, mask,
                                    num_steps=STEPS, cond=(y_true,), **SGLD)
    mean_fill = np.where(mask, data.x_train.mean(0), x_true)
    fills = {"training mean": mean_fill, "Langevin on E(x)": filled,
             "Langevin on E(x, y)": filled_y}
    for name, x in fills.items():
        error = applications.reconstruction_error(x, x_true, mask)
        print(f"{name:20s} MSE {float(error.mse):.3f}   PSNR {float(error.psnr):.1f} dB")
    grids = {"truth": x_true[:20], "observed": np.where(mask, 0.0, x_true[:20]),
             "filled, E(x)": filled[:20], "filled, E(x, y)": filled_y[:20]}
    plots.save_image_grids("inpainting.png", grids, data.image_shape, columns=5,
                           value_range=data.data_range)
    show("inpainting.png")
    '''), md("""
    A sample is one plausible completion, not the average one: without the label, the mean
    fill has the lower squared error (it is the MSE-optimal blur) while the samples look like
    digits, sometimes of another class; with the label the samples also beat the blur
    (full mode, seed 0: MSE 0.47 for E(x), 0.30 for the mean, 0.27 for E(x, y)).

    ## 5. Denoising

    `applications.denoise` descends the energy from the noisy image (no noise added): it
    moves towards a nearby mode of $p(x)$. The error is over all pixels (a mask of ones).
    """), code('''
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(5), x_true.shape))
    noisy = np.clip(x_true + 0.4 * noise, -1, 1)
    denoised = applications.denoise(exp.energy_fn, params, noisy, num_steps=STEPS // 2,
                                    step_size=0.5, clip_range=(-1.0, 1.0))
    everywhere = np.ones((1, x_true.shape[1]))
    for name, x in (("noisy", noisy), ("denoised", denoised)):
        error = applications.reconstruction_error(x, x_true, everywhere)
        print(f"{name:10s} MSE {float(error.mse):.3f}   PSNR {float(error.psnr):.1f} dB")
    grids = {"truth": x_true[:20], "noisy": noisy[:20], "denoised": denoised[:20]}
    plots.save_image_grids("denoising.png", grids, data.image_shape, columns=5,
                           value_range=data.data_range)
    show("denoising.png")
    '''), NEXT]


# --------------------------------------------------------------------------- 05 scaling up

SCALE = header("05_scaling_up.ipynb",
               "Scaling up: CIFAR-10, every device, bfloat16, checkpoints", """
    The same code that trains on a laptop CPU trains the papers' models on accelerators. This
    notebook runs the `jem_cifar10` preset (JEM on CIFAR-10 with a Wide-ResNet-28-10, 36.5M
    parameters, computing in bfloat16) on every device of the runtime, with Orbax
    checkpoints that let a disconnected Colab session resume where it stopped.

    Use a GPU or TPU runtime (*Runtime > Change runtime type*). The full preset is a long run
    (150,000 steps): keep the run directory on Google Drive (`USE_DRIVE = True` below) and
    re-run the training cell after a disconnect. `SMALL` mode swaps in a tiny network and
    **mock data for CI only** (random images shaped like CIFAR-10).
    """) + [SMALL_MD, setup('''
    import contextlib
    import subprocess

    import jax
    import numpy as np

    import ebm_jax as ej
    from ebm_jax import experiments, parallel, train
    from ebm_jax.data import tfds_source
    from ebm_jax.experiments import make_config
    from ebm_jax.train import Checkpointer, params_fingerprint

    # On Colab, USE_DRIVE = True keeps the data and the run on Google Drive, so that a new
    # session resumes the run (mounting asks for permission once).
    USE_DRIVE = False
    ROOT = "/content/drive/MyDrive/ebm_jax" if IN_COLAB and USE_DRIVE else "."
    if IN_COLAB and USE_DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
    WORKDIR = f"{ROOT}/runs/jem_cifar10"
    DATA_DIR = f"{ROOT}/tensorflow_datasets" if IN_COLAB and USE_DRIVE else None  # tfds's default
    '''), md("""
    ## 1. Devices

    `jax.devices()` lists the accelerators (one GPU, eight TPU cores, or CPU).
    `parallel.make_data_mesh()` lays all of them along one `data` axis: parameters are
    replicated, batches, SGLD chains and the replay buffer are split along `data`, and XLA
    turns the gradient's mean over the batch into an all-reduce. This is what `jax.pmap` did,
    written as one `jax.jit` program.
    """), code('''
    print(jax.default_backend(), jax.devices())
    mesh = parallel.make_data_mesh()  # every local device; make_data_mesh(n) for the first n
    print("mesh:", dict(mesh.shape))
    '''), md("""
    ## 2. CIFAR-10 through tensorflow-datasets

    `ebm_jax` reads tfds datasets prepared as ArrayRecord files with `tfds.data_source`:
    random access, no TensorFlow needed to read, and the batch at step $s$ is a pure function
    of the seed and $s$ (so resuming needs only the step). Preparing CIFAR-10 once needs
    network and TensorFlow, both present on Colab: the cell below runs `tfds build` when the
    data is missing. In `SMALL` mode it installs tfds's mock data instead.
    """), code('''
    MOCK = contextlib.ExitStack()
    if SMALL:  # mock data for CI only: random images shaped like CIFAR-10, nothing downloaded
        import tensorflow_datasets as tfds
        from tensorflow_datasets.testing import mocking
        MOCK.enter_context(tfds.testing.mock_data(num_examples=32,
                                                  policy=tfds.testing.MockPolicy.USE_CODE))
        if hasattr(mocking, "_getitems"):  # tfds 4.9.10's mock misbinds batched reads: patch it
            from unittest import mock
            read = lambda *args, generator, serialized=False: [generator[int(k)] for k in args[-1]]
            MOCK.enter_context(mock.patch.object(mocking, "_getitems", read))
    else:
        try:
            tfds_source.load_source("cifar10", "train", data_dir=DATA_DIR)
        except tfds_source.DatasetNotPreparedError as error:
            print(error)  # prepare it once (about 160 MB)
            subprocess.run(["tfds", "build", "cifar10", "--file_format=array_record"]
                           + ([f"--data_dir={DATA_DIR}"] if DATA_DIR else []), check=True)
    source = tfds_source.load_source("cifar10", "train", data_dir=DATA_DIR)
    print("cifar10 train examples:", len(source))
    '''), md("""
    ## 3. The config: the paper's preset, bfloat16

    `jem_cifar10` follows JEM: WRN-28-10 without batch norm, SGLD 20 steps of size 1 with
    noise 0.01, a replay buffer of 10,000 with 5% restarts, Adam 1e-4, batch 64, flips.
    `model.dtype=bfloat16` runs every convolution and matmul in bfloat16 while the
    parameters, the energies, the SGLD noise and the loss stay float32. `SMALL` mode swaps in
    a tiny float32 ConvNet (for a tiny WRN on a CPU: `model.depth=10`,
    `model.widen_factor=1`, `model.dtype=float32`), a small replay buffer
    (`objective.chain_start.capacity`) and a handful of steps. `experiments.build`
    assembles the pure pieces: data, network, energy, SGLD sampler, JEM loss, optimizer.
    """), code('''
    overrides = [f"data.data_dir={DATA_DIR}"] if DATA_DIR else []
    if SMALL:
        overrides += ["model.kind=conv", "model.channels=8,8", "model.dtype=float32",
                      "data.batch_size=8", "objective.chain_start.capacity=64",
                      "objective.num_steps=2", "run.num_steps=4", "optimizer.warmup_steps=0",
                      "run.log_every=1", "run.checkpoint_every=2"]
    config = make_config("jem_cifar10", overrides)
    exp = experiments.build(config, num_devices=mesh.shape["data"])
    leaves = jax.tree.leaves(exp.params)
    energy_dtype = jax.eval_shape(exp.energy_fn, exp.params, exp.data.x_test[0]).dtype
    print(f"{config.model.kind}, computing in {config.model.dtype}: "
          f"{sum(p.size for p in leaves):,} parameters of dtype "
          f"{sorted({str(p.dtype) for p in leaves})}; E(x) is {energy_dtype}")
    '''), md("""
    ## 4. Data-parallel training, with checkpoints and resume

    The state (parameters, optimizer, replay buffer, RNG key, step) is placed on the mesh by
    `shard_state`: the replay buffer split along `data`, the rest replicated. If `WORKDIR`
    already holds a checkpoint, it is restored into that placement (on any device count),
    so **after a disconnect, run the notebook again and training resumes** where it
    stopped, ending with exactly the parameters of an uninterrupted run: the batch at step
    $s$ is a function of the seed and $s$, and the RNG key and buffer are in the checkpoint.
    `sharded_train_step` jits the ordinary single-device train step over the mesh, and
    `shard_batch` turns each host batch into a global array split along `data`. `ej.fit`
    runs the loop, saving a checkpoint every `run.checkpoint_every` steps, at the end and on
    an interrupt. (`experiments.train(config, WORKDIR, resume=True)`, or `ebm-jax train
    --config jem_cifar10 --workdir WORKDIR --resume` in a terminal, does all this and also
    evaluates the run.)
    """), code('''
    run = config.run  # length and bookkeeping: num_steps, log_every, checkpoint_every, ...
    checkpointer = Checkpointer(f"{WORKDIR}/checkpoints", max_to_keep=run.keep_checkpoints,
                                save_every=run.checkpoint_every)
    state = train.shard_state(experiments.initial_state(exp), mesh)
    state = checkpointer.restore_latest(state) or state  # resume when WORKDIR holds a checkpoint
    buffer = experiments.find_buffer(state.loss_state).samples
    print(f"starting at step {int(state.step)}; replay buffer {buffer.shape}"
          f" split as {buffer.sharding.spec}")

    train_step = train.sharded_train_step(
        ej.make_train_step(exp.loss, exp.optimizer, ema_decay=config.optimizer.ema_decay), mesh,
        state)
    host_batches = exp.data.train_batches(int(state.step))  # the batches from this step on
    batches = (parallel.shard_batch(batch, mesh) for batch in host_batches)
    state, history = ej.fit(train_step, state, batches, run.num_steps, checkpointer=checkpointer,
                            log_every=run.log_every, metrics_path=f"{WORKDIR}/metrics.jsonl",
                            progress=not SMALL)
    print("checkpoints at steps", checkpointer.all_steps())
    '''), md("""
    ## 5. Restore and look

    A new session would restore the latest checkpoint exactly as above; here it is restored
    into the live state's structure and compared with it. Then the replay buffer's samples,
    in colour.
    """), code('''
    restored = checkpointer.restore_latest(state)
    checkpointer.close()
    print("restored step", int(restored.step), "- same parameters as the live state:",
          params_fingerprint(restored.params) == params_fingerprint(state.params))

    images = (np.asarray(experiments.find_buffer(restored.loss_state).samples[:32]) + 1) / 2
    fig, ax = subplots(figsize=(12, 3.2))
    grid = images.reshape(4, 8, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(4 * 32, 8 * 32, 3)
    ax.imshow(grid)  # 4 rows of 8 images
    ax.axis("off"), ax.set_title(f"replay buffer after {int(restored.step)} steps")
    plt.show()
    MOCK.close()  # (SMALL mode: remove the mock data)
    '''), md("""
    `ebm-jax evaluate RUN_DIR` (or `experiments.evaluate_run`) scores a CIFAR-10 model trained
    by `ebm-jax train` (or `experiments.train`) on the papers' OOD sets (SVHN, CIFAR-100,
    CelebA) once they are prepared (`tfds build svhn_cropped cifar100 celeb_a
    --file_format=array_record`).
    """), NEXT]


INFERENCE = header("06_inference_and_thinking.ipynb",
                   "Inference as energy minimisation: predict, rank and think longer", """
    An energy over an input and a candidate output, $E(x, y)$, is low where they are
    compatible; **inference is finding the output that makes it low**,
    $\\hat y = \\arg\\min_y E(x, y)$. Energy-based transformers (Gladstone et al. 2025) learn
    $E$ so that a few gradient steps on $y$ *are* the prediction, with a learned step size,
    trained through the steps; at test time the model can **think longer** (more steps) and
    **verify itself** (best of $N$ by energy).

    This notebook trains such an energy to denoise the 8x8 digits, then walks through
    `ebm_jax.inference`: predict by descent, rank candidates, best-of-$N$, and the thinking
    curve. A CPU runtime is enough (a few minutes; seconds in small mode).
    """) + [SMALL_MD, setup('''
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    import ebm_jax as ej
    from ebm_jax import inference, losses, plots
    from ebm_jax.data import Batches, load_digits

    STEPS = 40 if SMALL else 4000  # training steps
    K = 4                          # descent steps the energy is trained with
    NOISE = 0.3                    # x_noisy = clip(x + 0.3 N(0, I), -1, 1)
    data = load_digits()           # 64 pixels in [-1, 1]
    print("train", data.x_train.shape, "test", data.x_test.shape)
    '''), md("""
    ## 1. An energy over (noisy image, candidate clean image)

    An MLP reads the concatenation $[x, y]$ and returns one number. `losses.ebt` makes the
    prediction $K$ descent steps on $y$ from the noisy image,
    $y_{k+1} = y_k - h\\, \\nabla_y E(x, y_k)$, with the step size $h$ a learned parameter
    (`ebt_params`), and trains the energy through the steps (gradients of gradients).
    **System 2** draws the number of steps per example up to $3K$ (one compiled program: the
    extra steps are masked), jitters the steps and asks the clean image to be a fixed point
    (`stationarity_weight`), so that more steps than trained keep helping; it starts some
    examples from its own earlier predictions (a replay buffer). The calibration term makes
    the energy read as the error, which best-of-$N$ relies on, and the contrastive term with
    other clean digits of the batch as negatives is what lets the energy *rank* candidates
    (without it, the true digit is first no more often than chance).
    """), code('''
    net = ej.nets.pure(ej.nets.MLP(128, (256, 256), 1, rngs=nnx.Rngs(0)))
    energy_fn = lambda p, x, y: net.apply(p, jnp.concatenate([x, y]))[0]  # E(x_noisy, y)
    loss = losses.ebt(energy_fn, num_steps=K, mode="system2", max_steps=3 * K, step_jitter=0.2,
                      start_noise=0.1, replay_capacity=1024, replay_fraction=0.25,
                      stationarity_weight=1.0, calibration_weight=0.1,
                      contrastive_weight=0.1, batch_negatives=8)
    optimizer = optax.adam(1e-3)
    pairs = (losses.denoising_pairs(jax.random.key(s), b["x"], NOISE, clip_range=(-1, 1))
             for s, b in enumerate(Batches(data.x_train, None, 64, seed=0)))
    first = next(pairs)  # step 0's batch: the shapes init needs, then trained on
    state = ej.init_train_state(jax.random.key(0), losses.ebt_params(net.params, 0.1),
                                optimizer, loss, first)
    step = jax.jit(ej.make_train_step(loss, optimizer))
    state, history = ej.fit(step, state, (b for g in ([first], pairs) for b in g), STEPS,
                            progress=not SMALL)
    h = losses.ebt_step_size(state.params)
    print(f"learned step size {float(h):.3f}; final loss {history[-1]['loss']:.4f}")
    '''), md("""
    ## 2. Predict: descend the energy

    `inference.minimize` runs the descent sampler on $y$ for one input (vmap for a batch);
    it returns the prediction and the energies along the way. PSNR is over the test digits
    (peak-to-peak 2).
    """), code('''
    energy = losses.ebt_energy(energy_fn)   # energy(params, x, y) on ebt_params
    test = losses.denoising_pairs(jax.random.key(1), jnp.asarray(data.x_test), NOISE,
                                  clip_range=(-1, 1))
    psnr = lambda y: float(10 * jnp.log10(4.0 / jnp.mean((y - test["y"]) ** 2)))
    descend = jax.jit(jax.vmap(lambda x, y0, n: inference.minimize(
        energy, state.params, x, y0, num_steps=n, step_size=h), (0, 0, None)), static_argnums=2)
    out = descend(test["x"], test["x"], K)
    print(f"PSNR noisy {psnr(test['x']):.2f} dB -> after {K} steps {psnr(out.y):.2f} dB")
    print("mean energy along the descent:", np.round(out.energies.mean(0), 3))
    rows = jnp.concatenate([test["x"][:10], out.y[:10], test["y"][:10]])  # 3 rows of 10
    plots.save_image_grids("denoised.png", {"noisy / denoised / clean": rows}, (8, 8))
    show("denoised.png", width=8)
    '''), md("""
    ## 3. Think longer: the thinking curve

    The same energy, descended for more steps than it was trained with (`losses.ebt_descent`
    keeps every step's prediction: one descent gives the whole curve). A model trained to keep
    the answer a fixed point should not get worse past $K$; the dot marks $K$.
    """), code('''
    think = jax.vmap(lambda x: losses.ebt_descent(energy, state.params, x, x, num_steps=3 * K,
                                                  step_size=h).ys)   # every step's prediction
    path = jax.jit(think)(test["x"])                                    # [N, 3K, 64]
    counts = list(range(1, 3 * K + 1))
    curve = [psnr(path[:, n - 1]) for n in counts]
    plots.save_thinking_curve("thinking.png", {"System 2": (counts, curve)},
                              trained_steps={"System 2": K},
                              baselines={"noisy input": psnr(test["x"])})
    show("thinking.png", width=7)
    print(f"thinking gain, {2 * K} steps against {K}: {curve[2 * K - 1] - curve[K - 1]:+.3f} dB")
    '''), md("""
    ## 4. Best of N: verify by energy

    Start from 8 perturbations of the noisy image and keep the descent that ends at the lowest
    energy (`inference.best_of_n`); a random pick of the 8 is the baseline.
    """), code('''
    starts = lambda x: (lambda key: x + 0.2 * jax.random.normal(key, x.shape))
    pick = jax.jit(jax.vmap(lambda key, x: inference.best_of_n(
        key, energy, state.params, x, starts(x), 8, num_steps=K, step_size=h)))
    best = pick(jax.random.split(jax.random.key(2), len(test["x"])), test["x"])
    print(f"best of 8 by energy {psnr(best.y):.2f} dB, "
          f"a random one of the 8 {psnr(best.results.y[:, 0]):.2f} dB")
    '''), md("""
    ## 5. Rank: which candidate is most compatible?

    For each noisy digit, the clean one against 9 other test digits: `inference.rank` orders
    the candidates by $E(x_{noisy}, y)$, lowest first.
    """), code('''
    n = len(test["x"])
    others = (jnp.arange(n)[:, None] + jnp.arange(10)[None] * 7) % n  # candidate 0 = the truth
    rank_one = jax.jit(jax.vmap(lambda x, c: inference.rank(energy, state.params, x, c).order[0]))
    first_choice = rank_one(test["x"], test["y"][others])
    print(f"the true clean digit ranks first for {float(jnp.mean(first_choice == 0)):.1%} "
          "of the noisy inputs (chance: 10%)")
    '''), md("""
    `python benchmarks/inference.py` measures all of this over 3 seeds, beside a feed-forward
    denoiser of the same size, and the multimodal `ebt_branches` task, where descent from
    different starts lands on different answers while a regressor averages them (the
    README's table).
    """), NEXT]


WORLD = header("07_world_models_and_policies.ipynb",
               "World models and policies by energy minimisation", """
    Where the future has two outcomes, a regressor trained with squared error predicts their
    **average**, which is neither. An energy over (context, future), $E(x, y)$, can keep both
    as low-energy basins and **pick one** by descending the energy from noise; the energy of
    the pick then says how sure the model is. Two systems of that kind, trained as
    energy-based transformers (`losses.ebt`: a few learned-step descent steps *are* the
    prediction):

    * a **world model** (Gladstone et al. 2024): $E$(last two frames, next frame) on 12x12
      frames of a ball that goes up or down at random at a fork, rolled out for 10 steps;
    * a **policy** (EBT-Policy, Davies et al. 2025; implicit behavioural cloning, Florence et
      al. 2021): $E$(position and goal, next 4 moves) from demonstrations that pass an obstacle
      above or below with equal probability, acting by 2 descent steps from noise.

    Each trains beside a feed-forward twin of the same size on the same batches (an MSE
    next-frame predictor, a behavioural-cloning MLP), in one run of the objective registry
    (`ebm-jax train --config world_model_ball_fork`, `--config ebt_policy_reach`). A CPU
    runtime is enough (about 5 minutes each; seconds in small mode).
    """) + [SMALL_MD, setup('''
    import json

    from ebm_jax import experiments

    # Small mode: a few steps of small networks (numbers meaningless); else the presets.
    SMALL_RUN = ["run.num_steps=40", "run.eval_every=40", "run.checkpoint_every=40",
                 "model.hidden=32,32", "objective.num_steps=2", "objective.num_starts=4",
                 "objective.eval_episodes=10"]
    OVERRIDES = SMALL_RUN if SMALL else []
    '''), md("""
    ## 1. A world model of a ball at a fork

    The objective `world_model` trains the energy (EBT with a contrastive term: other frames of
    the batch as negatives, so that each way is a basin, and the frames a search from noise
    finds, so that no spurious basin, such as both ways drawn at once, stays lower than the
    true frames) and the MSE predictor together. Its
    evaluation judges every predicted frame with the environment's own check (one ball, on one
    of the two true paths), at the fork and along 10-step rollouts.
    """), code('''
    config = experiments.make_config("world_model_ball_fork", OVERRIDES)
    world = experiments.train(config, "runs/world_model", progress=not SMALL)
    for key in ("valid_frame_rate", "valid_frame_rate_mse", "rollout_valid_rate",
                "rollout_valid_rate_mse", "fork_branch_shares", "failure_auroc"):
        print(f"{key:24s} {world[key]}")
    '''), md("""
    The picture: at the fork, the two context frames, the energy's prediction (best of
    $N$ descents from noise, the lowest energy kept) and the MSE prediction (two faint
    half-balls: the average of the two ways); then rollouts of both.
    """), code('''
    show("runs/world_model/predictions.png")
    '''), md("""
    ## 2. A policy round an obstacle

    The objective `ebt_policy` runs the reach task's simulator: episodes from the demonstrated
    starts, from starts nearer the obstacle, and toward goals beyond the demonstrated ones.
    The behavioural-cloning MLP averages "above" and "below" and drives into the obstacle.
    """), code('''
    config = experiments.make_config("ebt_policy_reach", OVERRIDES)
    policy = experiments.train(config, "runs/policy", progress=not SMALL)
    for key in ("success_rate", "success_rate_bc", "success_rate_shifted",
                "success_rate_bc_shifted", "success_rate_goal_shifted", "failure_auroc"):
        print(f"{key:26s} {policy[key]}")
    print("success by inference steps:", json.dumps(policy["success_by_steps"]))
    show("runs/policy/predictions.png")
    '''), md("""
    ## 3. The energy as a confidence

    `failure_auroc` is the AUROC of the energy for failures against successes: of each
    single descent's prediction for the world model (an invalid frame;
    `failure_auroc_best_of_n` is the same over the best-of-$N$ picks, which fail so rarely
    that it rests on a handful of frames), of the highest energy among an episode's chosen
    chunks for the policy (an episode that failed). Above 0.5, high energy means "likely
    wrong". `python benchmarks/world_models.py` measures all of this over
    3 seeds (the README's table).
    """), NEXT]


# ------------------------------------------------------------------ 08 tabular augmentation

TABULAR = header("08_tabular_augmentation.ipynb",
                 "Tabular augmentation with one energy per class (TabEBM)", '''
    With a few dozen rows, a classifier sometimes generalises better when it trains on the real
    rows plus synthetic ones. TabEBM (Margeloiu et al., NeurIPS 2024) gives **each class its own
    energy**: the class's standardised rows against a few surrogate negatives at the corners of
    a hypercube, a real-vs-surrogate classifier whose logits read as
    $E_c(x) = -\\log\\sum \\exp f_c(x)$, and SGLD chains started at jittered rows of the class.
    Here the classifier is a training-free Gaussian-kernel classifier (the paper uses TabPFN,
    whose weights are not downloadable everywhere; `in_context_backend` takes yours).

    This notebook writes a small CSV, augments it (what `ebm-jax tabular augment` does), plots
    real against synthetic rows, and measures the downstream gain with the paper's protocol.
    A CPU runtime is enough (a few minutes; seconds in small mode).
    ''') + [SMALL_MD, setup('''
    import pandas as pd
    from sklearn.datasets import load_wine

    from ebm_jax import plots
    from ebm_jax.applications.tabular.evaluation import evaluate_split, stratified_split
    from ebm_jax.experiments.tabular import augment_csv

    SEEDS = 1 if SMALL else 10  # splits of the protocol
    METHODS = (["real", "jitter", "tabebm_kernel_pooled_langevin"] if SMALL else
               ["real", "jitter", "smote", "tabebm_kernel", "tabebm_kernel_pooled_langevin"])
    '''), md('''
    ## 1. A small CSV

    Thirty rows of scikit-learn's wine table (three cultivars, 13 chemical measurements),
    drawn stratified, written as a CSV with the class as a string column.
    '''), code('''
    X, y = load_wine(return_X_y=True, as_frame=True)
    X_rows, y_rows, _, _ = stratified_split(X.to_numpy(), y.to_numpy(), 30, seed=0)
    table = pd.DataFrame(X_rows, columns=X.columns).assign(cultivar=[f"c{c}" for c in y_rows])
    table.to_csv("wine_small.csv", index=False)
    table.head()
    '''), md('''
    ## 2. Augment it

    One energy per cultivar, 50 synthetic rows each, written with the input's columns and
    dtypes. The command's default is the best setting measured by the paper's protocol: a kernel
    bandwidth per feature from the cultivars' pooled spread (`bandwidth="scott_pooled"`), sampled
    in the temperature form (`noise_scale=None`, so that the chains sample each class's kernel
    density). From a shell: `ebm-jax tabular augment wine_small.csv --target cultivar
    --per-class 50 --out wine_synthetic.csv`.
    '''), code('''
    written = augment_csv("wine_small.csv", "cultivar", per_class=50, out="wine_synthetic.csv")
    synthetic = pd.read_csv("wine_synthetic.csv")
    print(written)
    synthetic.head()
    '''), md('''
    Real rows (dots) and synthetic rows (crosses) of three features, one colour a cultivar.
    In the temperature form the chains sample each class's kernel density, so the synthetic
    rows spread around the real ones with each feature's own width; under the paper's sampler
    (`sampler="paper"`: step 0.1, noise 0.01, 200 steps) they settle near the density's modes,
    close to the real rows.
    '''), code('''
    features = ["alcohol", "flavanoids", "color_intensity"]
    plots.save_pair_plot("pairs.png", table[features], table["cultivar"], synthetic[features],
                         synthetic["cultivar"])
    show("pairs.png")
    '''), md('''
    ## 3. Does it help a classifier?

    The protocol: 20 stratified training rows, the rest of the table for testing, 50 synthetic
    rows a class, four scikit-learn classifiers scored by balanced accuracy, against real rows
    alone, simple jitter and SMOTE, and the paper's sampler with one spherical bandwidth
    (`tabebm_kernel`). `python benchmarks/tabular.py` runs it over three tables, three sizes
    and ten seeds (the README's table: +1.2 points at 20 rows for the pooled setting, about 0 on
    wine alone, where every other generator loses).
    '''), code('''
    rows = []
    for seed in range(SEEDS):
        rows += evaluate_split("wine", X.to_numpy(), y.to_numpy(), 20, seed, methods=METHODS)
    scores = pd.DataFrame(rows).pivot_table("balanced_accuracy", "method", "classifier")
    scores.assign(mean=scores.mean(axis=1)).round(3)
    '''), NEXT]


NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_jem_digits.ipynb": JEM,
    "03_nce_and_recovery_likelihood_2d.ipynb": TOYS,
    "04_composition_and_inpainting.ipynb": COMPOSE,
    "05_scaling_up.ipynb": SCALE,
    "06_inference_and_thinking.ipynb": INFERENCE,
    "07_world_models_and_policies.ipynb": WORLD,
    "08_tabular_augmentation.ipynb": TABULAR,
}


def notebook(cells: list[dict], gpu: bool) -> dict:
    colab = {"provenance": [], "toc_visible": True}
    metadata = {"colab": colab,
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"}}
    if gpu:
        metadata["accelerator"] = "GPU"
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def build_all() -> dict[str, dict]:
    """Every notebook as nbformat-4 JSON, by file name."""
    built = {}
    for name, cells in NOTEBOOKS.items():
        cells = [dict(cell, id=f"{name[:2]}-{i:02d}") for i, cell in enumerate(cells)]
        built[name] = notebook(cells, gpu=name.startswith("05"))
    return built


def main() -> None:
    for name, content in build_all().items():
        path = os.path.join(HERE, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
