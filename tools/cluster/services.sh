#!/usr/bin/env bash
# Install, start and stop the private partitioning engine for the scale-out
# prototype: a single RabbitMQ 3.10 node (Debian 12's rabbitmq-server) with
# its MQTT plugin and the consistent-hash exchange, on loopback, non-standard
# ports, state under $GPSD_STATE/cluster/. Optionally (GPSD_CLUSTER_NATS=1) a
# NATS 2.9 server with JetStream and its MQTT listener beside it, used only by
# tools/cluster/bench_nats.py for the comparison in docs/scale-out-research.md.
#
#   tools/cluster/services.sh install   install missing Debian packages, keep their system services off
#   tools/cluster/services.sh start     install (if needed), then start the private node(s)
#   tools/cluster/services.sh stop      stop them (and the private epmd)
#   tools/cluster/services.sh status    print what runs
#   tools/cluster/services.sh env       print the environment that points the prototype at them
#
# Idempotent. Nothing is left running as a system service: Debian enables
# rabbitmq-server, epmd and nats-server units on install; they are disabled
# (and stopped, where systemd runs) as tools/services.sh does for mosquitto.
#
# Environment (defaults in brackets):
#   GPSD_STATE                  state folder [<repo>/.state]
#   GPSD_AMQP_PORT              AMQP 0-9-1 port, workers and API nodes [15610]
#                               (the server's [cluster] amqp_url reads the same variable)
#   GPSD_AMQP_MQTT_PORT         RabbitMQ's MQTT port, terminals [18942]
#   (GPSD_CLUSTER_PORT and GPSD_CLUSTER_MQTT_PORT: older names of the two above)
#   GPSD_CLUSTER_EPMD_PORT      Erlang port mapper, private [AMQP port + 1: 15611]
#   GPSD_CLUSTER_DIST_PORT      Erlang distribution port of the node [AMQP port + 2: 15612]
#   GPSD_CLUSTER_CTL_PORTS      CLI distribution port range [AMQP port + 3 .. + 10: 15613-15620]
#   (moving GPSD_AMQP_PORT moves the Erlang ports with it: two state folders
#   side by side need only their own AMQP and MQTT ports)
#   GPSD_CLUSTER_ERL_ARGS       extra Erlang VM flags [+sbwt none +sbwtdcpu none +sbwtdio none:
#                               no scheduler busy-waiting, which on a shared 2-core host
#                               takes CPU from the workers and PostgreSQL]
#   GPSD_CLUSTER_NATS           1: also run NATS [0]
#   GPSD_CLUSTER_NATS_PORT      NATS client port [15630]
#   GPSD_CLUSTER_NATS_MQTT_PORT NATS MQTT listener [18943]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${GPSD_STATE:-$REPO/.state}"
BASE="$STATE/cluster"
AMQP_PORT="${GPSD_AMQP_PORT:-${GPSD_CLUSTER_PORT:-15610}}"
MQTT_PORT="${GPSD_AMQP_MQTT_PORT:-${GPSD_CLUSTER_MQTT_PORT:-18942}}"
EPMD_PORT="${GPSD_CLUSTER_EPMD_PORT:-$((AMQP_PORT + 1))}"
DIST_PORT="${GPSD_CLUSTER_DIST_PORT:-$((AMQP_PORT + 2))}"
CTL_PORTS="${GPSD_CLUSTER_CTL_PORTS:-$((AMQP_PORT + 3))-$((AMQP_PORT + 10))}"
WANT_NATS="${GPSD_CLUSTER_NATS:-0}"
NATS_PORT="${GPSD_CLUSTER_NATS_PORT:-15630}"
NATS_MQTT_PORT="${GPSD_CLUSTER_NATS_MQTT_PORT:-18943}"
NODENAME="gpsd-cluster@localhost"
RMQ_DIR="$BASE/rabbitmq"
NATS_DIR="$BASE/nats"
RMQ_BIN=/usr/lib/rabbitmq/bin
APT_PACKAGES=(rabbitmq-server)
[[ "$WANT_NATS" == 1 ]] && APT_PACKAGES+=(nats-server)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

