"""The Colab notebooks in ``notebooks/`` run top to bottom, and keep to their conventions.

Each notebook's code cells run in order in one fresh namespace, in-process (no kernel,
no new dependency), in a temporary working directory, with ``EBM_JAX_NOTEBOOK_SMALL=1``
(seconds on a CPU) and matplotlib's Agg backend. Shell lines (``!``, ``%``) are skipped;
the Colab install cell runs and must do nothing outside Colab. Notebook 05 reads
``tfds.testing.mock_data`` in small mode.

Most of a small-mode run is XLA compilation, so the runs compile with
``jax_disable_most_optimizations`` (the ``fast_compile`` marker of tests/conftest.py: about
half the compile time; small-mode numbers are meaningless anyway). The runs are ``slow``.

Regenerate the notebooks with ``python notebooks/build_notebooks.py``.
"""
import ast
import importlib.util
import json
import pathlib
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
NAMES = [
    "01_quickstart.ipynb",
    "02_jem_digits.ipynb",
    "03_nce_and_recovery_likelihood_2d.ipynb",
    "04_composition_and_inpainting.ipynb",
    "05_scaling_up.ipynb",
    "06_inference_and_thinking.ipynb",
    "07_world_models_and_policies.ipynb",
    "08_tabular_augmentation.ipynb",
]
BADGE = "https://colab.research.google.com/github/ebm-jax/ebm_jax/blob/main/notebooks/{name}"
INSTALL = "ebm-jax @ git+https://github.com/ebm-jax/ebm_jax"
SMALL_SWITCH = 'SMALL = os.environ.get("EBM_JAX_NOTEBOOK_SMALL") == "1"'
MAX_FUNCTION_LINES = 5  # lines after the `def` line, docstring included: logic lives in ebm_jax


def _load(name: str) -> dict:
    with open(NOTEBOOKS / name, encoding="utf-8") as f:
        return json.load(f)


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _code_cells(notebook: dict) -> list[str]:
    return [_source(c) for c in notebook["cells"] if c["cell_type"] == "code"]


def _runnable(source: str) -> str:
    """The cell without its IPython shell and magic lines (blank lines keep line numbers)."""
    return "\n".join("" if line.lstrip().startswith(("!", "%")) else line
                     for line in source.splitlines())


def _is_install(source: str) -> bool:
    return INSTALL in source


def test_the_notebooks_are_the_seven_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


def test_the_notebooks_are_what_the_generator_writes():
    """Edit ``notebooks/build_notebooks.py`` and regenerate, rather than the .ipynb files."""
    generator = NOTEBOOKS / "build_notebooks.py"
    if not generator.exists():
        pytest.skip("no notebooks/build_notebooks.py")
    spec = importlib.util.spec_from_file_location("build_notebooks", generator)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.build_all()
    assert sorted(built) == NAMES
    for name in NAMES:
        assert built[name] == _load(name), (
            f"{name} differs from what notebooks/build_notebooks.py writes: edit the generator "
            "and run `python notebooks/build_notebooks.py`")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_badge_install_cell_and_small_switch(name):
    notebook = _load(name)
    assert notebook["nbformat"] == 4 and notebook["cells"]
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["source"], list)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name}: commit notebooks without outputs"

    badge = notebook["cells"][0]
    assert badge["cell_type"] == "markdown"
    assert "colab-badge.svg" in _source(badge) and BADGE.format(name=name) in _source(badge)

    code = _code_cells(notebook)
    install = [i for i, source in enumerate(code) if _is_install(source)]
    assert install == [0], f"{name}: expected one install cell, the first code cell"
    assert 'IN_COLAB = "google.colab" in sys.modules' in code[0] and "if IN_COLAB:" in code[0]
    # The repository address lives in the first cells only (the badge and the install cell).
    later = [_source(c) for c in notebook["cells"][1:] if not _is_install(_source(c))]
    assert not any("github.com/ebm-jax" in source for source in later)

    assert any(SMALL_SWITCH in source for source in code), f"{name}: no SMALL switch"
    assert any("import ebm_jax" in source or "from ebm_jax" in source for source in code)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_functions_are_short(name):
    """A notebook configures, calls and plots; anything longer belongs in the library."""
    for i, source in enumerate(_code_cells(_load(name))):
        for node in ast.walk(ast.parse(_runnable(source))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                length = node.end_lineno - node.lineno
                assert length <= MAX_FUNCTION_LINES, (
                    f"{name}, code cell {i}: a function of {length} lines at line {node.lineno} "
                    f"(at most {MAX_FUNCTION_LINES}): move its logic into ebm_jax")


def _no_pip(*args, **kwargs):
    raise AssertionError(f"the install cell ran {args} outside Colab: expected a no-op")


@pytest.mark.slow
@pytest.mark.fast_compile
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_small_mode(name, tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_JAX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)  # everything a notebook writes goes here
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: plt.close("all"))
    assert "google.colab" not in sys.modules
    namespace = {"__name__": "__main__"}
    started = time.perf_counter()
    try:
        for i, source in enumerate(_code_cells(_load(name))):
            code = compile(_runnable(source), f"{name} (code cell {i})", "exec")
            if _is_install(source):
                with monkeypatch.context() as m:
                    m.setattr(subprocess, "run", _no_pip)
                    exec(code, namespace)
                assert namespace["IN_COLAB"] is False
            else:
                exec(code, namespace)
    finally:
        if "MOCK" in namespace:  # notebook 05's mock data, if a cell failed before closing it
            namespace["MOCK"].close()
        plt.close("all")
    print(f"{name}: {time.perf_counter() - started:.1f} s")
    assert namespace["SMALL"] is True
    assert any(tmp_path.iterdir()), f"{name} wrote nothing: expected its figures in the workdir"
