"""The structure of the code: no import circle among the service's Python modules nor among the
front end's, identity importing only what lies below it, no Python module over 600 lines.

Unlike tests/test_consult_modules.py (what runs at import), every import counts here, those
under ``if TYPE_CHECKING:`` and the front end's ``import type`` too: a circle of types is still
two modules that cannot be read, changed or moved one without the other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import consilium

PACKAGE = Path(consilium.__file__).parent
FRONTEND = PACKAGE.parents[1] / "frontend" / "src"
MAX_LINES = 600
DECLARATIONS = {"settings.py"}
"""Modules that are declarations (the one settings object, every setting documented): long
because there is much to declare, not because they do several things."""
BELOW_IDENTITY = {"consilium.settings", "consilium.errors", "consilium.db", "consilium.audit",
                  "consilium.processes", "consilium.i18n", "consilium.http_json"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of the package that ``path`` imports anywhere in it."""
    found: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" \
        else module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in modules}


def python_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")
             if "migrations" not in p.relative_to(PACKAGE).parts}
    names = set(paths)
    return {name: python_imports(path, names) - {name} for name, path in paths.items()}


def frontend_graph() -> dict[str, set[str]]:
    """Each front-end module and the modules of this tree it imports (values and types)."""
    specifier = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}/[^"']+)["']""")
    edges: dict[str, set[str]] = {}
    for path in FRONTEND.rglob("*.ts"):
        targets = set()
        for spec in specifier.findall(path.read_text()):
            target = (path.parent / spec).resolve()
            for candidate in (target.with_name(target.name + ".ts"), target / "index.ts"):
                if candidate.exists():
                    targets.add(str(candidate.relative_to(FRONTEND)))
        edges[str(path.relative_to(FRONTEND))] = targets
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles, each as the strongly connected modules that form it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graphs are a few hundred nodes
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
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graphs_are_read() -> None:
    """The readers find the imports they are meant to (a reader that finds nothing passes
    every other test here)."""
    python = python_graph()
    assert "consilium.live.hub" in python["consilium.live.namespace"]
    assert "consilium.identity.policy" in python["consilium.identity.web"]
    frontend = frontend_graph()
    assert "core/hooks.ts" in frontend["capabilities/mpr3d/mpr3d.ts"]
    assert "capabilities/consilium/stateTypes.ts" in frontend["capabilities/consilium/state.ts"]


def test_no_import_circle_among_the_python_modules() -> None:
    assert circles(python_graph()) == []


def test_no_import_circle_among_the_front_end_modules() -> None:
    assert circles(frontend_graph()) == []


def test_identity_imports_only_what_lies_below_it() -> None:
    """Identity is the second layer (shared/DESIGN.md): its HTTP adapters take the JSON helpers
    from consilium.http_json and the caller from identity/web.py, not from consilium.http_api,
    which the domains above identity use."""
    upward = {(module, target) for module, targets in python_graph().items()
              if module.startswith("consilium.identity")
              for target in targets
              if not target.startswith("consilium.identity") and target not in BELOW_IDENTITY}
    assert upward == set()


def test_no_python_module_is_over_600_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if p.name not in DECLARATIONS and "migrations" not in p.relative_to(PACKAGE).parts
            and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
