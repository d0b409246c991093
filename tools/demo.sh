#!/usr/bin/env bash
# make demo: services, the server and a simulated fleet, until Ctrl-C.
# Environment: DEMO_SIM_ARGS (extra simulator flags, e.g. "--speed 10" or
# "--muck 50 --mixers 20"), GPSD_HTTP__PORT (default 8080).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
STATE=.state
PORT="${GPSD_HTTP__PORT:-8080}"
mkdir -p "$STATE"

bash tools/services.sh start

pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo
    echo "[demo] stopped the server and the fleet; the services keep running (make stop ends them)"
}
trap cleanup EXIT INT TERM

GPSD_HTTP__PORT="$PORT" "$VENV/bin/gpsd-server" run --config config.toml >"$STATE/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$STATE/server.log"; echo "[demo] the server did not start" >&2; exit 1; }
    sleep 0.2
done

token() { "$VENV/bin/gpsd-server" --log-level WARNING token --config config.toml create --name "demo-$1-$(date +%H%M%S)" --role "$1"; }
VIEWER="$(token viewer)"; OPERATOR="$(token operator)"; ADMIN="$(token admin)"
echo "[demo] gpsd-server is up"
echo "[demo]   tokens (Authorization: Bearer ..., websockets ?token=...):"
echo "[demo]     viewer   $VIEWER"
echo "[demo]     operator $OPERATOR"
echo "[demo]     admin    $ADMIN"
echo "[demo]   control room   : http://127.0.0.1:$PORT/#token=$OPERATOR"
echo "[demo]   API docs       : http://127.0.0.1:$PORT/docs"
echo "[demo]   live websocket : ws://127.0.0.1:$PORT/ws/live?token=$VIEWER"
echo "[demo]   vehicles       : curl -H 'Authorization: Bearer $VIEWER' http://127.0.0.1:$PORT/api/vehicles"
echo "[demo]   counters       : http://127.0.0.1:$PORT/api/stats  and /metrics"
echo "[demo]   server log     : $STATE/server.log (a throughput line every 10 s)"
echo "[demo] starting the simulated fleet (Ctrl-C stops)"

# shellcheck disable=SC2086  # DEMO_SIM_ARGS is a list of flags
"$VENV/bin/python" tools/simulate.py --inject-rate 20 --port "${GPSD_MQTT_PORT:-18830}" \
    --truth "$STATE/demo-truth.jsonl" --quiet ${DEMO_SIM_ARGS:-} &
pids+=($!)
# Show the server's throughput lines while the fleet runs.
tail -n +1 -F "$STATE/server.log" 2>/dev/null | grep --line-buffered -E "ingest:|WARNING|ERROR" &
pids+=($!)
wait "${pids[1]}"
