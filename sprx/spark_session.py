"""dbt Python models on a local Spark session (dbt-spark's `session` method; docs/scale.md).

dbt-spark submits Python models only to Databricks (its `all_purpose_cluster` and `job_cluster`
helpers upload a notebook). In session mode dbt already runs Spark in this process, so a Python model
needs no cluster: `SessionPythonJobHelper` runs the code dbt compiled (the model, dbt's `dbtObj` and
the write of its result as a table) with the session as `spark`, exactly what a Databricks notebook
would run. `enable()` registers it as the `session` submission method and makes it the default for
session profiles; `flows.build.invoke_dbt` calls it, and by hand:

    cd dbt_project && SPRX_HOME=... ../.venv-spark/bin/python -m sprx.spark_session build --profiles-dir . --target spark

Nothing here runs unless dbt-spark is installed (the `spark` extra, `.venv-spark`).
"""

from __future__ import annotations

import sys
from typing import Any

SUBMISSION_METHOD = "session"


class SessionPythonJobHelper:
    """Runs a compiled dbt Python model in this process's Spark session (dbt's PythonJobHelper protocol)."""

    def __init__(self, parsed_model: dict, credentials: Any) -> None:
        self.name = parsed_model.get("alias") or parsed_model.get("name") or "model"

    def submit(self, compiled_code: str) -> None:
        from pyspark.sql import SparkSession

        namespace = {"__name__": f"dbt_python_model_{self.name}", "spark": SparkSession.builder.getOrCreate()}
        exec(compile(compiled_code, f"<dbt Python model {self.name}>", "exec"), namespace)  # noqa: S102


def enable() -> bool:
    """Register the session helper with dbt-spark; False (and nothing changed) without dbt-spark."""
    try:
        from dbt.adapters.spark.connections import SparkConnectionMethod
        from dbt.adapters.spark.impl import SparkAdapter
    except ImportError:
        return False
    if getattr(SparkAdapter, "_sprx_session_python_models", False):
        return True
    helpers = SparkAdapter.python_submission_helpers.fget
    default = SparkAdapter.default_python_submission_method.fget

    def python_submission_helpers(self) -> dict:
        return {**helpers(self), SUBMISSION_METHOD: SessionPythonJobHelper}

    def default_python_submission_method(self) -> str:
        if self.connections.profile.credentials.method == SparkConnectionMethod.SESSION:
            return SUBMISSION_METHOD
        return default(self)

    SparkAdapter.python_submission_helpers = property(python_submission_helpers)
    SparkAdapter.default_python_submission_method = property(default_python_submission_method)
    SparkAdapter._sprx_session_python_models = True
    return True


def main(arguments: list[str]) -> int:
    """`dbt <arguments>` with Python models runnable on a session profile."""
    from dbt.cli.main import dbtRunner

    if not enable():
        print("dbt-spark is not installed here: use .venv-spark (make install-spark)", file=sys.stderr)
        return 2
    result = dbtRunner().invoke(arguments)
    return 0 if result.success else (2 if result.exception is not None else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
