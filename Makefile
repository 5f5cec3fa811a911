# `make test` and `make demo` each set up .venv first (Python 3.11+).
PYTHON ?= python3
VENV ?= .venv
# one leg of the support matrix: a pip requirement pinning Django (.ci/run sets it), e.g.
#   make test PYTHON=python3.12 VENV=.venv-3.12 DJANGO='Django>=6.1,<6.2'
DJANGO ?=
STAMP := $(VENV)/.installed-stamp
# the slow kinds: real celery workers, chaos (SIGKILLs), the demo end to end
SLOW := worker or chaos or demo

.PHONY: test test-fast demo lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]' $(if $(DJANGO),'$(DJANGO)')
	$(VENV)/bin/python -c 'import django, sys; print("Python", sys.version.split()[0], "Django", django.get_version())'
	touch $(STAMP)

# the whole suite, after the lint: what CI runs. The fast tests in two processes, then the
# slow kinds one at a time (they measure rates and time). EXCEPT leaves out more markers, e.g.
# EXCEPT=chaos for a leg of the support matrix whose difference (Django) chaos does not touch
EXCEPT ?=
test: lint
	$(VENV)/bin/python -m pytest -n 2 -m "not ($(SLOW))"
	$(VENV)/bin/python -m pytest -m "($(SLOW))$(if $(EXCEPT), and not ($(EXCEPT)))"

# everything but the slow kinds, in two processes: the loop to run while working
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 -m "not ($(SLOW))"

demo: $(STAMP)
	$(VENV)/bin/python -m demo

# style, the package's layer contracts (import-linter) and its types (mypy)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf .venv .venv-* .pytest_cache .mypy_cache .import_linter_cache
