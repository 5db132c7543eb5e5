"""The package's shape: imports in one direction, small modules, public names in tests."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "gazeem"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path) -> set[str]:
    """gazeem modules imported at module level (not inside functions)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gazeem"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("gazeem"))
    return out


def test_no_import_circle():
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {
        m: {i for i in module_level_imports(p) if i in modules and i != m}
        for m, p in modules.items()
    }
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                pytest.fail("import circle: " + " -> ".join([*stack, m, n]))
            if n not in state:
                visit(n, [*stack, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize("path", sorted((SRC / "gaze").glob("*.py")), ids=lambda p: p.name)
def test_gaze_modules_are_small(path):
    assert len(path.read_text().splitlines()) <= 450, f"{path.name} is over 450 lines"


def test_tests_and_benchmarks_import_no_private_name():
    pattern = re.compile(r"from gazeem[\w.]* import [^\n]*\b_[a-zA-Z]\w*")
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ("tests", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
        if pattern.search(p.read_text())
    ]
    assert offenders == []
