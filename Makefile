# Two entry points that work on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: the CPU wheel on disk satisfies the package's
# `torch>=` range, so pip never pulls the multi-gigabyte CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.nanoseg-installed

.PHONY: demo test lint clean builtin-model

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nanoseg demo --out demo-output

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) demo-output .pytest_cache

# The bundled model, from nothing: simulate, build the data set, train, evaluate, install.
# About 20 min of simulation and 30 min of training on 2 CPU cores (see README).
WORK ?= runs/builtin
NANOSEG := $(VENV)/bin/nanoseg
builtin-model: $(STAMP)
	$(NANOSEG) simulate $(WORK)/sim --n 1000 --size 512 --materials au,pd,cdse \
		--pixel-size 0.02:0.05 --workers 2 --seed 0
	$(NANOSEG) dataset build --images $(WORK)/sim/images --labels $(WORK)/sim/labels \
		--material-from $(WORK)/sim/metadata.csv --normalize percentile \
		--out $(WORK)/data.h5 --overwrite
	$(NANOSEG) train $(WORK)/data.h5 --out $(WORK)/train --preset default
	$(NANOSEG) evaluate $(WORK)/train/best $(WORK)/data.h5 --split test --out $(WORK)/eval
	$(PY) scripts/install_builtin_model.py $(WORK)/train/best $(WORK)/eval/metrics.json
