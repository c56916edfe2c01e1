# llmproxy — the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= router.yaml

.PHONY: demo test run check bench clean compiled

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

# llmproxy's modules compiled to bytecode, as a regular (non-editable) pip install does: where the environment sets
# PYTHONDONTWRITEBYTECODE=1 (containers often do) Python otherwise compiles every module again at each start
# (~65 ms of a ~0.65 s start here).  Only what changed is compiled again.
compiled: $(BIN)/.installed
	@$(BIN)/python -m compileall -q llmproxy

demo: $(BIN)/.installed  ## start the emulator and llmproxy, stream one chat through them, show the log row
	$(BIN)/python contrib/demo.py

test: $(BIN)/.installed  ## the whole suite (what CI runs)
	$(BIN)/python -m pytest -q

run: compiled  ## llmproxy on router.yaml, for real use
	$(BIN)/llmproxy serve -c $(CONFIG)

check: $(BIN)/.installed  ## validate router.yaml and show what each model resolves to
	$(BIN)/llmproxy check -c $(CONFIG)

bench: compiled  ## not part of test: llmproxy vs a bare aiohttp pass-through; table + bench-results/*.json (SOAK=100000 BENCH_SECONDS=5)
	$(BIN)/python bench/run.py --soak $(or $(SOAK),100000) --seconds $(or $(BENCH_SECONDS),5)

clean:
	rm -rf $(VENV) *.egg-info llmproxy.db llmproxy.db-* $$(find llmproxy -name __pycache__)
