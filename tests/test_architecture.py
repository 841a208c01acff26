"""The shape of the code: imports point down (no cycles, no import inside a function to dodge one), the low
layers import no family, the families import neither the report nor the CLI, and every module imports
alone in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cnnscope"
# optional heavy extras imported only when asked for, and two heavy libraries that would otherwise add 0.65 s
# to every CLI start (scipy.optimize for permutation stitches, matplotlib when a figure is drawn)
LAZY_EXTRAS = {"ray", "playwright", "scipy", "matplotlib"}
FAMILIES = ("cnnscope.preimage", "cnnscope.backprop", "cnnscope.transforms", "cnnscope.features")
TOP = ("cnnscope.report", "cnnscope.cli")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()
# the low layers: no family, the report or the CLI may be imported from them
LOW = {"cnnscope.errors", "cnnscope.store", "cnnscope.images", "cnnscope.data", "cnnscope.viz",
       "cnnscope.viz.figures", "cnnscope.device", "cnnscope.memory", "cnnscope.progress", "cnnscope.targets",
       "cnnscope.layers", "cnnscope.jobs", "cnnscope.jobs.engine", "cnnscope.models", "cnnscope.verbs", "cnnscope.lazy",
       "cnnscope.requests"} | {
    m for m in MODULES if m.startswith(("cnnscope.models.", "cnnscope.jobs.", "cnnscope.viz.", "cnnscope.layers."))}


def _package(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _targets(name: str, node: ast.AST) -> list[str]:
    """cnnscope modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("cnnscope")]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = _package(name)
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        module = f"{base}.{node.module}" if node.module else base
    else:
        module = node.module or ""
    if not module.startswith("cnnscope"):
        return []
    found = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES]
    return found or [module]


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[name] = {t for node in tree.body for t in _targets(name, node) if t in MODULES and t != name}
    return graph


def test_module_imports_have_no_cycle():
    graph, state, stack = _graph(), {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_import_inside_a_function():
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        names = [a.name for a in inner.names] if isinstance(inner, ast.Import) else [inner.module]
                        if not all((n or "").split(".")[0] in LAZY_EXTRAS for n in names):
                            found.append(f"{name}:{inner.lineno} {ast.unparse(inner)}")
    assert not found, "\n".join(found)


def test_layers_point_down():
    graph = _graph()
    bad = []
    for module, targets in graph.items():
        for t in targets:
            if module in LOW and t.startswith(FAMILIES + TOP):
                bad.append(f"{module} (low layer) imports {t}")
            if module.startswith(FAMILIES) and t.startswith(TOP):
                bad.append(f"{module} (a family) imports {t}")
            if not module.startswith(("cnnscope.cli", "cnnscope.__main__")) and t.startswith("cnnscope.cli"):
                bad.append(f"{module} imports the CLI {t}")
    assert not bad, "\n".join(bad)


def test_each_module_imports_alone():
    """In one fresh interpreter per module (batched: each child imports one module and exits)."""
    code = ("import subprocess, sys\n"
            "bad = []\n"
            "for m in sys.argv[1:]:\n"
            "    r = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True, text=True)\n"
            "    if r.returncode: bad.append(m + ': ' + r.stderr.strip().splitlines()[-1])\n"
            "print('\\n'.join(bad))\n")
    res = subprocess.run([sys.executable, "-c", code, *sorted(MODULES)], capture_output=True, text=True,
                         timeout=900)
    assert res.stdout.strip() == "", res.stdout


def test_cli_modules_stay_small():
    big = {p.name: n for p in (ROOT / "cli").glob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert not big, big
