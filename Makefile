# The two commands a newcomer runs: `make demo` and `make test`. Both start from a bare clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist: the slow tests mostly wait on real servers and systemd, so 4 workers pay off on 2 cores.
PYTEST_ARGS ?= -n 4

.PHONY: venv test test-unit test-oldest oldest-venvs lint demo bench dist dist-prepare clean systemd254

PIP := $(PY) -m pip install --quiet --disable-pip-version-check
comma := ,

$(PY):
	$(PYTHON) -m venv $(VENV)

# The development dependencies are PEP 735 groups in pyproject.toml (not published extras);
# pip installs them with --group from 25.1 on, newer than many a Python's bundled pip.
$(VENV)/.pip-25.1: | $(PY)
	$(PIP) 'pip>=25.1'
	touch $@

# One stamp per set of groups: `make demo` installs only what the demo runs.
# setuptools' editable build always emits an informational "Editable installation" warning
# (a banner that pip shows even with --quiet); the filter matches that message alone.
$(VENV)/.installed-%: pyproject.toml | $(VENV)/.pip-25.1
	PYTHONWARNINGS="ignore:Editable installation" \
		$(PIP) -e . $(patsubst %,--group %,$(subst $(comma), ,$*))
	touch $@

venv: $(VENV)/.installed-test,lint

## make test: create .venv, install sdready with the test and lint groups, fetch Debian's
## systemd 254 into .cache/ (.ci/systemd254: once, nothing installed; the notify-reload tests
## run on it), then run the whole suite (real servers, real systemd), as CI does
# The suite starts hundreds of Python processes (servers, commands) that import the tree's
# modules, with PYTHONDONTWRITEBYTECODE (tests/_servers.child_env; CI's environment too):
# each would compile them again. Compiled once here, as pip compiles an installed package.
test: venv systemd254
	$(PY) -m compileall -q core plugins tests examples >/dev/null
	$(PY) -m pytest $(PYTEST_ARGS)

# Idempotent: with the tree in place it only checks its version.
systemd254:
	bash .ci/systemd254 >/dev/null

## make test-unit: everything but the real-systemd tests (used for the oldest Python in CI)
test-unit: venv
	$(PY) -m pytest $(PYTEST_ARGS) -m "not systemd"

## make test-oldest: the plugin tests again on the oldest releases the extras allow (CI runs it)
# .ci/oldest.py pins each extra to its floor, read from pyproject.toml every time, and fails
# when a floor is not a plain `>=` or a development group names a lower one. FastAPI's oldest
# release needs a Starlette older than the starlette extra's floor, so two venvs: -fastapi
# (FastAPI's floor with its own Starlette) runs OLDEST_TESTS, -starlette (Starlette's floor,
# the newest FastAPI that takes it) the tests that build Starlette apps. Packages that are no
# extra (Werkzeug, hypercorn, granian, waitress, uvicorn-worker, httpx) are the newest that
# fit the pins. For CI's budget the job asks what depends on a framework's version, not the
# statistics: no slow tests, 5 rounds of each READY race instead of 30 (SDREADY_TEST_ROUNDS), no 20-round
# dependent-unit pairs, socket-unit restarts for the servers that are extras only, and not
# the podman and HAProxy scenarios (what they test is podman's and HAProxy's, not a
# framework's release). Both runs
# go ahead whatever the first's outcome; the target fails if either did.
OLDEST_TESTS ?= tests/plugins tests/core/test_unitcheck_systemd.py
OLDEST_STARLETTE_TESTS ?= tests/plugins/test_asgi.py tests/plugins/test_asgi_servers.py
OLDEST_SKIP := not test_dependent_unit_get_after_ready \
	and not (test_socket_units and (hypercorn or exec or waitress)) \
	and not test_podman_systemd and not test_load_balancer_systemd
OLDEST_PYTEST_ARGS ?= $(PYTEST_ARGS) -m "not slow" -k "$(OLDEST_SKIP)"
OLDEST_SHOW := import importlib.metadata as m; print(*(f"{n} {m.version(n)}" for n in \
	("starlette", "fastapi", "flask", "werkzeug", "gunicorn", "uvicorn")), sep=", ")

# Kept: a venv is rebuilt only when its pins change.
.PRECIOUS: build/oldest-%.txt
build/oldest-%.txt: pyproject.toml .ci/oldest.py
	@mkdir -p $(@D)
	$(PYTHON) .ci/oldest.py --without $(if $(filter fastapi,$*),starlette,fastapi) > $@.tmp
	mv $@.tmp $@

