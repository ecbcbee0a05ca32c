"""Bad input, tried on purpose: property-based tests (hypothesis) of the public functions.

Every property draws a *fault kind* (``valid``, ``nan``, ``inf``, ``huge``, ``empty``,
``wrong_rank``, ``wrong_dtype``, ``mismatched_size``, ``bad_hyperparameter``, ``bad_type``,
``label_out_of_range``, ...) and an input of that kind, calls a public function and checks
that it either

* **works**: finite, correctly shaped output when the input is finite and valid (huge
  finite values, 1e30, included: the energies used here, ``softabs`` and linear logits,
  stay finite there, so any overflow would be the library's own arithmetic), or
* **raises a clear error**: a built-in ``ValueError``/``TypeError`` whose message names
  the offending argument, raised by ebm_jax before any compute; never a silent NaN, a
  hang, or an error from deep inside JAX.

Non-finite *input values* are handled per function, as documented in each property:

* eager metrics (accuracy, NLL, ECE, classification_report, MMD, KID, ood_report) raise a
  ``ValueError`` for NaN or ±inf input; AUROC/AUPR/ROC raise for NaN scores (no rank) and
  accept ±inf scores, which rank fine;
* samplers (jit-compatible, no host syncs) let a NaN/inf start propagate but count every
  such step in their Info's ``nonfinite``;
* losses (jit-compatible) cannot inspect values under ``jit``: NaN/inf data give a
  non-finite loss (visible to the divergence guard), never a finite-looking number.
  Label values are checked where they are concrete (``init`` and eager calls); a missing
  batch key is a ``KeyError`` naming the key;
* values that only exist at run time under ``jit`` (a traced class label) give NaN
  energies rather than another class's energy;
* the replay buffer stores what it is given (NaN included): ``push`` runs inside the
  jitted loss, which counts non-finite chain steps instead;
* hyperparameters must be finite and fit float32 (a 1e300 step size or weight would turn
  into inf in the float32 arithmetic and is refused).

Shapes are drawn from small fixed sets and the jitted callables are cached, so that
compilation happens a few dozen times, not once per example. The last test prints the
counts of generated cases, fault kinds and public functions covered
(``pytest -s -n 0 tests/test_properties.py``).
"""
from __future__ import annotations

import collections
import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ebm_jax as ej
from ebm_jax import energies, metrics, samplers
from ebm_jax.energies import distributions
from ebm_jax.samplers import replay_buffer as rb

# One deterministic profile for this file only (a settings object, not a global profile, so
# that other test files are unaffected): derandomized, no example database, no deadline
# (the first example of a shape pays for compilation).
PROPS = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def props(max_examples: int):
    return settings(PROPS, max_examples=max_examples)


# -- what was tried ---------------------------------------------------------------------

CASES: collections.Counter = collections.Counter()      # property -> generated cases run
FAULTS: collections.Counter = collections.Counter()     # fault kind -> cases
FUNCTIONS: set = set()                                  # public functions exercised


def record(prop: str, fault: str, *functions: str) -> None:
    CASES[prop] += 1
    FAULTS[fault] += 1
    FUNCTIONS.update(functions)


# -- shared fixtures ----------------------------------------------------------------------

KEY = jax.random.PRNGKey(0)
D, K, B = 2, 3, 4
P0 = jnp.zeros(D)
W = jnp.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]])    # K x D linear classifier
HUGE = float(np.float32(1e30))     # exactly representable in float32
LARGE = float(np.float32(1e29))


def softabs(p, x):
    """``Σ z tanh z``, ``z = x - p``: ~|z| for large |z|, so E and ∇E stay finite at 1e30,
    while inf gives inf energy and a NaN gradient (inf·0), and NaN gives NaN."""
    z = x - p
    return jnp.sum(z * jnp.tanh(z))


def logits_fn(p, x):
    return p @ x


def expect_clear_error(call, *names: str):
    """``call()`` must raise a built-in ValueError/TypeError naming one of ``names``."""
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    err = info.value
    assert type(err).__module__ == "builtins", f"{type(err)} from JAX internals: {err}"
    message = str(err)
    assert any(name in message for name in names), \
        f"the message does not name {names}: {message!r}"
    # Not a JAX shape/dtype error surfacing from deep inside a primitive.
    for internal in ("broadcast_in_dim", "incompatible shapes", "Shapes must be",
                     "Indexer must have", "dot_general", "tuple index out of range"):
        assert internal not in message, message
    return err


def all_finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(leaf, np.float64))))
               for leaf in jax.tree.leaves(tree))


def as_real(value):
    """A concrete scalar as a Python number, or None if it is not one (bool, str, array)."""
    if isinstance(value, (np.ndarray, jax.Array)):
        if value.shape != () or not np.issubdtype(value.dtype, np.number):
            return None
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    return value


F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)


def positive_finite(value, limit: float = F32_MAX) -> bool:
    """A positive number that float32 can hold (the library's arithmetic is float32, so a
    larger one would become inf there and is refused)."""
    v = as_real(value)
    return v is not None and math.isfinite(v) and 0 < v <= limit


def positive_f32(value) -> bool:
    """A positive number float32 holds as a *normal* number: what samplers, temperatures,
    alpha and sigmas need (below ~1.2e-38 it would round to 0 and E / T divide by zero)."""
    v = as_real(value)
    return v is not None and math.isfinite(v) and F32_TINY <= v <= F32_MAX


def nonneg_finite(value) -> bool:
    v = as_real(value)
    return v is not None and math.isfinite(v) and 0 <= v <= F32_MAX


def positive_int(value) -> bool:
    return (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
            and value >= 1)


# -- strategies ---------------------------------------------------------------------------

# Edge values of a scalar hyperparameter: every float class, ints, wrong types.
SCALARS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 4),
    st.sampled_from([0.0, -0.0, 1e-30, HUGE, True, False, None, "0.1", np.float32(0.25),
                     np.float64(-1.0), np.int64(2), np.array([0.1, 0.2]), np.array(0.5),
                     jnp.float32(0.5), jnp.float32(np.nan), jnp.array([1.0, 2.0])]),
)
INTS = st.one_of(st.integers(-3, 5), st.sampled_from([2.0, True, None, "2", np.int64(2),
                                                      np.float32(3.0)]))


def fault_of_scalar(value, valid: bool = False) -> str:
    """The fault kind of a scalar hyperparameter (``valid`` says whether it is accepted)."""
    v = as_real(value)
    if v is None:
        return "bad_type"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf"
    if abs(v) >= 1e29:
        return "huge"
    return "valid" if valid else "bad_hyperparameter"


def finite_floats(limit: float = 10.0):
    return st.floats(-limit, limit, width=32)


