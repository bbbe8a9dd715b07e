# Two entry points for a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench tools

$(BIN)/notewell: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/notewell

# tmux drives the end-to-end tests in a real terminal; libfaketime (faketime) runs devices
# whose clocks are wrong (tests/sync/test_clock_skew_sync.py); two real Syncthing instances
# carry the mailbox folder between vaults (tests/sync/test_syncthing_e2e.py).
tools:
	@command -v tmux >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq tmux)
	@command -v faketime >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq faketime)
	@command -v syncthing >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq syncthing)

run: $(BIN)/notewell
	$(BIN)/notewell demo

test: $(BIN)/notewell tools
	$(BIN)/python -m pytest -n 2 -q

bench: $(BIN)/notewell
	$(BIN)/python -m bench.store_bench
	$(BIN)/python -m bench.tui_bench
	$(BIN)/python -m bench.sync_bench
	$(BIN)/python -m bench.app_sync_bench
	$(BIN)/python -m bench.import_bench
	$(BIN)/python -m bench.document_budget_bench
	$(BIN)/python -m bench.backup_bench
