"""HDGE (ebm_jax.losses.hdge): the contrastive log p(x|y) over a queue of past logits.

Deliberate breakages, each verified by temporarily editing the package and restoring it:

- the queue not masked (``filled`` all true): ``test_empty_slots_are_masked_out``,
  ``test_value_matches_a_hand_computed_example``;
- the queue entries differentiated (``stop_gradient`` dropped) is caught by
  ``test_no_gradient_flows_into_the_queue``;
- the positive's sign flipped (``- positive`` -> ``+ positive``), or the queue left out of the
  normaliser: ``test_value_matches_a_hand_computed_example``;
- the pointer not wrapped (``% block`` dropped): ``test_the_ring_buffer_wraps_per_block``.
"""
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.losses import (HDGEState, LogitQueue, combine, cross_entropy, hdge,
                            hdge_contrastive)
from ebm_jax.losses.hdge import EMPTY, enqueue

pytestmark = pytest.mark.fast_compile

K = 3


def linear(w, x):
    return x @ w


def _reference(z_batch, y, queue_rows, tau, normalize=True, batch_negatives=False):
    """The formula in numpy, example by example (float64)."""
    def feat(v):
        v = np.asarray(v, np.float64)
        return v / np.linalg.norm(v) if normalize else v
    z = [feat(v) for v in z_batch]
    terms = []
    for i, (zi, yi) in enumerate(zip(z, y)):
        if yi < 0:
            continue
        logits = [zi[yi] / tau] + [feat(q)[yi] / tau for q in queue_rows]
        if batch_negatives:
            logits += [z[k][yi] / tau for k in range(len(z)) if k != i]
        logits = np.array(logits)
        terms.append(np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[0])
    return float(np.mean(terms))


def _setup(seed=0, batch=6, d=4, queue_size=12, **kw):
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.normal(size=(d, K)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(batch, d)), jnp.float32)
    y = jnp.asarray(rng.integers(0, K, size=batch), jnp.int32)
    term = hdge_contrastive(linear, queue_size, 0.5, **kw)
    return term, w, {"x": x, "y": y}


@pytest.mark.parametrize("normalize,batch_negatives", [(True, False), (False, False),
                                                       (True, True)])
def test_value_matches_a_hand_computed_example(normalize, batch_negatives):
    """Two steps with different batches: the second step's value is the numpy formula over
    the first batch's (normalised) logits in the queue; empty slots do not count."""
    term, w, first = _setup(normalize=normalize, batch_negatives=batch_negatives)
    _, _, second = _setup(seed=1)
    second["y"] = second["y"].at[0].set(-1)            # an unlabelled example: left out
    state = term.init(jax.random.key(0), w, first)
    value0, (state, info0) = term.loss(w, state, first, jax.random.key(1))
    np.testing.assert_allclose(float(value0), _reference(
        np.asarray(first["x"] @ w), np.asarray(first["y"]), [], 0.5, normalize,
        batch_negatives), rtol=1e-5, atol=1e-6)
    assert float(info0["queue_fill"]) == 0.0
    value, (state, info) = jax.jit(term.loss)(w, state, second, jax.random.key(2))
    expected = _reference(np.asarray(second["x"] @ w), np.asarray(second["y"]),
                          list(np.asarray(first["x"] @ w)), 0.5, normalize, batch_negatives)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    assert float(info["queue_fill"]) == 0.5
    # Without the queue (a fresh state) the value is another one: the queue enters.
    fresh = term.init(jax.random.key(0), w, second)
    assert abs(float(term.loss(w, fresh, second, jax.random.key(2))[0]) - expected) > 1e-2


@pytest.mark.slow
def test_no_gradient_flows_into_the_queue():
    term, w, batch = _setup()
    state = term.init(jax.random.key(0), w, batch)
    _, (state, _) = term.loss(w, state, batch, jax.random.key(1))

    def of_queue(rows):
        queue = state.queue._replace(logits=rows)
        return term.loss(w, HDGEState(queue), batch, jax.random.key(2))[0]

    grad = jax.grad(of_queue)(state.queue.logits)
    assert float(jnp.max(jnp.abs(grad))) == 0.0
    # The value does depend on the queue, and the parameters get a gradient.
    assert abs(float(of_queue(state.queue.logits * -1.0)) - float(of_queue(state.queue.logits))) \
        > 1e-3
    grad_w = jax.grad(lambda p: term.loss(p, state, batch, jax.random.key(2))[0])(w)
    assert float(jnp.max(jnp.abs(grad_w))) > 1e-4


