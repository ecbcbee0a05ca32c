"""Tests for ebm_jax.nets.flows: RealNVP and neural spline flows, their pure adapters, the
flow as NCE noise, and maximum-likelihood training (ebm_jax.losses.flow_likelihood)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebm_jax.data.toy2d import get_toy
from ebm_jax.energies.distributions import NoiseDistribution, check_noise, fit_gaussian
from ebm_jax.losses import flow_maximum_likelihood, nce, nce_params
from ebm_jax.metrics.likelihood import kl_by_quadrature
from ebm_jax.nets import (FlowFunctions, NeuralSplineFlow, RealNVP, as_noise,
                          flow_functions)
from ebm_jax.nets.flows import _rq_spline, _spline_knots
from ebm_jax.train import make_train_step
from ebm_jax.train.state import init_train_state

# Small flows, mostly compilation: see the fast_compile marker in tests/conftest.py.
pytestmark = pytest.mark.fast_compile

FLOWS = {
    "realnvp": lambda dim=2: RealNVP(dim, num_layers=4, hidden=(16,), rngs=nnx.Rngs(0)),
    "nsf": lambda dim=2: NeuralSplineFlow(dim, num_layers=3, hidden=(16,), num_bins=5,
                                          bound=3.0, rngs=nnx.Rngs(0)),
}


def _perturbed(params, scale, seed=1):
    """Params moved off the identity initialisation (every leaf gets Gaussian noise)."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [p + scale * jax.random.normal(k, p.shape)
                                        for p, k in zip(leaves, keys)])


# the spline flow takes 1.3-2 s a test (compilation): its cases are slow
@pytest.fixture(scope="module", params=[
    pytest.param(name, marks=pytest.mark.slow) if name == "nsf" else name
    for name in sorted(FLOWS)])
def flow_and_params(request):
    """(name, FlowFunctions, non-identity params) for each flow, shared by the module."""
    flow = flow_functions(FLOWS[request.param]())
    scale = 0.1   # far from the identity, yet well conditioned in float32
    return request.param, flow, _perturbed(flow.params, scale)


def _points(seed, n=64):
    """Points inside and outside the spline's bound (3.0): a normal scaled by 2.5 and +-6."""
    x = 2.5 * jax.random.normal(jax.random.key(seed), (n, 2))
    return jnp.concatenate([x, jnp.array([[6.0, -6.0], [-6.5, 0.3], [0.2, 7.0]])])


