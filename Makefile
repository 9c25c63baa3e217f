# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
# While working: `make test-fast` (unit tests only, no worker, Redis server or sandbox over HTTP).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Python caches compiled modules (and pytest its assert-rewritten ones, the hypothesis and
# schemathesis plugins' included) only where bytecode may be written: with
# PYTHONDONTWRITEBYTECODE set (some shells and images set it) every test run and every worker a
# test starts compiled ~430 modules again, 9 s of the unit tests' 60 s of CPU
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast lint typecheck install clean bench chromium

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/zxsync demo

# Debian's chromium for the console's browser test (apt-get as root when /usr/bin/chromium is
# missing; Playwright drives that executable, it never downloads a browser)
chromium:
	scripts/install-chromium.sh

MYPY_PATHS := workers tasks schemas clients sandbox zxsync relay console tests bench

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/pytest -q

# the tests not marked `integration` (pyproject's markers): ~390 in-process tests on two
# processes (pytest-xdist; they share nothing but the machine's Redis, a database each). Each
# process collects every test (~5 s of CPU): on a machine busy with other work, WORKERS=0 (one
# process) spends less CPU for about the same wall time. The property tests draw a quarter of
# their examples here (tests/fuzzing.py); `make test` draws them all
WORKERS ?= 2
test-fast: $(STAMP)
	ZXS_FUZZ_SCALE=0.25 $(BIN)/pytest -q -n $(WORKERS) --dist worksteal -m "not integration"

typecheck: $(STAMP)
	$(BIN)/mypy $(MYPY_PATHS)

# issues #8 and #19 (README "Performance"): burst, naive, trickle, raw, fairness, tenants, each
# run first with the product code of BASELINE (a git commit; empty: none), ~25 minutes with it
BASELINE ?= 11b4652
bench: $(STAMP)
	$(BIN)/python bench/throughput.py all $(if $(BASELINE),--baseline $(BASELINE))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
