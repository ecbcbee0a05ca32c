"""Data parallelism on 8 CPU devices: the same numbers as one device, buffers that stay put.

The suite runs with ``jax_num_cpu_devices=8`` (tests/conftest.py).
"""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from ebm_jax.data import Batches
from ebm_jax.experiments import build, initial_state, make_config
from ebm_jax.parallel import MeshError, make_data_mesh, shard_batch
from ebm_jax.samplers import replay_buffer as rb
from ebm_jax.train import (CheckpointMismatchError, Checkpointer, make_train_step, shard_state,
                           sharded_train_step)

NUM_STEPS = 3

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest)")


def _jem(buffer_shards, *extra):
    overrides = [f"objective.chain_start.num_shards={buffer_shards}", "model.hidden=32,32",
                 "objective.chain_start.capacity=128", "data.batch_size=16",
                 "objective.num_steps=5", "optimizer.learning_rate=1e-3", *extra]
    exp = build(make_config("jem_digits", overrides))
    return exp, make_train_step(exp.loss, exp.optimizer, ema_decay=0.9)


# The expensive programs are the 8-device and the 1-device train steps (~5-10 s each to
# compile): the tests share them. The experiments are built once per buffer layout, the
# one-device runs and cost counts use the same plain jit, and the 8-device ones the same
# donating ``sharded_train_step`` (lowering does not consume the donated buffers), so that
# each program compiles once and is read back from the compilation cache after that.
_shared_jem = functools.cache(_jem)


def _run(exp, train_step, mesh=None):
    """NUM_STEPS steps on ``mesh`` (None: plain jit on the default device)."""
    state = jax.tree.map(jnp.copy, initial_state(exp))  # the steps donate it
    batches = Batches(exp.data.x_train, exp.data.y_train, exp.config.data.batch_size, seed=0)
    if mesh is None:
        step = jax.jit(train_step)
    else:
        state = shard_state(state, mesh)
        step = sharded_train_step(train_step, mesh, state)
    for _ in range(NUM_STEPS):
        batch = next(batches)
        state, metrics = step(state, batch if mesh is None else shard_batch(batch, mesh))
    return state, metrics


def _max_rel_diff(a, b):
    def rel(u, v):
        u, v = np.asarray(u), np.asarray(v)
        # Equal infinities (the guard's loss_best before warm-up) differ by 0, not NaN.
        gap = np.where(u == v, 0.0, np.abs(u.astype(np.float64) - v))
        finite = np.abs(v[np.isfinite(v)])
        return float(np.max(gap) / ((np.max(finite) if finite.size else 0.0) + 1e-12))
    return max(jax.tree.leaves(jax.tree.map(rel, a, b)))


@pytest.fixture(scope="module")
def runs():
    exp, train_step = _shared_jem(8)
    return {n: _run(exp, train_step, None if n == 0 else make_data_mesh(n)) for n in (0, 8)}


@pytest.mark.slow
def test_eight_devices_match_one_device(runs):
    single, _ = runs[0]
    for n in (8,):
        state, _ = runs[n]
        # Only the order of floating-point sums differs (per-device partial sums, then an
        # all-reduce): float32 relative error ~1e-6 per op, amplified a little by 5 SGLD steps
        # and 3 Adam updates.
        assert _max_rel_diff(state.params, single.params) < 1e-4, n
        assert _max_rel_diff(state.loss_state, single.loss_state) < 1e-4, n
        np.testing.assert_allclose(np.asarray(state.step), NUM_STEPS)
    # The run must have moved: a skipped update would also "match".
    exp, _ = _shared_jem(8)
    assert _max_rel_diff(single.params, exp.params) > 1e-3


@pytest.mark.slow
def test_state_stays_sharded(runs):
    state, metrics = runs[8]
    buffer = state.loss_state["generative"].buffer
    assert buffer.samples.sharding.spec == PartitionSpec("data")
    assert len({s.device for s in buffer.samples.addressable_shards}) == 8
    assert buffer.samples.addressable_shards[0].data.shape[0] == 128 // 8
    leaf = jax.tree.leaves(state.params)[0]
    assert leaf.sharding.is_fully_replicated
    assert metrics["loss"].sharding.is_fully_replicated


@functools.cache
def _compiled(buffer_shards, num_devices):
    """The compiled train step of ``_shared_jem(buffer_shards)`` on ``num_devices`` devices: a
    plain jit for one (as ``_run``), the sharded step over an 8-device mesh for eight."""
    exp, train_step = _shared_jem(buffer_shards)
    batch = next(Batches(exp.data.x_train, exp.data.y_train, 16, seed=0))
    if num_devices == 1:
        return jax.jit(train_step).lower(initial_state(exp), batch).compile()
    mesh = make_data_mesh(num_devices)
    state = shard_state(initial_state(exp), mesh)
    step = sharded_train_step(train_step, mesh, state)
    return step.lower(state, shard_batch(batch, mesh)).compile()


def _collectives(buffer_shards):
    hlo = _compiled(buffer_shards, 8).as_text()
    return [line for line in hlo.splitlines()
            if re.search(r"= \S+ (all-gather|all-to-all|collective-permute)(-start)?\(", line)]


def _flops(buffer_shards, num_devices):
    cost = _compiled(buffer_shards, num_devices).cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


