"""Tests of ``init_train_state`` and ``make_train_step``: the one jitted training step."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.data import Batches, load_digits
from ebm_jax.energies import energy_from_logits
from ebm_jax.losses import contrastive_divergence, jem_hybrid
from ebm_jax.nets import MLP, pure
from ebm_jax.samplers import langevin, replay_buffer_start
from ebm_jax.train.state import TrainState, init_train_state
from ebm_jax.train.step import make_train_step

# Small programs that run a few times (the JEM run: 200 steps of a 64-32-10 MLP): compiling is
# their cost. See the fast_compile marker in tests/conftest.py.
pytestmark = pytest.mark.fast_compile

# Deterministic CD on E(x) = 0.5 |x - mu|^2: every chain restarts (reinit_prob = 1) from
# the constant 0 and runs K noise-free steps of size H, so every negative sample is
# x_s = (1 - (1 - H)^K) mu and the CD gradient is the key-independent x_s - mean(x_data)
# at every training step (see test_losses.py).
H, K = 0.1, 5
SHRINK = (1 - H) ** K


def deterministic_cd(energy_fn):
    sampler = langevin(energy_fn, step_size=H, noise_scale=0.0)
    return contrastive_divergence(energy_fn, sampler, num_steps=K,
                                  chain_start=replay_buffer_start(
                                      capacity=64, init_fn=lambda k, shape: jnp.zeros(shape),
                                      reinit_prob=1.0))


def quadratic(params, x):
    return 0.5 * jnp.sum((x - params["mu"]) ** 2)


def data_batch():
    return {"x": 2.0 + 0.5 * jax.random.normal(jax.random.PRNGKey(0), (16, 2))}


def snapshot(tree):
    """Host copies: the jitted step donates (deletes) its input state's buffers."""
    return jax.tree.map(np.array, tree)


def test_train_step_updates_every_field():
    lr = 0.1
    loss, opt, batch = deterministic_cd(quadratic), optax.sgd(lr), data_batch()
    params = {"mu": jnp.array([0.5, -0.3])}
    state = init_train_state(jax.random.PRNGKey(0), params, opt, loss, batch)
    assert isinstance(state, TrainState) and int(state.step) == 0
    step = jax.jit(make_train_step(loss, opt, guard=None), donate_argnums=0)
    keys = []
    for i in range(3):
        before = snapshot(state)
        state, metrics = step(state, batch)
        assert int(state.step) == i + 1
        keys.append(np.asarray(state.rng_key))
        assert not np.array_equal(keys[-1], before.rng_key)
        # One SGD update by the exact CD gradient x_s - mean(x): a skipped update, a
        # flipped sign or a detached gradient all miss it.
        mu = before.params["mu"]
        grad = (1 - SHRINK) * mu - np.asarray(batch["x"]).mean(0)
        np.testing.assert_allclose(state.params["mu"], mu - lr * grad, rtol=1e-5)
        np.testing.assert_allclose(metrics["grad_norm"], np.linalg.norm(grad), rtol=1e-5)
        # The buffer received the chain ends.
        assert not np.array_equal(np.asarray(state.loss_state.buffer.samples),
                                  before.loss_state.buffer.samples)
    assert len({k.tobytes() for k in keys}) == 3
    assert set(metrics) == {"loss", "grad_norm", "energy_data", "energy_sample",
                            "sample_grad_norm", "nonfinite_steps"}
    assert all(np.shape(v) == () for v in metrics.values())


def test_init_train_state_accepts_raw_and_typed_keys():
    loss, opt, batch = deterministic_cd(quadratic), optax.adam(1e-2), data_batch()
    params = {"mu": jnp.zeros(2)}
    raw = init_train_state(jax.random.PRNGKey(7), params, opt, loss, batch)
    typed = init_train_state(jax.random.key(7), params, opt, loss, batch)
    assert raw.rng_key.dtype == jnp.uint32 and raw.rng_key.shape == (2,)
    np.testing.assert_array_equal(raw.rng_key, typed.rng_key)
    np.testing.assert_array_equal(raw.loss_state.buffer.samples, typed.loss_state.buffer.samples)
    assert raw.loss_state.buffer.samples.shape == (64, 2)


