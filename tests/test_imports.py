"""The house has no import circle: llmproxy's modules, read as source, import each other as a tree.

Every import counts, also one under ``if TYPE_CHECKING:`` or inside a function: a circle hidden
there is still a circle a reader has to hold in mind.
"""
from __future__ import annotations

import ast
from pathlib import Path

import llmproxy

ROOT = Path(llmproxy.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The llmproxy modules ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                where = ".".join(base + ([node.module] if node.module else []))
            else:
                where = node.module or ""
            for a in node.names:
                sub = f"{where}.{a.name}"
                if sub in known:  # "from . import relay": the module itself
                    found.add(sub)
                elif where in known:  # "from .pipeline import Call": the module the name lives in
                    found.add(where)
    found.discard(name)
    return found


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path of module names, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_finder_finds_a_circle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_llmproxy_has_no_import_circle() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert sum(len(v) for v in graph.values()) > 50, "the import graph came out nearly empty: the reader is broken"
    assert "llmproxy.exchange" in graph["llmproxy.relay"]
    found = cycle(graph)
    assert found is None, "import circle: " + " → ".join(found)
