# Two commands do everything on a fresh machine: `make demo` and `make test`. Each sets up what is missing first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)
	$(PY) tools/fetch_assets.py

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

demo: setup
	$(PY) -m core --overwrite

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/speed.py

clean:  # outputs and test caches; detections are cached in $$MIMIC_CACHE_DIR (default ~/.cache/mimic)
	rm -rf out .pytest_cache
