# Intake: `make run` starts everything on embedded defaults; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/bootstrap.sh
	@bash scripts/bootstrap.sh system
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -qq --upgrade pip
	@$(BIN)/python -m pip install -qq -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create the virtualenv and install the service with its tools

run: install ## Start web, worker, scheduler, Redis and a local mail catcher on embedded defaults
	@$(BIN)/intake dev

test: install ## Lint, type-check and run the whole test suite against real services
	@bash scripts/bootstrap.sh test
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy
	@$(BIN)/python -m pytest

lint: install ## Ruff lint and format check, mypy
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

format: install ## Format the code with ruff
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

chaos: install ## Run every fault-injection scenario and print the report
	@bash scripts/bootstrap.sh test
	@$(BIN)/python -m pytest tests/chaos -m chaos --chaos-full -p no:randomly -q

bench: install ## Run the benchmarks and write BENCHMARKS.md
	@bash scripts/bootstrap.sh bench
	@$(BIN)/python -m bench

clean: ## Remove the virtualenv and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install run test lint format chaos bench clean
