# The one place the project's commands live. `make run` and `make test` work on a fresh
# machine with Python 3.11+: they create .venv, install everything, then serve or test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
NODE_STAMP := static/node_modules/.installed-$(shell cat static/package-lock.json 2>/dev/null | sha1sum | cut -c1-12)
N ?= 3

.PHONY: run test lint typecheck check migrate bench bench-events-ab bench-commit-cost cluster loadtest browser clean fuzz

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,loadtest]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

# Browser libraries for the dashboard (socket.io client, Chart.js) from the npm registry.
$(NODE_STAMP): static/package.json static/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix static --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error && \
	  touch $(NODE_STAMP); \
	else echo "npm not found: the dashboard will load without its vendor libraries" >&2; fi

# Headless Chromium for the dashboard tests, from Debian's packages.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends chromium fonts-liberation >/dev/null; }

run: $(STAMP) $(NODE_STAMP)
	$(PY) -m server run

migrate: $(STAMP)
	$(PY) -m server migrate

lint: $(STAMP)
	$(PY) -m ruff check server actors workers loadtests tests

typecheck: $(STAMP)
	$(PY) -m mypy

test: $(STAMP) $(NODE_STAMP) browser
	$(PY) -m ruff check server actors workers loadtests tests
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider

# schemathesis against a live server (its own, or TARGET=http://...) signed in with every security
# scheme; MAX_EXAMPLES per operation (50) and SEED (1) override the defaults; ARGS go to schemathesis.
fuzz: MAX_EXAMPLES ?= 50
fuzz: SEED ?= 1
fuzz: $(STAMP)
	MAX_EXAMPLES=$(MAX_EXAMPLES) SEED=$(SEED) $(if $(TARGET),REPLYHQ_FUZZ_URL=$(TARGET)) $(PY) -m tests.fuzz $(ARGS)

clean:
	@# A root checkout in a 0700 folder keeps its embedded Postgres cluster under /var/lib/replyhq (server/dev/embedded_paths.py).
	@loc=$$(cat .data/embedded/postgres/LOCATION 2>/dev/null); case "$$loc" in /var/lib/replyhq/data-*) rm -rf "$$loc";; esac
	rm -rf $(VENV) .data out static/node_modules

# Benchmarks print one JSON line per run (REPLICAS, CLIENTS, DURATION override the defaults).
bench: $(STAMP) $(NODE_STAMP)
	$(PY) -m loadtests.bench

# The messages scenario with the event log on and off (this commit with and without it), interleaved.
bench-events-ab: $(STAMP) $(NODE_STAMP)
	$(PY) -m loadtests.event_log_ab

# The group commit's statement alone: with its message.created row, without it, and with the older forms.
bench-commit-cost: $(STAMP)
	$(PY) -m loadtests.commit_cost

# N replicas (N=3) on one Postgres + Redis behind one address (HOST/PORT, default 127.0.0.1:8000).
cluster: $(STAMP) $(NODE_STAMP)
	$(PY) -m server cluster --replicas $(N)

# locust, headless, against a cluster of N replicas it starts (or TARGET=http://...); CSVs in out/loadtest/.
loadtest: USERS ?= 50
loadtest: SPAWN_RATE ?= 10
loadtest: DURATION ?= 60s
loadtest: $(STAMP)
	$(PY) -m loadtests.loadtest --replicas $(N) --users $(USERS) --spawn-rate $(SPAWN_RATE) \
	  --duration $(DURATION) $(if $(TARGET),--target $(TARGET))
