# make demo / make test: both create .venv on first use and reuse it after.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MLS_VENV := .venv-mlserver
MLS_STAMP := $(MLS_VENV)/.installed

.PHONY: demo test lint bench clean

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

demo: $(STAMP)
	$(VENV)/bin/edgecloud demo --out artifacts/demo

test: $(STAMP) $(MLS_STAMP)
	$(PY) -m pytest -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts .pytest_cache .ruff_cache
