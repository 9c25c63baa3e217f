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

# issue #8 figures (README "Performance"): burst, naive path, trickle, raw, fairness; ~10 minutes
bench: $(STAMP)
	$(BIN)/python bench/throughput.py all

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
