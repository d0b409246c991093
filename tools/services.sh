#!/usr/bin/env bash
# Install, start and stop the private services gpsd-server needs for the demo
# and the tests: a PostgreSQL 15 cluster with TimescaleDB and a Mosquitto
# broker, both on loopback, non-standard ports, under a state folder.
#
#   tools/services.sh install   install missing Debian packages, build TimescaleDB
#   tools/services.sh start     install (if needed), then start both services
#   tools/services.sh stop      stop both services
#   tools/services.sh status    print what runs
#   tools/services.sh env       print the environment that points gpsd-server at them
#
# Idempotent: a second run only checks and takes seconds. Nothing of the
# system's apt configuration is changed: the TimescaleDB source package is
# fetched through a temporary sources list for Debian's trixie suite.
#
# Environment: GPSD_STATE (state folder, default <repo>/.state),
# GPSD_PG_PORT (default 55432), GPSD_MQTT_PORT (default 18830).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${GPSD_STATE:-$REPO/.state}"
PG_PORT="${GPSD_PG_PORT:-55432}"
MQTT_PORT="${GPSD_MQTT_PORT:-18830}"
PG_VERSION=15
TSDB_VERSION=2.19.3
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
PG_DATA="$STATE/pg"
PG_SOCK="$STATE/pgsock"
MQ_DIR="$STATE/mosquitto"
# PostgreSQL runs as the postgres user and Mosquitto drops to the mosquitto
# user; both must reach their folders. A checkout under a private folder
# (mode 700, e.g. mktemp -d) is not reachable: keep both services' data under
# /var/lib/gpsd-server then, keyed by the state folder's path.
if [[ $EUID -eq 0 ]] && id postgres >/dev/null 2>&1 \
        && ! runuser -u postgres -- test -x "$(dirname "$STATE")" 2>/dev/null; then
    PG_HOME="/var/lib/gpsd-server/$(printf '%s' "$STATE" | sha1sum | cut -c1-12)"
    PG_DATA="$PG_HOME/pg"
    PG_SOCK="$PG_HOME/pgsock"
    MQ_DIR="$PG_HOME/mosquitto"
fi
# mosquitto-clients: mosquitto_pub / mosquitto_sub, for publishing a fix by hand (README, MQTT input)
APT_PACKAGES=(postgresql-$PG_VERSION postgresql-server-dev-$PG_VERSION cmake mosquitto mosquitto-clients
              build-essential dpkg-dev)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

need_root() {
    # $1: the command a non-root user must run instead.
    if [[ $EUID -ne 0 ]]; then
        printf '[services] missing: %s\n[services] run as root:\n    %s\n' "$2" "$1" >&2
        exit 2
    fi
}

