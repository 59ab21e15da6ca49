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
# Three regimes: HRTEM (lattice fringes), medium magnification (mass-thickness contrast) and
# survey images with dense monolayers. About 50 min of simulation and 37 min of training on
# 2 CPU cores (see docs/training.md).
WORK ?= runs/builtin
NANOSEG := $(VENV)/bin/nanoseg
SIM_EXTRA ?=
SIM := --size 512 --workers 2 --variants 8 $(SIM_EXTRA)
builtin-model: $(STAMP)
	$(NANOSEG) simulate $(WORK)/sim-hrtem --n 1000 --materials au,pd,cdse \
		--pixel-size 0.02:0.05 --seed 0 $(SIM)
	$(NANOSEG) simulate $(WORK)/sim-medium --n 480 --materials au,pd,pt,ag,cdse \
		--pixel-size 0.06:0.3 --particle-size 2:10 --seed 11 $(SIM)
	$(NANOSEG) simulate $(WORK)/sim-survey --n 320 --materials au,pd,pt,ag,cdse \
		--pixel-size 0.3:1.0 --particle-size 4:10 --seed 12 $(SIM)
	$(PY) scripts/combine_simulations.py $(WORK)/sim hrtem=$(WORK)/sim-hrtem \
		medium=$(WORK)/sim-medium survey=$(WORK)/sim-survey
	$(NANOSEG) dataset build --images $(WORK)/sim/images --labels $(WORK)/sim/labels \
		--material-from $(WORK)/sim/metadata.csv --normalize percentile \
		--split 0.65,0.12,0.23 --out $(WORK)/data.h5 --overwrite
	$(NANOSEG) train $(WORK)/data.h5 --out $(WORK)/train --preset builtin
	$(NANOSEG) evaluate $(WORK)/train/best $(WORK)/data.h5 --split test --out $(WORK)/eval
	$(PY) scripts/install_builtin_model.py $(WORK)/train/best $(WORK)/eval/metrics.json
