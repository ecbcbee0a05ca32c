"""Shared test configuration: CPU only, float32, fixed keys, and what keeps the loop short.

The tests mirror the package (``tests/samplers/test_mala.py`` tests ``ebm_jax/samplers/mala.py``);
every folder is a package, so two folders may hold test files of the same name. The shared
helpers at this level (``sampler_stats``, ``tfds_mock``) import by their bare names: this
folder is appended to ``sys.path`` (appended, so that ``tests/samplers`` never shadows a
top-level ``samplers`` such as ``benchmarks/samplers.py``).

What this file sets up, once for every test:

* **A persistent compilation cache** in ``<repo>/.jax_cache/`` (ignored by git): every XLA
  program is written there and read back by the next
  run, by the other xdist worker and by the subprocesses the tests start (the settings go
  through the environment, ``JAX_COMPILATION_CACHE_DIR`` and friends, before jax is
  imported). ``JAX_COMPILATION_CACHE_DIR=`` (empty) turns it off; another path moves it.
  The cache key includes the compile options, so a program compiled with fewer optimisations
  (below) is a different entry from the same program fully optimised.
* **Faster XLA:CPU compiles** for every test and subprocess: ``XLA_FLAGS`` gains
  ``--xla_cpu_use_fusion_emitters=false`` and ``--xla_backend_optimization_level=2`` (see
  :data:`COMPILE_TIME_FLAGS` below).
* **Fewer XLA optimisations by default**: ``JAX_DISABLE_MOST_OPTIMIZATIONS=1`` (set here
  unless the caller set it; subprocesses inherit it). Most of the suite is compilation of
  small programs, which this makes several times cheaper; values agree to float rounding.
  Measured per file on 2 cores (full suite, empty and warm cache): the notebooks, the
  end-to-end runs, the parallel and data tests are faster; the long statistical chains of
  five files ran 2-3 times slower, so those are marked ``optimised``.
* **The ``optimised`` marker**: ``pytestmark = pytest.mark.optimised`` in a module, or
  ``@pytest.mark.optimised`` on a test, compiles fully optimised (runtime-heavy tests: long
  chains, many training steps). **The ``fast_compile`` marker** pins the fewer
  optimisations whatever the default (``JAX_DISABLE_MOST_OPTIMIZATIONS=0`` runs everything
  else optimised): tests that compare fingerprints with a subprocess or a session run
  compiled that way, and tests that are mostly compilation. For a module the mode holds for
  all of its tests (its jitted functions are shared); for a test, only for that test.
  In-memory caches are cleared when the mode changes, so that no test runs a program
  compiled in the other mode.
* **Hypothesis profiles**: ``ci`` is hypothesis's own CI profile (derandomised, no
  database, no deadline) with every test's own example count, today's counts; ``dev`` caps
  every test at 10 examples (an explicit ``@settings(max_examples=120)`` included). Chosen
  by ``HYPOTHESIS_PROFILE``; without it, ``ci`` when ``CI`` is set (CI sets ``CI=true``),
  ``dev`` otherwise.
* **The ``totals`` marker** for a file's last test that sums over the file (see below).
* **The ``slow`` marker** (declared in setup.cfg): end-to-end runs, subprocesses,
  notebooks, paper-size networks and long statistical tests, and any other test over about
  0.8 s on 2 cores with the cache warm (the inner loop's budget is 90 s for about 1,800
  tests; one cheap law test per sampler stays in it). ``pytest -m "not slow"`` is the inner
  loop; ``python -m pytest`` (what CI runs) runs everything.
"""
import gc
import os
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
if TESTS not in sys.path:
    sys.path.append(TESTS)

