"""Tests of the pure replay buffer (``ebm_jax.samplers.replay_buffer``)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.samplers import replay_buffer as rb


def constant_init(value):
    return lambda rng_key, shape: jnp.full(shape, value, jnp.float32)


# -- init -------------------------------------------------------------------------

def test_init_shapes_and_default_distribution():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (3, 2), capacity=500)
    assert buf.samples.shape == (500, 3, 2)
    assert buf.labels.shape == (500,) and buf.labels.dtype == jnp.int32
    np.testing.assert_array_equal(buf.labels, 0)
    assert buf.pointer.shape == () and int(buf.pointer) == 0
    s = np.asarray(buf.samples)
    # Default U(-1, 1): in range, and spread over it (3000 draws: mean SE 0.011).
    assert s.min() >= -1.0 and s.max() <= 1.0
    assert abs(s.mean()) < 0.06 and s.min() < -0.99 and s.max() > 0.99


def test_init_per_class_slots_and_custom_init():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (4,), capacity=30, num_classes=3,
                         init_fn=constant_init(7.0))
    np.testing.assert_array_equal(buf.labels, np.repeat(np.arange(3), 10))
    np.testing.assert_array_equal(buf.samples, 7.0)
    # The docstring example: slot i belongs to class i // (capacity // num_classes).
    buf = rb.init_buffer(jax.random.PRNGKey(0), (64,), capacity=100, num_classes=10)
    assert buf.samples.shape == (100, 64) and int(buf.labels[15]) == 1 and int(buf.labels[99]) == 9


@pytest.mark.parametrize("kwargs", [
    dict(capacity=0), dict(capacity=-5), dict(capacity=10.0),
    dict(capacity=10, num_classes=3), dict(capacity=10, num_classes=0),
])
def test_init_capacity_errors(kwargs):
    with pytest.raises(ValueError, match="capacity"):
        rb.init_buffer(jax.random.PRNGKey(0), (2,), **kwargs)


def test_uniform_init_range_error():
    with pytest.raises(ValueError, match="low"):
        rb.uniform_init(1.0, 1.0)
    x = rb.uniform_init(2.0, 3.0)(jax.random.PRNGKey(0), (1000,))
    assert float(x.min()) >= 2.0 and float(x.max()) <= 3.0


# -- sample -----------------------------------------------------------------------

@pytest.mark.parametrize("reinit_prob", [0.0, 0.1, 0.5, 1.0])
def test_sample_reinit_fraction(reinit_prob):
    """Stored samples are 5.0; fresh ones come from U(-1, 1), so each drawn row tells
    whether it was reinitialised. The count of reinitialised rows is
    Binomial(n, p): we allow 5 standard deviations, sqrt(n p (1-p)) (at n = 20000,
    p = 0.1: 2000 +- 212, i.e. +-0.011 in the fraction), a bound a correct buffer
    misses with probability < 1e-6 while reinit_prob = 0 or 1 - p would be off by
    >150 SD. p in {0, 1} is exact."""
    n = 20_000
    buf = rb.init_buffer(jax.random.PRNGKey(0), (3,), capacity=50, init_fn=constant_init(5.0))
    x0, labels, indices = jax.jit(
        lambda k, b: rb.sample(k, b, n, reinit_prob=reinit_prob))(jax.random.PRNGKey(1), buf)
    x0 = np.asarray(x0)
    assert x0.shape == (n, 3) and labels.shape == (n,) and indices.shape == (n,)
    fresh = np.all(np.abs(x0) <= 1.0, axis=1)
    stored = np.all(x0 == 5.0, axis=1)
    # Whole rows are reinitialised, never single elements.
    np.testing.assert_array_equal(fresh | stored, True)
    count = fresh.sum()
    tol = 5 * np.sqrt(n * reinit_prob * (1 - reinit_prob))
    assert abs(count - n * reinit_prob) <= tol, (count, n * reinit_prob, tol)
    # Indices are uniform over the 50 slots (each expected 400 times, SD ~19.8).
    counts = np.bincount(np.asarray(indices), minlength=50)
    assert counts.min() > 400 - 5 * 19.8 and counts.max() < 400 + 5 * 19.8


@pytest.mark.slow
def test_sample_returns_stored_rows_at_indices():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (2,), capacity=20)
    x0, _, indices = rb.sample(jax.random.PRNGKey(3), buf, 64, reinit_prob=0.0)
    np.testing.assert_array_equal(x0, np.asarray(buf.samples)[np.asarray(indices)])


def test_sample_reinit_prob_error():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (2,), capacity=10)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="reinit_prob"):
            rb.sample(jax.random.PRNGKey(0), buf, 4, reinit_prob=bad)


@pytest.mark.slow
def test_per_class_sampling_draws_only_slots_of_the_class():
    num_classes, per_class = 4, 10
    buf = rb.init_buffer(jax.random.PRNGKey(0), (2,), capacity=num_classes * per_class,
                         num_classes=num_classes)
    # Tag every slot with its class so that a sample reveals where it came from.
    buf = buf._replace(samples=jnp.broadcast_to(buf.labels[:, None].astype(jnp.float32), (40, 2)))
    want = jnp.array([0, 3, 1, 3, 2, 0, 1, 2] * 250, jnp.int32)
    x0, labels, indices = rb.sample(jax.random.PRNGKey(1), buf, want.shape[0], reinit_prob=0.0,
                                    labels=want, num_classes=num_classes)
    np.testing.assert_array_equal(labels, want)
    np.testing.assert_array_equal(x0[:, 0], want.astype(jnp.float32))
    np.testing.assert_array_equal(np.asarray(indices) // per_class, want)
    # Every slot of every class is reachable (250 draws per class over 10 slots).
    assert len(np.unique(np.asarray(indices))) == num_classes * per_class


def test_per_class_sampling_requires_num_classes():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (2,), capacity=10, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        rb.sample(jax.random.PRNGKey(0), buf, 4, labels=jnp.zeros(4, jnp.int32))


# -- push -------------------------------------------------------------------------

def test_push_with_indices_writes_back_to_those_slots():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (2,), capacity=10, init_fn=constant_init(0.0))
    buf = buf._replace(pointer=jnp.array(4, jnp.int32))
    indices = jnp.array([7, 2, 9])
    new = jnp.array([[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]])
    out = jax.jit(rb.push)(buf, new, indices)
    expected = np.zeros((10, 2), np.float32)
    expected[[7, 2, 9]] = new
    np.testing.assert_array_equal(out.samples, expected)
    assert int(out.pointer) == 4  # indexed pushes leave the FIFO pointer alone
    np.testing.assert_array_equal(out.labels, buf.labels)


@pytest.mark.slow
def test_sample_push_round_trip_keeps_classes():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (2,), capacity=12, num_classes=3,
                         init_fn=constant_init(0.0))
    want = jnp.array([2, 0, 1, 2], jnp.int32)
    x0, labels, indices = rb.sample(jax.random.PRNGKey(5), buf, 4, reinit_prob=0.0, labels=want,
                                    num_classes=3)
    out = rb.push(buf, x0 + 10.0 * (labels[:, None] + 1), indices)
    changed = np.flatnonzero(np.any(np.asarray(out.samples) != 0.0, axis=1))
    np.testing.assert_array_equal(np.sort(changed), np.sort(np.unique(np.asarray(indices))))
    # Each written slot holds its own class's tag.
    np.testing.assert_array_equal(np.asarray(out.samples)[changed, 0],
                                  10.0 * (np.asarray(out.labels)[changed] + 1))


def test_fifo_push_wraps_the_pointer():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (1,), capacity=5, init_fn=constant_init(0.0))
    push = jax.jit(rb.push)
    a = jnp.array([[1.0], [2.0], [3.0]])
    b = jnp.array([[4.0], [5.0], [6.0]])
    buf = push(buf, a)
    assert int(buf.pointer) == 3
    np.testing.assert_array_equal(buf.samples[:, 0], [1, 2, 3, 0, 0])
    buf = push(buf, b)
    assert int(buf.pointer) == 1  # (3 + 3) mod 5
    np.testing.assert_array_equal(buf.samples[:, 0], [6, 2, 3, 4, 5])
    buf = push(buf, jnp.array([[7.0], [8.0], [9.0], [10.0], [11.0]]))  # a full lap
    assert int(buf.pointer) == 1
    np.testing.assert_array_equal(buf.samples[:, 0], [11, 7, 8, 9, 10])


def test_push_shape_mismatch_raises():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (3, 2), capacity=8)
    with pytest.raises(ValueError, match="shape"):
        rb.push(buf, jnp.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="shape"):
        rb.push(buf, jnp.zeros((4, 6)), jnp.arange(4))


def test_fifo_push_larger_than_the_buffer_is_refused():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (2,), capacity=4)
    with pytest.raises(ValueError, match="pushing 5 samples without indices into a buffer of capacity 4"):
        rb.push(buf, jnp.zeros((5, 2)))


def test_sample_with_a_num_classes_that_does_not_fit_the_buffer():
    buf = rb.init_buffer(jax.random.PRNGKey(0), (2,), capacity=10, num_classes=5)
    with pytest.raises(ValueError, match="num_classes=3 does not divide the buffer's capacity 10"):
        rb.sample(jax.random.PRNGKey(1), buf, 4, labels=jnp.zeros(4, jnp.int32), num_classes=3)