missing_packages() {
    local p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

disable_system_units() {
    # Debian enables (and, where systemd is PID 1, starts) system-wide
    # instances on install; ours are private. Offline 'disable' still removes
    # the unit links when systemd is not running.
    local u
    for u in rabbitmq-server nats-server epmd.socket epmd; do
        systemctl disable --now "$u" >/dev/null 2>&1 || systemctl disable "$u" >/dev/null 2>&1 \
            || service "$u" stop >/dev/null 2>&1 || true
    done
}

cmd_install() {
    local missing
    missing="$(missing_packages | tr '\n' ' ')"
    if [[ -n "${missing// /}" ]]; then
        if [[ $EUID -ne 0 ]]; then
            printf '[cluster] missing: %s\n[cluster] run as root:\n    apt-get update && apt-get install -y --no-install-recommends %s\n' \
                "$missing" "$missing" >&2
            exit 2
        fi
        log "installing: $missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
    [[ $EUID -eq 0 ]] && disable_system_units
    return 0
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Every RabbitMQ command (server and CLI) sees the same private environment:
# its own env file (not /etc/rabbitmq), its own HOME for the Erlang cookie,
# its own epmd on a non-standard port bound to loopback.
rmq_env() {
    env HOME="$RMQ_DIR/home" \
        RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf" \
        RABBITMQ_NODENAME="$NODENAME" \
        RABBITMQ_USE_LONGNAME=false \
        RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia" \
        RABBITMQ_LOG_BASE="$RMQ_DIR/log" \
        RABBITMQ_PID_FILE="$RMQ_DIR/rabbitmq.pid" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$AMQP_PORT" \
        RABBITMQ_DIST_PORT="$DIST_PORT" \
        RABBITMQ_CTL_DIST_PORT_MIN="${CTL_PORTS%-*}" \
        RABBITMQ_CTL_DIST_PORT_MAX="${CTL_PORTS#*-}" \
        ERL_EPMD_PORT="$EPMD_PORT" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_SERVER_ERL_ARGS="+P 1048576 -kernel inet_dist_use_interface {127,0,0,1}" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${GPSD_CLUSTER_ERL_ARGS-+sbwt none +sbwtdcpu none +sbwtdio none}" \
        RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        "$@"
}

rmqctl() { rmq_env "$RMQ_BIN/rabbitmqctl" -q "$@"; }

write_rmq_config() {
    mkdir -p "$RMQ_DIR/home" "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
    : >"$RMQ_DIR/rabbitmq-env.conf"
    if [[ ! -f "$RMQ_DIR/home/.erlang.cookie" ]]; then
        head -c 32 /dev/urandom | sha256sum | cut -c1-40 >"$RMQ_DIR/home/.erlang.cookie"
        chmod 400 "$RMQ_DIR/home/.erlang.cookie"
    fi
    echo '[rabbitmq_mqtt,rabbitmq_consistent_hash_exchange].' >"$RMQ_DIR/enabled_plugins"
    cat >"$RMQ_DIR/rabbitmq.conf" <<CONF
# gpsd-server scale-out prototype: one private node, loopback only
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
loopback_users.guest = true
# Terminals: MQTT 3.1.1 into amq.topic ("fleet/V1/fix" -> routing key "fleet.V1.fix")
mqtt.listeners.tcp.default = 127.0.0.1:$MQTT_PORT
mqtt.allow_anonymous = true
mqtt.default_user = guest
mqtt.default_pass = guest
mqtt.vhost = /
mqtt.exchange = amq.topic
mqtt.tcp_listen_options.nodelay = true
# Memory/disk alarms block publishers (back-pressure to terminals) instead of losing data
vm_memory_high_watermark.relative = 0.4
disk_free_limit.absolute = 1GB
# An ingest worker that stalls for this long with unacked fixes is disconnected
# and its fixes go back to the partition queue (3.10 default is 30 min).
consumer_timeout = 300000
log.file.level = warning
log.console = false
CONF
}

# Check the pid first: rabbitmqctl starts an epmd when none runs, so asking
# it about a stopped node would leave a stray epmd behind.
rmq_pid_alive() { [[ -f "$RMQ_DIR/rabbitmq.pid" ]] && kill -0 "$(cat "$RMQ_DIR/rabbitmq.pid")" 2>/dev/null; }
rmq_running() { rmq_pid_alive && rmqctl status >/dev/null 2>&1; }

start_rabbitmq() {
    write_rmq_config
    if rmq_running; then return 0; fi
    if port_open "$AMQP_PORT"; then die "port $AMQP_PORT is taken; set GPSD_AMQP_PORT"; fi
    if port_open "$MQTT_PORT"; then die "port $MQTT_PORT is taken; set GPSD_AMQP_MQTT_PORT"; fi
    local t0 t1
    t0=$(date +%s.%N)
    # -detached forks away from this shell; the pid file tells stop what to end.
    rmq_env "$RMQ_BIN/rabbitmq-server" -detached >"$RMQ_DIR/log/startup.out" 2>&1
    if ! rmq_env timeout 120 "$RMQ_BIN/rabbitmqctl" -q wait --timeout 120 "$RMQ_DIR/rabbitmq.pid" >/dev/null 2>&1; then
        tail -30 "$RMQ_DIR/log/"*.log >&2 2>/dev/null || true
        die "RabbitMQ did not start (logs: $RMQ_DIR/log)"
    fi
    for _ in $(seq 100); do port_open "$MQTT_PORT" && break; sleep 0.1; done
    t1=$(date +%s.%N)
    printf '%.2f\n' "$(echo "$t1 - $t0" | bc)" >"$RMQ_DIR/last_start_seconds"
    log "RabbitMQ $(rmqctl version 2>/dev/null || echo 3.10) on 127.0.0.1: AMQP $AMQP_PORT, MQTT $MQTT_PORT (started in $(cat "$RMQ_DIR/last_start_seconds") s)"
}

stop_rabbitmq() {
    if rmq_running; then
        local pid
        pid="$(cat "$RMQ_DIR/rabbitmq.pid")"
        rmqctl stop "$RMQ_DIR/rabbitmq.pid" >/dev/null 2>&1 || true
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        log "RabbitMQ stopped"
    elif rmq_pid_alive; then
        kill "$(cat "$RMQ_DIR/rabbitmq.pid")"; log "RabbitMQ stopped (signal)"
    fi
    # The node started its own epmd on our private port: end that one only.
    if port_open "$EPMD_PORT"; then
        ERL_EPMD_PORT="$EPMD_PORT" epmd -kill >/dev/null 2>&1 || true
    fi
}

write_nats_config() {
    mkdir -p "$NATS_DIR/js"
    cat >"$NATS_DIR/nats.conf" <<CONF
# gpsd-server scale-out comparison: one private NATS node, loopback only
server_name: gpsd-cluster-nats
host: 127.0.0.1
port: $NATS_PORT
pid_file: "$NATS_DIR/nats.pid"
jetstream {
  store_dir: "$NATS_DIR/js"
  max_memory_store: 256MB
  max_file_store: 4GB
}
mqtt {
  host: 127.0.0.1
  port: $NATS_MQTT_PORT
  ack_wait: "30s"
  max_ack_pending: 1000
}
# Deterministic partitioning: fleet.V1.fix -> part.<n>.fleet.V1.fix
mappings = {
  "fleet.*.fix": "part.{{partition(12,1)}}.fleet.{{wildcard(1)}}.fix"
}
CONF
}

nats_pid() { [[ -f "$NATS_DIR/nats.pid" ]] && cat "$NATS_DIR/nats.pid" || true; }
nats_running() { local p; p="$(nats_pid)"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

start_nats() {
    write_nats_config
    if nats_running; then return 0; fi
    if port_open "$NATS_PORT"; then die "port $NATS_PORT is taken; set GPSD_CLUSTER_NATS_PORT"; fi
    local t0 t1
    t0=$(date +%s.%N)
    setsid /usr/sbin/nats-server -c "$NATS_DIR/nats.conf" -l "$NATS_DIR/nats.log" </dev/null >/dev/null 2>&1 &
    for _ in $(seq 100); do port_open "$NATS_MQTT_PORT" && break; sleep 0.05; done
    port_open "$NATS_MQTT_PORT" || die "NATS did not start (log: $NATS_DIR/nats.log)"
    t1=$(date +%s.%N)
    printf '%.2f\n' "$(echo "$t1 - $t0" | bc)" >"$NATS_DIR/last_start_seconds"
    log "NATS $(/usr/sbin/nats-server --version | awk '{print $2}') on 127.0.0.1: client $NATS_PORT, MQTT $NATS_MQTT_PORT (started in $(cat "$NATS_DIR/last_start_seconds") s)"
}

stop_nats() {
    if nats_running; then
        kill "$(nats_pid)"
        for _ in $(seq 50); do nats_running || break; sleep 0.1; done
        log "NATS stopped"
    fi
}

cmd_start() {
    cmd_install
    mkdir -p "$BASE"
    start_rabbitmq
    [[ "$WANT_NATS" == 1 ]] && start_nats
    return 0
}

cmd_stop() {
    stop_rabbitmq
    stop_nats
}

cmd_status() {
    if rmq_running; then
        echo "rabbitmq: running on 127.0.0.1 (AMQP $AMQP_PORT, MQTT $MQTT_PORT), pid $(cat "$RMQ_DIR/rabbitmq.pid" 2>/dev/null)"
    else
        echo "rabbitmq: stopped"
    fi
    if nats_running; then echo "nats: running on 127.0.0.1 (client $NATS_PORT, MQTT $NATS_MQTT_PORT), pid $(nats_pid)"
    else echo "nats: stopped"; fi
}

cmd_env() {
    echo "export GPSD_AMQP_PORT=$AMQP_PORT"
    echo "export GPSD_AMQP_MQTT_PORT=$MQTT_PORT"
    echo "export GPSD_CLUSTER_AMQP_URL='amqp://guest:guest@127.0.0.1:$AMQP_PORT/'"
    echo "export GPSD_CLUSTER_MQTT_PORT=$MQTT_PORT"
    echo "export GPSD_CLUSTER_RABBITMQ_PIDFILE='$RMQ_DIR/rabbitmq.pid'"
    echo "export GPSD_CLUSTER_NATS_URL='nats://127.0.0.1:$NATS_PORT'"
    echo "export GPSD_CLUSTER_NATS_MQTT_PORT=$NATS_MQTT_PORT"
    echo "export GPSD_CLUSTER_NATS_PIDFILE='$NATS_DIR/nats.pid'"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    ctl) shift; rmqctl "$@" ;;
    *) echo "usage: $0 install|start|stop|status|env|ctl ARGS..." >&2; exit 2 ;;
esac
