"""benchmarks/vs_blackjax.py: its targets' log-densities and moments, the z-scores that flag a
wrong law, and a tiny run of both libraries end to end (nothing written to results)."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import vs_blackjax as bench  # noqa: E402

pytestmark = pytest.mark.fast_compile


def test_the_gaussian_and_the_funnel_are_the_laws_they_claim():
    """The Gaussian's log-density is -x^T S^-1 x / 2 with S's variances the exact ones; the
    funnel's is log N(v; 0, 9) + sum log N(x_i; 0, e^v) up to a constant."""
    gaussian = bench.correlated_gaussian()
    x = jax.random.normal(jax.random.key(0), (10,))
    hessian = jax.hessian(gaussian.logdensity)(x)
    np.testing.assert_allclose(np.diag(np.linalg.inv(-np.asarray(hessian, np.float64))),
                               gaussian.exact_var, rtol=1e-3)
    funnel = bench.funnel()
    v, rest = 0.7, np.linspace(-1.0, 1.0, 9)
    expected = (-v ** 2 / 18 + np.sum(-0.5 * rest ** 2 / np.exp(v) - 0.5 * v))
    got = float(funnel.logdensity(jnp.asarray(np.concatenate([[v], rest]), jnp.float32)))
    assert got == pytest.approx(expected, rel=1e-5)
    assert funnel.exact_var[0] == 9.0 and not funnel.check_var[1:].any()


@pytest.mark.slow  # scikit-learn's fit to 1e-10 and a Newton scan: ~3 s
def test_the_logistic_posterior_mode_is_sklearns_penalised_fit():
    """With the N(0, 1) prior on every coefficient (the intercept is a column of ones), the
    posterior mode is scikit-learn's L2 logistic regression at C = 1 without a separate
    intercept: Newton's method on the log-density lands on its coefficients."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    target = bench.logistic_regression()
    grad, hess = jax.grad(target.logdensity), jax.hessian(target.logdensity)
    newton = jax.jit(lambda beta, _: (beta - jnp.linalg.solve(hess(beta), grad(beta)), None))
    beta, _ = jax.lax.scan(newton, jnp.zeros(target.dim), None, length=20)
    features, labels = load_breast_cancer(return_X_y=True)
    features = (features - features.mean(0)) / features.std(0)
    design = np.hstack([np.ones((len(features), 1)), features])
    fit = LogisticRegression(C=1.0, fit_intercept=False, tol=1e-10, max_iter=10_000)
    fit.fit(design, labels)
    np.testing.assert_allclose(beta, fit.coef_[0], atol=2e-3)
    assert target.exact_mean is None and target.dim == 31


def test_z_scores_see_a_wrong_variance_and_pass_a_right_one():
    target = bench.correlated_gaussian(dim=2, rho=0.0)
    key = jax.random.key(0)
    sds = np.sqrt(target.exact_var)
    right = np.asarray(jax.random.normal(key, (4, 2000, 2))) * sds
    assert np.max(np.abs(bench.moment_z_scores(bench.moments(right), target, None))) < 4
    wrong = right * 0.9  # variances 19% low
    assert np.max(np.abs(bench.moment_z_scores(bench.moments(wrong), target, None))) > 8


@pytest.mark.slow
def test_a_tiny_run_of_both_libraries_writes_paired_rows(capsys):
    rows = bench.main(["--targets", "gaussian10", "--samplers", "hmc", "nuts", "--chains", "2",
                       "--warmup", "40", "--draws", "20", "--repeats", "2", "--no-save"])
    runs = [r for r in rows if r["kind"] == "run"]
    summaries = [r for r in rows if r["kind"] == "summary"]
    assert {(r["sampler"], r["library"], r["seed"]) for r in runs} == {
        (s, lib, seed) for s in ("hmc", "nuts") for lib in ("ebm_jax", "blackjax")
        for seed in (0, 1)}
    for r in runs:
        assert r["ess_per_s"] > 0 and r["sample_seconds"] > 0 and r["grad_evals"] > 0
        assert r["compile_seconds_sampling"] > 0 and r["num_checks"] == 20
    hmc_runs = [r for r in runs if r["sampler"] == "hmc"]
    assert all(r["grad_evals"] == 2 * 20 * 10 for r in hmc_runs)  # chains x draws x leapfrog
    for s in summaries:
        assert len(s["ratios"]) == 2 and s["ratio_range"][0] <= s["ratio_vs_blackjax"]
        assert {"ratio_vs_blackjax", "compile_seconds", "moments_within_3_mcse"} <= set(s)
    printed = capsys.readouterr().out
    assert "| gaussian10 | hmc |" in printed and "| gaussian10 | nuts |" in printed
