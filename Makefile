# make demo / make test: both create .venv on first use and reuse it after.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MLS_VENV := .venv-mlserver
MLS_STAMP := $(MLS_VENV)/.installed

.PHONY: demo test lint bench clean system-deps

# Debian tools the deployment checks call: docker-compose (compose file), promtool and prometheus (prometheus),
# systemd-analyze (systemd), shellcheck, and ip/tc (iproute2) for the link testbed. Installed only when missing,
# and only where apt-get runs as root.
SYSTEM_TOOLS := docker-compose promtool prometheus systemd-analyze shellcheck ip tc
SYSTEM_PACKAGES := docker-compose prometheus systemd shellcheck iproute2

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: with 2.13.0 (the CPU wheel) in place, the extras' torch range installs nothing more.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[train,cloud,edge,dev]'
	touch $(STAMP)

# MLServer pins an older FastAPI, so it lives in its own venv; the compatibility test starts it from there.
$(MLS_STAMP):
	test -x $(MLS_VENV)/bin/python || $(PYTHON) -m venv $(MLS_VENV)
	$(MLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MLS_VENV)/bin/python -m pip install --quiet 'mlserver==1.7.1'
	touch $(MLS_STAMP)

system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system tools:$$missing"; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "run as root: apt-get install $(SYSTEM_PACKAGES)"; fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/edgecloud demo --out artifacts/demo

test: $(STAMP) $(MLS_STAMP) system-deps
	$(PY) -m pytest -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts .pytest_cache .ruff_cache
