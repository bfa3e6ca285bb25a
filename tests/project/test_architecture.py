"""The layers import one way: read from the source, so a new import that breaks them fails here.

- ``cadenza.core`` (the contract and the engine) never imports ``cadenza.plugins``, not even
  inside a function;
- the engine side of core (``engine``, ``spec``, ``steering``, ``audio``, ``files``,
  ``quantize`` and the contract modules) never imports the command line (``cadenza.core.cli``)
  or the workflows (``cadenza.plugins.workflows``);
- no import cycles between modules, at import time or through imports placed inside functions;
- an import of Cadenza's own module inside a function is allowed only where that module loads a
  heavy library (torch, numpy, transformers, ...) at import time: the import then keeps it out of
  ``--help``, listing and discovery. Any other is a layering decision hidden from a reader and
  belongs at the top of the file. Their number may only become fewer (the ceiling below).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"cadenza.core": "core", "cadenza.registry": "registry", "cadenza.plugins": "plugins",
            "cadenza.testing": "testing"}
ENGINE_SIDE = ("engine", "spec", "steering", "audio", "files", "quantize", "components", "hookspecs", "types",
               "layout", "errors", "prompts")
MAX_FUNCTION_IMPORTS = 18


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()


def imports(name: str) -> tuple[set[str], set[str]]:
    """(modules imported at import time, modules imported inside functions) by module ``name``."""
    path = MODULES[name]
    at_import, in_function = set(), set()

    def targets(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]

    def walk(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in targets(child):
                    if target in MODULES:
                        (in_function if inside else at_import).add(target)
            walk(child, nested)

    walk(ast.parse(path.read_text()), False)
    return at_import, in_function


GRAPH = {name: imports(name) for name in MODULES}


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: every group of two or more modules that import each other in a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def test_core_never_imports_plugins():
    wrong = [(a, b) for a, (top, local) in GRAPH.items() if a.startswith("cadenza.core")
             for b in top | local if b.startswith("cadenza.plugins")]
    assert not wrong


def test_the_engine_never_imports_the_command_line_or_workflows():
    engine = [m for m in MODULES if any(m == f"cadenza.core.{p}" or m.startswith(f"cadenza.core.{p}.")
                                        for p in ENGINE_SIDE)]
    assert len(engine) > 20
    wrong = [(a, b) for a in engine for b in GRAPH[a][0] | GRAPH[a][1]
             if b.startswith(("cadenza.core.cli", "cadenza.plugins.workflows"))]
    assert not wrong


def test_no_import_cycles():
    assert strongly_connected({m: top for m, (top, _) in GRAPH.items()}) == []
    assert strongly_connected({m: top | local for m, (top, local) in GRAPH.items()}) == []


def test_function_level_imports_of_cadenza_only_become_fewer():
    count = sum(len(local) for _, local in GRAPH.values())
    assert count <= MAX_FUNCTION_IMPORTS, f"{count} imports of cadenza modules inside functions (ceiling {MAX_FUNCTION_IMPORTS})"


def test_the_checker_sees_what_it_checks():
    """The graph is read from real files: known edges are there, so the rules above can fail."""
    assert "cadenza.core.engine.decode" in GRAPH["cadenza.core.engine.cascade"][0] | GRAPH["cadenza.core.engine.cascade"][1]
    assert "cadenza.core.cli.batch" in GRAPH["cadenza.core.cli.generate"][0]
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": set()}) == [{"a", "b"}]


# Third-party libraries slow or large enough to import only when a command needs them.
HEAVY = {"torch", "torchaudio", "numpy", "scipy", "transformers", "accelerate", "encodec", "dac", "laion_clap",
         "librosa", "soundfile", "soxr", "pyloudnorm", "safetensors", "huggingface_hub", "matplotlib", "gradio",
         "perth", "pretty_midi", "mido"}


def loads_heavy(name: str, seen: set[str] | None = None) -> bool:
    """Whether importing module ``name`` imports a heavy library, itself or through the Cadenza
    modules it imports at import time (imports under ``if TYPE_CHECKING`` do not run)."""
    seen = set() if seen is None else seen
    if name in seen:
        return False
    seen.add(name)
    for node in ast.parse(MODULES[name].read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for statement in node.body if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(statement, ast.Import) and any(a.name.split(".")[0] in HEAVY for a in statement.names):
                return True
            if (isinstance(statement, ast.ImportFrom) and not statement.level and statement.module
                    and statement.module.split(".")[0] in HEAVY):
                return True
    return any(loads_heavy(target, seen) for target in GRAPH[name][0])


def test_imports_inside_functions_only_defer_heavy_libraries():
    """An import of a Cadenza module inside a function is allowed only where it keeps a heavy
    library (torch, numpy, transformers, ...) out of a light path: ``--help``, listing, discovery."""
    hidden = sorted((a, b) for a, (_, local) in GRAPH.items() for b in local if not loads_heavy(b))
    assert not hidden, "move to module level: " + "; ".join(f"{a} -> {b}" for a, b in hidden[:10])


def test_the_heavy_rule_sees_heavy_modules():
    assert loads_heavy("cadenza.core.engine.decode") and not loads_heavy("cadenza.core.errors")
