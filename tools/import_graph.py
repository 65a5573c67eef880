"""The package's import graph, from an AST walk: cycles, function-local imports, long modules.

    python tools/import_graph.py            # counts, and each cycle's modules
    python tools/import_graph.py --local    # also every function-local import of the package

An import of ``autotransfer.x`` counts as an edge whether it sits at the top of a module or
inside a function (a function-local import still makes the importing module depend on the
imported one; it only hides the cycle from Python); imports under ``if TYPE_CHECKING:``
(annotations only, never run) do not count. ``from autotransfer.a import b`` is an
edge to ``autotransfer.a.b`` when that is a module, else to ``autotransfer.a``. The exit
status is 1 when there is a cycle.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "autotransfer"
LONG = 400


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function?, line) for each import of the package."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, bool, int]] = []

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = name.split(".")
        base = base if is_pkg else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        target = alias.name
                        while target not in known and "." in target:
                            target = target.rsplit(".", 1)[0]
                        found.append((target, local, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                mod = resolve(child)
                if mod.split(".")[0] != PACKAGE:
                    continue
                for alias in child.names:
                    sub = f"{mod}.{alias.name}"
                    target = sub if sub in known else mod
                    while target not in known and "." in target:
                        target = target.rsplit(".", 1)[0]
                    found.append((target, local, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return [(t, loc, line) for t, loc, line in found if t != name]


def _type_checking_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (never run: annotations only, as import-linter reads them too)."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
    return name == "TYPE_CHECKING"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--local", action="store_true", help="list every function-local import")
    args = p.parse_args(argv)
    mods = modules(ROOT)
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    local: list[tuple[str, int, str]] = []
    for name, path in mods.items():
        for target, is_local, line in imports(name, path, known):
            # a package's __init__ importing its own submodules is not a dependency upwards
            graph[name].add(target)
            if is_local:
                local.append((name, line, target))
    cycles = strongly_connected(graph)
    long = {m: n for m, p in mods.items() if (n := len(p.read_text().splitlines())) > LONG}
    print(f"modules: {len(mods)}")
    print(f"modules in an import cycle: {sum(map(len, cycles))} ({len(cycles)} cycles)")
    for comp in cycles:
        print("  cycle: " + " ".join(comp))
    print(f"function-local imports of {PACKAGE}: {len(local)}")
    if args.local:
        for name, line, target in local:
            print(f"  {mods[name].relative_to(ROOT)}:{line} -> {target}")
    print(f"modules over {LONG} lines: {len(long)}")
    for m, n in sorted(long.items(), key=lambda kv: -kv[1]):
        print(f"  {mods[m].relative_to(ROOT)}: {n}")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
