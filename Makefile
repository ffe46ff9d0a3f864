# The README's commands. Everything runs from the project's own .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VENDORED := src/jobq/dashboard/vendor/.versions.json

.PHONY: install run test lint typecheck bench chaos fuzz clean

install: $(STAMP) /usr/bin/chromium $(VENDORED)

# The dashboard's uPlot and Swagger UI, pinned with their integrity (tools/vendor_assets.py).
$(VENDORED): src/jobq/dashboard/vendor.json tools/vendor_assets.py
	@$(PYTHON) tools/vendor_assets.py

# The dashboard test drives Debian's chromium (Playwright never downloads a browser here).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start the hub on the embedded default store (SQLite under ./jobq-data/).
run: install
	$(BIN)/jobq hub

## Lint, type check, and the whole test suite.
test: install lint typecheck
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

## Long benchmarks; each prints JSON (bench/README.md says what each measures).
BENCHES := throughput claim mdp line http redis connectors auth workflows
bench: install
	@for b in $(BENCHES); do echo "== bench.$$b" >&2; $(BIN)/python -m bench.$$b || exit 1; done

bench-%: install
	$(BIN)/python -m bench.$*

## Issue 12's fault runs (minutes each, not in BENCHES): JSON on stdout, exit 1 when a check fails.
## Smaller runs: make chaos ARGS='--runs a,b --jobs 1000 --worker-kills 20'; make fuzz ARGS='--seconds 20'.
chaos: install
	@$(BIN)/python -m bench.chaos $(ARGS)

fuzz: install
	@$(BIN)/python -m bench.fuzz $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
