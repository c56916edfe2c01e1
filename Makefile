# llmproxy — the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= router.yaml

.PHONY: demo test run check bench clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: $(BIN)/.installed  ## start the emulator and llmproxy, stream one chat through them, show the log row
	$(BIN)/python contrib/demo.py

test: $(BIN)/.installed  ## the whole suite (what CI runs)
	$(BIN)/python -m pytest -q

run: $(BIN)/.installed  ## llmproxy on router.yaml, for real use
	$(BIN)/llmproxy serve -c $(CONFIG)

check: $(BIN)/.installed  ## validate router.yaml and show what each model resolves to
	$(BIN)/llmproxy check -c $(CONFIG)

bench: $(BIN)/.installed  ## not part of test: llmproxy vs a bare aiohttp pass-through; table + bench-results/*.json (SOAK=100000 BENCH_SECONDS=5)
	$(BIN)/python bench/run.py --soak $(or $(SOAK),100000) --seconds $(or $(BENCH_SECONDS),5)

clean:
	rm -rf $(VENV) *.egg-info llmproxy.db llmproxy.db-*
