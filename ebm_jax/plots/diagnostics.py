"""Sampler diagnostics: energy traces along chains and data-vs-sample energy histograms."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ebm_jax._checks import check_int
from ebm_jax.plots.grids import _figure


def _finite_1d(name: str, values) -> tuple[np.ndarray, int]:
    """A non-empty 1-D float array's finite values and the count of dropped non-finite ones."""
    arr = np.asarray(values, np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} has shape {arr.shape}: expected a non-empty 1-D array [N] "
                         "of per-example energies")
    finite = np.isfinite(arr)
    if not finite.any():
        raise ValueError(f"{name}: all {arr.size} values are NaN/inf; expected some finite "
                         "energies")
    return arr[finite], int(arr.size - finite.sum())


def save_energy_trace(path: str, energies, *, steps: Optional[Sequence[float]] = None,
                      max_chains: int = 8, title: Optional[str] = None,
                      log_scale: bool = False) -> None:
    """Plot energy against step along chains: a few chains thin, the mean over chains bold.

    Args:
      path: PNG path.
      energies: ``[chains, steps]`` (for example ``run_chains(..., trace=True)[1].energy``)
        or ``[steps]`` for a single chain.
      steps: optional ``[steps]`` x values (default ``0 .. steps-1``).
      max_chains: how many individual chains to draw (the first ones); the mean uses all.
      title: optional axes title.
      log_scale: plot the energy on a symmetric-log axis (energies that fall by decades).

    Example::

      >>> steps = jax.random.uniform(jax.random.key(0), (4, 200))     # 4 chains, 200 steps
      >>> energies = 10.0 - jnp.cumsum(0.1 * steps, axis=1)  # or run_chains(..., trace=True)
      >>> save_energy_trace("trace.png", energies)           # [C, 200]
    """
    arr = np.asarray(energies, np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"energies has shape {np.shape(energies)}: expected [chains, steps] or "
                         "[steps] with at least one chain and one step")
    check_int("max_chains", max_chains, 0)
    num_chains, num_steps = arr.shape
    if steps is None:
        x = np.arange(num_steps)
    else:
        x = np.asarray(steps, np.float64)
        if x.shape != (num_steps,):
            raise ValueError(f"steps has shape {x.shape}: expected ({num_steps},) to match "
                             f"energies {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.any():
        raise ValueError(f"energies: all {arr.size} values are NaN/inf; expected some finite "
                         "energies")
    arr = np.where(finite, arr, np.nan)  # non-finite steps show as gaps
    count = finite.sum(axis=0)
    mean = np.where(count > 0, np.nansum(arr, axis=0) / np.maximum(count, 1), np.nan)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    shown = min(max_chains, num_chains)
    marker = "o" if num_steps < 20 else None
    for i in range(shown):
        ax.plot(x, arr[i], lw=0.8, alpha=0.5, marker=marker, ms=3,
                label=f"chains (first {shown} of {num_chains})" if i == 0 else None)
    with_mean = num_chains > 1 or shown == 0
    if with_mean:
        ax.plot(x, mean, color="black", lw=2.0, marker=marker,
                label=f"mean over {num_chains} chain{'s' if num_chains > 1 else ''}")
    ax.set_xlabel("step")
    ax.set_ylabel("energy")
    if log_scale:
        ax.set_yscale("symlog")
    if title:
        ax.set_title(title)
    if with_mean:
        ax.legend(fontsize=8, loc="upper right")  # "best" warns when slow
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_energy_histogram(path: str, data_energies, sample_energies, *, bins: int = 50,
                          labels: tuple[str, str] = ("data", "samples"),
                          title: Optional[str] = None, density: bool = True) -> None:
    """Overlaid histograms of data and sample energies on shared bins, with their means.

    A well-trained EBM whose sampler mixes puts both at the same energies; samples at
    higher energies than the data mean short or poorly mixing chains, lower ones an
    energy that the sampler exploits (adversarial minima). Non-finite energies are
    dropped (and counted in the legend).

    Args:
      path: PNG path.
      data_energies: ``[N]`` energies of data examples.
      sample_energies: ``[M]`` energies of model samples.
      bins: number of shared bins over the range of both.
      labels: legend labels of the two sets.
      title: optional axes title.
      density: normalise each histogram (sets of different sizes compare).

    Example::

      >>> energy_fn = lambda params, x: 0.5 * jnp.sum(x ** 2)
      >>> x_data, x_samples = jax.random.normal(jax.random.key(0), (2, 500, 2))
      >>> e = jax.vmap(energy_fn, (None, 0))
      >>> save_energy_histogram("energies.png", e(None, x_data), e(None, 2.0 * x_samples))
    """
    check_int("bins", bins)
    data, data_dropped = _finite_1d("data_energies", data_energies)
    samples, sample_dropped = _finite_1d("sample_energies", sample_energies)
    edges = np.histogram_bin_edges(np.concatenate([data, samples]), bins=bins)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for values, dropped, label, color in ((data, data_dropped, labels[0], "C0"),
                                          (samples, sample_dropped, labels[1], "C1")):
        text = f"{label} (n={values.size}, mean {values.mean():.3g})"
        if dropped:
            text += f", {dropped} non-finite dropped"
        ax.hist(values, bins=edges, density=density, alpha=0.5, color=color, label=text)
        ax.axvline(values.mean(), color=color, ls="--", lw=1.5)
    ax.set_xlabel("energy")
    ax.set_ylabel("density" if density else "count")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")  # "best" warns when slow
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
