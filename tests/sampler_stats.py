"""Statistics shared by the sampler tests: a multi-chain ESS (Stan's estimator, written
independently of ``ebm_jax.samplers.diagnostics`` so that it can check it), ESS-gated moment
checks, and vmapped chain runs that record every step."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax.samplers import init_chains, run_chains

Z = 5.0
NUM_CHAINS, BURN_IN, NUM_SAMPLES = 512, 200, 1000



def effective_sample_size(x):
    """Multi-chain ESS of draws ``x [C, N]`` (Vehtari et al. 2021 without rank normalisation).

    rho_t = 1 - (W - mean_c acov_c(t)) / var_plus, with W the mean within-chain variance and
    var_plus = (N-1)/N W + B/N (B/N the variance of the chain means); tau = -1 + 2 sum_k
    Gamma_k over the pair sums Gamma_k = rho_2k + rho_2k+1 while positive, made monotone
    (Geyer 1992). ESS = C N / tau, capped at C N log10(C N) as Stan does.
    """
    x = np.asarray(x, np.float64)
    c, n = x.shape
    centred = x - x.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(centred, n=2 * n, axis=1)
    acov = np.fft.irfft(spec * np.conj(spec), n=2 * n, axis=1)[:, :n].mean(0) / n
    within = acov[0] * n / (n - 1)
    var_plus = within * (n - 1) / n + x.mean(axis=1).var(ddof=1)
    rho = 1.0 - (within - acov) / var_plus
    rho[0] = 1.0
    pairs = rho[: n - n % 2].reshape(-1, 2).sum(1)
    first_nonpositive = np.argmax(pairs <= 0) if np.any(pairs <= 0) else len(pairs)
    pairs = np.minimum.accumulate(pairs[:first_nonpositive])
    tau = -1.0 + 2.0 * pairs.sum()
    return c * n / max(tau, 1.0 / np.log10(c * n))


def check_moments(x, mean, cov):
    """Assert that draws ``x [C, N, D]`` have this mean and these centred second moments.

    Every statistic is the mean of a scalar f (``x_i - m_i``, or ``(x_i - m_i)(x_j - m_j)
    - S_ij``) whose expectation is 0 under the target; it must be within
    ``Z * sd(f) / sqrt(ESS(f))``. Returns the z-scores (for the failure message).
    """
    x = np.asarray(x, np.float64)
    d = x.shape[-1]
    stats = {f"mean[{i}]": x[..., i] - mean[i] for i in range(d)}
    for i in range(d):
        for j in range(i, d):
            stats[f"cov[{i},{j}]"] = (x[..., i] - mean[i]) * (x[..., j] - mean[j]) - cov[i][j]
    z = {name: f.mean() / (f.std() / np.sqrt(effective_sample_size(f)))
         for name, f in stats.items()}
    assert all(abs(v) < Z for v in z.values()), f"z-scores beyond {Z}: {z}"
    return z


@functools.partial(jax.jit, static_argnums=0)
def _sample(make_sampler, rng_key, x0, hyper, params):
    sampler = make_sampler(*hyper)
    key_burn, key_sample = jax.random.split(rng_key)
    states = init_chains(sampler, x0, params)
    states, _ = run_chains(key_burn, sampler, states, params, BURN_IN)
    step = jax.vmap(sampler.step, in_axes=(0, 0, None))

    def body(states, key):
        states, info = step(jax.random.split(key, x0.shape[0]), states, params)
        return states, (states.position, info.acceptance_rate)

    _, (xs, acc) = jax.lax.scan(body, states, jax.random.split(key_sample, NUM_SAMPLES))
    return jnp.swapaxes(xs, 0, 1), jnp.mean(acc)


def sample_chains(rng_key, make_sampler, x0, params=None, hyper=()):
    """Positions ``[C, NUM_SAMPLES, D]`` after BURN_IN steps, and the mean acceptance.

    ``make_sampler(*hyper)`` builds the sampler inside one jitted program; ``hyper`` (step
    sizes, temperatures, ...) are traced arguments. Calls with the same module-level
    ``make_sampler`` and the same shapes share that program: a chain program compiles in
    ~1.4 s and runs in ~0.07 s, so sharing it is what keeps these tests short.
    """
    xs, acc = _sample(make_sampler, rng_key, jnp.asarray(x0, jnp.float32),
                      tuple(jnp.float32(h) for h in hyper), params)
    return np.asarray(xs), float(acc)
