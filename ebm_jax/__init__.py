"""ebm_jax: a JAX toolkit for deep energy-based models.

Compose pure functions: an energy ``energy_fn(params, x)``, a sampler
(``init/step``), a loss transform (``init/loss``) and an optax optimizer, and
get one jitted train step::

    import ebm_jax as ej
    model = ej.nets.pure(ej.nets.MLP(64, (256, 256), 10, rngs=nnx.Rngs(0)))
    energy = ej.energy_from_logits(model.apply)            # JEM: E(x) = -logsumexp f(x)
    sampler = ej.langevin(energy, step_size=1.0, noise_scale=0.01, clip_range=(-1, 1))
    loss = ej.jem_hybrid(model.apply, sampler, num_steps=20)
    optimizer = optax.adam(1e-3)
    state = ej.init_train_state(jax.random.key(0), model.params, optimizer, loss, batch)
    train_step = jax.jit(ej.make_train_step(loss, optimizer), donate_argnums=0)

At the top level: the samplers (``langevin``, ``mala``, ``hmc``, ``annealed_langevin``,
``descent``, the ``*_kernel`` builders that take the step size as an argument, and
``init_chains``/``run_chain``/``run_chains``, and ``sample_chain``/``sample_chains`` that
record ``Draws``), the chain starts (``replay_buffer_start``,
``data_start``, ``noise_start``, ``ChainStart``), every loss transform (``cross_entropy``,
``jem_hybrid``, ``hdge``, ``contrastive_divergence``, ``nce``, ``denoising_score_matching``,
``sliced_score_matching``, ``recovery_likelihood`` with ``noise_schedule`` and
``progressive_sample``, the adversarial trainings ``pgd_adversarial_training``, ``trades`` and
``weat``, the concept models' ``ecbm_loss`` and ``concept_bottleneck_loss``, GEDI's clustering
``gedi``), the train step, and ``predict`` (a classifier's labels,
probabilities and energies in fixed-size jitted batches). The replay buffer's pure functions live in
their namespace, ``ej.replay_buffer.init_buffer/sample/push``; the subpackages
(``ej.samplers``, ``ej.losses``, ``ej.metrics``, ...) hold the rest.
"""
from ebm_jax import (
    applications,
    data,
    energies,
    inference,
    losses,
    metrics,
    nets,
    plots,
    samplers,
    train,
)
from ebm_jax.energies import (
    batch_energy,
    energy_from_logits,
    joint_energy_from_logits,
    with_temperature,
)
from ebm_jax.inference import predict
from ebm_jax.losses import (
    LossTransform,
    combine,
    concept_bottleneck_loss,
    contrastive_divergence,
    cross_entropy,
    denoising_score_matching,
    ebt,
    ebt_params,
    ecbm_loss,
    gedi,
    hdge,
    jem_hybrid,
    nce,
    nce_params,
    pgd_adversarial_training,
    recovery_likelihood,
    sliced_score_matching,
    trades,
    weat,
)
from ebm_jax.samplers import (
    ChainStart,
    Draws,
    ReplayBuffer,
    Sampler,
    annealed_langevin,
    annealed_sample,
    data_start,
    descent,
    descent_kernel,
    hmc,
    hmc_kernel,
    init_chains,
    langevin,
    langevin_kernel,
    mala,
    mala_kernel,
    noise_schedule,
    noise_start,
    progressive_sample,
    replay_buffer,
    replay_buffer_start,
    run_chain,
    run_chains,
    sample_chain,
    sample_chains,
    uniform_init,
)
from ebm_jax.train import (
    Checkpointer,
    TrainState,
    fit,
    init_train_state,
    make_train_step,
    params_fingerprint,
    setup_training,
)

__version__ = "0.1.0"

__all__ = [
    "ChainStart",
    "Checkpointer",
    "Draws",
    "LossTransform",
    "ReplayBuffer",
    "Sampler",
    "TrainState",
    "annealed_langevin",
    "annealed_sample",
    "applications",
    "batch_energy",
    "combine",
    "concept_bottleneck_loss",
    "contrastive_divergence",
    "cross_entropy",
    "data",
    "data_start",
    "denoising_score_matching",
    "descent",
    "descent_kernel",
    "ebt",
    "ebt_params",
    "ecbm_loss",
    "energies",
    "energy_from_logits",
    "fit",
    "gedi",
    "hdge",
    "hmc",
    "hmc_kernel",
    "inference",
    "init_chains",
    "init_train_state",
    "jem_hybrid",
    "joint_energy_from_logits",
    "langevin",
    "langevin_kernel",
    "losses",
    "make_train_step",
    "mala",
    "mala_kernel",
    "metrics",
    "nce",
    "nce_params",
    "nets",
    "noise_schedule",
    "noise_start",
    "params_fingerprint",
    "pgd_adversarial_training",
    "plots",
    "predict",
    "progressive_sample",
    "recovery_likelihood",
    "replay_buffer",
    "replay_buffer_start",
    "run_chain",
    "run_chains",
    "sample_chain",
    "sample_chains",
    "samplers",
    "setup_training",
    "sliced_score_matching",
    "trades",
    "train",
    "uniform_init",
    "weat",
    "with_temperature",
]