@pytest.mark.slow
def test_a_new_flow_is_the_identity_with_a_standard_normal_density():
    for name, make in FLOWS.items():
        flow = flow_functions(make())
        x = _points(0)
        fwd, ld = jax.vmap(flow.forward, (None, 0))(flow.params, x)
        np.testing.assert_allclose(fwd, x, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(ld, 0.0, atol=1e-6, err_msg=name)
        log_p = jax.vmap(flow.log_prob, (None, 0))(flow.params, x)
        expected = -0.5 * jnp.sum(x ** 2, 1) - math.log(2 * math.pi)
        np.testing.assert_allclose(log_p, expected, rtol=1e-5, err_msg=name)
        assert isinstance(flow.params, dict) and flow.dim == 2


def test_inverse_undoes_forward_and_the_log_dets_cancel(flow_and_params):
    name, flow, params = flow_and_params

    @jax.jit
    def round_trips(z):
        x, ld_f = jax.vmap(flow.forward, (None, 0))(params, z)
        z_back, ld_i = jax.vmap(flow.inverse, (None, 0))(params, x)
        w, ld_i2 = jax.vmap(flow.inverse, (None, 0))(params, z)     # z read as data
        w_back, ld_f2 = jax.vmap(flow.forward, (None, 0))(params, w)
        return x, z_back, ld_f + ld_i, w_back, ld_i2 + ld_f2

    z = _points(1)
    x, z_back, ld_sum, w_back, ld_sum2 = round_trips(z)
    assert float(jnp.max(jnp.abs(x - z))) > 0.1, "the perturbed flow should not be the identity"
    np.testing.assert_allclose(z_back, z, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(w_back, z, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(ld_sum, 0.0, atol=1e-3)   # a layer's log-det reaches -7 here
    np.testing.assert_allclose(ld_sum2, 0.0, atol=1e-3)


def test_log_det_is_the_log_abs_det_of_the_jacobian(flow_and_params):
    name, flow, params = flow_and_params

    @jax.jit
    def both(z):
        def check(direction):
            fn = getattr(flow, direction)
            _, ld = jax.vmap(fn, (None, 0))(params, z)
            jac = jax.vmap(jax.jacfwd(lambda v: fn(params, v)[0]))(z)
            return ld, jnp.linalg.slogdet(jac)[1]
        return check("forward"), check("inverse")

    z = _points(2)
    for ld, expected in both(z):
        assert float(jnp.max(jnp.abs(ld))) > 0.05, "a non-trivial log-det"
        np.testing.assert_allclose(ld, expected, atol=1e-4, rtol=1e-4)


def _quadrature_grid(limit=8.0, size=300):
    edges = np.linspace(-limit, limit, size + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    xx, yy = np.meshgrid(centres, centres)
    return jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32), (edges[1] - edges[0])**2


@pytest.mark.optimised  # 90,000 grid points through the flow: run time, not compilation
def test_density_integrates_to_one_and_samples_follow_it(flow_and_params):
    """The density integrates to 1 by quadrature, and samples have its mean and covariance
    and its expected log-density (the negative entropy): a flipped log-det sign or a forward
    map that is not the inverse of ``log_prob``'s would fail."""
    name, flow, params = flow_and_params
    grid, area = _quadrature_grid()
    n = 4000

    @jax.jit
    def compute(key, grid):  # the grid an argument: closed over, XLA would fold it (minutes)
        q = jnp.exp(jax.vmap(flow.log_prob, (None, 0))(params, grid))
        x = flow.sample(params, key, n)
        log_q = jax.vmap(flow.log_prob, (None, 0))(params, x)
        return q, x, log_q

    q, x, log_q = compute(jax.random.key(3), grid)
    q, x, log_q = (np.asarray(a, np.float64) for a in (q, x, log_q))
    grid = np.asarray(grid, np.float64)
    mass = q.sum() * area
    assert abs(mass - 1.0) < 1e-2, mass
    mean = (q[:, None] * grid).sum(0) * area
    cov = ((q[:, None, None] * (grid - mean)[:, :, None] * (grid - mean)[:, None, :]).sum(0)
           * area)
    std = np.sqrt(np.diag(cov))
    assert np.all(np.abs(x.mean(0) - mean) < 5 * std / math.sqrt(n)), (x.mean(0), mean)
    np.testing.assert_allclose(np.cov(x.T), cov, rtol=0.15, atol=0.05 * std.max() ** 2)
    neg_entropy = (q * np.log(np.maximum(q, 1e-300))).sum() * area
    assert abs(log_q.mean() - neg_entropy) < 5 * log_q.std() / math.sqrt(n) + 1e-2, \
        (log_q.mean(), neg_entropy)


@pytest.mark.slow  # 5-10 s on 2 shared cores (compilation)
def test_sample_and_log_prob_is_sample_and_log_prob_and_differentiable(flow_and_params):
    name, flow, params = flow_and_params
    key = jax.random.key(4)

    @jax.jit
    def compute(params):
        x, log_q = flow.sample_and_log_prob(params, key, 32)
        return x, log_q, flow.sample(params, key, 32), \
            jax.vmap(flow.log_prob, (None, 0))(params, x)

    x, log_q, x_alone, log_q_alone = compute(params)
    assert x.shape == (32, 2) and log_q.shape == (32,)
    np.testing.assert_allclose(x, x_alone, atol=1e-6)
    np.testing.assert_allclose(log_q, log_q_alone, atol=1e-4, rtol=1e-4)

    def objective(params, which):   # reparameterised: the gradient flows through the samples
        x, log_q = flow.sample_and_log_prob(params, key, 32)
        return jnp.mean(x[:, 0] ** 2) if which == "samples" else jnp.mean(log_q)

    # against a central difference along a random direction of the params
    direction = _perturbed(jax.tree.map(jnp.zeros_like, params), 1.0, seed=7)
    eps = 1e-3
    plus = jax.tree.map(lambda p, d: p + eps * d, params, direction)
    minus = jax.tree.map(lambda p, d: p - eps * d, params, direction)
    value = jax.jit(objective, static_argnums=1)
    for which in ("samples", "log_prob"):
        grads = jax.jit(jax.grad(objective), static_argnums=1)(params, which)
        norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
        assert all(np.isfinite(norms)) and sum(norms) > 1e-3, which
        numeric = (value(plus, which) - value(minus, which)) / (2 * eps)
        analytic = sum(jnp.vdot(g, d)
                       for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        np.testing.assert_allclose(analytic, numeric, rtol=3e-2, atol=1e-2, err_msg=which)


def test_the_spline_inverse_solves_the_quadratic_and_its_log_derivative_is_exact():
    raw = jax.random.normal(jax.random.key(5), (3 * 6 - 1,)) * 1.5
    knots = _spline_knots(raw[:6], raw[6:12], raw[12:], 2.0, 1e-3, 1e-3, 1e-3)
    assert float(knots[0][0]) == -2.0 and float(knots[1][-1]) == 2.0
    xs = jnp.concatenate([jnp.linspace(-3.0, 3.0, 301), knots[0]])   # the knots too

    @jax.jit
    def compute(xs):
        y, ld = jax.vmap(lambda v: _rq_spline(v, *knots, inverse=False))(xs)
        back, ld_inv = jax.vmap(lambda v: _rq_spline(v, *knots, inverse=True))(y)
        slope = jax.vmap(jax.grad(lambda v: _rq_spline(v, *knots, inverse=False)[0]))(xs)
        return y, ld, back, ld_inv, slope

    y, ld, back, ld_inv, slope = compute(xs)
    np.testing.assert_allclose(back, xs, atol=1e-4)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-4)
    assert np.all(np.diff(np.asarray(y[:301])) > 0)                  # monotone
    outside = np.abs(np.asarray(xs)) > 2.0
    np.testing.assert_array_equal(np.asarray(y)[outside], np.asarray(xs)[outside])
    inside = np.abs(np.asarray(xs)) < 1.99
    np.testing.assert_allclose(np.exp(ld)[inside], np.asarray(slope)[inside], rtol=1e-3)
    assert float(jnp.max(jnp.abs(y - xs))) > 0.1


@pytest.mark.slow  # 5-10 s on 2 shared cores (compilation)
def test_one_dimensional_and_wider_flows_round_trip():
    for dim in (1, 5):
        for name, make in FLOWS.items():
            flow = flow_functions(make(dim))
            params = _perturbed(flow.params, 0.1)
            z = jax.random.normal(jax.random.key(dim), (8, dim))
            x, ld = jax.vmap(flow.forward, (None, 0))(params, z)
            back, ld_inv = jax.vmap(flow.inverse, (None, 0))(params, x)
            assert x.shape == (8, dim)
            assert float(jnp.max(jnp.abs(x - z))) > 1e-2, (name, dim)
            np.testing.assert_allclose(back, z, atol=1e-4, err_msg=f"{name} dim={dim}")
            np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-4)


@pytest.mark.slow  # 5-10 s on 2 shared cores (compilation)
def test_as_noise_is_a_noise_distribution_without_sample_gradients_and_nce_takes_it():
    flow = flow_functions(FLOWS["nsf"]())
    params = _perturbed(flow.params, 0.1)
    noise = as_noise(flow, params)
    assert isinstance(noise, NoiseDistribution) and noise.shape == (2,)
    check_noise(noise, (2,))
    x = noise.sample(jax.random.key(0), 6)
    np.testing.assert_allclose(jax.vmap(noise.log_prob)(x),
                               jax.vmap(flow.log_prob, (None, 0))(params, x), atol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(as_noise(flow, p).sample(jax.random.key(0), 4)))(params)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))
    with pytest.raises(ValueError, match=r"shape \(3,\): expected one flat example of shape"):
        noise.log_prob(jnp.zeros(3))
    energy_fn = lambda scale, v: 0.5 * jnp.sum((v / scale) ** 2)  # noqa: E731
    loss = nce(energy_fn, noise, noise_ratio=2.0)
    value, (_, info) = jax.jit(loss.loss)(nce_params(jnp.ones(2)), (), {"x": x},
                                          jax.random.key(1))
    assert np.isfinite(float(value)) and 0.0 <= float(info["accuracy"]) <= 1.0
    with pytest.raises(ValueError, match="expected FlowFunctions"):
        as_noise(noise, params)


