# Two commands do all the set-up: `make demo` and `make test` (each creates .venv on first use).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test system-deps lint typecheck bench lock clean

# constraints.txt pins every dependency (scripts/lock.sh refreshes it; see docs/install.md).
# The venv is made afresh when either file changes, so nothing dropped from them lingers.
$(BIN)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "facestream needs Python 3.11+"'
	@echo "installing facestream and its pinned dependencies into $(VENV) (about a minute)"
	@$(PYTHON) -m venv --clear $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
# (setuptools warns that ./facestream could shadow the install: it is the install, editable.)
	@PYTHONWARNINGS='ignore:Editable installation' \
		$(BIN)/python -m pip install --quiet --constraint constraints.txt -e '.[dev]'
	@touch $@

demo: $(BIN)/.installed  ## embedded Redis + bundled photos + two workers, results on screen
	@FACESTREAM_PYTHON=$(BIN)/python scripts/install-system-deps.sh redis-server
	@$(BIN)/facestream demo

# One test file per process (--dist loadfile): a file's module-scoped servers (a Redis Cluster,
# three nodes) start once, and its tests run in order.
test: $(BIN)/.installed system-deps  ## the suite: real redis-server, models, RTSP server
	$(BIN)/python -m pytest -n auto --dist loadfile

system-deps:  ## GStreamer RTSP server for the camera tests (apt-get when root)
	scripts/install-system-deps.sh

lint: $(BIN)/.installed typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# facestream/schemas, facestream/ingest and facestream/recognizer are committed symlinks to the
# top-level folders, so mypy sees the installed layout as it is.
typecheck: $(BIN)/.installed
	$(BIN)/mypy -p facestream

bench: $(BIN)/.installed  ## worker vs bare model vs the seed's recipe; camera agent capacity
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/cameras.py

lock: $(BIN)/.installed  ## refresh constraints.txt after a change to pyproject.toml (--upgrade: scripts/lock.sh)
	UV=$(BIN)/uv scripts/lock.sh

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
