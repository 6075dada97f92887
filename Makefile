# Two commands do everything on a fresh machine: `make demo` and `make test`. Each sets up what is missing first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP) .cache/assets.stamp

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

.cache/assets.stamp: tools/assets.json tools/fetch_assets.py | $(STAMP)
	$(PY) tools/fetch_assets.py
	@mkdir -p .cache && touch $@

demo: setup
	$(PY) -m core --overwrite

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/speed.py

clean:
	rm -rf out .cache/detect .pytest_cache