def vector_of_kind(data, fault: str, shape: tuple) -> np.ndarray:
    """A float32 array of ``shape`` with the fault ``valid``/``nan``/``inf``/``huge``."""
    if fault == "huge":
        elements = st.one_of(st.floats(LARGE, HUGE, width=32),
                             st.floats(-HUGE, -LARGE, width=32), finite_floats())
        x = data.draw(hnp.arrays(np.float32, shape, elements=elements))
        x.flat[0] = data.draw(st.sampled_from([HUGE, -HUGE]))   # at least one huge value
        return x
    x = data.draw(hnp.arrays(np.float32, shape, elements=finite_floats()))
    if fault in ("nan", "inf") and x.size:
        bad = {"nan": [np.nan], "inf": [np.inf, -np.inf]}[fault]
        index = data.draw(st.integers(0, x.size - 1))
        x.flat[index] = data.draw(st.sampled_from(bad))
    return x


# =========================================================================================
# Samplers: langevin, mala, hmc, run_chain, run_chains, init_chains
# =========================================================================================

SAMPLER_KINDS = ("langevin", "mala", "hmc")


def build_sampler(kind: str, **kwargs):
    if kind == "langevin":
        kwargs.setdefault("step_size", 0.05)
        if "temperature" not in kwargs:
            kwargs.setdefault("noise_scale", 0.01)
        return ej.langevin(softabs, **kwargs)
    if kind == "mala":
        kwargs.setdefault("step_size", 0.05)
        return samplers.mala(softabs, **kwargs)
    kwargs.setdefault("step_size", 0.05)
    kwargs.setdefault("num_leapfrog_steps", 2)
    return samplers.hmc(softabs, **kwargs)


@functools.lru_cache(maxsize=None)
def chain_runner(kind: str):
    sampler = build_sampler(kind)

    @jax.jit
    def run(key, x):
        return ej.run_chain(key, sampler, sampler.init(x, P0), P0, 3, trace=True)

    return run


@props(45)
@given(kind=st.sampled_from(SAMPLER_KINDS), fault=st.sampled_from(["valid", "nan", "inf", "huge"]),
       data=st.data())
def test_sampler_start_values(kind, fault, data):
    """A finite start (1e30 included) stays finite and no step is counted non-finite; a
    NaN/inf start is *not* hidden: it propagates (the position keeps it) and every step
    counts it in ``Info.nonfinite`` (the samplers are jitted: no host-side value checks)."""
    record("sampler_start_values", fault, kind, "run_chain")
    x = vector_of_kind(data, fault, (D,))
    state, info = chain_runner(kind)(KEY, jnp.asarray(x))
    position = np.asarray(state.position)
    assert position.shape == (D,) and info.energy.shape == (3,) and info.nonfinite.shape == (3,)
    nonfinite = np.asarray(info.nonfinite)
    if fault in ("valid", "huge"):
        assert np.all(np.isfinite(position)), (x, position)
        assert nonfinite.sum() == 0, (x, nonfinite)
        assert np.all(np.isfinite(np.asarray(info.energy)))
    else:
        assert nonfinite.tolist() == [1, 1, 1], (x, nonfinite)
        assert not np.all(np.isfinite(position)), "a non-finite start was silently replaced"


LANGEVIN_FIELDS = ("step_size", "noise_scale", "temperature", "grad_clip", "clip_range")
MCMC_FIELDS = ("step_size", "temperature")


@props(120)
@given(kind=st.sampled_from(SAMPLER_KINDS), data=st.data())
def test_sampler_hyperparameters(kind, data):
    """Every hyperparameter is checked at construction: valid values build a sampler,
    anything else (0, negative, NaN, inf, bool, None, str, vectors) raises naming it."""
    fields = {"langevin": LANGEVIN_FIELDS, "mala": MCMC_FIELDS,
              "hmc": MCMC_FIELDS + ("num_leapfrog_steps",)}[kind]
    field = data.draw(st.sampled_from(fields))
    if field == "num_leapfrog_steps":
        value = data.draw(INTS)
        valid = positive_int(value)
        fault = "valid" if valid else ("bad_type" if not isinstance(value, numbers.Integral)
                                       else "bad_hyperparameter")
    elif field == "clip_range":
        value = data.draw(st.one_of(
            st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)),
            st.sampled_from([1.0, (0.0,), (0.0, 1.0, 2.0), None, "ab", (-1, 1)])))
        valid = value is None or (isinstance(value, tuple) and len(value) == 2
                                  and not isinstance(value[0], str) and value[0] < value[1])
        fault = "valid" if valid else "bad_hyperparameter"
    else:
        value = data.draw(SCALARS)
        valid = (nonneg_finite if field == "noise_scale" else positive_f32)(value) \
            or (kind == "langevin" and field != "step_size" and value is None)   # defaults
        fault = fault_of_scalar(value, valid)
    record("sampler_hyperparameters", fault, kind)
    if valid:
        sampler = build_sampler(kind, **{field: value})
        assert isinstance(sampler, samplers.Sampler)
    else:
        expect_clear_error(lambda: build_sampler(kind, **{field: value}), field)


@props(30)
@given(kind=st.sampled_from(SAMPLER_KINDS),
       fault=st.sampled_from(["wrong_dtype", "wrong_rank", "huge"]), data=st.data())
def test_sampler_positions_of_the_wrong_kind(kind, fault, data):
    """Integer/bool positions and batches given where one chain is expected raise a
    clear error naming ``position`` (at init for MALA/HMC, at the first step for SGLD,
    whose init takes no params); a huge step size is valid, and its overflow is counted."""
    record("sampler_positions_of_the_wrong_kind", fault, kind, "init_chains")
    per_example = lambda p, x: jnp.sum(x - p, axis=-1) ** 2            # scalar for [D] only
    sampler = {"langevin": ej.langevin(per_example, 0.1, 0.01),
               "mala": samplers.mala(per_example, 0.1),
               "hmc": samplers.hmc(per_example, 0.1, 2)}[kind]
    if fault == "wrong_dtype":
        dtype = data.draw(st.sampled_from([np.int32, np.bool_, np.uint8]))
        x = jnp.ones((D,), dtype)
        expect_clear_error(lambda: sampler.init(x, P0), "position")
        # init_chains reports the same error for a batch of integer positions.
        expect_clear_error(lambda: samplers.init_chains(sampler, jnp.ones((3, D), dtype), P0),
                           "position")
    elif fault == "wrong_rank":
        x = jnp.ones((data.draw(st.sampled_from([2, 3])), D))           # a batch, not a chain
        def call():
            state = sampler.init(x, P0)
            return sampler.step(KEY, state, P0)
        expect_clear_error(call, "position")
    else:   # a huge step size: finite positions in, no NaN out; an overflow is counted
        state, info = big_step(kind, HUGE)(KEY, jnp.ones(D))
        assert not np.any(np.isnan(np.asarray(state.position)))
        if not all_finite(state.position):
            assert int(info.nonfinite) == 1


@functools.lru_cache(maxsize=None)
def big_step(kind: str, step_size: float):
    sampler = build_sampler(kind, step_size=step_size)
    return jax.jit(lambda key, x: sampler.step(key, sampler.init(x, P0), P0))


