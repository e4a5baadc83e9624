# Every target installs what it needs into .venv/ first; only Python 3.11+ and Node are assumed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: install test bench-parser clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt lambda/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

test: install
	$(PY) -m pytest

bench-parser: install
	$(PY) benchmarks/token_iterator.py

clean:
	rm -rf $(VENV) cdk.out .pytest_cache .hypothesis
