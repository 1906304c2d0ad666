"""The package's layers, checked: every import between HelixCode's modules points down (or sideways).

Each module under ``src/helixcode`` is parsed with ``ast`` (nothing is imported) and every
``import helixcode.X`` / ``from helixcode.X import ...`` in it is an edge, wherever it appears: at the top,
inside a function (lazy imports), under ``TYPE_CHECKING``. ``from helixcode.X import Y`` names the module
``helixcode.X.Y`` when that is a module, else ``helixcode.X``; relative imports are resolved the same way.

Layers, lowest first (a module's layer is its top-level package's or module's)::

    0  errors, config, logsetup, tracing,             pure model, settings, the exception tree,
       helixcode/__init__, domain/                    the logging and tracing set-ups
    1  llm/                                           providers and the manager
    2  store/                                         the only SQL
    3  agent/                                         executors, tools, workspace
    4  engine/                                        the TaskManager facade the edges call
    5  worker/                                        the worker runtime
    6  api/, mcp/, cli/, client/, demo, __main__      the edges

An edge from layer a to layer b is allowed when b <= a. At layer 6 the edges are peers that do not import
one another, with one exception: the command line starts the others, so ``cli`` may import ``api`` (it
serves the API and talks to a remote server through ``api.client``) and ``mcp`` (it serves MCP), and
``__main__`` runs ``cli``; the Python client, like the CLI, reaches a remote server through
``api.client``. Nothing imports ``demo`` or ``__main__``; ``api`` and ``mcp`` import neither each other
nor ``cli``. The package root re-exports the public client (``helixcode.Client``), loaded on first use:
the one edge from layer 0 up, listed in ``ROOT_EXPORTS``.

The engine is the door: the edges (``api`` with its dashboard, ``cli``, ``mcp``, ``client``, and the
rest of layer 6) do not import ``store`` at all, though it lies below them. They open an
``engine.engine.Engine`` and call its facades (``TaskManager``, ``Browse``, ``Tokens``...), so every
operation an edge offers is one the engine offers, whatever the edge. The layers between may: the
engine is built on the store, and the worker runtime works below the engine's facades.

``KNOWN`` lists the upward edges still in the tree, each to be removed (none today); any other fails the
test, as does a known one that has gone, so the list only shrinks.
"""

from __future__ import annotations

import ast
import gc
from collections.abc import Iterable, Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "helixcode"

LAYERS: dict[str, int] = {
    "errors": 0,
    "config": 0,
    "logsetup": 0,
    "tracing": 0,
    "__init__": 0,
    "domain": 0,
    "llm": 1,
    "store": 2,
    "agent": 3,
    "engine": 4,
    "worker": 5,
    "api": 6,
    "mcp": 6,
    "cli": 6,
    "client": 6,
    "demo": 6,
    "__main__": 6,
}
EDGE = 6
#: Imports allowed between different edge packages at layer 6 (importer, imported).
BETWEEN_EDGES = {("cli", "api"), ("cli", "mcp"), ("client", "api"), ("__main__", "cli")}
#: Edge packages that the package root re-exports from, lazily (``helixcode.__getattr__``).
ROOT_EXPORTS = {"client"}

#: The package only the engine and the layers below it may import from the edges' side (see above).
BEHIND_THE_ENGINE = "store"