run_chain_jit = jax.jit(samplers.run_chain, static_argnames=("sampler", "num_steps", "trace"))
LANGEVIN = ej.langevin(softabs, 0.05, 0.01)


@props(30)
@given(num_steps=st.one_of(st.integers(-2, 3), st.sampled_from([2.0, True, None, "3", np.int64(2),
                                                                 np.float64(1.0)])))
def test_run_chain_num_steps(num_steps):
    """``num_steps`` is a static positive int (NumPy ints welcome); anything else raises."""
    valid = positive_int(num_steps)
    record("run_chain_num_steps", "valid" if valid else
           ("bad_type" if not isinstance(num_steps, numbers.Integral) else "bad_hyperparameter"),
           "run_chain")
    state = LANGEVIN.init(jnp.ones(D))
    if valid:
        final, info = run_chain_jit(KEY, LANGEVIN, state, P0, num_steps, trace=True)
        assert info.energy.shape == (int(num_steps),) and all_finite(final)
    else:
        expect_clear_error(lambda: run_chain_jit(KEY, LANGEVIN, state, P0, num_steps), "num_steps")


COND_SAMPLER = ej.langevin(lambda p, x, c: softabs(p, x) + c, 0.05, 0.01)


@jax.jit
def run_conditioned_chains(key, x, c):
    states = samplers.init_chains(COND_SAMPLER, x, P0, c)
    return ej.run_chains(key, COND_SAMPLER, states, P0, 2, c)


@props(30)
@given(fault=st.sampled_from(["valid", "empty", "mismatched_size", "wrong_rank"]),
       chains=st.sampled_from([1, 3]))
def test_run_chains_batch_axes(fault, chains):
    """Chains are a leading axis shared by positions, states and every cond: zero chains
    work (empty outputs); a cond of another length or a state without the chain axis
    raises naming ``cond``/``positions``/``states`` (static shapes, checked under jit)."""
    record("run_chains_batch_axes", fault, "run_chains", "init_chains")
    x = jnp.ones((0 if fault == "empty" else chains, D))
    c = jnp.zeros((x.shape[0] + (1 if fault == "mismatched_size" else 0),))
    if fault == "wrong_rank":
        expect_clear_error(lambda: ej.run_chains(KEY, LANGEVIN, LANGEVIN.init(jnp.ones(())), P0, 2),
                           "states")
        expect_clear_error(lambda: samplers.init_chains(LANGEVIN, jnp.ones(()), P0), "positions")
    elif fault == "mismatched_size":
        expect_clear_error(lambda: run_conditioned_chains(KEY, x, c), "cond")
    else:
        states, info = run_conditioned_chains(KEY, x, c)
        assert states.position.shape == x.shape and info.nonfinite.shape == (x.shape[0],)
        assert all_finite(states.position) and int(np.sum(info.nonfinite)) == 0


# =========================================================================================
# Replay buffer: init_buffer, sample, push
# =========================================================================================

@props(60)
@given(capacity=INTS, num_classes=st.one_of(st.none(), INTS),
       shape=st.sampled_from([(2,), (), (1, 2), (-1,), 2, (2.5,), None]))
