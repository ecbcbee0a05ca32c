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
"""
from ebm_jax import (
    applications,
    data,
    energies,
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
from ebm_jax.losses import (
    LossTransform,
    combine,
    contrastive_divergence,
    cross_entropy,
    denoising_score_matching,
    jem_hybrid,
    nce,
    nce_params,
    sliced_score_matching,
)
from ebm_jax.samplers import (
    ReplayBuffer,
    Sampler,
    init_buffer,
    langevin,
    run_chain,
    run_chains,
    uniform_init,
)
from ebm_jax.train import (
    Checkpointer,
    TrainState,
    fit,
    init_train_state,
    make_train_step,
    params_fingerprint,
)

__version__ = "0.1.0"

__all__ = [
    "Checkpointer",
    "LossTransform",
    "ReplayBuffer",
    "Sampler",
    "TrainState",
    "applications",
    "batch_energy",
    "combine",
    "contrastive_divergence",
    "cross_entropy",
    "data",
    "denoising_score_matching",
    "energies",
    "energy_from_logits",
    "fit",
    "init_buffer",
    "init_train_state",
    "jem_hybrid",
    "joint_energy_from_logits",
    "langevin",
    "losses",
    "make_train_step",
    "metrics",
    "nce",
    "nce_params",
    "nets",
    "params_fingerprint",
    "plots",
    "run_chain",
    "run_chains",
    "samplers",
    "sliced_score_matching",
    "train",
    "uniform_init",
    "with_temperature",
]
