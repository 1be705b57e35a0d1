"""The main job's code imports only what `make demo` installs (requirements.lock, without the test extra).

The test suite runs with the test extra installed, so a module that the pipeline needs but only the
test extra brings (pandas, once, for the dbt Python models) passes every test and fails `sprx demo`
on a fresh machine. Every module-level import of the pipeline's code (sprx/, flows/, the dbt
project's Python models) must come from the standard library, the project itself, or a
distribution pinned in requirements.lock.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = [ROOT / "sprx", ROOT / "flows", ROOT / "dbt_project" / "models"]


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_level_imports(path: Path) -> set[str]:
    """Top-level names imported in a module's own body (not inside a function: those are optional paths,
    such as pyspark on the Spark engine)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_pipeline_imports_only_what_the_main_install_pins() -> None:
    local = {"sprx", "flows", "schemas", "tests"} | {
        path.stem for folder in PIPELINE for path in folder.rglob("*.py")}
    imported: dict[str, set[str]] = {}
    for folder in PIPELINE:
        for path in folder.rglob("*.py"):
            for name in _module_level_imports(path) - set(sys.stdlib_module_names) - local - {"__future__"}:
                imported.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert "pandas" in imported, "the dbt Python models import pandas; the scan found none"
    pinned = {_normalised(line.split("==")[0]) for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.lstrip().startswith("#")}
    distributions = packages_distributions()
    missing = {name: sorted(files) for name, files in imported.items()
               if not {_normalised(d) for d in distributions.get(name, [name])} & pinned}
    assert not missing, f"imported by the pipeline but not in requirements.lock (make demo lacks them): {missing}"
