"""The package's shape: no import circles between our modules, the web page installed under a name that
cannot clash, helpers in one place."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (imports for type hints only never run)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports(path: Path, package: str) -> set[str]:
    """Our modules a file imports at run time, at the top or inside functions (lazy imports count)."""
    parts = [package, *path.relative_to(ROOT / package).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1] + ["__init__"]  # a package's own relative imports start from the package
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(parts[: len(parts) - node.level]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            found.update([target, *(f"{target}.{a.name}" for a in node.names)])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {name for name in found if name.startswith(("mmsearch", "web"))}


def _graph() -> dict[str, set[str]]:
    files = {}
    for path in (ROOT / "mmsearch").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        files[".".join(rel.parts).removesuffix(".__init__")] = path
    for path in (ROOT / "web").glob("*.py"):
        files["mmsearch_web." + path.stem if path.stem != "__init__" else "mmsearch_web"] = path
    graph = {}
    for name, path in files.items():
        package = "mmsearch_web" if name.startswith("mmsearch_web") else "mmsearch"
        raw = _imports(path, "web" if package == "mmsearch_web" else "mmsearch")
        raw = {r.replace("web.", "mmsearch_web.", 1) if r.startswith("web.") else r for r in raw}
        graph[name] = {m for m in files if m != name and any(r == m or r.startswith(m + ".") for r in raw)
                       and files[m].name != "__init__.py"}  # a package's own re-exports are no edge
    return graph


def test_no_module_imports_a_module_that_imports_it_back():
    graph = _graph()
    # the graph sees top-level, lazy (inside functions) and relative imports, and skips type-only ones
    assert "mmsearch.present" in graph["mmsearch.cli"] and "mmsearch.search.ranking" in graph["mmsearch.engine"]
    assert "mmsearch_web.guard" in graph["mmsearch_web.app"] and "mmsearch.store.client" not in graph["mmsearch.store.migrations"]
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif len(path) < 12:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, cycles[:5]


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_web_page_is_not_a_top_level_package_named_web(tmp_path):
    code = "import mmsearch_web.app; import importlib.util; print(importlib.util.find_spec('web'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None"


FRONT_ENDS = ("cli.py", "demo.py")  # the command line prints; the library logs (mmsearch.cli shows the log)


def test_the_library_never_prints():
    found = []
    for path in (ROOT / "mmsearch").rglob("*.py"):
        if path.name in FRONT_ENDS and path.parent == ROOT / "mmsearch":
            continue
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_no_private_name_is_imported_across_modules():
    found = []
    for path in list((ROOT / "mmsearch").rglob("*.py")) + list((ROOT / "web").glob("*.py")):
        for node in _runtime_nodes(ast.parse(path.read_text())):
            ours = isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("mmsearch"))
            if ours:
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names
                          if a.name.startswith("_") and a.name != "__version__"]
    assert not found, found


def test_the_tree_shows_the_layers():
    """Where a new signal or media kind goes is read off the tree: one package per layer."""
    packages = {p.parent.name for p in (ROOT / "mmsearch").glob("*/__init__.py")}
    assert {"encoders", "ingest", "media", "search", "store"} <= packages
    assert (ROOT / "mmsearch" / "search" / "signals" / "__init__.py").exists()
