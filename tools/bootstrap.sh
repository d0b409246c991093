#!/usr/bin/env bash
# Create the project's virtual environment and install the package with its
# development tools. Usage: tools/bootstrap.sh PYTHON VENV
set -euo pipefail
PYTHON="${1:-python3}"
VENV="${2:-.venv}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    echo "[bootstrap] $PYTHON is not Python 3.11; install it (Debian 12: apt-get install python3) or run make PYTHON=python3.11" >&2
    exit 2
fi
if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    if [[ $EUID -ne 0 ]]; then
        echo "[bootstrap] missing python3-venv; run as root: apt-get install -y python3-venv" >&2
        exit 2
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
LOG="$VENV/pip.log"
"$VENV/bin/python" -m pip install -q --upgrade pip >"$LOG" 2>&1 || true
echo "[bootstrap] installing gpsd-server and its development tools into $VENV"
if ! "$VENV/bin/python" -m pip install -q -e ".[dev]" >>"$LOG" 2>&1; then
    tail -30 "$LOG" >&2
    echo "[bootstrap] pip install failed (full log: $LOG)" >&2
    exit 1
fi
"$VENV/bin/python" -c "import gpsd_server, aiomqtt, shapely, psycopg, pyproj, numpy, fastapi" \
    || { echo "[bootstrap] installation failed" >&2; exit 1; }
