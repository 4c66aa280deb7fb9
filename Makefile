# The two commands of the quick start: `make train` and `make test`. Both set up .venv first when it is missing or
# older than pyproject.toml. Pass Hydra overrides to train with ARGS, e.g. make train ARGS="model=ncl seed=1".
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_SYSTEM_DIR := /usr/share/datasets/fashion-mnist
ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup data train test test-slow test-all bench gpu-check gpu-check-wheels lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@if ! $(PY) -c 'import sys' >/dev/null 2>&1; then rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create/refresh .venv with the package and its dev tools

data:  ## make sure Fashion-MNIST (the default dataset) is on this machine
	@if ls data/fashion-mnist/*-idx?-ubyte* >/dev/null 2>&1 || ls $(FMNIST_SYSTEM_DIR)/*-idx?-ubyte* >/dev/null 2>&1; then \
	  echo "Fashion-MNIST found"; \
	elif command -v apt-get >/dev/null 2>&1 && apt-cache policy dataset-fashion-mnist 2>/dev/null | grep -q Candidate; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y -qq dataset-fashion-mnist || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; }; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  $(MAKE) setup && $(PY) -c "import torchvision; torchvision.datasets.FashionMNIST('data/fashion-mnist', download=True)"; \
	fi

train: setup data  ## set up, then train the default experiment (ECL on Fashion-MNIST-LT, offline)
	$(PY) -m ecl_lightning $(ARGS)

test: setup  ## set up, then run the test suite (without the tests marked slow)
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: setup  ## the tests marked slow only (today: torch.compile of the fused experts)
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

test-all: setup  ## every test
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup data  ## speed benchmarks (never part of make test): training step variants, then the data loaders
	$(PY) bench/bench_step.py $(BENCH_ARGS)
	$(PY) bench/bench_data.py

gpu-check-wheels: setup  ## wheels of the package, hydra-core, omegaconf, wandb into .whl/ (for the GPU machine)
	$(PY) -m pip wheel --no-deps -w .whl .
	$(PY) -m pip wheel -w .whl hydra-core omegaconf wandb antlr4-python3-runtime

gpu-check: setup  ## the prepared GPU check (bench/gpu_check.py) into logs/gpu_check; CPU dry mode: BENCH_ARGS=--cpu
	$(PY) bench/gpu_check.py logs/gpu_check $(BENCH_ARGS)

lint: setup  ## ruff lint and format check
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

format: setup  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests bench scripts
	$(VENV)/bin/ruff format src tests bench scripts

clean:  ## remove caches and build outputs (keeps .venv, data and logs)
	rm -rf build dist src/*.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
