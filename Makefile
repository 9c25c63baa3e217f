# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck install clean bench chromium

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

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/mypy workers tasks schemas clients sandbox zxsync relay console
	$(BIN)/pytest -q

# issues #8 and #19 (README "Performance"): burst, naive, trickle, raw, fairness, tenants, each
# run first with the product code of BASELINE (a git commit; empty: none), ~25 minutes with it
BASELINE ?= 11b4652
bench: $(STAMP)
	$(BIN)/python bench/throughput.py all $(if $(BASELINE),--baseline $(BASELINE))

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