def test_init_buffer_arguments(capacity, num_classes, shape):
    """Capacity and num_classes are positive ints (capacity divisible by num_classes) and the
    sample shape a tuple of ints >= 0; valid buffers hold U(-1, 1) samples and per-class
    labels. (A float num_classes used to poison a JAX cache, breaking later valid calls.)"""
    valid_shape = isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)
    valid = (positive_int(capacity) and valid_shape
             and (num_classes is None or (positive_int(num_classes)
                                          and capacity % num_classes == 0)))
    if valid:
        fault = "valid"
    elif not valid_shape:
        fault = "wrong_rank" if shape in (2, None) else "bad_hyperparameter"
    else:
        fault = "bad_type" if any(v is not None and not isinstance(v, numbers.Integral)
                                  for v in (capacity, num_classes)) else "bad_hyperparameter"
    record("init_buffer_arguments", fault, "init_buffer")
    call = lambda: rb.init_buffer(KEY, shape, capacity=capacity, num_classes=num_classes)
    if valid:
        buf = call()
        assert buf.samples.shape == (capacity, *shape) and buf.labels.shape == (capacity,)
        samples = np.asarray(buf.samples)
        assert np.all((samples >= -1) & (samples <= 1))
        per = capacity // (num_classes or 1)
        np.testing.assert_array_equal(buf.labels, np.arange(capacity) // per)
    else:
        expect_clear_error(call, "capacity", "num_classes", "sample_shape")


BUFFER = rb.init_buffer(KEY, (D,), capacity=6)
CLASS_BUFFER = rb.init_buffer(KEY, (D,), capacity=6, num_classes=K)


@pytest.mark.slow
@props(40)
@given(fault=st.sampled_from(["valid", "empty", "bad_hyperparameter", "bad_type",
                              "label_out_of_range", "mismatched_size", "wrong_dtype"]),
       data=st.data())
def test_buffer_sample_arguments(fault, data):
    """``sample`` draws ``[batch_size, ...]`` starts from the labels' own slots; a bad batch
    size, probability, or labels of the wrong shape/dtype/range raise naming the argument
    (the label range only where labels are concrete: eager calls)."""
    record("buffer_sample_arguments", fault, "sample")
    batch = data.draw(st.sampled_from([1, 4]))
    labels = data.draw(hnp.arrays(np.int32, (batch,), elements=st.integers(0, K - 1)))
    kwargs = dict(reinit_prob=data.draw(st.floats(0.0, 1.0)), labels=labels, num_classes=K)
    names = ()
    if fault == "empty":
        batch, kwargs["labels"] = 0, np.zeros((0,), np.int32)
    elif fault == "bad_hyperparameter":
        which = data.draw(st.sampled_from(["batch_size", "reinit_prob", "num_classes"]))
        bad = {"batch_size": st.integers(-3, -1), "num_classes": st.sampled_from([0, -1]),
               "reinit_prob": st.one_of(st.floats(1.0001, 10), st.floats(-10, -1e-4),
                                        st.just(float("nan")))}[which]
        if which == "batch_size":
            batch = data.draw(bad)
        else:
            kwargs[which] = data.draw(bad)
        names = (which,)
    elif fault == "bad_type":
        which = data.draw(st.sampled_from(["batch_size", "reinit_prob", "num_classes"]))
        value = data.draw(st.sampled_from([None, "1", 2.0, True]))
        if which == "batch_size":
            batch = value
        else:
            kwargs[which] = value
        names = (which,)
    elif fault == "label_out_of_range":
        kwargs["labels"] = labels.copy()
        kwargs["labels"][data.draw(st.integers(0, batch - 1))] = data.draw(
            st.sampled_from([-1, K, K + 5, -100]))
        names = ("labels",)
    elif fault == "mismatched_size":
        kwargs["labels"] = np.zeros((batch + data.draw(st.sampled_from([-1, 1])),), np.int32)
        names = ("labels",)
    elif fault == "wrong_dtype":
        kwargs["labels"] = labels.astype(data.draw(st.sampled_from([np.float32, np.bool_])))
        names = ("labels",)
    call = lambda: rb.sample(KEY, CLASS_BUFFER, batch, **kwargs)
    if names:
        expect_clear_error(call, *names)
        return
    x0, got_labels, indices = call()
    assert x0.shape == (batch, D) and got_labels.shape == (batch,) and indices.shape == (batch,)
    assert all_finite(x0)
    np.testing.assert_array_equal(got_labels, kwargs["labels"])
    # Slot i of a 6-slot, 3-class buffer belongs to class i // 2.
    np.testing.assert_array_equal(np.asarray(indices) // 2, kwargs["labels"])


@props(70)
@given(fault=st.sampled_from(["valid", "nan", "huge", "empty", "wrong_rank", "wrong_dtype",
                              "mismatched_size", "index_out_of_range"]),
       with_indices=st.booleans(), data=st.data())
def test_buffer_push_arguments(fault, with_indices, data):
    """``push`` writes ``[B, ...]`` samples at ``indices`` (or first-in-first-out) and leaves
    the other slots alone. It stores values verbatim, NaN included: it runs inside the
    jitted loss, which counts non-finite chain steps instead. Shapes, index dtypes and
    (eagerly) index ranges are checked."""
    record("buffer_push_arguments", fault, "push")
    batch = data.draw(st.sampled_from([1, 3]))
    samples = vector_of_kind(data, fault if fault in ("nan", "huge") else "valid", (batch, D))
    indices = np.asarray(data.draw(st.permutations(range(6)))[:batch], np.int32)
    names = ()
    if fault == "empty":
        samples, indices = samples[:0], indices[:0]
    elif fault == "wrong_rank":
        samples = samples[0] if data.draw(st.booleans()) else samples[..., None]
        names = ("samples",)
    elif fault == "wrong_dtype":
        if with_indices:
            indices, names = indices.astype(np.float32), ("indices",)
        else:   # integer samples are cast to the buffer's float dtype: that works
            samples = np.round(samples).astype(np.int32)
    elif fault == "mismatched_size":
        indices, with_indices, names = np.zeros((batch + 1,), np.int32), True, ("indices",)
    elif fault == "index_out_of_range":
        indices = indices.copy()
        indices[0] = data.draw(st.sampled_from([-1, 6, 100]))
        with_indices, names = True, ("indices",)
    call = lambda: rb.push(BUFFER, samples, indices if with_indices else None)
    if names:
        expect_clear_error(call, *names)
        return
    out = call()
    assert out.samples.shape == BUFFER.samples.shape and out.samples.dtype == jnp.float32
    slots = indices if with_indices else (np.arange(len(samples)) % 6)
    new, old = np.asarray(out.samples), np.asarray(BUFFER.samples)
    np.testing.assert_array_equal(new[slots], np.asarray(samples, np.float32))
    untouched = np.setdiff1d(np.arange(6), slots)
    np.testing.assert_array_equal(new[untouched], old[untouched])


# =========================================================================================
# Losses: contrastive_divergence, jem_hybrid, nce, denoising_score_matching, cross_entropy
# =========================================================================================

LOSS_NAMES = ("contrastive_divergence", "jem_hybrid", "nce", "denoising_score_matching",
              "cross_entropy")
NCE_NOISE = distributions.uniform_box(-2.0, 2.0, (D,))


@functools.lru_cache(maxsize=None)
def loss_setup(name: str):
    """``(transform, params, labelled)`` for each loss, built once."""
    if name == "contrastive_divergence":
        sampler = ej.langevin(softabs, 0.05, 0.01)
        cd = ej.contrastive_divergence(softabs, sampler, num_steps=2,
                                       chain_start=ej.samplers.replay_buffer_start(capacity=8))
        return cd, P0, False
    if name == "jem_hybrid":
        sampler = ej.langevin(ej.energy_from_logits(logits_fn), 0.05, 0.01)
        return ej.jem_hybrid(logits_fn, sampler, num_steps=2,
                             chain_start=ej.samplers.replay_buffer_start(capacity=8)), W, True
    if name == "nce":
        return ej.nce(softabs, NCE_NOISE), ej.nce_params(P0), False
    if name == "denoising_score_matching":
        return ej.denoising_score_matching(softabs, sigma=0.1), P0, False
    return ej.cross_entropy(logits_fn), W, True


@functools.lru_cache(maxsize=None)
def jitted_loss(name: str):
    transform, _, _ = loss_setup(name)
    return jax.jit(transform.loss)


@functools.lru_cache(maxsize=None)
def loss_state(name: str):
    transform, params, labelled = loss_setup(name)
    example = {"x": jnp.zeros((B, D))}
    if labelled:
        example["y"] = jnp.zeros((B,), jnp.int32)
    return transform.init(KEY, params, example)


@pytest.mark.slow
@props(90)
@given(name=st.sampled_from(LOSS_NAMES),
       fault=st.sampled_from(["valid", "nan", "inf", "huge", "empty", "wrong_rank",
                              "wrong_dtype", "mismatched_size", "label_out_of_range",
                              "bad_type", "missing_key"]),
       data=st.data())
def test_loss_batches(name, fault, data):
    """Valid batches (1e30 included) give a finite loss and finite info; NaN/inf data give
    a non-finite loss (losses are jitted and cannot raise on values, but never return a
    finite-looking number); empty batches, wrong ranks/dtypes/lengths and labels out of
    range raise naming ``batch['x']``/``batch['y']`` (label values where concrete: ``init``
    and eager calls)."""
    transform, params, labelled = loss_setup(name)
    if (fault == "label_out_of_range" and not labelled) or \
            (fault == "mismatched_size" and name == "denoising_score_matching"):
        return   # no labels to break; DSM takes any example shape (not counted)
    record("loss_batches", fault, name)
    x = vector_of_kind(data, fault if fault in ("nan", "inf", "huge") else "valid", (B, D))
    batch = {"x": x}
    if labelled:
        batch["y"] = data.draw(hnp.arrays(np.int32, (B,), elements=st.integers(-1, K - 1)))
    state = loss_state(name)
    if fault in ("valid", "nan", "inf", "huge"):
        value, (_, info) = jitted_loss(name)(params, state, batch, KEY)
        assert value.shape == ()
        if fault in ("valid", "huge"):
            assert all_finite(value) and all_finite(info), (name, x, value, info)
        elif name == "cross_entropy" and np.all(batch["y"][~np.all(np.isfinite(x), axis=1)] < 0):
            pass   # the bad rows are unlabelled (y = -1): cross-entropy leaves them out by design
        else:
            assert not np.isfinite(float(value)), (name, x, value)
        return
    names = ("batch['x']",)
    if fault == "empty":
        batch = {k: v[:0] for k, v in batch.items()}
    elif fault == "wrong_rank":
        batch["x"] = x[0, 0] if data.draw(st.booleans()) else np.zeros((0,), np.float32)
    elif fault == "wrong_dtype":
        if labelled and data.draw(st.booleans()):
            batch["y"], names = batch["y"].astype(np.float32), ("batch['y']",)
        elif name == "denoising_score_matching":
            batch["x"] = np.round(x).astype(np.int32)
        else:   # integer data: energies of ints are fine, and the loss traces to a float scalar
            batch["x"] = np.round(x).astype(np.int32)
            value, _ = jax.eval_shape(transform.loss, params, state, batch, KEY)  # no compile
            assert value.shape == () and jnp.issubdtype(value.dtype, jnp.floating)
            return
    elif fault == "mismatched_size":
        if labelled:
            batch["y"], names = batch["y"][:B - 1], ("batch['y']",)
        else:   # an example shape other than init's (CD's buffer) or the noise's (NCE)
            batch["x"] = np.zeros((B, D + 1), np.float32)
            names = ("batch['x']", "noise")
    elif fault == "label_out_of_range":
        batch["y"] = batch["y"].copy()
        batch["y"][0] = data.draw(st.sampled_from([K, K + 3, -2]))
        names = ("batch['y']",)
        # Concrete labels are checked by init (eager) and by an eager loss call.
        expect_clear_error(lambda: transform.init(KEY, params, batch), *names)
    elif fault == "bad_type":
        batch, names = data.draw(st.sampled_from([x, [x], None])), ("batch",)
    elif fault == "missing_key":
        batch = {"y": x} if not labelled else {"x": x}
        names = ("batch[",)
        with pytest.raises(KeyError, match="needs batch"):
            transform.loss(params, state, batch, KEY)
        return
    expect_clear_error(lambda: transform.loss(params, state, batch, KEY), *names)


LOSS_FIELDS = {
    "contrastive_divergence": ("num_steps", "capacity", "reinit_prob", "energy_l2",
                               "temperature", "kl_weight", "entropy_weight", "num_classes"),
    "jem_hybrid": ("classification_weight", "generative_weight", "num_steps", "capacity"),
    "nce": ("noise_ratio",),
    "denoising_score_matching": ("sigma", "sigmas"),
    "cross_entropy": ("label_smoothing",),
}
INT_FIELDS = ("num_steps", "capacity", "num_classes")
CHAIN_START_FIELDS = ("capacity", "reinit_prob")  # of replay_buffer_start, the loss's chain_start


def loss_field_valid(field: str, value) -> bool:
    if field == "num_classes" and value is None:   # the default: unconditional
        return True
    if field in INT_FIELDS:
        return positive_int(value)
    v = as_real(value)
    if field == "reinit_prob":
        return v is not None and 0.0 <= v <= 1.0
    if field == "label_smoothing":
        return v is not None and 0.0 <= v < 1.0
    if field == "noise_ratio":   # too many noise samples is refused by the loss, see below
        return positive_finite(value, limit=math.inf)
    if field == "sigma":
        return positive_f32(value)
    if field == "temperature":   # CD's τ multiplies energies: any positive float32
        return positive_finite(value)
    return nonneg_finite(value)   # weights and regularisers


def build_loss(name: str, field: str, value):
    start = {"capacity": 8}
    kwargs = {"num_steps": 2}
    (start if field in CHAIN_START_FIELDS else kwargs)[field] = value
    kwargs["chain_start"] = ej.samplers.replay_buffer_start(**start)
    if name == "contrastive_divergence":
        return ej.contrastive_divergence(softabs, LANGEVIN, **kwargs)
    if name == "jem_hybrid":
        return ej.jem_hybrid(logits_fn, LANGEVIN, **kwargs)
    if name == "nce":
        return ej.nce(softabs, NCE_NOISE, noise_ratio=value)
    if name == "denoising_score_matching":
        return ej.denoising_score_matching(softabs, **{field: value})
    return ej.cross_entropy(logits_fn, label_smoothing=value)


@props(120)
@given(name=st.sampled_from(LOSS_NAMES), data=st.data())
def test_loss_hyperparameters(name, data):
    """Loss hyperparameters are checked at construction: ints are positive ints, weights
    and regularisers finite and >= 0, temperatures/sigmas/noise ratios positive and
    finite, probabilities in range; a bad value raises naming the field."""
    field = data.draw(st.sampled_from(LOSS_FIELDS[name]))
    if field in INT_FIELDS:
        value = data.draw(INTS)
    elif field == "sigmas":
        value = data.draw(st.one_of(st.lists(SCALARS.filter(lambda v: as_real(v) is not None),
                                             max_size=3),
                                    st.sampled_from([None, "ab", 0.1])))
    else:
        value = data.draw(SCALARS)
    if field == "sigmas":
        valid = isinstance(value, list) and len(value) > 0 and all(positive_f32(v)
                                                                    for v in value)
        fault = "valid" if valid else ("empty" if value == [] else "bad_hyperparameter")
    else:
        valid = bool(loss_field_valid(field, value))
        fault = fault_of_scalar(value, valid)
        if field in INT_FIELDS and not valid:
            fault = ("bad_type" if not isinstance(value, numbers.Integral)
                     or isinstance(value, bool) else "bad_hyperparameter")
    record("loss_hyperparameters", fault, name)
    call = lambda: build_loss(name, field, value)
    if valid:
        transform = call()
        assert isinstance(transform, ej.LossTransform)
        if field == "noise_ratio" and as_real(value) * B > 2**31 - 1:
            # round(ν B) noise samples must fit an array dimension: refused at the first trace.
            expect_clear_error(lambda: transform.loss(ej.nce_params(P0), (),
                                                      {"x": jnp.zeros((B, D))}, KEY),
                               "noise_ratio")
    else:
        expect_clear_error(call, field)


def test_traced_labels_out_of_range_give_nan_energies_not_another_class():
    """Under jit a label is a traced value and cannot raise: the joint energy of an
    out-of-range class is NaN (counted by samplers, caught by the divergence guard), not
    the energy of a wrapped-around class. Eagerly it raises."""
    record("traced_labels", "label_out_of_range", "joint_energy_from_logits", "batch_energy")
    joint = ej.joint_energy_from_logits(logits_fn)
    batched = jax.jit(ej.batch_energy(joint))
    e = np.asarray(batched(W, jnp.ones((4, D)), jnp.array([0, K - 1, K, -1])))
    assert np.all(np.isfinite(e[:2])) and np.all(np.isnan(e[2:]))
    expect_clear_error(lambda: joint(W, jnp.ones(D), K), "y=")
    expect_clear_error(lambda: joint(W, jnp.ones(D), jnp.float32(1.0)), "y has")


# =========================================================================================
# Metrics
# =========================================================================================

CLASSIFICATION_FAULTS = ("valid", "huge", "nan", "inf", "empty", "wrong_rank", "wrong_dtype",
                         "mismatched_size", "label_out_of_range")


@pytest.mark.slow
@props(75)
@given(fault=st.sampled_from(CLASSIFICATION_FAULTS), k=st.sampled_from([1, 3]), data=st.data())
def test_classification_metrics(fault, k, data):
    """accuracy, NLL, ECE and classification_report: valid logits (1e30 included) give
    accuracy and ECE in [0, 1] and a finite NLL >= 0; NaN/inf logits, empty batches,
    wrong ranks/dtypes, mismatched lengths and labels outside [0, K) raise naming
    ``logits``/``probs``/``labels`` (these are eager calls, so values are checked)."""
    record("classification_metrics", fault, "accuracy", "negative_log_likelihood",
           "expected_calibration_error", "classification_report")
    n = 4
    logits = vector_of_kind(data, fault if fault in ("nan", "inf", "huge") else "valid", (n, k))
    labels = data.draw(hnp.arrays(np.int32, (n,), elements=st.integers(0, k - 1)))
    names = ("logits", "probs")
    probs = None
    if fault == "empty":
        which = data.draw(st.sampled_from(["n", "k"]))
        logits = logits[:0] if which == "n" else logits[:, :0]
        labels = labels[:0] if which == "n" else labels
    elif fault == "wrong_rank":
        logits = logits[0] if data.draw(st.booleans()) else logits[None]
    elif fault == "wrong_dtype":
        if data.draw(st.booleans()):
            labels, names = labels.astype(np.float32), ("labels",)
        else:
            logits = np.round(logits).astype(np.int32)
            probs = logits
    elif fault == "mismatched_size":
        labels, names = np.concatenate([labels, labels[:1]]), ("labels",)
    elif fault == "label_out_of_range":
        labels = labels.copy()
        labels[data.draw(st.integers(0, n - 1))] = data.draw(st.sampled_from([-1, k, k + 7]))
        names = ("labels",)
    if probs is None:   # probabilities where the logits are valid; else the bad array itself
        shaped = np.ndim(logits) == 2 and min(np.shape(logits)) > 0
        probs = jax.nn.softmax(jnp.asarray(logits), axis=-1) \
            if shaped and fault not in ("nan", "inf") else logits
    if fault in ("valid", "huge"):
        acc = float(metrics.accuracy(logits, labels))
        nll = float(metrics.negative_log_likelihood(logits, labels))
        ece = float(metrics.expected_calibration_error(probs, labels))
        report = metrics.classification_report(logits, labels)
        assert 0.0 <= acc <= 1.0 and 0.0 <= ece <= 1.0 + 1e-6 and np.isfinite(nll) and nll >= 0
        assert report == pytest.approx({"accuracy": acc, "nll": nll, "ece": ece}, rel=1e-5,
                                       abs=1e-6)
        # Logits passed where probabilities are expected: refused, not a "calibration" > 1.
        if np.max(np.abs(logits)) > 1.5:
            expect_clear_error(lambda: metrics.expected_calibration_error(logits, labels),
                               "probs")
        return
    expect_clear_error(lambda: metrics.accuracy(logits, labels), *names)
    expect_clear_error(lambda: metrics.negative_log_likelihood(logits, labels), *names)
    expect_clear_error(lambda: metrics.expected_calibration_error(probs, labels), *names)
    expect_clear_error(lambda: metrics.classification_report(logits, labels), *names)


SCORE_FAULTS = ("valid", "inf", "huge", "nan", "empty", "wrong_rank", "wrong_dtype")


@pytest.mark.slow
@props(60)
@given(fault=st.sampled_from(SCORE_FAULTS), data=st.data())
def test_auroc_aupr_roc(fault, data):
    """AUROC, AUPR (in and out) and the ROC curve: real scores (±inf and 1e30 included:
    they rank) give AUROC in [0, 1] with AUROC(a, b) = 1 - AUROC(b, a), AUPR in (0, 1]
    and a monotone ROC from (0, 0) to (1, 1) whose area is the AUROC; NaN scores (no rank),
    empty or non-vector scores raise naming the scores. Integer/bool scores are fine."""
    record("auroc_aupr_roc", fault, "auroc", "aupr", "roc_curve")
    n, m = 3, 2      # one pair of lengths (and its swap): a few compilations, not dozens
    kind = fault if fault in ("nan", "inf", "huge") else "valid"
    s_in = vector_of_kind(data, kind, (n,))
    s_out = vector_of_kind(data, "valid", (m,))
    if data.draw(st.booleans()):
        s_in, s_out = s_out, s_in
    if fault == "empty":
        s_in = s_in[:0]
    elif fault == "wrong_rank":
        s_in = s_in[:, None]
    elif fault == "wrong_dtype":   # integer, bool and unsigned scores rank too
        dtype = data.draw(st.sampled_from([np.int32, np.bool_, np.uint8]))
        s_in, s_out = (np.round(np.abs(s)).astype(dtype) for s in (s_in, s_out))
    if fault in ("nan", "empty", "wrong_rank"):
        names = ("scores",)
        expect_clear_error(lambda: metrics.auroc(s_in, s_out), *names)
        expect_clear_error(lambda: metrics.aupr(s_in, s_out), *names)
        expect_clear_error(lambda: metrics.aupr(s_in, s_out, positive="out"), *names)
        expect_clear_error(lambda: metrics.roc_curve(s_in, s_out), *names)
        return
    area = float(metrics.auroc(s_in, s_out))
    assert 0.0 <= area <= 1.0
    assert float(metrics.auroc(s_out, s_in)) == pytest.approx(1.0 - area, abs=1e-6)
    for positive in ("in", "out"):
        ap = float(metrics.aupr(s_in, s_out, positive=positive))
        assert 0.0 < ap <= 1.0 + 1e-6
    fpr, tpr = (np.asarray(a, np.float64) for a in metrics.roc_curve(s_in, s_out))
    assert fpr.shape == tpr.shape == (len(s_in) + len(s_out) + 1,)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
    assert np.trapezoid(tpr, fpr) == pytest.approx(area, abs=1e-5)


MMD_FAULTS = ("valid", "huge", "degenerate", "nan", "inf", "empty", "wrong_rank",
              "mismatched_size", "bad_hyperparameter")


@props(60)
@given(fault=st.sampled_from(MMD_FAULTS), n=st.sampled_from([2, 5]), data=st.data())
def test_kernel_discrepancies(fault, n, data):
    """mmd, kernel_mmd and kid: valid samples, huge ones (1e30) and degenerate ones (every
    point repeated, median distance 0) give finite values; NaN/inf samples, fewer than 2
    examples, 0-d input, different sizes per example and bad bandwidths raise naming the
    argument. (Before: repeated points and 1e30 values gave NaN.)"""
    record("kernel_discrepancies", fault, "mmd", "kernel_mmd", "kid")
    kind = fault if fault in ("nan", "inf", "huge") else "valid"
    x = vector_of_kind(data, kind, (n, D))
    y = vector_of_kind(data, "valid", (n + 1, D))
    # A few fixed bandwidth sets: the jitted MMD takes them as a static argument.
    bandwidths = data.draw(st.sampled_from([None, (0.5,), (0.1, 2.0)]))
    offset = None
    if fault == "degenerate":
        offset = data.draw(st.sampled_from([0.0, 1.0]))
        x = np.repeat(x[:1], n, axis=0)
        y = np.repeat(x[:1] + offset, n + 1, axis=0)
    names = ()
    if fault in ("nan", "inf"):
        names = ("x", "features_x")
    elif fault == "empty":
        x, names = x[:data.draw(st.sampled_from([0, 1]))], ("x", "features_x")
    elif fault == "wrong_rank":
        x, names = np.float32(1.0), ("x", "features_x")
    elif fault == "mismatched_size":
        y, names = np.zeros((n, D + 1), np.float32), ("shape",)
    elif fault == "bad_hyperparameter":
        bandwidths = data.draw(st.sampled_from([[], [0.0], [-1.0], [float("nan")], [float("inf")],
                                                "ab", [None]]))
        names = ("bandwidths",)
    if names:
        expect_clear_error(lambda: metrics.mmd(x, y, bandwidths), *names)
        if fault != "bad_hyperparameter":
            expect_clear_error(lambda: metrics.kernel_mmd(x, y, "polynomial"), *names)
            expect_clear_error(lambda: metrics.kid(x, y, num_subsets=2, subset_size=2), *names)
        return
    values = [float(metrics.mmd(x, y, bandwidths)), metrics.kernel_mmd(x, y),
              metrics.kernel_mmd(x, y, "polynomial"),
              metrics.kid(x, y, num_subsets=2, subset_size=2).mean]
    assert all(np.isfinite(values)), values
    if offset == 0.0:   # every point the same in both sets: no discrepancy at all
        # (float32 Gaussian kernels; float64 polynomial ones of size ~(|x|² / D + 1)³)
        scale = (float(np.sum(np.square(x[0], dtype=np.float64))) / D + 1.0) ** 3
        assert values[0] == pytest.approx(0.0, abs=1e-5)
        assert values[2] == pytest.approx(0.0, abs=1e-12 * scale)


@props(14)
@given(fault=st.sampled_from(["valid", "huge", "nan", "empty", "wrong_rank"]), data=st.data())
def test_ood_scores_and_report(fault, data):
    """The classifier-as-EBM scores (log p(x), max softmax, gradient norm) are finite and
    ``[B]`` for valid batches (1e30 included); ood_report refuses NaN inputs, empty sets and
    sets of another shape, naming ``x_in``/``ood_sets``/``x``."""
    record("ood_scores_and_report", fault, "log_px_score", "max_softmax_score",
           "grad_norm_score", "ood_report")
    x_in = vector_of_kind(data, fault if fault in ("nan", "huge") else "valid", (3, D))
    x_out = vector_of_kind(data, "valid", (2, D))
    scores = {"log_px": metrics.log_px_score(logits_fn),
              "max_softmax": metrics.max_softmax_score(logits_fn),
              "grad_norm": metrics.grad_norm_score(logits_fn)}
    if fault == "empty":
        for fn in scores.values():
            expect_clear_error(lambda: fn(W, jnp.zeros((0, D))), "x has shape")
        expect_clear_error(lambda: metrics.ood_report(scores, W, x_in, {"out": x_out[:0]}),
                           "ood_sets")
        return
    if fault == "wrong_rank":
        expect_clear_error(lambda: metrics.ood_report(scores, W, x_in, {"out": x_out[:, :1]}),
                           "ood_sets")
        return
    if fault == "nan":
        expect_clear_error(lambda: metrics.ood_report(scores, W, x_in, {"out": x_out}), "x_in")
        expect_clear_error(lambda: metrics.ood_report(scores, W, x_out, {"out": x_in}),
                           "ood_sets")
        return
    for fn in scores.values():
        s = np.asarray(fn(W, jnp.asarray(x_in)))
        assert s.shape == (3,) and np.all(np.isfinite(s))
    if fault == "huge":
        return   # (ood_report jits every score afresh: run it on the valid cases only)
    report = metrics.ood_report(scores, W, x_in, {"out": x_out}, batch_size=4)
    for entry in report["out"].values():
        assert 0.0 <= entry["auroc"] <= 1.0 and 0.0 < entry["aupr"] <= 1.0


# =========================================================================================
# Energy combinators
# =========================================================================================

quad = lambda p, x: 0.5 * jnp.sum((x - p) ** 2)


@props(90)
@given(combinator=st.sampled_from(["product", "mixture", "negation", "with_temperature"]),
       data=st.data())
def test_energy_combinator_arguments(combinator, data):
    """Weights, alpha and temperature are positive finite scalars (a traced value is
    accepted unchecked); bad ones raise naming the argument at construction. Valid
    compositions give the documented value on finite input (1e30 included)."""
    if combinator in ("product", "mixture"):
        field = "weights"
        # Product weights multiply float32 energies, so valid ones must be normal float32
        # numbers; mixture weights are normalised in float64 log space: any positive finite.
        largest = 1e30 if combinator == "product" else 1e308
        value = data.draw(st.one_of(
            st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=2, max_size=2)
            .filter(lambda w: combinator == "mixture" or not all(
                positive_finite(v) and v > largest for v in w)),
            st.lists(st.floats(1e-30, largest), min_size=2, max_size=2),
            st.sampled_from([None, [1.0], [1.0, 1.0, 1.0], "ab", 1.0, [[1.0, 2.0]],
                             [largest, largest], [1.0, 1e300]])))
        w = None if value is None else np.asarray(value, dtype=object)
        ok = positive_f32 if combinator == "product" else \
            (lambda v: positive_finite(v, limit=math.inf))
        valid = value is None or (not isinstance(value, (str, float)) and w.shape == (2,)
                                  and all(ok(float(v)) for v in w))
        fault = "valid" if valid else ("bad_type" if isinstance(value, (str, float)) else
                                       "mismatched_size" if w.shape != (2,) else
                                       "bad_hyperparameter")
        if valid and value is not None and max(float(v) for v in value) > 1e29:
            fault = "huge"
        build = lambda: getattr(energies, combinator)(softabs, quad, weights=value)
    else:
        field = "alpha" if combinator == "negation" else "temperature"
        value = data.draw(SCALARS)
        valid = positive_f32(value)
        fault = fault_of_scalar(value, valid)
        build = (lambda: energies.negation(quad, softabs, value)) if combinator == "negation" \
            else (lambda: ej.with_temperature(quad, value))
    record("energy_combinator_arguments", fault, combinator)
    if not valid:
        expect_clear_error(build, field)
        return
    energy = build()
    x = vector_of_kind(data, data.draw(st.sampled_from(["valid", "huge"])), (D,))
    x = x if combinator == "product" or combinator == "mixture" else np.clip(x, -1e3, 1e3)
    params = P0 if combinator == "with_temperature" else (P0, P0)
    e = float(energy(params, jnp.asarray(x)))
    e_abs, e_quad = float(softabs(P0, x)), float(quad(P0, x))
    if combinator == "with_temperature":   # E / T in float32: may overflow to inf, never NaN
        with np.errstate(over="ignore"):
            expected = np.float32(e_quad) / np.float32(as_real(value))
        assert not np.isnan(e)
        if np.isfinite(expected):
            assert e == pytest.approx(float(expected), rel=1e-5, abs=1e-30)
    elif combinator == "negation":
        assert np.isfinite(e)
    elif combinator == "mixture":
        # -log Σ ŵ_i exp(-E_i) lies in [min_i(E_i - log ŵ_i) - log 2, min_i(E_i - log ŵ_i)].
        ws = np.ones(2) if value is None else np.asarray(value, np.float64)
        log_w = np.log(ws) - np.logaddexp(np.log(ws[0]), np.log(ws[1]))
        parts = np.array([e_abs, e_quad]) - log_w
        if np.all(np.isfinite(parts)):
            top, tol = np.min(parts), 1e-3 * max(1.0, abs(float(np.min(parts))))
            assert top - math.log(2) - tol <= e <= top + tol
    else:   # product: Σ w_i E_i; float32 may overflow to inf (both parts are >= 0), never NaN
        ws = np.ones(2) if value is None else np.asarray(value, np.float64)
        with np.errstate(over="ignore"):
            expected = ws[0] * e_abs + ws[1] * e_quad
        assert not np.isnan(e)
        if np.isfinite(expected) and abs(expected) < 1e38:
            assert e == pytest.approx(expected, rel=1e-4, abs=1e-4)


@props(60)
@given(which=st.sampled_from(["class_energy", "classes_or", "classes_and"]), data=st.data())
def test_class_energy_indices(which, data):
    """Class indices are non-negative ints (checked at construction) below K (checked
    against the logits at trace time); valid ones give finite energies on finite input."""
    if which == "class_energy":
        value = data.draw(st.one_of(st.integers(-2, K + 1),
                                    st.sampled_from([1.0, True, None, "1", np.int64(1)])))
        valid = isinstance(value, numbers.Integral) and not isinstance(value, bool) \
            and 0 <= value < K
        fault = ("valid" if valid else "bad_type" if not isinstance(value, numbers.Integral)
                 or isinstance(value, bool) else "label_out_of_range")
    else:
        value = data.draw(st.one_of(st.lists(st.integers(-1, K), max_size=3),
                                    st.sampled_from([1, "ab", None, [0.0], (0, 0)])))
        valid = isinstance(value, list) and len(value) > 0 and len(set(value)) == len(value) \
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < K for v in value)
        fault = ("valid" if valid else "empty" if value == [] else
                 "label_out_of_range" if isinstance(value, list) and all(
                     isinstance(v, int) for v in value) and len(set(value)) == len(value)
                 else "bad_hyperparameter")
    record("class_energy_indices", fault, which)
    build = lambda: getattr(energies, which)(logits_fn, value)
    x = jnp.asarray(vector_of_kind(data, data.draw(st.sampled_from(["valid", "huge"])), (D,)))
    if valid:
        assert np.isfinite(float(build()(W, x)))
    else:
        expect_clear_error(lambda: build()(W, x), "y=", "classes", "class index")