# -- environment, before jax is imported (subprocesses inherit it) -------------------------
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # the default compile mode (above)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".jax_cache"))
# Every program, however quick to compile: reading an entry back takes milliseconds, and the
# suite compiles about a thousand small programs (measured: `pytest -m "not slow"` warm in
# 71 s with every program cached, 127 s with only those over 0.1 s).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# XLA:CPU's MLIR fusion emitters off (the older emitters): the suite's programs compile in
# about half the time with fewer optimisations and a little faster otherwise, and run as fast
# (measured: the full suite from an empty cache 10m55s -> 8m44s, warm unchanged). Values
# agree to float rounding, so the test that compares with a fingerprint written by a user's
# default compiler settings runs its training in a subprocess without this flag
# (:data:`USER_XLA_FLAGS`).
# LLVM at -O2 instead of XLA:CPU's default -O3 where the suite compiles fully optimised
# (``optimised``; the fewer-optimisations mode sets level 0 itself): the same values (a
# 300-step recovery-likelihood run ends at the same KL to every printed digit) and the same
# runtime for 2-3 times less compile time (measured CPU seconds: its train step 11.5 -> 4.4,
# all its programs 22 -> 10). ``XLA_FLAGS`` naming a flag itself keeps the caller's choice.
COMPILE_TIME_FLAGS = ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=2")
# The caller's flags, kept through the xdist workers (which inherit the changed XLA_FLAGS).
USER_XLA_FLAGS = os.environ.setdefault("EBM_JAX_TESTS_USER_XLA_FLAGS",
                                       os.environ.get("XLA_FLAGS", ""))
os.environ["XLA_FLAGS"] = " ".join([USER_XLA_FLAGS] + [
    flag for flag in COMPILE_TIME_FLAGS if flag.split("=")[0] not in USER_XLA_FLAGS]).strip()

import jax  # noqa: E402
import pytest  # noqa: E402
from compile_modes import compile_mode  # noqa: E402
from hypothesis import settings  # noqa: E402

# Eight CPU devices, so the data-parallel tests run a real mesh (tests/parallel/);
# everything else runs on the first device as before.
jax.config.update("jax_num_cpu_devices", 8)

# -- Python's garbage collector -------------------------------------------------------------
# A worker holds millions of long-lived objects (jax, flax, scikit-learn, tensorflow-datasets,
# every test module, JAX's caches), and each full collection walked all of them: 25-29 full
# collections a worker, 15-16 s of the inner loop's 170 worker-seconds. Everything imported by
# the end of collection is frozen out of the collector (``gc.freeze``) and collections run
# less often; garbage is still collected. Measured, `pytest -m "not slow"` warm, two paired
# runs: 90 and 86 s against 95 and 103 s; time in the collector 3.8 s against 15.7 s.
gc.set_threshold(10_000, 20, 50)


# -- one MLIR context for every lowering ------------------------------------------------------
# jax lowers each program into a fresh MLIR context (``mlir.make_ir_context``): loading its
# dialects and tearing it down again is a third of an eagerly run op's cost on XLA:CPU (perf:
# ``MLIRContext::getOrLoadDialect`` and ``~MLIRContext``), and the suite runs about 8,000
# eager ops and 8,000 other programs. Every lowering in a test process shares one context
# instead; the module jax hands to XLA is the same text, so the same programs and cache keys.
# ``EBM_JAX_TESTS_FRESH_MLIR_CONTEXT=1`` keeps jax's own behaviour.
def _share_one_mlir_context():
    from jax._src.interpreters import mlir
    if not hasattr(mlir, "make_ir_context"):
        return  # another jax: tests/test_suite_settings.py fails and says so
    context = mlir.make_ir_context()
    mlir.make_ir_context = lambda: context


if os.environ.get("EBM_JAX_TESTS_FRESH_MLIR_CONTEXT") != "1":
    _share_one_mlir_context()


def pytest_collection_finish(session):
    gc.freeze()


# -- hypothesis profiles --------------------------------------------------------------------
DEV_MAX_EXAMPLES = 10
settings.register_profile("dev", max_examples=DEV_MAX_EXAMPLES)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI") else "dev")
settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_report_header(config):
    cache = jax.config.values["jax_compilation_cache_dir"] or "off"
    return [f"hypothesis profile: {HYPOTHESIS_PROFILE} (HYPOTHESIS_PROFILE, CI)",
            f"jax compilation cache: {cache}"]