def test_descending_the_term_raises_the_positive_against_the_queue():
    """A few steps of gradient descent on the term lower it (the sign is right) and raise each
    example's own normalised class logit."""
    term, w, batch = _setup(batch=12, queue_size=12)
    state = term.init(jax.random.key(0), w, batch)
    _, (state, _) = term.loss(w, state, batch, jax.random.key(1))
    loss = jax.jit(lambda p: term.loss(p, state, batch, jax.random.key(2)))
    grad = jax.jit(jax.grad(lambda p: loss(p)[0]))
    before, (_, info_before) = loss(w)
    for _ in range(20):
        w = w - 0.1 * grad(w)
    after, (_, info_after) = loss(w)
    assert float(after) < float(before) - 0.05
    assert float(info_after["positive_logit"]) > float(info_before["positive_logit"])


def test_empty_slots_are_masked_out():
    """Slots marked EMPTY count for nothing, whatever they hold; written slots do count."""
    term, w, batch = _setup()
    state = term.init(jax.random.key(0), w, batch)
    huge = state.queue._replace(logits=jnp.full_like(state.queue.logits, 100.0))
    value_empty = term.loss(w, state, batch, jax.random.key(1))[0]
    value_huge = term.loss(w, HDGEState(huge), batch, jax.random.key(1))[0]
    assert float(value_empty) == float(value_huge) == 0.0
    filled = huge._replace(labels=huge.labels.at[0].set(1))      # one written slot
    assert float(term.loss(w, HDGEState(filled), batch, jax.random.key(1))[0]) > 1.0


def test_the_ring_buffer_wraps_per_block():
    """Two blocks of 4 slots, batches of 4 (2 a block): after 3 steps each block holds its
    slices of steps 3, 3, 2, 2 in that order (step 3 overwrote step 1), pointer at 2."""
    queue = LogitQueue(jnp.zeros((8, 1)), jnp.full((8,), EMPTY, jnp.int32), jnp.int32(0))
    for step in (1, 2, 3):
        rows = jnp.array([[step], [step], [10 * step], [10 * step]], jnp.float32)
        queue = enqueue(queue, rows, jnp.arange(4) + 4 * step, num_shards=2)
        assert int(queue.pointer) == (2 * step) % 4
    assert queue.logits[:, 0].tolist() == [3, 3, 2, 2, 30, 30, 20, 20]
    assert queue.labels.tolist() == [12, 13, 8, 9, 14, 15, 10, 11]


def test_the_state_resumes_bit_exactly_after_a_round_trip(tmp_path):
    """A run of 6 steps equals 3 steps, the state saved with orbax and restored, 3 more."""
    from ebm_jax.train import Checkpointer, init_train_state, make_train_step

    term, w, _ = _setup()
    loss = hdge(linear, 12, 0.5)
    optimizer = optax.adam(1e-2)
    rng = np.random.default_rng(3)
    batches = [{"x": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
                "y": jnp.asarray(rng.integers(0, K, size=6), jnp.int32)} for _ in range(6)]
    step = jax.jit(make_train_step(loss, optimizer))
    start = init_train_state(jax.random.key(0), w, optimizer, loss, batches[0])
    state = start
    for batch in batches:
        state, _ = step(state, batch)
    legs = start
    for batch in batches[:3]:
        legs, _ = step(legs, batch)
    ckpt = Checkpointer(str(tmp_path / "ckpt"), save_every=1)
    ckpt.save(legs, force=True)
    legs = ckpt.restore_latest(start, log=lambda *a: None)
    ckpt.close()
    assert int(legs.step) == 3
    for batch in batches[3:]:
        legs, _ = step(legs, batch)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(legs)):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(state.loss_state["generative"].queue.labels.min()) >= 0   # 36 rows > 12 slots


