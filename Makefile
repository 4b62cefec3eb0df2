# Two commands: `make run` (set up, open the viewer on the bundled sample) and `make test`.
# Everything installs into .venv; torch is pinned so the local CPU wheel serves and no CUDA
# build is ever pulled from the registry.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench bench-stall package selftest-frozen system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Qt's offscreen and xcb platform plugins link these system libraries; a bare Debian/Ubuntu
# machine (CI included) may lack some. Installed only when missing, and only where we may.
QT_SYSTEM_LIBS := libegl1 libgl1 libopengl0 libfontconfig1 libdbus-1-3 libglib2.0-0 libx11-xcb1 \
                  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
                  libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1

system-deps:
	@if command -v dpkg >/dev/null && ! dpkg -s $(QT_SYSTEM_LIBS) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Qt's system libraries: $(QT_SYSTEM_LIBS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(QT_SYSTEM_LIBS) >/dev/null; \
	  else echo "note: Qt needs these system packages, install them with your package manager: $(QT_SYSTEM_LIBS)"; fi; \
	fi

$(STAMP): $(PY) pyproject.toml | system-deps
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,train]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/cxr-viewer $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check engine viewer training tests

# RRDB-23 (random weights) speed: GFLOP/s next to a same-run matmul, fp32 vs bf16, tiled vs not.
bench: $(STAMP)
	$(VENV)/bin/cxr-enhance bench --json --arch rrdb23 --size 128

# The viewer's longest event-loop stall while enhancing (offscreen).
bench-stall: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m viewer.bench_stall

# `make package`: the one-folder desktop bundle dist/cxr-enhance/ (build.spec, docs/PACKAGING.md).
# PyInstaller keeps its analysis in build/, so a rebuild after a small change is quicker.
PACKAGE_STAMP := $(VENV)/.package-installed
FROZEN        := dist/cxr-enhance/cxr-viewer
FROZEN_DEPS   := build.spec pyproject.toml $(shell find engine viewer packaging resources -type f \
                   -not -path '*/__pycache__/*' 2>/dev/null)

$(PACKAGE_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[package]"
	touch $(PACKAGE_STAMP)

package: $(PACKAGE_STAMP)
	$(VENV)/bin/pyinstaller --noconfirm build.spec

$(FROZEN): $(FROZEN_DEPS)
	$(MAKE) package

# The frozen app checks itself offscreen: samples, decoders, models, a rendered window.
# --require-model: a bundle that lost its models fails (the self-test checks the bundled ones).
selftest-frozen: $(FROZEN)
	QT_QPA_PLATFORM=offscreen $(FROZEN) --self-test --require-model

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