def _cap_hypothesis_examples(items):
    """Under ``dev``, a test's own ``@settings(max_examples=n)`` becomes ``min(n, 10)``: the
    profile only sets the default, an explicit count would otherwise win."""
    if HYPOTHESIS_PROFILE != "dev":
        return
    for item in items:
        test = getattr(item, "obj", None)
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if current is None or getattr(test, "_capped_by_conftest", False):
            continue  # not a hypothesis test, or a parametrised one already capped
        if current.max_examples > DEV_MAX_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(
                current, max_examples=DEV_MAX_EXAMPLES)
        test._capped_by_conftest = True


def pytest_collection_modifyitems(config, items):
    _cap_hypothesis_examples(items)


# -- totals over a file ---------------------------------------------------------------------
# ``@pytest.mark.totals`` marks a file's last test that checks a total over the file's other
# tests (cases generated by hypothesis, functions covered). Work stealing may run a file's
# tests on both workers, ``-m "not slow"`` may deselect some, and the ``dev`` profile
# generates fewer cases, so such a test runs only under the ``ci`` profile and when every
# other test of its file was selected and ran in this process before it (always with
# ``-n 0``), and is skipped, saying why, otherwise.
_RAN = set()
_DESELECTED = {}  # file -> how many of its tests the run deselected


def pytest_deselected(items):
    for other in items:
        _DESELECTED[other.fspath] = _DESELECTED.get(other.fspath, 0) + 1


def pytest_runtest_logreport(report):
    if report.when == "setup":  # it ran (or was skipped) in this process
        _RAN.add(report.nodeid)


def pytest_runtest_setup(item):
    if item.get_closest_marker("totals") is None:
        return
    if HYPOTHESIS_PROFILE == "dev":
        pytest.skip("totals of the full example counts: run with HYPOTHESIS_PROFILE=ci")
    if _DESELECTED.get(item.fspath):
        pytest.skip(f"{_DESELECTED[item.fspath]} other tests of this file were deselected "
                    "(-m, -k): run the whole file for its totals")
    missing = [other.nodeid for other in item.session.items
               if other.fspath == item.fspath and other is not item and other.nodeid not in _RAN]
    if missing:
        pytest.skip(f"{len(missing)} other tests of this file did not run in this process "
                    f"(e.g. {missing[0]}): run the file with -n 0 for its totals")


# -- compile modes --------------------------------------------------------------------------
COMPILE_MARKERS = {"fast_compile": True, "optimised": False}  # marker: fewer optimisations


def _mode_marked(node, own: bool):
    """The compile mode a module (its own marks) or a test (its closest mark) asks for."""
    for name, fewer in COMPILE_MARKERS.items():
        marked = (any(m.name == name for m in node.own_markers) if own
                  else node.get_closest_marker(name) is not None)
        if marked:
            return fewer
    return None


@pytest.fixture(scope="module", autouse=True)
def _compile_mode_module(request):
    """``pytestmark = pytest.mark.fast_compile`` / ``optimised``: for the whole module."""
    fewer = _mode_marked(request.node, own=True)
    if fewer is None:
        yield
    else:
        with compile_mode(fewer):
            yield


@pytest.fixture(autouse=True)
def _compile_mode_test(request, _compile_mode_module):
    """``@pytest.mark.fast_compile`` / ``optimised`` on a test or its class: for that test."""
    fewer = _mode_marked(request.node, own=False)
    if fewer is None:
        yield
    else:
        with compile_mode(fewer):
            yield


# -- temporary files ------------------------------------------------------------------------
# tensorflow-datasets makes an empty ``tmp*tfds`` directory in the system's temporary folder
# each time it builds a dataset's info with no prepared files (``initialize_from_bucket``)
# and never removes it: about a thousand per run of the suite. Temporary files made in this
# process go under the session's pytest folder instead, which pytest prunes (it keeps the
# last three runs').
@pytest.fixture(scope="session", autouse=True)
def _temporary_files_in_the_session_folder(tmp_path_factory):
    import tempfile

    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfile"))
    yield
    tempfile.tempdir = before


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