#: Upward edges that remain in files other work is changing: to be removed.
KNOWN: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top(module: str) -> str:
    """The top-level part of ``helixcode`` a module belongs to: ``helixcode.store.tokens`` -> ``store``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_statements(body: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth: statements only, so expressions are never visited."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from import_statements(getattr(node, field, ()))


def imports(tree: ast.Module, module: str, is_package: bool, modules: set[str]) -> Iterator[str]:
    """The HelixCode modules a module's code imports, anywhere in it."""
    for node in import_statements(tree.body):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "helixcode")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[: len(parts) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != "helixcode":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                yield sub if sub in modules else source


def graph() -> set[tuple[str, str]]:
    """Every (importer, imported) pair between HelixCode's modules."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(files)
    edges: set[tuple[str, str]] = set()
    collecting = gc.isenabled()
    gc.disable()  # parsing makes many small objects the collector would walk again and again: 3x faster
    try:
        for module, path in files.items():
            tree = ast.parse(path.read_bytes())
            edges.update(
                (module, target) for target in imports(tree, module, path.name == "__init__.py", modules)
            )
    finally:
        if collecting:
            gc.enable()
    return edges


def upward(edges: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Each forbidden edge, with why: ``(layer a -> b)``, or the edge packages for a sideways import."""
    found = {}
    for module, target in edges:
        src, dst = top(module), top(target)
        a, b = LAYERS[src], LAYERS[dst]
        if src == "__init__" and dst in ROOT_EXPORTS:
            continue
        if b > a:
            found[module, target] = f"layer {a} -> {b}"
        elif a == b == EDGE and src != dst and (src, dst) not in BETWEEN_EDGES:
            found[module, target] = f"layer {a} -> {b}, edge {src} -> {dst}"
    return found


def past_the_engine(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The edges from an edge module (layer 6) straight into the store."""
    return {
        (module, target)
        for module, target in edges
        if LAYERS[top(module)] == EDGE and top(target) == BEHIND_THE_ENGINE
    }


def describe(edges: dict[tuple[str, str], str]) -> str:
    return "\n".join(f"  {module} -> {target} ({why})" for (module, target), why in sorted(edges.items()))


def test_every_module_has_a_layer() -> None:
    tops = {top(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert tops - LAYERS.keys() == set(), "place the new top-level module or package in LAYERS"


def test_imports_point_down_only() -> None:
    found = upward(graph())
    new = {edge: why for edge, why in found.items() if edge not in KNOWN}
    assert not new, "upward imports:\n" + describe(new)
    gone = KNOWN - found.keys()
    assert not gone, "no longer upward, remove from KNOWN:\n" + "\n".join(f"  {a} -> {b}" for a, b in gone)


def test_the_edges_reach_the_store_only_through_the_engine() -> None:
    found = past_the_engine(graph())
    assert not found, "call the engine instead (helixcode.engine), not the store:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in sorted(found)
    )


def test_the_store_rule_binds_every_edge_and_only_the_edges() -> None:
    edges = {
        ("helixcode.api.deps", "helixcode.store.store"),
        ("helixcode.api.dashboard.pages", "helixcode.store.browse"),
        ("helixcode.cli.common", "helixcode.store"),
        ("helixcode.mcp.server", "helixcode.store.store"),
        ("helixcode.client.aio", "helixcode.store.store"),
        ("helixcode.engine.engine", "helixcode.store.store"),
        ("helixcode.worker.runtime", "helixcode.store.store"),
        ("helixcode.agent.loop", "helixcode.store.store"),
        ("helixcode.api.app", "helixcode.engine.engine"),
    }
    assert {module for module, _ in past_the_engine(edges)} == {
        "helixcode.api.deps",
        "helixcode.api.dashboard.pages",
        "helixcode.cli.common",
        "helixcode.mcp.server",
        "helixcode.client.aio",
    }


def test_the_checker_sees_lazy_and_relative_imports() -> None:
    code = (
        "from __future__ import annotations\n"
        "from helixcode import __version__\n"
        "from helixcode.store import store\n"
        "from . import reaper\n"
        "if TYPE_CHECKING:\n"
        "    from helixcode.engine.manager import TaskManager\n"
        "class Runner:\n"
        "    async def lazy(self) -> None:\n"
        "        try:\n"
        "            import helixcode.api.app\n"
        "        except ImportError:\n"
        "            from ..mcp.server import build\n"
    )
    modules = {"helixcode", "helixcode.store.store", "helixcode.worker.reaper", "helixcode.mcp.server"}
    found = set(imports(ast.parse(code), "helixcode.worker.runtime", False, modules))
    assert found == {
        "helixcode",
        "helixcode.store.store",
        "helixcode.worker.reaper",
        "helixcode.engine.manager",
        "helixcode.api.app",
        "helixcode.mcp.server",
    }
    why = upward({("helixcode.worker.runtime", target) for target in found})
    assert why == {
        ("helixcode.worker.runtime", "helixcode.api.app"): "layer 5 -> 6",
        ("helixcode.worker.runtime", "helixcode.mcp.server"): "layer 5 -> 6",
    }
    assert upward({("helixcode.api.app", "helixcode.cli.app"), ("helixcode.cli.serve", "helixcode.api")}) == {
        ("helixcode.api.app", "helixcode.cli.app"): "layer 6 -> 6, edge api -> cli"
    }
