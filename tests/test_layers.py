"""The packages stand on each other in one direction: `server` on `memory` on `agent`.

The graph (`agent`) knows nothing of the session service that runs it; the session service
(`memory`) knows nothing of the HTTP server. Every import is checked, including the ones
inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What each package may import of the project's own packages.
ALLOWED = {
    "agent": {"agent"},
    "memory": {"agent", "memory"},
    "server": {"agent", "memory", "server"},
}


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom):  # a relative import stays in its package
            names.add(path.relative_to(ROOT).parts[0])
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in _imported(path) & set(ALLOWED)
        if name not in ALLOWED[package]
    }
    assert not wrong, sorted(wrong)


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    assert "memory" not in _imported(ROOT / "agent" / "graph.py")
    probe = tmp_path / "probe.py"
    probe.write_text("import agent.graph\n\n\ndef late():\n    from memory import sessions\n")
    assert _imported(probe) == {"agent", "memory"}