@props(30)
@given(fault=st.sampled_from(["valid", "empty", "mismatched_size", "wrong_rank"]),
       n=st.sampled_from([1, 3]))
def test_batch_energy_axes(fault, n):
    """batch_energy maps a leading batch axis of x and every cond; zero examples work, a
    cond of another length or a 0-d x raises naming ``conds``/``xs``."""
    record("batch_energy_axes", fault, "batch_energy")
    batched = ej.batch_energy(lambda p, x, c: softabs(p, x) + c)
    x = jnp.ones((0 if fault == "empty" else n, D))
    c = jnp.zeros((x.shape[0] + (1 if fault == "mismatched_size" else 0),))
    if fault == "wrong_rank":
        expect_clear_error(lambda: batched(P0, jnp.ones(()), jnp.zeros(())), "xs")
    elif fault == "mismatched_size":
        expect_clear_error(lambda: batched(P0, x, c), "conds")
    else:
        e = batched(P0, x, c)
        assert e.shape == (x.shape[0],) and all_finite(e)


# =========================================================================================
# What was tried
# =========================================================================================

PUBLIC_FUNCTIONS = {
    # samplers
    "langevin", "mala", "hmc", "run_chain", "run_chains", "init_chains",
    # replay buffer
    "init_buffer", "sample", "push",
    # losses
    "contrastive_divergence", "jem_hybrid", "nce", "denoising_score_matching", "cross_entropy",
    # metrics
    "accuracy", "negative_log_likelihood", "expected_calibration_error",
    "classification_report", "auroc", "aupr", "roc_curve", "mmd", "kernel_mmd", "kid",
    "log_px_score", "max_softmax_score", "grad_norm_score", "ood_report",
    # energies
    "product", "mixture", "negation", "with_temperature", "class_energy", "classes_or",
    "classes_and", "joint_energy_from_logits", "batch_energy",
}


