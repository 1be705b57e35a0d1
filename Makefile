# Two commands do all the set-up on a fresh machine (Python 3.11 with venv):
#   make demo   install into .venv, then run the main job on the embedded sample feeds
#   make test   install into .venv with the test tools (and Debian's Chromium for the portal's
#               browser tests, saying so first, and axe-core from npm for their accessibility
#               check), then run the whole test suite
#   make lint   sqlfluff over the dbt models (tests/dbt/test_lint.py), two to three minutes; CI runs it after make test
#   make test-faults  the fault-injection suite (tests/faults), about 29 CPU-minutes; CI runs it after make test
#   make test-spark   the same dbt project on a local Apache Spark (its own .venv-spark, Java 17 from
#               Debian), equal answers to DuckDB's on the sample (tests/spark), about 8 minutes; CI runs it
#   make test-method  the effect estimate against truth.json on a generated 20,000-person ICS, with
#               balance, event study and engagement checks (tests/dbt/test_method.py), about 90 seconds; CI runs it
# Every install takes the exact versions in requirements.lock / requirements-test.lock (and
# requirements-spark.lock for .venv-spark); `make lock` recompiles all three from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
LOCK_ARGS := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --quiet
export PREFECT_SERVER_ANALYTICS_ENABLED := false

SPARK_VENV := .venv-spark
SPARK_BIN := $(SPARK_VENV)/bin

.PHONY: demo test lint test-faults test-method test-spark install install-test install-spark browser axe java lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install whenever pyproject.toml or a lock changes: the locked versions first, then sprx itself.
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml requirements-test.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The Spark environment: its own virtualenv, from requirements-spark.lock (runtime, test tools and the
# `spark` extra: dbt-spark in session mode and pyspark), so that pyspark never enters .venv.
$(SPARK_BIN)/python:
	$(PYTHON) -m venv $(SPARK_VENV)
	$(SPARK_BIN)/python -m pip install --quiet --upgrade pip

$(SPARK_VENV)/.installed: pyproject.toml requirements-spark.lock | $(SPARK_BIN)/python
	$(SPARK_BIN)/python -m pip install --quiet -r requirements-spark.lock
	$(SPARK_BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install-spark: $(SPARK_VENV)/.installed

# Recompile the locks from pyproject.toml (the Spark lock keeps the test lock's versions of what they share) (for Python 3.11 on Linux), with uv's resolver.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_ARGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra test $(LOCK_ARGS) -o requirements-test.lock
	$(BIN)/uv pip compile pyproject.toml --extra test --extra spark -c requirements-test.lock $(LOCK_ARGS) \
	  -o requirements-spark.lock

# The portal's browser tests drive Debian's Chromium (never a browser downloaded by `playwright install`);
# installing it needs root, or sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x /usr/bin/chromium || { \
	  echo "make test: installing Debian's chromium and chromium-driver for the portal's browser tests (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

# The portal's accessibility check injects axe-core (from npm, pinned in tests/portal/axe/package-lock.json)
# into its pages; it is installed here once, never fetched from a CDN while the tests run.
AXE := tests/portal/axe/node_modules/axe-core/axe.min.js
axe: $(AXE)
$(AXE): tests/portal/axe/package.json tests/portal/axe/package-lock.json
	@command -v npm >/dev/null || { echo "make test: npm is needed for the portal's accessibility check (apt-get install npm)"; exit 1; }
	npm ci --prefix tests/portal/axe --no-audit --no-fund --silent
	touch $@

# Spark runs on Java 17: Debian's headless runtime, installed here once (root, or sudo).
java:
	@command -v java >/dev/null || { \
	  echo "make test-spark: installing Debian's openjdk-17-jre-headless, the Java runtime Spark needs (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

demo: install
	$(BIN)/sprx demo

# Three pytest-xdist workers: much of the suite waits on servers, subprocesses, schedules and disk, so three
# keep two cores busy (with two, the suite used 1.46 cores); tests/conftest.py keeps tests that share an
# expensive fixture on one worker. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 3
test: install-test browser axe
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# The fault-injection suite (kill -9 at 23 points, a full disk in each stage, a half-written file, two runs
# at once, a reader throughout), SPRX_FAULTS_WORKERS cases at a time (default 2): about 29 CPU-minutes, 31
# minutes measured on this machine's two cores at load 3 to 13 (benchmarks/README.md), so a target of its
# own, not part of `make test`; .ci/run runs it after `make test`.
test-faults: install-test
	$(BIN)/python -m pytest tests/faults -m faults

# One SQL style: sqlfluff (dbt templater) over the models and singular tests (tests/dbt/test_lint.py, about
# 2 to 3 minutes; left out of `make test`; .ci/run runs it after `make test`).
lint: install-test
	$(BIN)/python -m pytest -m lint tests/dbt/test_lint.py

# The effect estimate against truth.json on a generated 20,000-person ICS (about 90 seconds).
test-method: install-test
	$(BIN)/python -m pytest -m method tests/dbt/test_method.py

# The sample built by dbt on DuckDB and on a local Spark (local[2]), every published table compared
# (tests/spark, marker `spark`, left out of `make test`; .ci/run runs it after `make test`): about 8 minutes
# on two shared cores, the Spark build about 5 (docs/scale.md).
test-spark: install-spark java
	SPARK_LOCAL_IP=127.0.0.1 $(SPARK_BIN)/python -m pytest tests/spark -m spark

clean:
	rm -rf $(VENV) $(SPARK_VENV) data .pytest_cache