def test_the_hybrid_is_cross_entropy_plus_the_weighted_term():
    _, w, batch = _setup()
    loss = hdge(linear, 12, 0.5, generative_weight=0.3)
    state = loss.init(jax.random.key(0), w, batch)
    _, (state, _) = loss.loss(w, state, batch, jax.random.key(1))
    value, (_, info) = loss.loss(w, state, batch, jax.random.key(1))
    same = combine(classification=(1.0, cross_entropy(linear)),
                   generative=(0.3, hdge_contrastive(linear, 12, 0.5)))
    np.testing.assert_allclose(float(value), float(same.loss(w, state, batch,
                                                             jax.random.key(1))[0]), rtol=1e-6)
    np.testing.assert_allclose(float(value), float(info["classification/loss"])
                               + 0.3 * float(info["generative/loss"]), rtol=1e-6)
    assert float(info["generative/loss"]) > 0.0


def _mlp(params, x):
    hidden = jnp.tanh(x @ params["w1"])
    return hidden @ params["w2"]


@pytest.mark.parametrize("normalize,batch_negatives", [(True, False), (False, True)])
def test_the_shared_forward_equals_the_combine_route(normalize, batch_negatives):
    """Over three steps (the queue filling, an unlabelled example), ``shared_forward`` gives the
    value, gradient, state and info of ``combine(cross_entropy, hdge_contrastive)``."""
    rng = np.random.default_rng(4)
    params = {"w1": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32),
              "w2": jnp.asarray(rng.normal(size=(5, K)), jnp.float32)}
    batches = [{"x": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
                "y": jnp.asarray(rng.integers(-1, K, size=6), jnp.int32)} for _ in range(3)]
    kw = dict(classification_weight=0.7, generative_weight=0.3, normalize=normalize,
              batch_negatives=batch_negatives)
    shared, separate = hdge(_mlp, 12, 0.5, **kw), hdge(_mlp, 12, 0.5, shared_forward=False, **kw)
    reference = combine(classification=(0.7, cross_entropy(_mlp)),
                        generative=(0.3, hdge_contrastive(_mlp, 12, 0.5, normalize=normalize,
                                                          batch_negatives=batch_negatives)))
    runs = []
    for loss in (shared, separate, reference):
        state, out = loss.init(jax.random.key(0), params, batches[0]), []
        step = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))
        for batch in batches:
            (value, (state, info)), grad = step(params, state, batch, jax.random.key(1))
            out.append((value, grad, state, info))
        runs.append(out)
    assert float(runs[0][-1][3]["generative/queue_fill"]) == 1.0
    for other in runs[1:]:
        for (v0, g0, s0, i0), (v1, g1, s1, i1) in zip(runs[0], other):
            assert sorted(i0) == sorted(i1)
            assert jax.tree.structure(s0) == jax.tree.structure(s1)
            for a, b in zip(jax.tree.leaves((v0, g0, s0, i0)), jax.tree.leaves((v1, g1, s1, i1))):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)


def _dots(fn, *args):
    """dot_general equations in the jaxpr of ``fn`` (sub-jaxprs included)."""
    def count(jaxpr):
        total = 0
        for eqn in jaxpr.eqns:
            total += eqn.primitive.name == "dot_general"
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                total += count(sub)
        return total
    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def test_the_shared_forward_runs_the_network_once_forward_and_once_backward():
    """The gradient of the shared-forward hybrid has cross-entropy's matrix products (the
    contrastive term adds none on top of the logits), the combine route twice as many; and
    ``logits_fn`` is traced once per loss call."""
    rng = np.random.default_rng(5)
    params = {"w1": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32),
              "w2": jnp.asarray(rng.normal(size=(5, K)), jnp.float32)}
    batch = {"x": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, K, size=6), jnp.int32)}
    calls = []

    def counting(p, x):
        calls.append(1)
        return _mlp(p, x)

    def grad_of(loss, state):
        return lambda p: jax.grad(lambda q: loss.loss(q, state, batch, jax.random.key(1))[0])(p)

    ce = cross_entropy(_mlp)
    shared, separate = hdge(_mlp, 12, 0.5), hdge(_mlp, 12, 0.5, shared_forward=False)
    state = shared.init(jax.random.key(0), params, batch)
    ce_dots = _dots(grad_of(ce, ()), params)
    assert ce_dots >= 4                                   # 2 forward, >= 2 backward
    assert _dots(grad_of(shared, state), params) == ce_dots
    assert _dots(grad_of(separate, state), params) == 2 * ce_dots
    counted = hdge(counting, 12, 0.5)
    jax.make_jaxpr(lambda p: counted.loss(p, state, batch, jax.random.key(1)))(params)
    assert len(calls) == 1


