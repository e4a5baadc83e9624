# Every target installs what it needs into .venv/ first; only Python 3.11+ and Node are assumed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

PORT ?= 8080
EMULATOR_PORT ?= 8081

.PHONY: install test demo dev bench-parser bench-function clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt lambda/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	@echo "Installing Python dependencies into $(VENV)/ (first run: about a minute)" >&2
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt >&2
	@touch $@

test: install
	$(PY) -m pytest

demo: install
	$(PY) -m local_mode demo

dev: install
	$(PY) -m local_mode dev --port $(PORT) --emulator-port $(EMULATOR_PORT)

bench-function: install
	$(PY) benchmarks/function_latency.py

bench-parser: install
	$(PY) benchmarks/token_iterator.py

clean:
	rm -rf $(VENV) cdk.out .pytest_cache .hypothesis
