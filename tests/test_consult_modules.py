"""The consult package cut by concept: no import circle among its modules, each importable on
its own (first, in a fresh interpreter), and only the layers below it imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import consilium

PACKAGE = Path(consilium.__file__).parent
CONSULT = PACKAGE / "consult"
ABOVE_CONSULT = ("consilium.live", "consilium.history", "consilium.app", "consilium.cli",
                 "consilium.demo", "consilium.edge", "consilium.openapi", "consilium.service",
                 "consilium.render")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The consilium modules ``path`` imports when it runs (``if TYPE_CHECKING:`` aside)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("consilium"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "consilium"):
            found.add(node.module)
            for alias in node.names:  # ``from consilium.consult import workflow``
                candidate = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists():
                    found.add(candidate)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name}
            for name, path in modules.items()}


def cycles_through(edges: dict[str, set[str]], prefix: str) -> list[list[str]]:
    """Import circles that pass through a module whose name starts with ``prefix``."""
    found: list[list[str]] = []
    for start in sorted(m for m in edges if m.startswith(prefix)):
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    found.append([*path, start])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return found


def test_no_import_circle_passes_through_consult() -> None:
    assert cycles_through(graph(), "consilium.consult") == []


def test_consult_imports_only_the_layers_below_it() -> None:
    edges = graph()
    upward = {(m, target) for m, targets in edges.items() if m.startswith("consilium.consult")
              for target in targets if target.startswith(ABOVE_CONSULT)}
    assert upward == set()


def test_the_documents_module_is_cut_by_concept() -> None:
    names = {p.stem for p in CONSULT.glob("*.py")}
    assert {"context", "attachments", "conclusion_pdf", "conclusion_dicom", "archiving"} <= names
    assert "documents" not in names
    for path in CONSULT.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, path.name


def test_each_consult_module_imports_first_in_a_fresh_interpreter() -> None:
    """Imported first, a module in a circle finds its partner half-initialised and fails;
    every module of the package is imported first once, then all in reverse order."""
    names = sorted(module_name(p) for p in CONSULT.glob("*.py"))
    scripts = [f"import {n}" for n in names]
    scripts.append("; ".join(f"import {n}" for n in reversed(names)))

    def run(code: str) -> tuple[str, int, str]:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=120)
        return code, result.returncode, result.stderr[-2000:]

    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: two interpreters at a time
        failed = [r for r in pool.map(run, scripts) if r[1] != 0]
    assert failed == []
