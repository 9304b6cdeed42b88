"""The walls of the architecture (docs/architecture.md), read from the source with ``ast``.

Each rule names the file and the import (or the function) that breaks it, so a failure
says what to move.  Imports under ``if TYPE_CHECKING:`` do not count: they cost nothing
at run time and cannot form a circle.  Imports inside functions do count: they run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mailgate"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 100


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (a package's __init__ is the package's name)
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(PACKAGE.parent)}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """Every node, except what sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk_runtime(other)
            continue
        yield child
        yield from _walk_runtime(child)


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    found = []
    for node in _walk_runtime(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from mailgate.x import y`` names module ``mailgate.x.y`` when y is one.
            targets = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in known
                else node.module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "mailgate" or target.startswith("mailgate."):
                found.append(Import(name, target, path, node.lineno))
    return found


@cache
def all_imports() -> tuple[Import, ...]:
    known = modules()
    return tuple(imp for name, path in known.items() for imp in imports_of(name, path, known))


def layer(module: str) -> str:
    """The package a module belongs to (``parse``, ``store`` …), or the flat module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def in_layer(module: str, *layers: str) -> bool:
    return layer(module) in layers


# What each package may import of mailgate's own (docs/architecture.md, "Packages").
LEAVES = {"errors", "clock", "durations", "tracing"}
BASE = LEAVES | {"config"}
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "clock": set(),
    "durations": set(),
    "tracing": set(),
    "config": {"errors", "durations"},
    "parse": {"errors"},
    "store": {"config", "errors", "clock"},
    "ingest": BASE | {"store"},
    "verify": BASE | {"parse", "store"},
    "replies": BASE | {"parse", "store"},
    "tickets": BASE | {"parse", "store", "verify", "replies"},
    "pipeline": BASE | {"parse", "store", "verify", "replies", "tickets"},
    "webhooks": BASE | {"store", "tickets"},
    "daemon": BASE
    | {"parse", "store", "ingest", "verify", "replies", "tickets", "pipeline", "webhooks"},
    "cli": BASE
    | {
        "parse",
        "store",
        "ingest",
        "verify",
        "replies",
        "tickets",
        "pipeline",
        "webhooks",
        "daemon",
    },
    "__main__": {"cli", "daemon", "ingest"},
}

# The pipe's hot path (``mailgate ingest`` handing a message to the daemon) and what it
# loads on its way: the standard library only, so a delivery costs no more than a
# stdlib script (tests/integration/test_pipe_socket.py checks the loaded modules too).
STDLIB_ONLY = ("mailgate", "mailgate.__main__", "mailgate.ingest", "mailgate.ingest.deliver")


# Third-party and stdlib modules that mean I/O or concurrency: the parser has none.
PARSE_FORBIDDEN_EXTERNAL = ("sqlalchemy", "socket", "asyncio", "aiosmtpd", "aiohttp", "smtplib")


def broken_walls(imports: Iterable[Import]) -> list[str]:
    broken = []
    for imp in imports:
        src, dst = imp.source, imp.target
        if in_layer(src, "parse") and not in_layer(dst, "parse", "errors"):
            broken.append(f"parse is pure: {imp}")
        if in_layer(src, "ingest") and in_layer(
            dst, "pipeline", "tickets", "replies", "verify", "daemon", "cli"
        ):
            broken.append(f"ingest only stores mail: {imp}")
        if in_layer(src, "verify") and in_layer(dst, "replies", "tickets", "pipeline", "daemon"):
            broken.append(f"verify never sends or writes tickets: {imp}")
        if in_layer(src, "store") and not in_layer(dst, "store", "config", "errors", "clock"):
            broken.append(f"store is the bottom: {imp}")
        if in_layer(dst, "cli") and src != "mailgate.__main__" and not in_layer(src, "cli"):
            broken.append(f"only __main__ imports the CLI: {imp}")
        if not in_layer(src, "daemon", "cli", "__main__") and in_layer(dst, "daemon"):
            broken.append(f"daemon is the top below the CLI: {imp}")
        if layer(src) != layer(dst) and layer(dst) not in MAY_IMPORT.get(layer(src), set()):
            broken.append(f"{layer(src)} may not import {layer(dst)}: {imp}")
    return broken


def external_imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in _walk_runtime(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def describe_cycle(component: list[str], imports: Iterable[Import], key: str) -> str:
    members = set(component)
    inside = [
        str(imp)
        for imp in imports
        if (layer(imp.source) if key == "layer" else imp.source) in members
        and (layer(imp.target) if key == "layer" else imp.target) in members
        and (layer(imp.source) != layer(imp.target) if key == "layer" else True)
    ]
    return f"circle {' ↔ '.join(component)}: " + "; ".join(inside)


def long_functions(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                yield (
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} is "
                    f"{length} lines (at most {MAX_FUNCTION_LINES})"
                )


# --- the tests ------------------------------------------------------------------------


def test_layers_import_only_what_they_may() -> None:
    assert broken_walls(all_imports()) == []


def test_every_package_is_in_the_table() -> None:
    assert sorted({layer(m) for m in modules()} - {"mailgate"} - set(MAY_IMPORT)) == []


def test_the_parser_does_no_io() -> None:
    broken = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for module, path in modules().items()
        if in_layer(module, "parse")
        for name, line in external_imports(path)
        if name.split(".")[0] in PARSE_FORBIDDEN_EXTERNAL
    ]
    assert broken == []


def test_the_pipe_hot_path_imports_only_the_standard_library() -> None:
    import sys

    known = modules()
    broken = [
        f"{known[module].relative_to(PACKAGE.parent)}:{line} imports {name}"
        for module in STDLIB_ONLY
        for name, line in external_imports(known[module])
        if name.split(".")[0] not in sys.stdlib_module_names
        # the full command, and serve's own start
        and not (module == "mailgate.__main__" and name in ("mailgate.cli", "mailgate.daemon"))
        and name not in STDLIB_ONLY
    ]
    assert broken == []


def test_no_circle_between_packages() -> None:
    imports = all_imports()
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if layer(imp.source) != layer(imp.target):
            edges.setdefault(layer(imp.source), set()).add(layer(imp.target))
    assert [describe_cycle(c, imports, "layer") for c in cycles(edges)] == []


def test_no_circle_between_modules() -> None:
    imports = all_imports()
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if imp.source != imp.target:
            edges.setdefault(imp.source, set()).add(imp.target)
    assert [describe_cycle(c, imports, "module") for c in cycles(edges)] == []


def test_no_module_over_500_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE.parent)} is {n} lines"
        for path in modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert long == []


def test_no_function_over_100_lines() -> None:
    assert [line for path in modules().values() for line in long_functions(path)] == []


# --- the walls test itself must be able to fail -----------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "rule"),
    [
        ("mailgate.parse.mime", "mailgate.store.models", "parse is pure"),
        ("mailgate.ingest.smtp", "mailgate.replies.verp", "ingest only stores mail"),
        ("mailgate.verify.authn", "mailgate.replies.outbox", "verify never sends"),
        ("mailgate.store.db", "mailgate.pipeline.batches", "store is the bottom"),
        ("mailgate.daemon.app", "mailgate.cli", "only __main__ imports the CLI"),
        ("mailgate.replies.outbox", "mailgate.daemon.runtime", "daemon is the top"),
    ],
)
def test_a_broken_wall_is_named(source: str, target: str, rule: str) -> None:
    path = PACKAGE / "x.py"
    messages = broken_walls([Import(source, target, path, 7)])
    assert any(m.startswith(rule) and m.endswith(f"x.py:7 imports {target}") for m in messages)
    # The table of docs/architecture.md refuses the same import on its own.
    assert any(" may not import " in m for m in messages)


def test_a_circle_is_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_type_checking_imports_do_not_count(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mailgate.daemon import runtime\n"
        "def f():\n    from mailgate.store import db\n"
    )
    found = [i.target for i in imports_of("mailgate.m", source, {})]
    assert found == ["mailgate.store"]
