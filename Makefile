# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-slurm lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python examples/demo.py

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --durations 15 tests

# Opt-in, as root: a one-node Slurm on this machine (deploy/slurm/local-slurm.sh, which
# `install` can apt-get), the Slurm recipe run end to end on it, the Slurm stopped after.
$(VENV)/.installed-slurm: pyproject.toml $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e ".[test,slurm]"
	touch $@

test-slurm: $(VENV)/.installed-slurm
	deploy/slurm/local-slurm.sh start
	$(BIN)/python -m pytest -q tests_slurm; status=$$?; \
	    deploy/slurm/local-slurm.sh stop; exit $$status

lint: $(VENV)/.installed-test
	$(BIN)/ruff check dlmm tests tests_slurm examples deploy

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
