# crusader-mail: two commands on a fresh machine (Python 3.11 and pip).
#   make demo   set up .venv and run the main job on the bundled example (offline, no secrets)
#   make test   set up .venv with the dev extras and run every check
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest workflows services golden docs bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; set PYTHON=python3" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crusader-mail run --dry-run --include-backlog 3

lint: $(STAMP)
	$(BIN)/ruff check src tests bench peers scripts
	$(BIN)/ruff format --check src tests bench peers scripts

typecheck: $(STAMP)
	$(BIN)/mypy --strict src
	$(BIN)/mypy tests peers bench scripts

workflows: $(STAMP)
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/zizmor --offline .github/workflows

services:
	@bash scripts/install-test-services.sh

pytest: $(STAMP) services
	$(BIN)/pytest

test: lint typecheck workflows pytest

golden: $(STAMP)
	$(BIN)/python -m tests.support.golden

docs: $(STAMP)
	$(BIN)/python scripts/cli_docs.py

bench: $(STAMP) services
	$(BIN)/python bench/bench_reader.py
	$(BIN)/python bench/bench_compose.py
	$(BIN)/python bench/related_eval.py
	$(BIN)/python bench/bench_subscribers.py
	$(BIN)/python bench/bench_send.py
	$(BIN)/python bench/bench_postgres.py
	$(BIN)/python bench/bench_oneclick.py

clean:
	rm -rf $(VENV) preview outbox .pytest_cache .mypy_cache .ruff_cache