def test_maximum_likelihood_loss_is_the_mean_nll():
    flow = flow_functions(FLOWS["realnvp"]())
    params = _perturbed(flow.params, 0.1)
    loss = flow_maximum_likelihood(flow.log_prob)
    x = jax.random.normal(jax.random.key(0), (16, 2))
    assert loss.init(jax.random.key(0), params, {"x": x}) == ()
    value, (state, info) = jax.jit(loss.loss)(params, (), {"x": x}, jax.random.key(1))
    expected = -jnp.mean(jax.vmap(flow.log_prob, (None, 0))(params, x))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert state == () and set(info) == {"nll"} and float(info["nll"]) == float(value)
    with pytest.raises(KeyError, match="batch\\['x'\\]"):
        loss.loss(params, (), {"y": x}, jax.random.key(1))
    with pytest.raises(TypeError, match="expected a function"):
        flow_maximum_likelihood(None)


def _train(flow, toy, steps, batch_size=256, lr=3e-3):
    loss = flow_maximum_likelihood(flow.log_prob)
    optimizer = optax.adam(lr)
    state = init_train_state(jax.random.key(0), flow.params, optimizer, loss,
                             {"x": toy.sample(jax.random.key(1), batch_size)})
    step = make_train_step(loss, optimizer)

    @jax.jit
    def run(state, key):
        def body(s, k):
            s, metrics = step(s, {"x": toy.sample(k, batch_size)})
            return s, metrics["diverged"]
        return jax.lax.scan(body, state, jax.random.split(key, steps))

    state, diverged = run(state, jax.random.key(2))
    assert float(diverged.sum()) == 0.0
    return state.params


