# Entry points. Each target installs what it needs from the project's own files,
# so a fresh clone needs nothing but python3.11, node/npm and make.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

IAC_VENV := .venv-iac

.PHONY: help setup system-packages iac-tools run test test-shifted unit e2e reliability lint lint-only train bench clean

help:
	@echo "make run    - set up and run the demo on the embedded default"
	@echo "make test   - set up, lint (ruff, mypy) and run every test (unit, functions, platform, Cosmos, devhost e2e, IaC),"
	@echo "              then all of them again with the clock a year ahead and TZ=Asia/Tokyo (libfaketime)"
	@echo "make unit   - fast loop: unit and platform-conformance tests"
	@echo "make e2e    - the devhost end-to-end tests (real Cosmos server, Azurite)"
	@echo "make reliability - kills, replays, Cosmos outages, fault mixes, poison input, erasure: lost/duplicated"
	@echo "              counted per scenario; writes reports/reliability.json and .png (about 10 minutes)"
	@echo "make lint   - ruff + mypy"
	@echo "make train  - retrain the ONNX model, printing its 7 stages (minutes of CPU: over 6 on a busy 2-core"
	@echo "              machine); model and card are rewritten only when the ONNX bytes change"
	@echo "make bench  - CPU per event vs a naive design and the SDK floor, devhost unpaced and paced;"
	@echo "              reports/bench.json and .png (about 10 minutes; SOAK=1 adds a 5-minute soak)"

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

setup: $(BIN)/.installed node_modules/.installed

# checkov pins a large tree of its own; it lives in a separate venv so it can
# never shift the app's dependencies.
$(IAC_VENV)/.installed: requirements-iac.txt
	test -x $(IAC_VENV)/bin/python || $(PY) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/python -m pip install --quiet -r requirements-iac.txt
	touch $@

iac-tools: $(IAC_VENV)/.installed

run: setup
	$(BIN)/python -m devhost run --players 200 --duration 4d --seed 7 --bad-share 0.001 --fresh

# No test may depend on today's date or the machine's time zone: the whole suite runs a
# second time with the system clock moved 400 days ahead (libfaketime) east of UTC.
SHIFT ?= +400d
SHIFT_TZ ?= Asia/Tokyo

test: setup iac-tools system-packages lint-only
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-shifted

test-shifted: setup iac-tools system-packages
	@echo "== the whole suite again, clock $(SHIFT), TZ=$(SHIFT_TZ)"
	TZ=$(SHIFT_TZ) faketime -f "$(SHIFT)" $(BIN)/python -c "import datetime; print('shifted clock:', datetime.datetime.now().astimezone().isoformat())"
	TZ=$(SHIFT_TZ) faketime -f "$(SHIFT)" $(BIN)/python -m pytest $(PYTEST_ARGS)

reliability: setup
	$(BIN)/python -m scripts.reliability --out reports

unit: setup
	$(BIN)/python -m pytest tests/unit tests/platform $(PYTEST_ARGS)

e2e: setup
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

system-packages:
	@command -v faketime >/dev/null && test -x /usr/bin/chromium || scripts/install-system-packages.sh

lint: setup lint-only

lint-only:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Retrain the model (scripts/train_model.py): an unchanged model leaves shared/models/ untouched.
train: setup
	$(BIN)/python -m scripts.train_model

# CPU per event of the engine vs the naive design on seeded workloads, the devhost unpaced and
# paced at 3,700 events/s; reports/bench.json and .png (docs/performance.md). SOAK=1 paces 5 minutes.
bench: setup
	$(BIN)/python -m scripts.bench --out reports $(if $(filter-out 0,$(SOAK)),--soak,)

clean:
	rm -rf $(VENV) $(IAC_VENV) node_modules reports .pytest_cache .mypy_cache .ruff_cache