missing_packages() {
    local p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

pg_sharedir() { "$PG_BIN/pg_config" --sharedir; }
tsdb_installed() { [[ -f "$(pg_sharedir)/extension/timescaledb--$TSDB_VERSION.sql" ]]; }

install_packages() {
    local missing
    missing="$(missing_packages | tr '\n' ' ')"
    [[ -z "${missing// /}" ]] && return 0
    need_root "apt-get update && apt-get install -y --no-install-recommends $missing" "$missing"
    log "installing: $missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    # Debian starts system-wide instances on install; ours are private.
    systemctl disable --now mosquitto >/dev/null 2>&1 || service mosquitto stop >/dev/null 2>&1 || true
}

build_timescaledb() {
    tsdb_installed && return 0
    need_root "$0 install" "TimescaleDB $TSDB_VERSION for PostgreSQL $PG_VERSION"
    local tmp
    tmp="$(mktemp -d)"
    chmod 755 "$tmp"  # apt's _apt sandbox user must read it
    log "fetching the timescaledb source package (trixie) into $tmp"
    mkdir -p "$tmp/lists/partial" "$tmp/parts" "$tmp/src"
    chown _apt "$tmp/src" 2>/dev/null || true  # apt downloads as _apt
    cat >"$tmp/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
    local aptopts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=$tmp/parts"
                   -o "Dir::State::Lists=$tmp/lists" -o "APT::Get::List-Cleanup=0")
    apt-get "${aptopts[@]}" update -qq
    local ver
    ver="$(apt-cache "${aptopts[@]}" showsrc timescaledb 2>/dev/null \
        | awk -v v="$TSDB_VERSION" '$1 == "Version:" && index($2, v) == 1 {print $2; exit}')"
    [[ -n "$ver" ]] || die "Debian's trixie suite no longer offers timescaledb $TSDB_VERSION"
    (cd "$tmp/src" && apt-get "${aptopts[@]}" source --download-only "timescaledb=$ver" >/dev/null)
    (cd "$tmp/src" && dpkg-source -x --no-check ./*.dsc tsdb >/dev/null)
    log "building TimescaleDB (Apache edition) against PostgreSQL $PG_VERSION"
    # cmake asks git for a revision and complains outside a repository: keep
    # the build's output in a log and show it only when the build fails.
    if ! (cd "$tmp/src/tsdb" && ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DAPACHE_ONLY=ON \
            -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=OFF -DPG_CONFIG="$PG_BIN/pg_config" \
            && cd build && make -j"$(nproc)" && make install) >"$tmp/build.log" 2>&1; then
        tail -30 "$tmp/build.log" >&2
        die "TimescaleDB build failed (log: $tmp/build.log)"
    fi
    tsdb_installed || die "TimescaleDB build finished but the extension is not installed"
    rm -rf "$tmp"
    log "TimescaleDB $TSDB_VERSION installed"
}

cmd_install() {
    install_packages
    build_timescaledb
}

pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

# PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
as_pg() {
    if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

start_pg() {
    mkdir -p "$STATE" "$PG_SOCK" "$(dirname "$PG_DATA")"
    if [[ $EUID -eq 0 ]]; then chown postgres "$(dirname "$PG_DATA")" "$PG_SOCK"; chmod 755 "$STATE"; fi
    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        log "initialising cluster in $PG_DATA"
        mkdir -p "$PG_DATA"
        [[ $EUID -eq 0 ]] && chown postgres "$PG_DATA"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
        cat >>"$PG_DATA/postgresql.conf" <<CONF
# gpsd-server private cluster
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 200
shared_buffers = 512MB
work_mem = 32MB
maintenance_work_mem = 256MB
synchronous_commit = on
fsync = on
wal_level = minimal
max_wal_senders = 0
max_wal_size = 4GB
checkpoint_timeout = 15min
timezone = 'UTC'
log_min_messages = warning
CONF
    fi
    if pg_running; then return 0; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then
        die "port $PG_PORT is taken by another program; set GPSD_PG_PORT to a free port"
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/../pg.log" -w -t 60 start >/dev/null \
        || { tail -20 "$PG_DATA/../pg.log" >&2; die "PostgreSQL did not start (log: $PG_DATA/../pg.log)"; }
    log "PostgreSQL on 127.0.0.1:$PG_PORT"
    for db in gpsd gpsd_test; do
        if ! "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atqc \
                "select 1 from pg_database where datname='$db'" | grep -q 1; then
            "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$db"
        fi
    done
}

mq_pid() { [[ -f "$MQ_DIR/mosquitto.pid" ]] && cat "$MQ_DIR/mosquitto.pid" || true; }
mq_running() { local p; p="$(mq_pid)"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

start_mosquitto() {
    mkdir -p "$MQ_DIR/data"
    [[ $EUID -eq 0 ]] && chown -R mosquitto "$MQ_DIR" 2>/dev/null || true
    # Queue limits matter: persistent sessions left behind by killed runs
    # were seen to grow a broker to 15 GB without them.
    cat >"$MQ_DIR/mosquitto.conf" <<CONF
# gpsd-server private broker: loopback only, anonymous (demo and tests)
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $MQ_DIR/data/
autosave_interval 30
pid_file $MQ_DIR/mosquitto.pid
log_dest file $MQ_DIR/mosquitto.log
log_type error
log_type warning
max_inflight_messages 10000
max_queued_messages 200000
max_queued_bytes 268435456
persistent_client_expiration 1h
max_packet_size 1048576
set_tcp_nodelay true
CONF
    if mq_running; then return 0; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null; then
        die "port $MQTT_PORT is taken by another program; set GPSD_MQTT_PORT to a free port"
    fi
    /usr/sbin/mosquitto -c "$MQ_DIR/mosquitto.conf" -d
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null; then
            log "Mosquitto on 127.0.0.1:$MQTT_PORT"; return 0
        fi
        sleep 0.1
    done
    die "Mosquitto did not start (log: $MQ_DIR/mosquitto.log)"
}

cmd_start() {
    cmd_install
    start_pg
    start_mosquitto
}

# A demo running on this state folder (tools/demo.sh writes its pid) is
# stopped first, server and fleet: stopping the services under it left a
# server answering 503 and a simulator reconnecting for ever.
alive() {  # a zombie (ended, its parent not told yet) is not alive
    local stat
    stat="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [ -n "$stat" ] && [ "${stat#Z}" = "$stat" ]
}

stop_demo() {
    local file="$STATE/demo.pid" pid
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -qa "demo.sh" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            log "the demo (pid $pid) did not stop within 30 s; stopping the services under it"
        else
            log "demo stopped (server and fleet)"
        fi
    fi
    rm -f "$file"
}

cmd_stop() {
    stop_demo
    if pg_running; then as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null && log "PostgreSQL stopped"; fi
    if mq_running; then
        kill "$(mq_pid)"
        for _ in $(seq 50); do mq_running || break; sleep 0.1; done
        log "Mosquitto stopped"
    fi
}

cmd_status() {
    pg_running && echo "postgresql: running on 127.0.0.1:$PG_PORT" || echo "postgresql: stopped"
    mq_running && echo "mosquitto: running on 127.0.0.1:$MQTT_PORT" || echo "mosquitto: stopped"
}

cmd_env() {
    echo "export GPSD_DATABASE__DSN='postgresql://postgres@127.0.0.1:$PG_PORT/gpsd'"
    echo "export GPSD_MQTT__HOST=127.0.0.1"
    echo "export GPSD_MQTT__PORT=$MQTT_PORT"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
