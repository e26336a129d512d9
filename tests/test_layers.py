"""The layers of DESIGN.md hold: pure packages stay pure, subpackages form no import cycle,
and long modules say why they are long.

Three checks, each cheap enough to run with every test run:

* a fresh interpreter imports each pure package and must not end up with an event loop
  library, a database driver or a runtime/adapter/entry module in ``sys.modules``;
* every module of a pure package is read with ``ast`` and must not import one of those
  either, at any level (module, function, ``TYPE_CHECKING``) — this catches what a lazy
  import hides from ``sys.modules``;
* the import graph between forexd's top-level subpackages (built with ``ast``, all import
  levels) must have no cycle.
"""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "forexd"
PURE_PACKAGES = ("domain", "features", "strategies", "risk", "models")
FORBIDDEN_LIBRARIES = ("anyio", "aiosqlite", "sqlite3", "_sqlite3")
# Runtime, adapters and entry points: a pure package may import none of them.
FORBIDDEN_FOREXD = (
    "forexd.daemon",
    "forexd.actors",
    "forexd.storage",
    "forexd.brokers",
    "forexd.feeds",
    "forexd.cli",
    "forexd.cli_ml",
    "forexd.cli_ml_render",
    "forexd.cli_service",
    "forexd.config",
    "forexd.backtest",
)
# Heavy libraries load lazily, where a model of that kind is built (HELPERS/STYLE rules).
HEAVY_LIBRARIES = ("torch", "ray", "optuna", "matplotlib", "stable_baselines3", "sb3_contrib")
# What each pure package may import from forexd (DESIGN.md "Layers"; forexd.errors,
# forexd.extras (the optional-import helper), forexd.fsutil and the package root count as
# domain). strategies -> features, models is the ML strategy reading its champion:
# disagreement 4 in docs/architecture.md.
BASE = {"errors", "extras", "fsutil"}
ALLOWED_IMPORTS = {
    "domain": BASE,
    "features": BASE | {"domain"},
    "risk": BASE | {"domain"},
    "models": BASE | {"domain", "features"},
    "strategies": BASE | {"domain", "features", "models"},
}
LONG_MODULE_LINES = 400
LONG_MODULE_NOTE = "Why it is over 400 lines:"


# --------------------------------------------------------------------------- helpers


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        yield _module_name(path), path


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports, at any level, with the line (relative imports resolved).

    ``from a import b`` yields ``a`` and ``a.b``: ``b`` may be a submodule.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def _forbidden(name: str) -> bool:
    top = name.partition(".")[0]
    return top in FORBIDDEN_LIBRARIES or any(
        name == f or name.startswith(f + ".") for f in FORBIDDEN_FOREXD
    )


def _node(module: str) -> str | None:
    """The top-level subpackage (or module) of forexd that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "forexd" and len(parts) > 1 else None


def import_graph() -> dict[tuple[str, str], list[str]]:
    """Edges between forexd's top-level subpackages, each with the import sites behind it."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, path in _modules():
        src = _node(module)
        if src is None:
            continue
        for target, line in _imports(module, path):
            dst = _node(target)
            if dst is not None and dst != src:
                site = f"{path.relative_to(PACKAGE_DIR.parent)}:{line} imports {target}"
                edges.setdefault((src, dst), []).append(site)
    known = {_node(m) for m, _ in _modules()}
    return {e: sites for e, sites in edges.items() if e[1] in known}


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One cycle of the directed graph (``[a, b, ..., a]``), or ``None``."""
    graph: dict[str, list[str]] = {}
    for src, dst in sorted(edges):
        graph.setdefault(src, []).append(dst)
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _pure_modules() -> list[str]:
    return sorted(m for m, _ in _modules() if _node(m) in PURE_PACKAGES)


# --------------------------------------------------------------------------- tests

_CHILD = """
import json, sys
import {package}
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_importing_a_pure_package_loads_no_runtime_adapter_or_io_module(package: str) -> None:
    """A fresh interpreter that imports a pure package has no anyio/SQLite/runtime/heavy module."""
    child = subprocess.run(
        [sys.executable, "-c", _CHILD.format(package=f"forexd.{package}")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == child.returncode, child.stderr
    modules = json.loads(child.stdout)
    loaded = [m for m in modules if _forbidden(m)]
    assert [] == loaded, f"import forexd.{package} loaded {loaded}"
    heavy = sorted({m.partition(".")[0] for m in modules} & set(HEAVY_LIBRARIES))
    assert [] == heavy, f"import forexd.{package} loaded heavy libraries; import them lazily"


@pytest.mark.parametrize("module", _pure_modules())
def test_a_pure_module_imports_no_runtime_adapter_or_io_module(module: str) -> None:
    """No module of a pure package imports one, even inside a function or TYPE_CHECKING."""
    path = dict(_modules())[module]
    bad = sorted({f"line {line}: {t}" for t, line in _imports(module, path) if _forbidden(t)})
    assert [] == bad, f"{module} imports what a pure package may not"


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_a_pure_package_imports_only_the_layers_below_it(package: str) -> None:
    """domain imports no other layer; features and risk only domain; models also features."""
    allowed = ALLOWED_IMPORTS[package] | {package}
    bad = sorted(
        site
        for (src, dst), sites in import_graph().items()
        if src == package and dst not in allowed and not _forbidden(f"forexd.{dst}")
        for site in sites
    )
    assert [] == bad, f"forexd.{package} imports above its layer"


def test_forexd_subpackages_form_no_import_cycle() -> None:
    """The subpackage import graph (module- and function-level imports) is acyclic."""
    graph = import_graph()
    cycle = find_cycle(set(graph))
    if cycle is not None:
        sites = [
            f"  {src} -> {dst}: " + "; ".join(graph[(src, dst)][:3])
            for src, dst in itertools.pairwise(cycle)
        ]
        pytest.fail("import cycle " + " -> ".join(cycle) + "\n" + "\n".join(sites))


def _long_modules() -> list[str]:
    return sorted(
        str(path.relative_to(PACKAGE_DIR.parent))
        for _, path in _modules()
        if len(path.read_text(encoding="utf-8").splitlines()) > LONG_MODULE_LINES
    )


@pytest.mark.parametrize("rel", _long_modules())
def test_a_module_over_400_lines_says_why_at_its_top(rel: str) -> None:
    """A module longer than ~400 lines opens with a docstring note explaining its length."""
    text = (PACKAGE_DIR.parent / rel).read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(text)) or ""
    _, marker, reason = doc.partition(LONG_MODULE_NOTE)
    assert marker, (
        f"{rel} has {len(text.splitlines())} lines; split it by responsibility or add a "
        f"paragraph starting {LONG_MODULE_NOTE!r} to its module docstring"
    )
    assert len(reason.strip()) >= 40, f"{rel}: the note after {LONG_MODULE_NOTE!r} is empty"


def test_the_cycle_finder_reports_a_cycle_and_accepts_a_dag() -> None:
    """find_cycle names a two-way dependency and passes a layered graph."""
    assert ["a", "b", "a"] == find_cycle({("a", "b"), ("b", "a"), ("b", "c")})
    assert find_cycle({("a", "b"), ("b", "c"), ("a", "c")}) is None
