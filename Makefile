# Two commands: `make run` (set up, open the viewer on the bundled sample) and `make test`.
# Everything installs into .venv; torch is pinned so the local CPU wheel serves and no CUDA
# build is ever pulled from the registry.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench package selftest-frozen clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,train]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/cxr-viewer $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check engine viewer training tests

bench: $(STAMP)
	$(VENV)/bin/cxr-enhance bench --json

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
