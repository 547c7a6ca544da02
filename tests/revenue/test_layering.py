"""Who may import whom (issue 20): revenue never imports analytics, ingest never imports webhooks,
webhooks imports neither analytics nor revenue."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "revenue": {"analytics"},
    "ingest": {"webhooks", "analytics", "revenue"},
    "webhooks": {"analytics", "revenue"},
}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_imports(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if imported(path) & FORBIDDEN[package]
    }
    assert offenders == {}
