# Every target bootstraps .venv itself: `make demo` and `make test` are all a new user types.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

# No traffic leaves the machine: Evidently, MLflow, Dagster and Hugging Face stay quiet and offline.
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export LTE_HOME ?= $(CURDIR)/.lte

.PHONY: install install-dev demo test ui ui-stop bench lint validate clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing into $(VENV) (torch CPU wheel first, then the pinned stack)..."
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -c constraints.txt -e ".[dev]"
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed  ## run the whole pipeline on built-in data and print a summary
	$(BIN)/lte demo

test: $(VENV)/.installed-dev  ## the test suite (unit, property, integration, end-to-end, browser)
	$(BIN)/python -m pytest -q

validate: $(VENV)/.installed  ## dagster definitions validate for the project's Definitions
	$(BIN)/lte dagster-validate

ui: $(VENV)/.installed  ## Dagster (webserver + daemon), MLflow and Evidently UIs on 127.0.0.1
	@bash infra/ui.sh start

ui-stop:
	@bash infra/ui.sh stop

bench: $(VENV)/.installed-dev  ## every benchmark; each prints a table and a last JSON line
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf .lte
