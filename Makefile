# Two commands do all the set-up on a fresh machine (Python 3.11 with venv):
#   make demo   install into .venv, then run the main job on the embedded sample feeds
#   make test   install into .venv with the test tools (and Debian's Chromium for the portal's
#               browser tests), then run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test install install-test browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The portal's browser tests drive Debian's Chromium (never a browser downloaded by `playwright install`);
# installing it needs root, or sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver)

demo: install
	$(BIN)/sprx demo

test: install-test browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) data .pytest_cache
