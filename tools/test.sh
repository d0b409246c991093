#!/usr/bin/env bash
# The whole suite: lint, format check, strict typing, then pytest against the
# real services. Starts the services when they are not running and stops
# again only what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv

started=0
# The status as one string: grep -q in a pipe would close it early (SIGPIPE under pipefail).
status=$(bash tools/services.sh status || true)
if [[ $status != *"postgresql: running"* || $status != *"mosquitto: running"* ]]; then
    started=1
fi
bash tools/services.sh start
cleanup() { if [[ $started -eq 1 ]]; then bash tools/services.sh stop; fi; }
trap cleanup EXIT

echo "== ruff check"; "$VENV/bin/ruff" check .
echo "== ruff format --check"; "$VENV/bin/ruff" format --check .
echo "== mypy --strict"; "$VENV/bin/mypy"
echo "== pytest"; "$VENV/bin/python" -m pytest "$@"
