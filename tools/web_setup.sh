#!/usr/bin/env bash
# Set up what the control-room page and its browser tests need, idempotently:
#   - web/node_modules from web/package-lock.json (npm ci; Leaflet, ECharts, Swagger UI, served at /vendor/)
#   - Debian's chromium (driven headless by the browser tests) and a CJK font
#   - Playwright for Python in the virtual environment (its own browser
#     download is never used: the tests launch /usr/bin/chromium)
# Usage: tools/web_setup.sh [VENV]   (default .venv). A second run only checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${1:-.venv}"
say() { echo "[web-setup] $*"; }

apt_install() {
    if [[ $EUID -ne 0 ]]; then
        echo "[web-setup] missing Debian packages; run as root: apt-get install -y $*" >&2
        exit 2
    fi
    if [[ ! -f /var/lib/apt/lists/.gpsd-updated ]] || [[ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ]]; then
        apt-get update -qq && touch /var/lib/apt/lists/.gpsd-updated
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. node + npm (Debian's are enough: npm only fetches Leaflet).
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# 2. Chromium for the browser tests, and a font that has the Chinese glyphs.
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
fc-list 2>/dev/null | grep -qiE "wenquanyi|noto sans cjk|noto serif cjk" || missing+=(fonts-wqy-microhei)
if (( ${#missing[@]} )); then apt_install "${missing[@]}"; fi

# 3. web/node_modules, reinstalled when the lock file changed.
lock_sum="$(sha256sum web/package-lock.json | cut -d' ' -f1)"
stamp=web/node_modules/.gpsd-lock.sha256
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$lock_sum" ]] || [[ ! -f web/node_modules/leaflet/dist/leaflet.js ]] \
        || [[ ! -f web/node_modules/echarts/dist/echarts.min.js ]] || [[ ! -f web/node_modules/swagger-ui-dist/swagger-ui-bundle.js ]]; then
    say "npm ci in web/"
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$stamp"
fi

# 4. Playwright for Python (the library and its bundled driver only).
if ! "$VENV/bin/python" -c "import playwright.async_api" 2>/dev/null; then
    say "pip install playwright into $VENV"
    "$VENV/bin/python" -m pip install -q "playwright>=1.45" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -c "import playwright.async_api" || { echo "[web-setup] playwright install failed" >&2; exit 1; }
fi
