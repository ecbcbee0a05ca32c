"""The package's import layering, read from the source (``ast``: no import is executed).

Every module under ``ebm_jax/`` is parsed, function-local imports included (a lazy import
hides a cycle from the interpreter, not from this test), and the dependency order of
DESIGN.md is asserted between its *units*: the subpackages (``energies``, ``samplers``,
...) and the top-level modules (``_checks``, ``cli``, ...).
"""
from __future__ import annotations

import ast
import functools
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ebm_jax"
TOP = "<ebm_jax>"  # the top-level package itself (``import ebm_jax``, ``from ebm_jax import fit``)

# The application layer: it may import the whole library; nothing in the library (the
# top-level package included) imports it, and the command line imports only ``experiments``.
APPLICATION = {"experiments", "cli"}

# unit -> units it must not import (beyond the rules for the application layer and cycles)
FORBIDDEN = {
    "parallel": "everything",                       # a leaf of mesh and sharding primitives
    "_checks": "everything",                        # a leaf of argument checks
    "energies": {"samplers", "losses", "train", "nets", "inference", "metrics",
                 "applications", "plots", "data"},
    "samplers": {"losses", "train", "nets", "inference", "metrics", "applications",
                 "plots", "data"},
    "environments": {"parallel", "energies", "samplers", "losses", "train", "nets",
                     "inference", "metrics", "applications", "plots", "data",
                     TOP},       # a leaf: NumPy, JAX and the argument checks only
}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def unit_of(module: str) -> str:
    """``ebm_jax.samplers.base`` -> ``samplers``; ``ebm_jax`` -> the top-level package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else TOP


def imported_modules(path: pathlib.Path) -> set[str]:
    """The ``ebm_jax`` modules that ``path`` imports anywhere in it (functions included)."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "ebm_jax"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "ebm_jax":
                continue
            if source == "ebm_jax":  # `from ebm_jax import energies` names a unit; `fit` does not
                out |= {f"ebm_jax.{a.name}" if _is_submodule(a.name) else "ebm_jax"
                        for a in node.names}
            else:
                out.add(source)
    return out


@functools.lru_cache(maxsize=None)
def unit_graph() -> dict[str, dict[str, set[str]]]:
    """``{unit: {imported unit: {importing module, ...}}}`` between different units."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        edges = graph.setdefault(unit_of(module), {})
        for imported in imported_modules(path):
            if unit_of(imported) != unit_of(module):
                edges.setdefault(unit_of(imported), set()).add(module)
    return graph


def _violations(unit: str, forbidden) -> list[str]:
    edges = unit_graph().get(unit, {})
    return sorted(f"{m} imports ebm_jax.{target}" for target, modules in edges.items()
                  if forbidden == "everything" or target in forbidden for m in modules)


def test_the_parser_sees_function_local_and_relative_imports(tmp_path, monkeypatch):
    source = tmp_path / "ebm_jax" / "parallel" / "probe.py"
    source.parent.mkdir(parents=True)
    (tmp_path / "ebm_jax" / "energies").mkdir()
    (tmp_path / "ebm_jax" / "energies" / "__init__.py").write_text("")
    source.write_text("import jax\n"
                      "def f():\n"
                      "    from ebm_jax.samplers.replay_buffer import ReplayBuffer\n"
                      "    from ..energies import batch_energy\n"
                      "    from ebm_jax import energies, fit\n"
                      "    from . import mesh\n")
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "ebm_jax")
    assert imported_modules(source) == {"ebm_jax.samplers.replay_buffer", "ebm_jax.energies",
                                        "ebm_jax", "ebm_jax.parallel"}


@pytest.mark.parametrize("unit", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(unit):
    assert _violations(unit, FORBIDDEN[unit]) == []


def test_the_library_does_not_import_the_application_layer():
    bad = []
    for unit, edges in unit_graph().items():
        if unit in APPLICATION:
            continue
        bad += [f"{m} imports ebm_jax.{target}" for target in APPLICATION & set(edges)
                for m in edges[target]]
    assert sorted(bad) == []


def test_the_command_line_imports_only_the_application_package():
    edges = unit_graph()["cli"]
    assert set(edges) == {"experiments"}, {k: sorted(v) for k, v in edges.items()}


def test_no_module_below_the_top_imports_the_top_level_package():
    """``import ebm_jax`` inside the library imports everything: a cycle with any unit."""
    bad = [f"{m} imports ebm_jax" for unit, edges in unit_graph().items() if unit != TOP
           for m in edges.get(TOP, ())]
    assert bad == []


def _cycle(graph: dict[str, set[str]]):
    """One cycle of ``graph`` as a list of units, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_between_units():
    graph = {unit: set(edges) - {TOP} for unit, edges in unit_graph().items() if unit != TOP}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle) + ": " + "; ".join(
        f"{a}->{b} via {sorted(unit_graph()[a][b])}" for a, b in zip(cycle, cycle[1:]))
