# Synthaudio: `make run` builds the default release through Airflow, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PATH := $(CURDIR)/$(BIN):$(PATH)
# `make run` and `make airflow` write the DAGs' OpenLineage events (corpus -> model -> release) to a file unless
# AIRFLOW__OPENLINEAGE__TRANSPORT is already set.
LINEAGE_FILE := $(CURDIR)/var/lineage/events.jsonl
run airflow: export AIRFLOW__OPENLINEAGE__TRANSPORT ?= {"type": "file", "log_file_path": "$(LINEAGE_FILE)", "append": true}
VERSION ?= $(shell date -u +%F)
CONFIG ?= configs/default.yaml
VOICES := var/reference_voices
CONSUMER_VENV := .venv-consumer
# A consumer's own environment: current `datasets` needs huggingface-hub>=1, which transformers 4.57.6 refuses.
export SYNTHAUDIO_CONSUMER_PYTHON := $(CURDIR)/$(CONSUMER_VENV)/bin/python

.PHONY: help install install-celery consumer-env deps voices airflow-init run run-cli test test-fast test-memorisation test-celery \
  celery-up celery-down celery-down-if-running airflow bench bench-deps lock schemas clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet torch==2.13.0   # the CPU wheel; a looser pin pulls a CUDA build
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/pip install --quiet --no-deps -c constraints.txt resemblyzer==0.1.4   # webrtcvad-wheels replaces webrtcvad
	@# Compile librosa's numba kernels (cache=True) once, in one process: a first compile racing in several
	@# worker processes once left a cache that segfaulted every later call.
	$(BIN)/python -c "from pipeline.features.extract import feature_set; from pipeline.testing import click_track; \
	  feature_set('full').extract(click_track(120, 3.0), 44_100)"
	touch $@

install: $(VENV)/.installed  ## create .venv and install pinned dependencies

$(VENV)/.installed-celery: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e ".[celery]"
	touch $@

install-celery: $(VENV)/.installed-celery  ## add Airflow's Celery executor and Postgres driver (scale-out only)

$(CONSUMER_VENV)/.installed:
	$(PYTHON) -m venv $(CONSUMER_VENV)
	$(CONSUMER_VENV)/bin/pip install --quiet datasets==5.2.0 soundfile==0.14.0
	touch $@

consumer-env: $(CONSUMER_VENV)/.installed  ## a separate env with current Hugging Face datasets, for consumer tests

# Speech synthesisers for the test voices (reference, non-reference), the leak check's impostor cohort
# (flite, festival lp/ph, espeak-ng) and the privacy benchmark's voices; sox (with mp3) and libsndfile; FluidSynth
# and the TimGM6mb sound font (the leak check's enrolment music, pipeline/privacy/music.py).
APT_PACKAGES := chromium flite festival festival-ca festival-czech espeak-ng sox libsndfile1 festvox-kdlpc16k \
  festvox-italp16k festvox-itapc16k festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-ph festvox-czech-krb \
  festvox-ca-ona-hts festvox-ru festvox-czech-dita festvox-czech-machac \
  festvox-kallpc16k festvox-us-slt-hts libsox-fmt-mp3 libchromaprint1 fluidsynth timgm6mb-soundfont

deps:  ## Debian packages: speech synthesisers for test voices, sox, libsndfile, chromium (release page test)
	@# installed means "install ok installed": a removed package whose configuration files remain passes dpkg -s
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	  [ -z "$$missing" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }

voices: deps $(VENV)/.installed  ## synthesise the default reference voices into var/
	$(BIN)/python -m pipeline.privacy.test_voices $(VOICES)

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate >/dev/null

airflow-init: $(AIRFLOW_HOME)/airflow.db  ## initialise Airflow (SQLite, AIRFLOW_HOME=.airflow)

