# The two commands a newcomer runs: `make demo` and `make test`. Both start from a bare clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist: the slow tests mostly wait on real servers and systemd, so 4 workers pay off on 2 cores.
PYTEST_ARGS ?= -n 4

.PHONY: venv test test-unit lint demo bench clean

PIP := $(PY) -m pip install --quiet --disable-pip-version-check

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per set of extras: `make demo` installs only what the demo runs.
$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(PIP) -e '.[$*]'
	touch $@

venv: $(VENV)/.installed-test,lint

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
## (DEMO_ARGS=--compare adds the alternatives; --recorder runs without systemd)
demo: $(VENV)/.installed-demo
	$(PY) examples/demo.py $(DEMO_ARGS)

## make bench: every benchmark script; tables go to benchmarks/RESULTS.md
bench: venv $(VENV)/.installed-bench
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv310 build *.egg-info .pytest_cache .mypy_cache .ruff_cache
