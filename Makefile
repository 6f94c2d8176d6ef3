# `make test` is what CI runs; every target creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train train-debug train-ddp test test-fast lint format typecheck clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)  ## the offline quick start: digits, about a minute on a laptop CPU
	$(BIN)/python -m vision_exp.train experiment=digits

train-debug: $(STAMP)
	$(BIN)/python -m vision_exp.train experiment=digits debug=fast

train-ddp: $(STAMP)  ## the quick start as a DDP job: 2 CPU processes over gloo, one run, one folder
	$(BIN)/torchrun --standalone --nproc_per_node=2 -m vision_exp.train distributed=ddp experiment=digits

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy --strict vision_exp

test: lint typecheck  ## the whole suite, slow tests included, with the coverage floor
	$(BIN)/python -m pytest --cov --cov-report=term-missing --durations=20

test-fast: $(STAMP)  ## skips tests marked slow; no coverage floor
	$(BIN)/python -m pytest -m "not slow" -q

clean:
	rm -rf outputs multirun mlruns mlflow.db .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache
