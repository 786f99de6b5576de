# The two commands a newcomer runs: `make demo` and `make test`. Both start from a bare clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist: the slow tests mostly wait on real servers and systemd, so 4 workers pay off on 2 cores.
PYTEST_ARGS ?= -n 4

.PHONY: venv test test-unit lint demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,lint]'
	touch $@

venv: $(VENV)/.installed

## make test: create .venv, install .[test], run the whole suite (real servers, real systemd where possible)
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

## make test-unit: everything but the real-systemd tests (used for the oldest Python in CI)
test-unit: venv
	$(PY) -m pytest $(PYTEST_ARGS) -m "not systemd"

## make lint: ruff (lint + format check) everywhere, mypy --strict on core/
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## make demo: the A-depends-on-B failure and its fix, under a private systemd user manager
demo: venv
	$(PY) examples/demo.py

## make bench: every benchmark script; tables go to benchmarks/RESULTS.md
bench: venv
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv310 build *.egg-info .pytest_cache .mypy_cache .ruff_cache