@pytest.mark.slow
@pytest.mark.parametrize("buffer_shards", [8, 1])
def test_chains_are_split_across_devices(buffer_shards):
    """Each device runs its share of the SGLD chains, not all of them: the per-device program
    of an 8-device step costs about 1/8 of the 1-device one (the optimizer update, replicated,
    is the small remainder). With one global buffer block the chains come out of a global
    gather and only the explicit split (``split_along_data``) spreads them."""
    ratio = _flops(buffer_shards, 8) / _flops(buffer_shards, 1)
    assert ratio < 0.25, ratio


@pytest.mark.slow
def test_buffer_sampling_is_device_local():
    """With one buffer block per device, no sample crosses devices: the only collectives
    are all-reduces (gradients, means). With one global block (num_shards=1) the same step
    must move buffer rows between devices, which shows the check can fail."""
    assert _collectives(8) == []
    assert _collectives(1) != []


@pytest.mark.slow
@pytest.mark.parametrize("save_on,restore_on", [(8, 1), (8, 4), (1, 8), (4, 8)])
def test_checkpoint_restores_on_other_device_counts(tmp_path, save_on, restore_on):
    exp, _ = _jem(8)
    state = initial_state(exp)
    # Make every leaf distinct from a fresh state so a restore that returned the template fails.
    state = state._replace(params=jax.tree.map(lambda p: p + 0.5, state.params),
                           step=jnp.asarray(7, jnp.int32),
                           guard_stats=state.guard_stats._replace(
                               count=jnp.asarray(7, jnp.int32), loss_best=jnp.float32(0.6)))
    saved = shard_state(state, make_data_mesh(save_on))
    ckpt = Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(saved)
    target_mesh = make_data_mesh(restore_on)
    template = shard_state(initial_state(exp), target_mesh)
    restored = ckpt.restore_latest(template)
    ckpt.close()
    assert int(restored.step) == 7
    assert _max_rel_diff(restored, jax.device_get(state)) == 0.0
    buffer = restored.loss_state["generative"].buffer
    assert buffer.samples.sharding.spec == PartitionSpec("data")
    assert len(buffer.samples.sharding.device_set) == restore_on


def test_mesh_errors():
    with pytest.raises(MeshError, match=r"devices=9: expected at most the 8 cpu device"):
        make_data_mesh(9)
    with pytest.raises(MeshError, match="devices=0"):
        make_data_mesh(0)
    mesh = make_data_mesh(8)
    with pytest.raises(MeshError, match=r"batch size .*=12 does not divide over 8 devices"):
        shard_batch({"x": np.zeros((12, 3), np.float32)}, mesh)
    buffer = rb.init_buffer(jax.random.PRNGKey(0), (2,), capacity=100)
    with pytest.raises(MeshError, match="buffer capacity=100 does not divide over 8"):
        shard_state({"buffer": buffer}, mesh)


@pytest.mark.slow
def test_sharded_buffer_blocks_draw_from_their_own_block():
    buffer = rb.init_buffer(jax.random.PRNGKey(0), (1,), capacity=80, num_shards=4)
    buffer = buffer._replace(samples=jnp.arange(80.0)[:, None])

    @jax.jit  # one program instead of some sixty eager op compiles
    def sample_and_push(key, buffer):
        x0, _, idx = rb.sample(key, buffer, 40, reinit_prob=0.0, num_shards=4)
        pushed = rb.push(buffer, -x0, idx, num_shards=4)
        fifo = rb.push(buffer, -jnp.ones((8, 1)), num_shards=4)
        return x0, idx, pushed.samples[idx, 0], fifo

    x0, idx, pushed_at_idx, fifo = sample_and_push(jax.random.PRNGKey(1), buffer)
    block_of_chain = np.arange(40) // 10
    np.testing.assert_array_equal(np.asarray(idx) // 20, block_of_chain)
    np.testing.assert_array_equal(np.asarray(x0[:, 0]), np.asarray(idx, np.float32))
    np.testing.assert_array_equal(np.asarray(pushed_at_idx), -np.asarray(idx))
    # FIFO pushes fill each block at the shared pointer.
    assert sorted(np.flatnonzero(np.asarray(fifo.samples[:, 0]) < 0)) == [0, 1, 20, 21, 40, 41, 60, 61]
    with pytest.raises(ValueError, match="batch_size=10 with num_shards=4"):
        rb.sample(jax.random.PRNGKey(1), buffer, 10, num_shards=4)
    with pytest.raises(ValueError, match="capacity=80 with num_shards=3"):
        rb.init_buffer(jax.random.PRNGKey(0), (1,), capacity=80, num_shards=3)


@pytest.mark.slow
def test_checkpoint_of_another_network_is_refused_before_reading(tmp_path):
    exp, _ = _jem(8)
    ckpt = Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(initial_state(exp))
    other, _ = _jem(8, "model.hidden=48,32")
    with pytest.raises(CheckpointMismatchError,
                       match=r"params/layers/0/linear/bias is saved as float32\[32\], "
                             r"expected float32\[48\]"):
        ckpt.restore_latest(initial_state(other))
    deeper, _ = _jem(8, "model.hidden=32,32,32")
    with pytest.raises(CheckpointMismatchError, match=r"it lacks \['ema_params/layers/3/linear/bias'"):
        ckpt.restore_latest(initial_state(deeper))
    ckpt.close()
