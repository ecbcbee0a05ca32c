"""The jitted train step is traced and compiled once: new params and new batches reuse it.

A training loop calls ``jax.jit(make_train_step(...))`` thousands of times with a new state
and a new batch each time. If anything in the state changed its type from one step to the
next (a weak-typed scalar turning strong, a Python number where an array was, a dtype that
drifts), every call would retrace and recompile, and training would run at compile speed
without any error. Here the step counts its own traces (a Python side effect runs once per
trace, never when the compiled program runs) and the jit's cache is asked for its size.

The second half shows the count is not blind: a batch of another dtype or shape, or a
Python scalar in the state, does retrace.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.losses import contrastive_divergence, cross_entropy
from ebm_jax.nets import MLP, as_energy_fn, pure
from ebm_jax.samplers import langevin, replay_buffer_start
from ebm_jax.train.state import init_train_state
from ebm_jax.train.step import make_train_step

pytestmark = pytest.mark.fast_compile  # small programs: the test is about compiling once

D, K, B = 4, 3, 8


def cd_setup():
    model = as_energy_fn(MLP(D, (16,), 1, rngs=nnx.Rngs(0)))
    sampler = langevin(model.apply, step_size=0.1, noise_scale=0.01)
    loss = contrastive_divergence(model.apply, sampler, num_steps=3,
                                  chain_start=replay_buffer_start(capacity=32))
    return model.params, loss


def ce_setup():
    model = pure(MLP(D, (16,), K, rngs=nnx.Rngs(0)))
    return model.params, cross_entropy(model.apply)


SETUPS = {"contrastive_divergence": cd_setup, "cross_entropy": ce_setup}


def batch(seed, dtype=jnp.float32, size=B):
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    return {"x": jax.random.normal(kx, (size, D)).astype(dtype),
            "y": jax.random.randint(ky, (size,), 0, K)}


def counted_step(loss, optimizer):
    """``jax.jit(train_step, donate_argnums=0)`` and the list its traces append to."""
    traces = []
    train_step = make_train_step(loss, optimizer)

    def step(state, batch):
        traces.append(jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)), batch))
        return train_step(state, batch)

    return jax.jit(step, donate_argnums=0), traces


def fresh_state(name, seed):
    params, loss = SETUPS[name]()
    params = jax.tree.map(lambda p: p + 0.01 * seed, params)  # other values, same shapes
    optimizer = optax.adam(1e-3)
    return init_train_state(jax.random.PRNGKey(seed), params, optimizer, loss, batch(0)), loss, \
        optimizer


@pytest.mark.parametrize("name", [  # contrastive divergence's chains: about 1 s
    pytest.param(name, marks=pytest.mark.slow) if name == "contrastive_divergence" else name
    for name in SETUPS])
def test_new_params_and_new_batches_do_not_retrace(name):
    state, loss, optimizer = fresh_state(name, 0)
    step, traces = counted_step(loss, optimizer)
    losses = []
    for i in range(4):  # the state returned by the step, and a new batch, every time
        state, metrics = step(state, batch(i))
        losses.append(float(metrics["loss"]))
    assert len(traces) == 1, traces
    # A new state from other params and another key (a restart, another seed).
    other, _, _ = fresh_state(name, 1)
    _, metrics = step(other, batch(7))
    assert len(traces) == 1, traces
    assert step._cache_size() == 1
    # The compiled program did run each time: the losses differ from batch to batch.
    assert np.all(np.isfinite(losses)) and len(set(losses)) == len(losses)


@pytest.mark.parametrize("change", ["batch_dtype", "batch_size", "python_scalar_step"])
def test_the_count_sees_a_retrace(change):
    state, loss, optimizer = fresh_state("cross_entropy", 0)
    step, traces = counted_step(loss, optimizer)
    state, _ = step(state, batch(0))
    assert len(traces) == 1
    if change == "batch_dtype":
        step(state, batch(1, dtype=jnp.bfloat16))
    elif change == "batch_size":
        step(state, batch(1, size=B + 1))
    else:  # a Python int where the step keeps an int32 array: a weak type, another program
        step(state._replace(step=int(state.step)), batch(1))
    assert len(traces) == 2, traces
    assert step._cache_size() == 2


def _guard_checks_in_program(num_layers):
    """``is-finite`` instructions in the compiled train step (divergence guard on) of a
    cross-entropy MLP with ``num_layers`` hidden layers."""
    model = pure(MLP(D, (8,) * num_layers, K, rngs=nnx.Rngs(0)))
    loss = cross_entropy(model.apply)
    optimizer = optax.adam(1e-3)
    state = init_train_state(jax.random.PRNGKey(0), model.params, optimizer, loss, batch(0))
    step = jax.jit(make_train_step(loss, optimizer), donate_argnums=0)
    return step.lower(state, batch(0)).compile().as_text().count("is-finite(")


def test_the_guards_verdict_is_computed_once_not_per_parameter():
    """The guard rolls every leaf of the state back on one verdict (``diverged``, from a few
    finiteness checks and comparisons). XLA copies a cheap scalar's computation into every
    fusion that reads it, so unless the verdict is materialised once, each leaf's select
    carries its own copy of the checks: measured, twice the compiled step's instructions
    and about 7% more compile time (median over the 35 slowest presets). The checks in the
    program must not grow with the number of parameter arrays (each hidden layer adds 2
    parameter leaves and 4 of Adam's moments; measured with the checks copied: 63 for 1
    layer, 183 for 6)."""
    few, many = _guard_checks_in_program(1), _guard_checks_in_program(6)
    assert many == few, (few, many)
