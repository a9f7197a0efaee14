# make demo / make test: both create .venv on first use and reuse it after.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
MLS_VENV := .venv-mlserver
MLS_STAMP := $(MLS_VENV)/.installed
# The newest Python the package is tested on (tests/edgecloud/test_python_versions.py), in a venv of its own:
# pyenv's newest 3.13 when there is one, else python3.13 on PATH. `make NEWEST_PYTHON=PATH test` picks another.
PYENV_ROOT ?= $(HOME)/.pyenv
NEWEST_PYTHON ?= $(or $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/3.13.*/bin/python3.13))),python3.13)
NEWEST_VENV := .venv-py313
NEWEST_STAMP := $(NEWEST_VENV)/.installed
# Triton for bench/triton_compare.py: the nvidia-pytriton wheel's tritonserver and python backend want Python 3.12.
TRITON_PYTHON ?= /root/.pyenv/versions/3.12.1/bin/python
TRITON_VENV := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed

# The Pythons edgecloud supports: 3.PYTHON_MIN_MINOR up to, not including, 3.PYTHON_BELOW_MINOR. The same range
# as requires-python (pyproject.toml) and the import-time check (edgecloud/__init__.py); a test checks that the
# three agree. 3.14 is refused because its standard library has a top-level `compression` package (PEP 784)
# that collides with ours: edgecloud/__init__.py explains.
PYTHON_MIN_MINOR := 11
PYTHON_BELOW_MINOR := 14
SUPPORTED_PYTHON := >=3.$(PYTHON_MIN_MINOR),<3.$(PYTHON_BELOW_MINOR)
# $(call check_python,INTERPRETER): a recipe line that stops make, naming INTERPRETER's version and the supported
# range, unless INTERPRETER is a supported Python. Run before a venv is created from INTERPRETER.
check_python = v=$$($(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
	|| { echo "'$(1)' does not run as a Python; edgecloud needs Python $(SUPPORTED_PYTHON)" >&2; exit 1; }; \
	major=$${v%%.*}; minor=$${v\#*.}; \
	if [ "$$major" != 3 ] || [ "$$minor" -lt $(PYTHON_MIN_MINOR) ] || [ "$$minor" -ge $(PYTHON_BELOW_MINOR) ]; then \
	  why=""; { [ "$$major" -gt 3 ] || [ "$$minor" -ge $(PYTHON_BELOW_MINOR) ]; } && why=" (its standard library has a \
	package named 'compression', PEP 784, which collides with edgecloud's own; see edgecloud/__init__.py)"; \
	  echo "'$(1)' is Python $$v; edgecloud supports Python $(SUPPORTED_PYTHON)$$why. Choose another with \
	PYTHON=..., e.g. make PYTHON=python3.11" >&2; exit 1; \
	fi

.PHONY: demo test lint bench clean system-deps check-python

# Debian tools the deployment checks call: docker-compose (compose file), promtool and prometheus (prometheus),
# systemd-analyze (systemd), shellcheck, and ip/tc (iproute2) for the link testbed. Installed only when missing,
# and only where apt-get runs as root.
SYSTEM_TOOLS := docker-compose promtool prometheus systemd-analyze shellcheck ip tc
SYSTEM_PACKAGES := docker-compose prometheus systemd shellcheck iproute2

# make demo: the pretrained demo's dependencies only (serving, evaluation, plots; no torch, no test tools).
$(DEMO_STAMP): pyproject.toml
	@test -x $(PY) || { $(call check_python,$(PYTHON)); }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

# make test: everything (training, export, Ray, the test tools) on top of whatever make demo installed.
$(STAMP): pyproject.toml
	@test -x $(PY) || { $(call check_python,$(PYTHON)); }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: with 2.13.0 (the CPU wheel) in place, the extras' torch range installs nothing more.
	$(PY) -m pip install --quiet torch==2.13.0
	# ray: the cloud on Ray Serve, tested on a local two-node cluster (tests/cloud_server/test_ray_serve.py).
	$(PY) -m pip install --quiet -e '.[train,cloud,edge,dev,export,ray]'
	touch $(STAMP)

# MLServer pins an older FastAPI, so it lives in its own venv; the compatibility test starts it from there.
$(MLS_STAMP):
	test -x $(MLS_VENV)/bin/python || $(PYTHON) -m venv $(MLS_VENV)
	$(MLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MLS_VENV)/bin/python -m pip install --quiet 'mlserver==1.7.1'
	touch $(MLS_STAMP)

# Python 3.13 with the edge and cloud extras, no torch: there is no CPU torch wheel for 3.13 here, and PyPI's
# is the multi-GB CUDA build. Editable, so the tests run this checkout's code on 3.13.
$(NEWEST_STAMP): pyproject.toml
	@$(call check_python,$(NEWEST_PYTHON))
	test -x $(NEWEST_VENV)/bin/python || $(NEWEST_PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install --quiet -e '.[edge,cloud]'
	touch $(NEWEST_STAMP)

# Whether PYTHON is one edgecloud supports (the .venv and .venv-py313 recipes run the same check first).
check-python:
	@$(call check_python,$(PYTHON))
	@echo "$(PYTHON) is supported ($(SUPPORTED_PYTHON))"
# Its own venv: Python 3.12 (the project is 3.11), and pytriton's pins stay out of the project's.
$(TRITON_STAMP):
	@test -x $(TRITON_PYTHON) || { echo "$(TRITON_PYTHON) not found: set TRITON_PYTHON to a Python 3.12 (pyenv install 3.12)"; exit 1; }
	test -x $(TRITON_VENV)/bin/python || $(TRITON_PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet --upgrade pip
	# pydantic: bench/_triton_server.py imports the project's shared/ and serving/backends.py from the tree.
	$(TRITON_VENV)/bin/python -m pip install --quiet 'nvidia-pytriton==0.7.0' onnxruntime numpy 'pydantic>=2'
	touch $(TRITON_STAMP)

system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system tools:$$missing"; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "run as root: apt-get install $(SYSTEM_PACKAGES)"; fi; \
	fi

demo: $(DEMO_STAMP)
	$(VENV)/bin/edgecloud demo --out artifacts/demo

test: $(STAMP) $(MLS_STAMP) $(NEWEST_STAMP) $(TRITON_STAMP) system-deps
	$(PY) -m pytest -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts .pytest_cache .ruff_cache