def test_train_step_compiles_once():
    traces = []

    def energy(params, x):
        traces.append(1)  # Python side effect: runs at trace time only
        return quadratic(params, x)

    loss, opt = deterministic_cd(energy), optax.adam(1e-2)
    batch = data_batch()
    state = init_train_state(jax.random.PRNGKey(0), {"mu": jnp.zeros(2)}, opt, loss, batch)
    step = jax.jit(make_train_step(loss, opt), donate_argnums=0)
    state, _ = step(state, batch)
    n_traces = len(traces)
    assert n_traces > 0
    for i in range(4):
        # New data each step (same shape) must not re-trace either.
        state, _ = step(state, {"x": batch["x"] + i})
    assert len(traces) == n_traces, "the train step was re-traced"
    assert int(state.step) == 5
    # Control: the counter does see a re-trace (a batch of a new shape must re-trace). Lowering
    # traces as a call would, without compiling the program.
    step.lower(state, {"x": batch["x"][:8]})
    assert len(traces) > n_traces


@pytest.mark.slow
def test_jem_on_digits_learns_to_classify():
    """200 JEM steps (MLP 64-32-10, SGLD 5 steps, 256-slot buffer) on the 1,437 training
    digits. Chance accuracy is 0.1 (a random classifier: 0.10 +- 0.008 on 1,437 images)
    and the untrained net scores ~0.06; a working run reaches ~0.85 (Adam 3e-3), so 0.5
    is a clear margin on both sides. A detached gradient or skipped optimizer update
    leaves the accuracy at its initial value."""
    data = load_digits()
    model = pure(MLP(64, (32,), 10, rngs=nnx.Rngs(0)))
    sampler = langevin(energy_from_logits(model.apply), step_size=1.0, noise_scale=0.01)
    loss = jem_hybrid(model.apply, sampler, num_steps=5,
                      chain_start=replay_buffer_start(capacity=256, reinit_prob=0.05))
    opt = optax.adam(3e-3)
    batches = Batches(data.x_train, data.y_train, 64, seed=0)
    state = init_train_state(jax.random.PRNGKey(0), model.params, opt, loss, next(batches))
    buffer0 = np.array(state.loss_state["generative"].buffer.samples)
    step = jax.jit(make_train_step(loss, opt), donate_argnums=0)

    @jax.jit
    def accuracy(params, x, y):
        logits = jax.vmap(model.apply, in_axes=(None, 0))(params, x)
        return jnp.mean(jnp.argmax(logits, -1) == y)

    initial = float(accuracy(state.params, data.x_train, data.y_train))
    for _ in range(200):
        state, metrics = step(state, next(batches))
    final = float(accuracy(state.params, data.x_train, data.y_train))
    assert initial < 0.2
    assert final > 0.5, f"training accuracy {final:.3f} (initial {initial:.3f})"
    assert int(state.step) == 200
    assert int(metrics["generative/nonfinite_steps"]) == 0
    assert np.isfinite(float(metrics["loss"]))
    # The generative term ran: the replay buffer holds SGLD samples, not its U(-1, 1) start.
    buffer = np.asarray(state.loss_state["generative"].buffer.samples)
    assert np.mean(np.any(buffer != buffer0, axis=1)) > 0.9


@pytest.mark.slow
def test_ema_params_follow_the_exponential_moving_average():
    optimizer = optax.sgd(0.1)
    loss = deterministic_cd(quadratic)
    init = {"mu": jnp.zeros(2)}
    state = init_train_state(jax.random.PRNGKey(0), init, optimizer, loss, data_batch())
    decay = 0.9
    step = jax.jit(make_train_step(loss, optimizer, ema_decay=decay))
    ema = np.zeros(2)
    for _ in range(5):
        state, _ = step(state, data_batch())
        ema = decay * ema + (1 - decay) * np.asarray(state.params["mu"])
    np.testing.assert_allclose(state.ema_params["mu"], ema, rtol=1e-5, atol=1e-7)
    assert not np.allclose(state.ema_params["mu"], state.params["mu"])
    # Without a decay the average is the current params. (Donating, this is the program of
    # test_train_step_updates_every_field, read back from the compilation cache.)
    plain = jax.jit(make_train_step(loss, optimizer), donate_argnums=0)
    state, _ = plain(state, data_batch())
    np.testing.assert_array_equal(state.ema_params["mu"], state.params["mu"])


def test_ema_decay_out_of_range():
    import pytest

    with pytest.raises(ValueError, match=r"ema_decay=1.0: expected a value in \[0, 1\)"):
        make_train_step(deterministic_cd(quadratic), optax.sgd(0.1), ema_decay=1.0)
