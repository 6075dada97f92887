# Two commands do everything on a fresh machine: `make demo` and `make test`. Each sets up what is missing first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)
	$(PY) tools/fetch_assets.py

# requirements-dev.txt = the core's runtime (requirements.txt, what the add-on's Set up core installs) + Ray
# (requirements-cluster.txt, for core.batch --ray and its tests) + bpy, pytest.
$(STAMP): requirements.txt requirements-cluster.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

demo: setup
	$(PY) -m core --overwrite

JS := tests/js/node_modules/.installed

# Other people's readers of our files (three-vrm-animation, mmd-parser, gltf-validator), pinned in tests/js.
$(JS): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $(JS)

test: setup $(JS)
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/speed.py

clean:  # outputs and test caches; detections are cached in $$MIMIC_CACHE_DIR (default ~/.cache/mimic)
	rm -rf out .pytest_cache
