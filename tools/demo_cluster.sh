#!/usr/bin/env bash
# make demo-cluster: the demo on the scale-out topology, until Ctrl-C.
#
#   terminals (the simulated fleet) --MQTT--> RabbitMQ (MQTT plugin, consistent-hash
#   exchange, quorum partition queues) --> N x `gpsd-server ingest` --> PostgreSQL
#   workers --hub exchange--> `gpsd-server api` (the page on GPSD_HTTP_PORT)
#
# Variables: those of `make demo` (GPSD_STATE, GPSD_PG_PORT, GPSD_MQTT_PORT,
# GPSD_HTTP_PORT) plus GPSD_AMQP_PORT (RabbitMQ's AMQP port, 15610),
# GPSD_AMQP_MQTT_PORT (its MQTT port, 18942; terminals connect here) and
# DEMO_WORKERS (ingest workers, 2). Extra simulator flags in DEMO_SIM_ARGS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
export GPSD_STATE="${GPSD_STATE:-$PWD/.state}"
export GPSD_PG_PORT="${GPSD_PG_PORT:-55432}"
export GPSD_MQTT_PORT="${GPSD_MQTT_PORT:-18830}"
export GPSD_HTTP_PORT="${GPSD_HTTP_PORT:-${GPSD_HTTP__PORT:-8080}}"
export GPSD_AMQP_PORT="${GPSD_AMQP_PORT:-15610}"
export GPSD_AMQP_MQTT_PORT="${GPSD_AMQP_MQTT_PORT:-18942}"
export GPSD_CLUSTER__ENGINE=rabbitmq
WORKERS="${DEMO_WORKERS:-2}"
mkdir -p "$GPSD_STATE"

bash tools/services.sh start
bash tools/cluster/services.sh start

pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo
    echo "[demo-cluster] stopped the nodes and the fleet; the services keep running"
    echo "[demo-cluster] (make stop ends PostgreSQL and Mosquitto, tools/cluster/services.sh stop ends RabbitMQ)"
}
trap cleanup EXIT INT TERM

GPSD_MQTT__CLIENT_ID=gpsd-api-1 "$VENV/bin/gpsd-server" api --config config.toml >"$GPSD_STATE/api-1.log" 2>&1 &
pids+=($!)
for i in $(seq "$WORKERS"); do
    GPSD_MQTT__CLIENT_ID="gpsd-ingest-$i" "$VENV/bin/gpsd-server" ingest --config config.toml \
        >"$GPSD_STATE/ingest-$i.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 150); do
    curl -fs "http://127.0.0.1:$GPSD_HTTP_PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$GPSD_STATE/api-1.log"; echo "[demo-cluster] the API node did not start" >&2; exit 1; }
    sleep 0.2
done

token() { "$VENV/bin/gpsd-server" --log-level WARNING token create --config config.toml --name "demo-$1-$(date +%H%M%S)" --role "$1"; }
VIEWER="$(token viewer)"; OPERATOR="$(token operator)"
URL="http://127.0.0.1:$GPSD_HTTP_PORT"
echo "[demo-cluster] 1 API node and $WORKERS ingest workers on RabbitMQ (AMQP :$GPSD_AMQP_PORT, MQTT :$GPSD_AMQP_MQTT_PORT)"
echo "[demo-cluster]   control room : $URL/#token=$OPERATOR"
echo "[demo-cluster]   live         : ws://127.0.0.1:$GPSD_HTTP_PORT/ws/live?token=$VIEWER"
echo "[demo-cluster]   logs         : $GPSD_STATE/api-1.log, $GPSD_STATE/ingest-N.log"
echo "[demo-cluster]   try: kill -9 one worker (its partitions move to the others within a second)"
echo "[demo-cluster] starting the simulated fleet (Ctrl-C stops)"
# shellcheck disable=SC2086  # DEMO_SIM_ARGS is a list of flags
"$VENV/bin/python" tools/simulate.py --inject-rate 20 --port "$GPSD_AMQP_MQTT_PORT" \
    --truth "$GPSD_STATE/demo-cluster-truth.jsonl" --quiet ${DEMO_SIM_ARGS:-} &
pids+=($!)
tail -n +1 -F "$GPSD_STATE"/ingest-*.log 2>/dev/null | grep --line-buffered -E "ingest:|took|gave|WARNING|ERROR" &
pids+=($!)
wait "${pids[$((WORKERS + 1))]}"
