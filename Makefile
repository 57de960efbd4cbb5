# memory-agent: `make run` serves the agent, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: install browser run dev chat test test-quick lint services services-stop bench bench-quick bench-http clean

# The venv is created when missing and reinstalled only when pyproject.toml changes. Running
# needs the package alone; the tests, notebooks, local servers and benchmarks add the dev extra.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/memory-agent serve

dev: $(STAMP)
	LANGGRAPH_CLI_NO_ANALYTICS=1 LANGGRAPH_NO_VERSION_CHECK=true $(BIN)/langgraph dev --no-browser

# `make chat thread=ID user=NAME` resumes a thread as a user; both are optional.
chat: $(RUN_STAMP)
	$(BIN)/memory-agent chat $(if $(thread),--thread $(thread)) $(if $(user),--user $(user))

# The chat page's browser tests drive Debian's Chromium; installed here when missing (as root,
# or through sudo), never downloaded by a test tool.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The tests that start no server process: a minute or two.
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check agent memory server tests
	$(BIN)/ruff format --check agent memory server tests
	$(BIN)/mypy

services: $(STAMP)
	$(BIN)/python -m tests.devservers start

services-stop: $(STAMP)
	$(BIN)/python -m tests.devservers stop

clean:
	rm -rf $(VENV) .data .services

bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.turns

bench-quick: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.turns --quick

bench-http: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.http_bench
	PYTHONPATH=. $(BIN)/python -m bench.lg_runs
