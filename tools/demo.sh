#!/usr/bin/env bash
# make demo: services, the server and a simulated fleet, until Ctrl-C.
#
# Everything follows four variables, shared with tools/services.sh, the
# server's config and the simulator: GPSD_STATE (state folder, default
# ./.state: databases, broker, spool, logs), GPSD_PG_PORT (55432),
# GPSD_MQTT_PORT (18830) and GPSD_HTTP_PORT (8080). Extra simulator flags in
# DEMO_SIM_ARGS (e.g. "--speed 10" or "--muck 50 --mixers 20").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
export GPSD_STATE="${GPSD_STATE:-$PWD/.state}"
export GPSD_PG_PORT="${GPSD_PG_PORT:-55432}"
export GPSD_MQTT_PORT="${GPSD_MQTT_PORT:-18830}"
export GPSD_HTTP_PORT="${GPSD_HTTP_PORT:-${GPSD_HTTP__PORT:-8080}}"
mkdir -p "$GPSD_STATE"
LOG="$GPSD_STATE/server.log"

PIDFILE="$GPSD_STATE/demo.pid"  # make stop (tools/services.sh stop) ends this demo first
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && grep -qa "demo.sh" "/proc/$(cat "$PIDFILE")/cmdline"; then
    echo "[demo] a demo already runs on $GPSD_STATE (pid $(cat "$PIDFILE")); make stop ends it" >&2
    exit 1
fi

bash tools/services.sh start

pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    # The rest of our children too: the log's tail outlives the grep it feeds
    # (Ctrl-C reaches the whole group; make stop's TERM reaches only us).
    pkill -TERM -P $$ 2>/dev/null || true
    wait 2>/dev/null || true
    rm -f "$PIDFILE"
    echo
    echo "[demo] stopped the server and the fleet; the services keep running (make stop ends them)"
}
# A signal ends the script after the clean-up: the handler alone would return
# into the start-up (a Ctrl-C or make stop before the fleet started, and the
# fleet started anyway).
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
echo $$ >"$PIDFILE"

"$VENV/bin/gpsd-server" run --config config.toml >"$LOG" 2>&1 &
pids+=($!)
for _ in $(seq 150); do
    curl -fs "http://127.0.0.1:$GPSD_HTTP_PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$LOG"; echo "[demo] the server did not start" >&2; exit 1; }
    sleep 0.2
done

token() { "$VENV/bin/gpsd-server" --log-level WARNING token create --config config.toml --name "demo-$1-$(date +%H%M%S)" --role "$1"; }
VIEWER="$(token viewer)"; OPERATOR="$(token operator)"; ADMIN="$(token admin)"
URL="http://127.0.0.1:$GPSD_HTTP_PORT"
echo "[demo] gpsd-server is up (state in $GPSD_STATE; database :$GPSD_PG_PORT, broker :$GPSD_MQTT_PORT)"
echo "[demo]   tokens (Authorization: Bearer ..., websockets ?token=...):"
echo "[demo]     viewer   $VIEWER"
echo "[demo]     operator $OPERATOR"
echo "[demo]     admin    $ADMIN"
echo "[demo]   control room   : $URL/#token=$OPERATOR"
echo "[demo]   API docs       : $URL/docs"
echo "[demo]   live websocket : ws://127.0.0.1:$GPSD_HTTP_PORT/ws/live?token=$VIEWER"
echo "[demo]   vehicles       : curl -H 'Authorization: Bearer $VIEWER' $URL/api/vehicles"
echo "[demo]   counters       : $URL/api/stats  and /metrics"
echo "[demo]   server log     : $LOG (a throughput line every 10 s)"
echo "[demo] starting the simulated fleet (Ctrl-C stops)"
# On a state folder a run has filled already, the fleet goes on after the newest
# stored fix instead of replaying its catch-up minutes (all late).
NEWEST=$("$VENV/bin/python" - "$URL" "$VIEWER" <<'PY' || echo 0
import json, sys, time, urllib.request
req = urllib.request.Request(sys.argv[1] + "/api/vehicles", headers={"Authorization": "Bearer " + sys.argv[2]})
rows = json.load(urllib.request.urlopen(req, timeout=10))["vehicles"]
print(max((time.time() - v["age_s"] for v in rows), default=0) + 1)
PY
)

# shellcheck disable=SC2086  # DEMO_SIM_ARGS is a list of flags
# --follow-cases: patrol cars dispatched to 12319 cases from the page drive there.
"$VENV/bin/python" tools/simulate.py --inject-rate 20 --port "$GPSD_MQTT_PORT" \
    --truth "$GPSD_STATE/demo-truth.jsonl" --quiet --not-before "$NEWEST" \
    --follow-cases "ws://127.0.0.1:$GPSD_HTTP_PORT/ws/live?token=$VIEWER" ${DEMO_SIM_ARGS:-} &
pids+=($!)
# Show the server's throughput lines while the fleet runs.
tail -n +1 -F "$LOG" 2>/dev/null | grep --line-buffered -E "ingest:|WARNING|ERROR" &
pids+=($!)
wait "${pids[1]}"
