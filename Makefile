# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here (the CPU build on this machine); users get any torch>=2.1.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench gpu-check clean sysdeps

# The napari widget tests need an X server (Xvfb) and the GL/xcb libraries Qt
# loads; the GIS output tests also ask GDAL's own tools (gdal-bin: ogrinfo,
# gdalinfo). On Debian/Ubuntu as root they are installed here; elsewhere install
# them yourself (the list below) or the GUI tests report what is missing and
# the GDAL checks are skipped.
SYSDEPS := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 \
	libxkbcommon-x11-0 libgl1 libegl1 libgl1-mesa-dri libdbus-1-3 libfontconfig1 gdal-bin

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[testing]" "$(TORCH_PIN)"
	# test-only reference for SAM 2.1: its metadata requires torchvision, which does not
	# import beside this torch, so it goes in without dependencies (tests shim torchvision)
	$(BIN)/python -m pip install -q --no-deps "sam2==1.1.0"
	touch $(STAMP)

demo: venv
	$(BIN)/python -m napari_sam.demo --out demo_output

sysdeps:
	@if ! command -v Xvfb >/dev/null 2>&1 || ! command -v ogrinfo >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Xvfb, Qt's system libraries and gdal-bin for the tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSDEPS) >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSDEPS) >/dev/null; }; \
	  else echo "Xvfb or ogrinfo not found: install $(SYSDEPS)"; fi; \
	fi

test: venv sysdeps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python -m benchmarks.run_all

# Embedding precision (fp32 / fp16 / bf16 autocast) and tiled segmentation of a
# 4096 x 4096 generated raster, per model, on CUDA when present (else the CPU).
gpu-check: venv
	$(BIN)/python -m benchmarks.gpu_check --device auto

clean:
	rm -rf $(VENV) demo_output build dist
