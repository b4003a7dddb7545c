# hcc-dsfr-book: two commands do everything on a fresh machine.
#   make book [PROFILE=ci|demo|paper]   build the HTML book from the embedded synthetic cohort
#   make test                           run the test-suite (ci profile end to end)
SHELL := /bin/bash
PROFILE ?= demo
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# Text is UTF-8 whatever the machine's locale (CI may run without LANG).
export PYTHONUTF8 := 1

.PHONY: env book bundle cohort check test test-fast lab bench bench-book stability planted ablation assets clean-outputs help

help:
	@echo "make book [PROFILE=ci|demo|paper]  |  make test  |  make cohort  |  make check  |  make lab  |  make bench  |  make bench-book  |  make stability  |  make planted  |  make ablation"

# The environment: plain pip into .venv (uv/poetry would not use the machine's local torch wheels).
$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name hcc-dsfr --display-name "hcc-dsfr (.venv)"
	@touch $(STAMP)

env: $(STAMP)

# Offline JavaScript for the HTML book (widgets, require.js, MathJax): copied from npm packages, no CDN at view time.
# npm comes from Debian when missing and apt is usable (CI runs as root); otherwise the run says why it stops.
VENDOR := book/_static/vendor/.vendored
$(VENDOR): | $(STAMP)
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >/dev/null 2>&1)) || \
	  echo "npm is missing and could not be installed: install Node.js/npm to vendor the book's JavaScript"; }
	$(PY) -m hcc_utils.run assets
	@touch $@

assets: env
	$(PY) -m hcc_utils.run assets --force
	@touch $(VENDOR)

# The study bundle of a finished run (`make book` writes it too): outputs/$(PROFILE)/bundle
bundle: env
	$(PY) -m hcc_utils.bundle write --profile $(PROFILE)

cohort: env
	$(PY) -m hcc_utils.synthetic --profile $(PROFILE)

check: env
	$(PY) -m hcc_utils.manifest check $(if $(MANIFEST),$(MANIFEST),--profile $(PROFILE))

book: env $(VENDOR)
	$(PY) -m hcc_utils.run book --profile $(PROFILE) $(if $(MANIFEST),--manifest $(MANIFEST)) $(ARGS)

# Debian's chromium is installed for the browser test when missing and apt is usable (CI runs as root).
test: env $(VENDOR)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1)) || \
	  echo "chromium could not be installed: the browser test will be skipped"; }
	$(PY) -m pytest $(ARGS)

test-fast: env
	$(PY) -m pytest -m "not slow" $(ARGS)

# JupyterLab on 127.0.0.1 with a token (the default; never disabled here), the project's kernel as default; the
# notebooks' default parameters read the latest stored outputs/<profile>/. Root (CI, containers) needs --allow-root.
lab: env
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
	  --MappingKernelManager.default_kernel_name=hcc-dsfr $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

bench: env
	$(PY) -m benchmarks $(ARGS)

# `make book` cold and warm on the demo profile, in an isolated root (22-35 min on 2 CPUs): its own run and JSON
bench-book: env
	$(PY) -m benchmarks --only book $(ARGS)

# The demo book on three synthetic cohorts (generator seeds), each in its own root: mean and range of every Table 2 /
# Table 4 AUC and the Dice per phase (20-35 min a seed on 2 CPUs), kept per kind of CPU in benchmarks/stability/ and
# shown on the results page; ARGS="--finished 2022=outputs/bench/book-demo" takes the default seed's figures from the
# book `make bench-book` ran
stability: env $(VENDOR)
	$(PY) -m benchmarks.stability $(ARGS)

# What the planted truth of 50 synthetic cohorts lets an image model gain over the visual reads (tables only, no
# images; a few minutes on 2 CPUs)
planted: env
	$(PY) -m benchmarks.planted $(ARGS)

# What each design choice gives (feature level, pooling region, manual mask; per phase) on the trained networks of a
# finished `make book`, then chapter 4 again to show it (about 10 min for the demo profile on 2 CPUs)
ablation: env $(VENDOR)
	$(PY) -m hcc_utils.ablation --profile $(PROFILE) $(if $(MANIFEST),--manifest $(MANIFEST))
	$(PY) -m hcc_utils.run book --profile $(PROFILE) $(if $(MANIFEST),--manifest $(MANIFEST)) --force --only 04_model_comparison 05_survival_nomogram 06_gradcam

clean-outputs:
	rm -rf outputs/$(PROFILE) book/_build .cache/$(PROFILE)
