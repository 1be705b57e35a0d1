"""The packages' layering: the contracts and the feed readers import no flow code (issue 15)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Package directory -> top-level packages its modules must never import.
FORBIDDEN = {
    "schemas": ("flows", "prefect"),
    "sprx/readers": ("flows", "schemas", "prefect", "dbt", "duckdb"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (inside functions and TYPE_CHECKING blocks too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_forbidden(package: str) -> None:
    """No module of the package names a forbidden package in an import statement."""
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules found under {package}/"
    offending = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in sorted(imported_modules(path))
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert offending == []


def test_importing_the_contracts_loads_no_flow_module() -> None:
    """A fresh interpreter that imports every contract has loaded no module of flows/ (nor Prefect)."""
    code = (
        "import sys, schemas, schemas.engine, schemas.parsing, schemas.identifiers;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flows', 'prefect')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
