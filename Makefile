# Everything sets itself up: a local virtual environment with the CPU build of PyTorch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test install clean benchmark chromium

$(BIN)/dyffusion: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: left to the dependency resolver, pip would fetch a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/dyffusion

demo: install
	$(BIN)/dyffusion demo --out demo

# The browser test of report.html needs Chromium: Debian's is installed when none is found and apt-get can run
# (root). Any failure here only means that test is skipped.
chromium:
	@command -v chromium || command -v chromium-browser || command -v google-chrome || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "installing chromium for the report.html test" && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	echo "no chromium: the browser test of report.html will be skipped"

test: install chromium
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo .pytest_cache
