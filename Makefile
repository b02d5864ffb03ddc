# crusader-mail: two commands on a fresh machine (Python 3.11 and pip).
#   make demo   set up .venv with what crusader-mail needs to run, and run the main job on the
#               bundled example (offline, no secrets)
#   make test   add the dev extras (pytest, ruff, mypy, actionlint, zizmor) and run every check
# Two stamps: $(STAMP) for the runtime dependencies (`pip install -e .`), $(DEV_STAMP) for the
# dev extras on top; each is redone when pyproject.toml changes.
PYTHON    ?= python3.11
VENV      ?= .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck pytest workflows services golden screenshots docs bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; set PYTHON=python3" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/crusader-mail run --dry-run --include-backlog 3

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench peers scripts
	$(BIN)/ruff format --check src tests bench peers scripts

typecheck: $(DEV_STAMP)
	$(BIN)/mypy --strict src
	$(BIN)/mypy tests peers bench scripts

workflows: $(DEV_STAMP)
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/zizmor --offline .github/workflows

services:
	@bash scripts/install-test-services.sh

# Every test, the browser ones (marker `browser`, chromium) and the corpus ones included.
pytest: $(DEV_STAMP) services
	$(BIN)/pytest

test: lint typecheck workflows pytest

golden: $(DEV_STAMP)
	$(BIN)/python -m tests.support.golden

# docs/screenshots/: the example issue in headless chromium, 600 and 375 px, light and dark
screenshots: $(DEV_STAMP)
	$(BIN)/python scripts/screenshots.py

docs: $(DEV_STAMP)
	$(BIN)/python scripts/cli_docs.py

bench: $(DEV_STAMP) services
	$(BIN)/python bench/bench_reader.py
	$(BIN)/python bench/bench_compose.py
	$(BIN)/python bench/related_eval.py
	$(BIN)/python bench/bench_subscribers.py
	$(BIN)/python bench/bench_send.py
	$(BIN)/python bench/bench_postgres.py
	$(BIN)/python bench/bench_oneclick.py
	$(BIN)/python bench/bench_join.py
	$(BIN)/python bench/bench_startup.py
	$(BIN)/python bench/bench_groups.py

clean:
	rm -rf $(VENV) preview outbox .pytest_cache .mypy_cache .ruff_cache