@pytest.mark.slow
def test_maximum_likelihood_fits_8gaussians_far_better_than_a_gaussian():
    toy = get_toy("8gaussians")
    flow = flow_functions(NeuralSplineFlow(2, num_layers=4, hidden=(32, 32), num_bins=8,
                                           bound=4.5, rngs=nnx.Rngs(0)))
    params = _train(flow, toy, steps=400)
    kl_flow = float(kl_by_quadrature(toy.log_prob, lambda x: -flow.log_prob(params, x)))
    gaussian = fit_gaussian(toy.sample(jax.random.key(3), 4096))
    kl_gaussian = float(kl_by_quadrature(toy.log_prob, lambda x: -gaussian.log_prob(x)))
    assert kl_flow < 0.5 * kl_gaussian, (kl_flow, kl_gaussian)


@pytest.mark.parametrize("make, field, value, expected", [
    (lambda: RealNVP(0, rngs=nnx.Rngs(0)), "dim", 0, "a positive int"),
    (lambda: NeuralSplineFlow(0, rngs=nnx.Rngs(0)), "dim", 0, "a positive int"),
    (lambda: RealNVP(2, num_layers=0, rngs=nnx.Rngs(0)), "num_layers", 0, "a positive int"),
    (lambda: NeuralSplineFlow(2, num_layers=0, rngs=nnx.Rngs(0)), "num_layers", 0,
     "a positive int"),
    (lambda: NeuralSplineFlow(2, num_bins=1, rngs=nnx.Rngs(0)), "num_bins", 1, "an int >= 2"),
    (lambda: NeuralSplineFlow(2, bound=0.0, rngs=nnx.Rngs(0)), "bound", 0.0,
     "a positive finite number"),
    (lambda: NeuralSplineFlow(2, bound=-1.0, rngs=nnx.Rngs(0)), "bound", -1.0,
     "a positive finite number"),
    (lambda: RealNVP(2, hidden=(16, 0), rngs=nnx.Rngs(0)), "hidden", 0,
     "a sequence of positive ints"),
])
def test_bad_arguments_raise_one_value_error_naming_the_field(make, field, value, expected):
    with pytest.raises(ValueError, match=f"^{field}={value!r}: expected {expected}"):
        make()


def test_flow_functions_rejects_other_modules_and_methods_check_shapes():
    from ebm_jax.nets import MLP
    with pytest.raises(ValueError, match="expected a flow"):
        flow_functions(MLP(2, (4,), 1, rngs=nnx.Rngs(0)))
    flow = FLOWS["realnvp"]()
    with pytest.raises(ValueError, match=r"RealNVP.inverse got x of shape \(4, 2\)"):
        flow.log_prob(jnp.zeros((4, 2)))
    assert isinstance(flow_functions(flow), FlowFunctions)