# `airflow dags test` does not fire Asset-scheduled runs: run the training DAG (it publishes the model the build
# pins; a model already trained on the same inputs is found, not retrained), then the build.
run: voices airflow-init  ## train the default model, then build the default release through the DAGs, VERSION=YYYY-MM-DD
	@mkdir -p $(dir $(LINEAGE_FILE))
	$(BIN)/airflow dags test synthaudio_train__default $(VERSION) > var/dags-test-train-$(VERSION).log 2>&1 \
	  && grep -q "state=success" var/dags-test-train-$(VERSION).log \
	  || { tail -40 var/dags-test-train-$(VERSION).log; echo "training DAG failed: see var/dags-test-train-$(VERSION).log"; exit 1; }
	$(BIN)/airflow dags test synthaudio__default $(VERSION) > var/dags-test-$(VERSION).log 2>&1 \
	  || { tail -40 var/dags-test-$(VERSION).log; echo "airflow dags test failed: see var/dags-test-$(VERSION).log"; exit 1; }
	@grep -q "state=success" var/dags-test-$(VERSION).log \
	  || { tail -40 var/dags-test-$(VERSION).log; echo "DAG run did not succeed: see var/dags-test-$(VERSION).log"; exit 1; }
	@echo "release: $$($(BIN)/python -c 'from pipeline.runner import make_context as m; print(m("$(CONFIG)", "$(VERSION)").release_dir)')"

run-cli: voices  ## the same build without Airflow: python -m pipeline train, then run
	$(BIN)/python -m pipeline train $(CONFIG)
	$(BIN)/python -m pipeline run $(CONFIG) --version $(VERSION)

test: deps $(VENV)/.installed $(CONSUMER_VENV)/.installed  ## the whole test suite (unit, DAG integrity, end to end)
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.installed  ## unit tests only (no end-to-end runs)
	$(BIN)/python -m pytest -q -m "not slow and not celery and not memorisation"   # -m replaces addopts' own -m

celery-up: voices $(VENV)/.installed-celery  ## CeleryExecutor deployment (Postgres + Redis) on http://127.0.0.1:8080
	$(BIN)/python -m pipeline.deploy start

celery-down:  ## stop exactly what celery-up started
	$(BIN)/python -m pipeline.deploy stop

celery-down-if-running:
	@[ ! -x $(BIN)/python ] || [ ! -d var/celery/pids ] || $(BIN)/python -m pipeline.deploy stop

test-memorisation: deps $(VENV)/.installed  ## a model trained to memorise its corpus has its copies rejected (4 min)
	$(BIN)/python -m pytest -q -m memorisation tests/training/test_memorisation.py

test-celery: deps $(VENV)/.installed-celery  ## integration: the DAG through the scheduler and Celery workers
	$(BIN)/python -m pytest -q -m celery tests/dags/test_celery_deployment.py

airflow: voices airflow-init  ## the Airflow UI and scheduler: airflow standalone on http://localhost:8080
	@mkdir -p $(dir $(LINEAGE_FILE))
	$(BIN)/airflow standalone

# The privacy benchmark's held_out_tools part and its tuning parts' sampled music: rubberband, FluidSynth, two General
# MIDI sound fonts (FluidR3 for held_out_tools, csound's bank for tuning), pyroomacoustics.
BENCH_APT_PACKAGES := rubberband-cli fluidsynth fluid-soundfont-gm csound-soundfont

bench-deps: deps $(VENV)/.installed  ## tools of the privacy benchmark's held_out_tools part (apt and pip)
	@missing=$$(for p in $(BENCH_APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	  [ -z "$$missing" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }
	$(BIN)/pip install --quiet -c constraints.txt -e ".[bench]"

bench: voices  ## every benchmark (on demand, not part of make test; several minutes)
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/prompts.py
	$(BIN)/python benchmarks/export.py --gb 1.0
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/training.py --level 2
	$(BIN)/python benchmarks/corpus_fidelity.py
	$(BIN)/python benchmarks/privacy.py   # --part held_out: the frozen held-out split (the reported figure)

schemas: $(VENV)/.installed  ## regenerate schemas/*.json from the code
	$(BIN)/python -m pipeline.schemas

lock: $(VENV)/.installed  ## rewrite constraints.txt from the current venv
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean: celery-down-if-running  ## remove the venv, Airflow home and var/ (workspaces, releases, voices, celery)
	rm -rf $(VENV) $(CONSUMER_VENV) $(AIRFLOW_HOME) var
