"""The package's shape: folders by role, imports flowing one way, no measurements in the code."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fairl_lib"
MODULES = sorted(PKG.rglob("*.py"))
CORE = {"artifacts", "cache", "config", "paths", "plots", "seeding", "tables"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def top_level_imports(path: Path) -> set[str]:
    """fairl_lib modules imported at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fairl_lib"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if (PKG.parent / (full.replace(".", "/") + ".py")).exists() else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fairl_lib")}
    return out


GRAPH = {module_name(p): top_level_imports(p) for p in MODULES}


def layer(mod: str) -> str:
    parts = mod.split(".")
    if len(parts) >= 2 and parts[1] in ("irl", "llm", "analysis", "stages"):
        return parts[1]
    return "core" if len(parts) == 2 and parts[1] in CORE else "top"


def test_at_most_thirteen_modules_at_the_top():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 13, top


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in GRAPH.get(m, ()):
            if d == m or d == "fairl_lib" or m.startswith(d + "."):
                continue  # a package's own __init__ re-exporting its modules
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack + [m, d]))
            if d in GRAPH and not state.get(d):
                visit(d, stack + [m])
        state[m] = 2

    for m in GRAPH:
        if not state.get(m):
            visit(m, [])


# which layers a layer may import at module level (data flows one way)
ALLOWED = {
    "core": {"core"},
    "irl": {"irl", "core"},
    "llm": {"llm", "core"},
    "analysis": {"analysis", "irl", "llm", "core"},
    "stages": {"stages", "analysis", "irl", "llm", "core"},
    "top": {"top", "stages", "analysis", "irl", "llm", "core"},
}


@pytest.mark.parametrize("mod", sorted(GRAPH))
def test_imports_flow_one_way(mod):
    bad = [d for d in GRAPH[mod] if d != "fairl_lib" and layer(d) not in ALLOWED[layer(mod)]]
    assert not bad, f"{mod} ({layer(mod)}) imports {bad}"


def all_imports(path: Path) -> set[str]:
    """fairl_lib modules imported anywhere in ``path``: at module level, inside functions or under ``if``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fairl_lib"):
            out |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fairl_lib")}
    return out


@pytest.mark.parametrize("mod", sorted(m for m in GRAPH if layer(m) == "core"))
def test_core_never_imports_up_even_inside_a_function(mod):
    """Core modules import only core, wherever the import sits (a deferred import is still a dependency)."""
    path = PKG.parent / (mod.replace(".", "/") + ".py")
    bad = sorted(d for d in all_imports(path) if d != "fairl_lib" and d.split(".")[1] not in CORE)
    assert not bad, f"{mod} (core) imports {bad}"


def test_no_module_resolves_a_class_from_a_string():
    """No importlib / __import__ in the package: every dependency is an import statement the layout test sees."""
    for path in MODULES:
        text = path.read_text()
        assert "importlib.import_module" not in text and "__import__(" not in text, path


def test_irl_needs_only_numpy_and_torch():
    for path in (PKG / "irl").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert not n.split(".")[0] in ("transformers", "trl", "sentence_transformers", "datasets"), (path, n)


DATE = re.compile(r"\b20[0-9]{2}-[01][0-9]-[0-3][0-9]\b")
HASH = re.compile(r"(?<![-_./])\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,12}\b")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_dates_or_commit_hashes_in_the_code(path):
    text = path.read_text()
    assert not DATE.findall(text), DATE.findall(text)
    # 64-hex sha256 digests of assets are data, not commits; short hex words are commit hashes
    assert not HASH.findall(text), HASH.findall(text)
