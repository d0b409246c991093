# gpsd-server: two commands.
#   make demo   set up what is missing, start broker + database + server + a simulated fleet
#   make test   set up what is missing, start the services, run everything, stop what it started
# and the scale-out variant:
#   make demo-cluster   RabbitMQ + 2 ingest workers + 1 API node + the simulated fleet
#   make bench-cluster  1, 2 and 3 workers: fixes/s per worker and in total, the broker's ceiling, CPU
# Both are idempotent and work on a fresh Debian 12 machine as root.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-cluster test setup services stop lint typecheck pytest bench-engine bench-cluster clean

demo: setup
	bash tools/demo.sh

demo-cluster: setup
	bash tools/demo_cluster.sh

test: setup
	bash tools/test.sh

setup: $(STAMP)
	bash tools/services.sh install
	bash tools/cluster/services.sh install
	bash tools/web_setup.sh "$(VENV)"

$(STAMP): pyproject.toml tools/bootstrap.sh
	bash tools/bootstrap.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

services: setup
	bash tools/services.sh start

stop:
	bash tools/services.sh stop

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest

bench-engine: $(STAMP)
	$(PY) tools/bench_engine.py

bench-cluster: setup
	$(PY) tools/bench_cluster.py

clean:
	bash tools/services.sh stop || true
	bash tools/cluster/services.sh stop || true
	rm -rf .state $(VENV)
