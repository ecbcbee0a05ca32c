"""Stabilisers against EBM blow-ups, each where its absence is measurably worse.

- gradient clipping (``optimizer.clip_grad_norm``, an ``optax.clip_by_global_norm`` before
  the optimizer): bounds the update; keeps a too-large learning rate inside the
  divergence guard;
- energy L2 (``objective.energy_l2``): adds ``α (E_data² + E_sample²)``; keeps the energies
  bounded when the sampler cannot reach the data;
- spectral normalisation (``model.spectral_norm``): every kernel's largest singular
  value near 1 (within the power iteration's bound), so the energy's input
  gradient is bounded by the product of the layer norms;
- sample clamping (``objective.sampler.clamp``: ``clip_range``) and SGLD gradient clipping
  (``objective.sampler.grad_clip``): chains stay in range, or move a bounded distance a step,
  with a step size that sends unclamped chains to infinity.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.experiments import make_config, make_optimizer
from ebm_jax.losses import LossTransform, contrastive_divergence
from ebm_jax.nets import MLP, pure, spectral_normalize
from ebm_jax.samplers import langevin, replay_buffer_start
from ebm_jax.samplers.replay_buffer import uniform_init
from ebm_jax.train import DivergenceGuard, init_train_state, make_train_step

# Short runs of small programs, mostly compilation, and bounds rather than fingerprints: see
# the fast_compile marker in tests/conftest.py.
pytestmark = pytest.mark.fast_compile

def _run_guarded(train_step, state, batch, num_steps):
    """``num_steps`` guarded steps as one jitted scan: the final state, the metrics of every
    step and the parameters after every step (stacked along a leading step axis)."""
    def body(state, _):
        state, metrics = train_step(state, batch)
        return state, (metrics, state.params)

    return jax.jit(lambda s: jax.lax.scan(body, s, None, length=num_steps))(state)


# --------------------------------------------------------------------------- gradient clipping


def _sgd_optimizer(*extra):
    config = make_config("jem_digits", ["optimizer.kind=sgd", *extra])
    return make_optimizer(config.optimizer, config.run.num_steps)


@pytest.mark.slow
@pytest.mark.parametrize("clip", [None, 2.0])
def test_clip_grad_norm_bounds_the_update_of_a_huge_gradient(clip):
    extra = [] if clip is None else [f"optimizer.clip_grad_norm={clip}"]
    optimizer = _sgd_optimizer("optimizer.learning_rate=0.5", *extra)
    params = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    grads = {"a": jnp.array([3e6, -4e6, 0.0]), "b": jnp.full((2, 2), 1e6)}  # norm ~5.4e6
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    norm = float(optax.tree.norm(updates))
    if clip is None:
        np.testing.assert_allclose(norm, 0.5 * float(optax.tree.norm(grads)), rtol=1e-5)
    else:
        np.testing.assert_allclose(norm, 0.5 * clip, rtol=1e-5)  # lr x clip, whatever the gradient


def _quadratic():
    """L(θ) = θ²/2 with an "energy" θ²; SGD with momentum 0.9 is stable on it for rates below
    2 (1 + 0.9) = 3.8: at 5 |θ| grows without bound."""
    def loss(params, state, batch, rng_key):
        theta = params["theta"]
        return 0.5 * jnp.sum(theta**2), (state, {"energy_data": jnp.sum(theta**2)})

    return LossTransform(lambda key, params, batch: (), loss)


@pytest.mark.parametrize("clip", [None, 1.0])
def test_clip_grad_norm_keeps_a_too_large_rate_inside_the_guard(clip):
    extra = [] if clip is None else [f"optimizer.clip_grad_norm={clip}"]
    optimizer = _sgd_optimizer("optimizer.learning_rate=5.0", *extra)
    params = {"theta": jnp.ones((1,))}
    state = init_train_state(jax.random.PRNGKey(0), params, optimizer, _quadratic(), {"x": 0})
    guard = DivergenceGuard(max_abs_energy=100.0)
    state, (metrics, _) = _run_guarded(make_train_step(_quadratic(), optimizer, guard=guard),
                                       state, {"x": jnp.zeros(())}, 100)
    diverged = int(jnp.sum(metrics["diverged"]))
    if clip is None:
        assert diverged > 50  # the guard refuses step after step
    else:
        # A clipped heavy-ball step moves θ by at most 5 x 1 / (1 - 0.9) = 50, and the
        # oscillation settles at |θ| <= 4: the guard never fires.
        assert diverged == 0 and float(state.params["theta"][0]) ** 2 < 100.0


# --------------------------------------------------------------------------- energy L2


def _linear_energy(params, x):
    return params["w"] @ x + params["b"]


def _cd(energy_l2):
    """CD on data at (3, 3) with chains clamped to [-1, 1]^2: the samples never reach the data,
    so the maximum-likelihood term w·(mean x_data - mean x_sample) is unbounded below in w."""
    sampler = langevin(_linear_energy, step_size=0.1, noise_scale=0.01, clip_range=(-1.0, 1.0))
    return contrastive_divergence(_linear_energy, sampler, num_steps=3, energy_l2=energy_l2,
                                  chain_start=replay_buffer_start(
                                      capacity=64, init_fn=uniform_init(-1.0, 1.0)))


def _cd_batch():
    return {"x": 3.0 + 0.1 * jax.random.normal(jax.random.PRNGKey(1), (16, 2))}


@pytest.mark.slow
def test_energy_l2_adds_its_gradient_term_and_keeps_energies_inside_the_guard():
    lr, alpha = 0.05, 0.5  # lr x the regulariser's curvature (~19) < 2: stable
    guard = DivergenceGuard(max_abs_energy=20.0)
    params = {"w": jnp.array([0.3, -0.1]), "b": jnp.asarray(1.5)}
    runs = {}
    for energy_l2 in (0.0, alpha):
        loss, optimizer = _cd(energy_l2), optax.sgd(lr)
        state = init_train_state(jax.random.PRNGKey(0), params, optimizer, loss, _cd_batch())
        runs[energy_l2] = _run_guarded(make_train_step(loss, optimizer, guard=guard), state,
                                       _cd_batch(), 60)
    # E = w·x + b, so ∂E/∂b = 1: the maximum-likelihood term has no b gradient, and the
    # regulariser α (mean E_d² + mean E_s²) adds exactly 2α (mean E_d + mean E_s) (same key,
    # same samples). The first SGD step moves b by -lr times it.
    (_, (first, params_0)), (final, (metrics, params_l2)) = runs[0.0], runs[alpha]
    term = 2 * alpha * (metrics["energy_data"][0] + metrics["energy_sample"][0])
    assert abs(float(term)) > 1.0  # not negligible here
    np.testing.assert_allclose(params_l2["b"][0] - params_0["b"][0], -lr * term, rtol=1e-4)
    # Unregularised, w moves along -(mean x_data - mean x_sample) ~ -(2, 2) at every step:
    # E_data passes -20 after ~30 of the 60 steps and the guard refuses the steps from then on.
    assert float(jnp.sum(first["diverged"])) > 0
    # Regularised, the loss is bounded below; at its minimum |E_data| ~ 1 / (2α) = 1.
    energies = jax.vmap(_linear_energy, (None, 0))(final.params, _cd_batch()["x"])
    assert float(jnp.sum(metrics["diverged"])) == 0 and float(jnp.max(jnp.abs(energies))) < 3.0


# --------------------------------------------------------------------------- spectral norm


POWER_ITERATIONS = 3  # SNLinear's default


def _sigma_bound(kernel, u0, num_iterations):
    """The largest singular value of ``kernel / estimate`` lies in [1, bound]: the estimate is
    v·W u = |Wᵀv| >= |W u_{k-1}| >= σ1 cos θ_{k-1} (and <= σ1), where θ_j, the angle of the
    j-th iterate to the top right singular vector, has tan θ_j <= (σ2/σ1)^{2j} tan θ_0."""
    _, s, vt = np.linalg.svd(np.asarray(kernel, np.float64), full_matrices=False)
    if len(s) == 1:  # one output: the iteration is exact
        return 1.0
    u0 = np.asarray(u0, np.float64) / np.linalg.norm(u0)
    cos0 = abs(vt[0] @ u0)
    tan = np.sqrt(1.0 - cos0**2) / cos0 * (s[1] / s[0]) ** (2 * (num_iterations - 1))
    return np.sqrt(1.0 + tan**2)


def _blown_up_net(spectral_norm):
    """A 2-32-32-1 leaky-ReLU MLP (Lipschitz-1 activations) whose kernels drifted from their
    initial values and grew 100x, as weights do in a run that is blowing up."""
    net = MLP(2, (32, 32), 1, activation="leaky_relu", spectral_norm=spectral_norm,
              rngs=nnx.Rngs(0))
    keys = jax.random.split(jax.random.PRNGKey(3), len(net.layers))
    for layer, key in zip(net.layers, keys):
        kernel = layer.linear.kernel[...]
        layer.linear.kernel[...] = 100.0 * (kernel + 0.05 * jax.random.normal(key, kernel.shape))
    return net


@pytest.mark.slow
def test_spectral_norm_keeps_every_layer_near_1_and_bounds_the_input_gradient():
    net = _blown_up_net(spectral_norm=True)
    product = 1.0
    for layer in net.layers:
        kernel, u0 = layer.linear.kernel[...], layer.u0[...]
        assert layer.power_iterations == POWER_ITERATIONS
        normalised = spectral_normalize(kernel, u0, POWER_ITERATIONS)
        sigma = np.linalg.svd(np.asarray(normalised, np.float64), compute_uv=False)[0]
        bound = _sigma_bound(kernel, u0, POWER_ITERATIONS)
        assert bound < 1.1  # the bound is informative for this drift
        assert 1.0 - 1e-5 <= sigma <= bound + 1e-5, (sigma, bound)
        product *= sigma
    # With 1-Lipschitz activations |∇ₓE| <= ∏ σ(W̃_i) <= ∏ bound_i; unnormalised, the same
    # kernels give gradients of the order of 100³.
    xs = jax.random.uniform(jax.random.PRNGKey(4), (64, 2), minval=-3.0, maxval=3.0)

    def max_input_grad(module):
        model = pure(module)
        input_grad = jax.grad(lambda x: model.apply(model.params, x)[0])
        grad = jax.jit(jax.vmap(input_grad))(xs)
        return float(jnp.max(jnp.linalg.norm(grad, axis=-1)))

    assert max_input_grad(net) <= product * (1 + 1e-5)
    plain = MLP(2, (32, 32), 1, activation="leaky_relu", rngs=nnx.Rngs(0))
    for layer, blown in zip(plain.layers, net.layers):
        layer.linear.kernel[...] = blown.linear.kernel[...]
    assert max_input_grad(plain) > 1e3 * product


@pytest.mark.slow
def test_spectral_norm_is_exposed_through_the_config():
    from ebm_jax.experiments.networks import make_network

    for flag in (True, False):
        config = make_config("cd_2d_8gaussians",
                             [f"model.spectral_norm={str(flag).lower()}", "model.hidden=8,8"])
        net = make_network(config.model, 2, None, 1, nnx.Rngs(0))
        assert [layer.spectral_norm for layer in net.layers] == [flag] * len(net.layers)


# --------------------------------------------------------------------------- SGLD stabilisers


def _explosive_energy(params, x):
    """E = a |x|²/2: an SGLD step of size 5 maps x to (1 - 5a) x = -4x for a = 1."""
    return 0.5 * params["a"] * jnp.sum(x**2)


SGLD_STABILISERS = {"none": {}, "clamp": {"clip_range": (-1.0, 1.0)},
                    "grad_clip": {"grad_clip": 0.01}}


@pytest.mark.slow
@pytest.mark.parametrize("stabiliser", sorted(SGLD_STABILISERS))
def test_sgld_stabilisers_keep_chains_bounded_and_a_cd_step_inside_the_guard(stabiliser):
    sampler = langevin(_explosive_energy, step_size=5.0, noise_scale=0.01,
                       **SGLD_STABILISERS[stabiliser])
    loss = contrastive_divergence(_explosive_energy, sampler, num_steps=15,
                                  chain_start=replay_buffer_start(
                                      capacity=64, reinit_prob=0.0,
                                      init_fn=uniform_init(-1.0, 1.0)))
    optimizer = optax.sgd(1e-3)
    batch = {"x": jax.random.uniform(jax.random.PRNGKey(1), (16, 2), minval=-1.0, maxval=1.0)}
    state = init_train_state(jax.random.PRNGKey(0), {"a": jnp.asarray(1.0)}, optimizer, loss,
                             batch)
    step = jax.jit(make_train_step(loss, optimizer, guard=DivergenceGuard()))
    new, metrics = step(state, batch)
    # The chains start in [-1, 1]^2 (the buffer's init).
    reach = float(jnp.max(jnp.abs(new.loss_state.buffer.samples)))
    if stabiliser == "none":
        # 15 steps of x -> -4x: sample energies ~4^30 > 1e8, and the guard refuses the step.
        assert float(metrics["energy_sample"]) > 1e8 and float(metrics["diverged"]) == 1.0
        return
    assert float(metrics["diverged"]) == 0.0
    if stabiliser == "clamp":
        assert reach <= 1.0
    else:
        # Each step moves at most step x clip = 0.05 plus the noise (|0.01 ε| < 0.06).
        assert reach <= 1.0 + 15 * (5.0 * 0.01 + 0.06)