PROPERTIES = {"sampler_start_values", "sampler_hyperparameters",
              "sampler_positions_of_the_wrong_kind", "run_chain_num_steps", "run_chains_batch_axes",
              "init_buffer_arguments", "buffer_sample_arguments", "buffer_push_arguments",
              "loss_batches", "loss_hyperparameters", "traced_labels", "classification_metrics",
              "auroc_aupr_roc", "kernel_discrepancies", "ood_scores_and_report",
              "energy_combinator_arguments", "class_energy_indices", "batch_energy_axes"}


@pytest.mark.totals
def test_zz_what_was_tried():
    """Prints the totals (``pytest -s -n 0 tests/test_properties.py``); runs last in the file."""
    if set(CASES) != PROPERTIES:
        pytest.skip("run the whole file to count the generated cases")
    covered = FUNCTIONS & PUBLIC_FUNCTIONS
    faults = sorted(k for k in FAULTS if k != "valid")
    print(f"\n[test_properties] generated cases executed: {sum(CASES.values())}")
    print(f"[test_properties] per property: {dict(sorted(CASES.items()))}")
    print(f"[test_properties] distinct fault kinds: {len(faults)}: "
          f"{ {k: FAULTS[k] for k in faults} } (+ {FAULTS['valid']} valid cases)")
    print(f"[test_properties] public functions covered: {len(covered)}: {sorted(covered)}")
    assert covered == PUBLIC_FUNCTIONS, sorted(PUBLIC_FUNCTIONS - covered)
