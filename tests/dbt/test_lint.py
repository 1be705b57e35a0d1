"""One SQL style: sqlfluff, with the dbt templater and dbt_project/.sqlfluff, finds nothing in the
models and the singular tests.

Macros and generic tests are not linted: the dbt templater lints only nodes of the project, and a
macro file renders to nothing on its own. It takes two to three minutes of CPU (the dbt templater compiles
every model), so it is marked `lint` and runs as `make lint` (CI runs it after `make test`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sprx.settings import DBT_PROJECT_DIR

# Folders of dbt_project/ that are linted (tests/generic is left out by dbt_project/.sqlfluffignore).
LINTED = ["models", "tests"]


@pytest.mark.lint
def test_models_pass_sqlfluff_lint(tmp_path: Path) -> None:
    # The profile reads SPRX_HOME (any home will do: lint compiles, it never reads the warehouse's data);
    # dbt's target/ and logs/ go to the temporary folder, not into the source tree.
    (tmp_path / "home").mkdir()
    environment = dict(os.environ, SPRX_HOME=str(tmp_path / "home"), DBT_TARGET_PATH=str(tmp_path / "target"),
                       DBT_LOG_PATH=str(tmp_path / "logs"), DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    sqlfluff = Path(sys.executable).parent / "sqlfluff"
    assert sqlfluff.exists(), "sqlfluff is not installed: install the test extra (pip install -e '.[test]')"
    completed = subprocess.run(
        [str(sqlfluff), "lint", *LINTED, "--format", "json", "--processes", "2", "--disable-progress-bar"],
        cwd=DBT_PROJECT_DIR, env=environment, capture_output=True, text=True, check=False)
    assert completed.stdout.strip(), f"sqlfluff printed no report:\n{completed.stderr[-3000:]}"
    report = json.loads(completed.stdout)
    linted = {Path(entry["filepath"]).name for entry in report}
    assert {"stg_emis__patients.sql", "pub_outcomes_by_deprivation.sql", "assert_no_feed_is_late.sql"} <= linted
    violations = [f"{entry['filepath']}:{violation.get('start_line_no')}:{violation.get('start_line_pos')} "
                  f"{violation['code']} {violation['description']}"
                  for entry in report for violation in entry["violations"]]
    assert not violations, "sqlfluff found:\n" + "\n".join(violations)
    assert completed.returncode == 0, completed.stderr[-3000:]
