# Everything sets itself up: a local virtual environment with the CPU build of PyTorch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test install clean benchmark

$(BIN)/dyffusion: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: left to the dependency resolver, pip would fetch a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/dyffusion

demo: install
	$(BIN)/dyffusion demo --out demo

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo .pytest_cache
