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

# Both test targets run on WORKERS processes (pytest-xdist, work-stealing). They share nothing
# but the machine's Redis, in which each process claims a database of its own and each stack of
# workers a namespace (tests/conftest.py). An integration test mostly waits (on its workers, on
# real rate-limit windows, on a worker's ~3 s warm shutdown), so two processes about halve
# `make test` (12 -> 6.5 minutes on 2 cores). Each process collects every test (~5 s of CPU);
# WORKERS=0 runs everything in this process.
WORKERS ?= 2
test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/pytest -q -n $(WORKERS) --dist worksteal

# the tests not marked `integration` (pyproject's markers): ~415 in-process tests. The property
# tests draw a quarter of their examples here (tests/fuzzing.py); `make test` draws them all
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
