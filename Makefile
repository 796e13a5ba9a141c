# WaterSeg: every command a user or developer needs. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.sha256
export QT_QPA_PLATFORM ?= offscreen

# Training and evaluation knobs (override on the command line: make train MODEL=deepunet).
DATA ?= ../shared/data/snowed-sample/SNOWED
MODEL ?= munet
WIDTH ?= half
LOSS ?= seg+edge
OUT ?= runs
CHECKPOINT ?= $(OUT)/$(MODEL)-$(WIDTH)-$(LOSS)/best.pt
SPLIT ?= test
TRAIN_ARGS ?=
SCENE ?=

.PHONY: help setup test test-fast lint format demo batch train evaluate table1 table1-smoke bench peers temporal package clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): requirements.txt $(wildcard requirements-dev.txt) constraints.txt requirements-nodeps.txt scripts/setup.sh
	bash scripts/setup.sh

setup:  ## install Debian packages and the .venv (idempotent; seconds when done)
	bash scripts/setup.sh

test: $(STAMP)  ## run the whole test suite headless (real QGIS, real backend subprocesses)
	$(PY) -m pytest -q -rs

test-fast: $(STAMP)  ## the suite without tests marked slow
	$(PY) -m pytest -q -rs -m "not slow"

lint: $(STAMP)  ## ruff: imports sorted, pyupgrade, bugbear
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)  ## ruff: fix what it can
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

demo: $(STAMP)  ## segment the demo scene (or SCENE=path.tif) as segment does by default
	$(PY) -m backend demo $(if $(SCENE),--scene "$(SCENE)")

batch: $(STAMP)  ## segment many scenes on Dask: make batch INPUTS="scenes/ more/*.tif" BATCH_OUT=out BATCH_ARGS=--merge-shoreline
	$(if $(INPUTS),,$(error pass INPUTS="folders, files, globs or @list.txt"))
	$(PY) -m backend batch $(INPUTS) --out-dir "$(or $(BATCH_OUT),$(OUT)/batch)" $(BATCH_ARGS)

train: $(STAMP)  ## train: make train MODEL=munet WIDTH=half LOSS=seg+edge DATA=path/to/SNOWED
	$(PY) -m backend train --data "$(DATA)" --model $(MODEL) --width $(WIDTH) --loss "$(LOSS)" \
	    --out "$(OUT)/$(MODEL)-$(WIDTH)-$(LOSS)" $(TRAIN_ARGS)

evaluate: $(STAMP)  ## evaluate CHECKPOINT on SPLIT (default: the run from make train)
	$(PY) -m backend evaluate "$(CHECKPOINT)" --data "$(DATA)" --split $(SPLIT)

table1: $(STAMP)  ## train + evaluate the paper's 12 configurations, write Table I (GPU + full SNOWED)
	$(PY) -m backend table1 --data "$(DATA)" --out "$(OUT)/table1" $(TRAIN_ARGS)

table1-smoke: $(STAMP)  ## the Table I path on the five samples (1 epoch, tiny widths; numbers meaningless)
	$(PY) -m backend table1 --data "$(DATA)" --out "$(OUT)/table1-smoke" --smoke

bench: $(STAMP)  ## speed, memory and contention benchmarks (segmentation, training), side by side
	$(PY) -m benchmarks

peers: $(STAMP)  ## waterdetect, CoastSat and the classical indices vs labels (scratch venv PEERS_VENV)
	$(PY) scripts/peers.py --data "$(DATA)" $(if $(PEERS_VENV),--venv "$(PEERS_VENV)")

temporal: $(STAMP)  ## false water per date on the SEN2DWATER series (../shared), table + figure for the README
	$(PY) scripts/temporal_bench.py --json docs/results/temporal-sen2dwater.json \
	    --figure docs/images/temporal_false_water.png

package: $(STAMP)  ## build dist/waterseg-<version>.zip, installable in QGIS
	$(PY) scripts/package.py

clean:  ## remove build outputs and caches (keeps .venv)
	rm -rf dist build .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
