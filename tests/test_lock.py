"""The committed locks agree with pyproject.toml, and the test environment is the locked one.

`make lock` recompiles requirements.lock (runtime), requirements-test.lock (runtime + test
tools) and requirements-spark.lock (runtime + test tools + the `spark` extra) from pyproject.toml; every Makefile target installs from them. These tests fail when a
dependency is added to or narrowed in pyproject.toml without refreshing the locks, and when the
environment running the tests has drifted from the lock.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _locked(lock_name: str) -> dict[str, str]:
    """Package name -> pinned version, from a uv/pip-compile lock file."""
    pins: dict[str, str] = {}
    for line in (ROOT / lock_name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert "==" in line, f"{lock_name}: {line!r} is not an exact pin"
        name, version = line.split("==", 1)
        pins[canonicalize_name(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = _pyproject()["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


LOCKS = [
    # (lock file, the pyproject extras it covers)
    ("requirements.lock", ()),
    ("requirements-test.lock", ("test",)),
    ("requirements-spark.lock", ("test", "spark")),
]


@pytest.mark.parametrize(("lock_name", "extras"), LOCKS)
def test_every_declared_dependency_is_locked_within_its_range(lock_name, extras):
    pins = _locked(lock_name)
    problems = []
    for requirement in _requirements(extras):
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement.name} is in pyproject.toml but not in {lock_name}")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{lock_name} pins {name}=={pins[name]}, outside pyproject's {requirement}")
    assert not problems, "run `make lock`: " + "; ".join(problems)


def test_the_test_lock_holds_the_runtime_lock():
    """The runtime lock's versions are the test lock's too, so tests run what production runs."""
    runtime, test = _locked("requirements.lock"), _locked("requirements-test.lock")
    differing = {name: (version, test.get(name)) for name, version in runtime.items() if test.get(name) != version}
    assert not differing, f"run `make lock`: runtime and test locks differ on {differing}"


def test_the_spark_lock_holds_the_test_lock():
    """.venv-spark (make test-spark) runs the test lock's versions, plus the `spark` extra's packages."""
    test, spark = _locked("requirements-test.lock"), _locked("requirements-spark.lock")
    differing = {name: (version, spark.get(name)) for name, version in test.items() if spark.get(name) != version}
    assert not differing, f"run `make lock`: test and spark locks differ on {differing}"
    assert {"dbt-spark", "pyspark"} <= spark.keys() and "pyspark" not in test


def test_the_pins_with_a_reason_hold():
    """The pins commented in pyproject.toml: Prefect 3.8.8's scheduler needs SQLAlchemy below 2.1,
    and DuckDB 2 writes files DuckDB 1.x tools cannot open."""
    pins = _locked("requirements.lock")
    assert pins["prefect"] == "3.8.8"
    assert pins["sqlalchemy"].startswith("2.0.")
    assert pins["duckdb"].startswith("1.")


def test_the_environment_running_the_tests_is_the_locked_one():
    drifted = []
    for name, version in _locked("requirements-test.lock").items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drifted.append(f"{name} not installed (lock: {version})")
            continue
        if installed != version:
            drifted.append(f"{name} {installed} installed, lock says {version}")
    assert not drifted, "reinstall with `make install-test`: " + "; ".join(drifted)