@pytest.mark.parametrize("kwargs,message", [
    (dict(queue_size=0), "queue_size=0: expected a positive int"),
    (dict(queue_size=2.5), "queue_size=2.5: expected a positive int"),
    (dict(temperature=0.0), "temperature=0.0: expected a positive finite number"),
    (dict(temperature=-0.1), "temperature=-0.1: expected a positive finite number"),
    (dict(queue_size=10, num_shards=4), "queue_size=10 with num_shards=4: expected a queue_size"
                                        " divisible by num_shards"),
    (dict(normalize=1), "normalize=1: expected True or False"),
])
@pytest.mark.parametrize("factory", [hdge, hdge_contrastive])
def test_bad_settings_raise_one_value_error_naming_the_field(factory, kwargs, message):
    with pytest.raises(ValueError) as error:
        factory(linear, **kwargs)
    assert message in str(error.value)


def test_a_bad_shared_forward_raises():
    with pytest.raises(ValueError, match="shared_forward=1: expected True or False"):
        hdge(linear, shared_forward=1)


def test_bad_batches_raise_before_any_compute():
    calls = []

    def counting(w, x):
        calls.append(1)
        return x @ w

    w = jnp.zeros((4, K))
    loss = hdge(counting, 8, 0.1)
    for batch, message in [
        ({"x": jnp.zeros((4, 4))}, r"the batch has keys \['x'\]: expected a dict with 'x' and "
                                   r"'y'"),
        ({"x": jnp.zeros((16, 4)), "y": jnp.zeros(16, jnp.int32)},
         "batch size 16 with queue_size=8: expected queue_size >= the batch size"),
    ]:
        for call in (lambda b: loss.init(jax.random.key(0), w, b),
                     lambda b: loss.loss(w, {}, b, jax.random.key(0))):
            with pytest.raises(ValueError, match=message):
                call(batch)
    assert calls == []
    with pytest.raises(ValueError, match=r"labels in \[0, 3\]: expected labels in \[-1, 3\)"):
        loss.init(jax.random.key(0), w, {"x": jnp.zeros((4, 4)), "y": jnp.arange(4)})


@pytest.mark.slow
@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest)")
def test_eight_devices_match_one_device_and_the_queue_stays_split():
    """hdge_digits (tiny) for 3 steps with an 8-block queue: on a mesh of 8 CPU devices the
    queue is split along ``data`` and the state matches the one-device run's."""
    from jax.sharding import PartitionSpec

    from ebm_jax.data import Batches
    from ebm_jax.experiments import build, initial_state, make_config
    from ebm_jax.parallel import make_data_mesh, shard_batch
    from ebm_jax.train import make_train_step, shard_state, sharded_train_step

    exp = build(make_config("hdge_digits", ["model.hidden=32,32", "data.batch_size=16",
                                            "objective.queue_size=64",
                                            "objective.num_shards=8"]))
    train_step = make_train_step(exp.loss, exp.optimizer)

    def run(mesh):
        state = jax.tree.map(jnp.copy, initial_state(exp))
        batches = Batches(exp.data.x_train, exp.data.y_train, 16, seed=0)
        if mesh is None:
            step = jax.jit(train_step)
        else:
            state = shard_state(state, mesh)
            step = sharded_train_step(train_step, mesh, state)
        for _ in range(3):
            batch = next(batches)
            state, _ = step(state, batch if mesh is None else shard_batch(batch, mesh))
        return state

    single, multi = run(None), run(make_data_mesh(8))
    queue = multi.loss_state["generative"].queue
    assert queue.logits.sharding.spec == PartitionSpec("data")
    assert queue.logits.addressable_shards[0].data.shape[0] == 64 // 8
    np.testing.assert_array_equal(np.asarray(queue.labels),
                                  np.asarray(single.loss_state["generative"].queue.labels))
    for a, b in zip(jax.tree.leaves((single.params, single.loss_state)),
                    jax.tree.leaves((multi.params, multi.loss_state))):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)
    assert float(jnp.mean(queue.labels != EMPTY)) == 0.75          # 3 of 4 slots per block