.venv-oldest-%/.installed: build/oldest-%.txt
	rm -rf $(@D)
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet --disable-pip-version-check 'pip>=25.1'
	$(@D)/bin/python -m pip install --quiet --disable-pip-version-check -e . --group test -c $<
	touch $@

# The two venvs alone (CI installs them while the suite runs).
oldest-venvs: .venv-oldest-fastapi/.installed .venv-oldest-starlette/.installed

test-oldest: oldest-venvs
	.venv-oldest-fastapi/bin/python -c '$(OLDEST_SHOW)'
	.venv-oldest-starlette/bin/python -c '$(OLDEST_SHOW)'
	status=0; \
	SDREADY_TEST_ROUNDS=5 .venv-oldest-fastapi/bin/python -m pytest $(OLDEST_PYTEST_ARGS) \
		$(OLDEST_TESTS) || status=1; \
	.venv-oldest-starlette/bin/python -m pytest $(OLDEST_PYTEST_ARGS) \
		$(OLDEST_STARLETTE_TESTS) || status=1; \
	exit $$status

## make lint: ruff (lint + format check) everywhere, mypy --strict on the package (core/ and plugins/)
# mypy checks the package as it is installed (sdready, sdready.plugins, sdready.testing): a
# tree of links to core/ and plugins/, so that the plugins' `from sdready import ...` resolves.
TYPECHECK := build/typecheck
# core's private subpackages (pyproject.toml lists them; tests/test_layout.py checks it)
CORE_PACKAGES := $(patsubst core/%/__init__.py,%,$(wildcard core/_*/__init__.py))
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/sdready
	ln -s $(CURDIR)/core/*.py $(CURDIR)/core/py.typed $(addprefix $(CURDIR)/core/,testing $(CORE_PACKAGES)) \
		$(TYPECHECK)/sdready/
	ln -s $(CURDIR)/plugins $(TYPECHECK)/sdready/plugins
	cd $(TYPECHECK) && MYPYPATH=. $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p sdready

## make demo: the A-depends-on-B failure and its fix, under a private systemd user manager
## (DEMO_ARGS=--compare adds the alternatives; --recorder runs without systemd)
demo: $(VENV)/.installed-demo
	$(PY) examples/demo.py $(DEMO_ARGS)

## make bench: every benchmark script; tables go to benchmarks/RESULTS.md
bench: venv $(VENV)/.installed-bench
	$(PY) benchmarks/run_all.py

## make dist: sdist and wheel in dist/, metadata checked by twine (as the package index renders
## it); then the sdist as a packager meets it: unpacked, installed into a fresh venv as README
## says (pip >= 25.1, `pip install . --group test`), and its unit suite run from there
# CI passes the oldest supported Python here: one run checks the sdist and that Python.
SDIST_PYTHON ?= $(PYTHON)
SDIST_CHECK := build/sdist-check
SDIST_VENV := build/sdist-venv
SDIST_PY := $(abspath $(SDIST_VENV))/bin/python
dist: $(if $(SDIST_PREPARED),,dist-prepare)
	# All but the real-systemd tests (`make test` ran those); the checkout's systemd 254 tree
	# (.ci/systemd254) lets the unit snippets with newer settings be verified there too. The
	# statistical tests run 3 rounds each: this run asks whether the package works as shipped,
	# `make test` runs their 30.
	cd $(SDIST_CHECK) && SDREADY_SYSTEMD_ROOT=$${SDREADY_SYSTEMD_ROOT:-$(CURDIR)/.cache/systemd-254/root} \
		SDREADY_TEST_ROUNDS=3 $(SDIST_PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) -q -m "not systemd"
	rm -rf $(SDIST_CHECK) $(SDIST_VENV)

# The packages built and checked, the sdist unpacked and installed into its venv: `make dist`
# runs it first, CI while the suite runs (then `make dist SDIST_PREPARED=1` only tests).
dist-prepare: venv $(VENV)/.installed-release
	rm -rf dist $(SDIST_CHECK) $(SDIST_VENV)
	$(PY) -m build --quiet --outdir dist .
	$(VENV)/bin/twine check --strict dist/*
	mkdir -p $(SDIST_CHECK)
	tar -xzf dist/sdready-*.tar.gz -C $(SDIST_CHECK) --strip-components=1
	$(SDIST_PYTHON) -m venv $(SDIST_VENV)
	$(SDIST_PY) -m pip install --quiet --disable-pip-version-check 'pip>=25.1'
	cd $(SDIST_CHECK) && $(SDIST_PY) -m pip install --quiet --disable-pip-version-check . --group test

clean:
	rm -rf $(VENV) .venv310 .venv-oldest-* build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
