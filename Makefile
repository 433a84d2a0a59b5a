# Tenbin — one entry point for every job. The two commands a new user needs: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TENBIN := $(VENV)/bin/tenbin
STAMP  := $(VENV)/.installed

.PHONY: help venv testbed demo test test-unit test-testbed lint verify crds lock image bench-core bench simulate mutants clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP)  ## create .venv with tenbin and its dev tools

testbed:  ## build and cache the real parts the tests run, from Go modules (once; ~15 min cold on 2 cores)
	bash testbed/build.sh          # kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok
	bash testbed/build-helm.sh     # helm (the real engine the chart tests use) and Argo CD's CRDs
	bash testbed/build-karmada.sh  # Karmada, for `tenbin dev up --karmada` and tests/karmada
	bash testbed/build-prometheus.sh  # Prometheus (the real server the telemetry tests scrape and query)
	bash testbed/build-addons.sh   # JobSet, LeaderWorkerSet, KubeRay, Kubeflow training operator (tests/e2e/test_ai_kinds.py)
	bash testbed/build-image-tools.sh  # mmdebstrap, umoci, runc from Debian's packages (make image, tests/chart/test_chart_image.py)

demo: $(STAMP) testbed  ## the main job: where the examples go and why, then the live fleet's GPU inventory
	$(PY) -m tenbin.demo

test: $(STAMP) testbed lint verify  ## the whole suite: lint, generated files in sync, unit, property, real control planes
	$(PY) -m pytest -q

test-unit: $(STAMP)  ## only the tests that need no control plane
	$(PY) -m pytest -q -m "not testbed"

lint: $(STAMP)  ## ruff, mypy, import-linter (pure layers stay pure)
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

crds: $(STAMP)  ## regenerate crds/, docs/crd-reference.md and the chart's CRDs from the pydantic models
	$(TENBIN) crds --out crds --docs docs/crd-reference.md
	cp crds/*.yaml charts/tenbin/crds/

verify: $(STAMP)  ## fail when crds/, docs/crd-reference.md, the chart's CRDs or requirements.lock are out of date
	$(TENBIN) crds --out crds --docs docs/crd-reference.md --check
	bash charts/verify.sh
	$(PY) image/lock.py --check

lock: $(STAMP)  ## rewrite requirements.lock: the image's pinned, hashed runtime dependencies (CPython 3.11, linux x86_64)
	$(VENV)/bin/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" -o requirements.lock

image: $(STAMP)  ## the operator's OCI image, no Docker daemon: build/image/tenbin-<appVersion>.oci.tar (~1 min; root)
	bash testbed/build-image-tools.sh
	bash image/build.sh

SEED  ?= 1
STEPS ?= 2000
simulate: $(STAMP)  ## one deterministic simulation of the operator in memory: make simulate SEED=7 STEPS=5000
	$(PY) tests/simulation/world.py --seed $(SEED) --steps $(STEPS)

mutants: $(STAMP)  ## restore each fault class's old behaviour in a copy and show the simulation catches it
	$(PY) tests/simulation/mutants.py

bench-core: $(STAMP)  ## scheduling-core microbenchmarks -> bench/results.json
	$(PY) bench/bench_core.py

bench: bench-core testbed  ## every benchmark (not part of `make test`): core, operator on the testbed, quality vs MILP
	$(PY) bench/bench_operator.py

clean:  ## remove the venv and caches (the testbed binary cache in ~/.cache/tenbin stays)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
