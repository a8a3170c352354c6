#!/usr/bin/env bash
# Single-node Apache Kafka broker (KRaft, combined broker+controller) for
# weir's integration tests, run from Maven Central jars: no Docker, no tarball.
#
# Usage: scripts/kafka.sh start|stop|status|wipe|run <MainClass> [args...]
#
#   start   Fetch the jars once, format storage once, start the broker on
#           127.0.0.1 in the background and wait until it serves. Idempotent:
#           a healthy broker from the same state dir is left alone. The LAST
#           line on stdout is the bootstrap address, everything else goes to
#           stderr:   BROKERS=$(scripts/kafka.sh start)
#   stop    SIGTERM, wait up to 30 s, then SIGKILL. Idempotent.
#   status  Exit 0 (and print the bootstrap address) if the broker runs and its
#           port accepts connections; exit 1 otherwise.
#   wipe    Stop, then delete data and logs (the jar cache is kept).
#   run     Run a Java main class on the broker's classpath, e.g.
#           scripts/kafka.sh run org.apache.kafka.tools.TopicCommand \
#               --bootstrap-server 127.0.0.1:19092 --list
#
# Environment:
#   WEIR_KAFKA_HOME           state dir (default: <repo>/.kafka): lib/ (jars),
#                             data/, logs/, server.properties, broker.pid
#   WEIR_KAFKA_PORT           PLAINTEXT port (default 19092); controller = +1
#   WEIR_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 120)
#   JAVA                      java binary (default: $JAVA_HOME/bin/java or java)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
CONF_DIR="$SCRIPT_DIR/kafka"

STATE="$(realpath -m "${WEIR_KAFKA_HOME:-$REPO/.kafka}")"
PORT="${WEIR_KAFKA_PORT:-19092}"
START_TIMEOUT="${WEIR_KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT=30
HOST=127.0.0.1

if [[ -n "${JAVA:-}" ]]; then
    :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA=java
fi

LIB="$STATE/lib"
DATA="$STATE/data"
LOGS="$STATE/logs"
PROPS="$STATE/server.properties"
PIDFILE="$STATE/broker.pid"
PORTFILE="$STATE/broker.port"
LOG="$LOGS/broker.log"
READY_LINE='Kafka Server started'

log() { printf '[kafka.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if ! [[ "$PORT" =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65534)); then
    die "WEIR_KAFKA_PORT must be a port number below 65535, got '$PORT'"
fi
CPORT=$((PORT + 1))

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# True if $1 is a live process running our broker (guards against pid reuse).
is_our_broker() {
    local pid="$1" cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *" kafka.Kafka $PROPS"* ]]
}

# Prints the pid of the broker of this state dir, if one runs. Looks at the
# pid file first, then (pid file lost or stale) at the process table.
broker_pid() {
    local pid=""
    [[ -f "$PIDFILE" ]] && pid="$(<"$PIDFILE")"
    if is_our_broker "$pid"; then
        echo "$pid"
        return 0
    fi
    local f
    for f in /proc/[0-9]*/cmdline; do
        pid="${f#/proc/}"
        pid="${pid%/cmdline}"
        [[ "$pid" == "$$" ]] && continue
        if is_our_broker "$pid"; then
            echo "$pid" >"$PIDFILE"
            echo "$pid"
            return 0
        fi
    done
    return 1
}

running_port() {
    if [[ -f "$PORTFILE" ]]; then cat "$PORTFILE"; else echo "$PORT"; fi
}

# Serialise start/stop/wipe on one state dir (fd 9 is closed for the broker).
take_lock() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    if ! flock -w 300 9; then
        die "another kafka.sh holds $STATE/.lock for more than 300 s"
    fi
}

java_opts() {
    JOPTS=(
        -Xms256m -Xmx512m
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -XX:MaxInlineLevel=15 -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$CONF_DIR/log4j2.properties"
        "-Dkafka.logs.dir=$LOGS"
        -cp "$LIB/*"
    )
}

# Download the broker's runtime classpath once; keyed on pom.xml's checksum.
fetch_jars() {
    local want have=""
    want="$(sha256sum "$CONF_DIR/pom.xml" | cut -d' ' -f1)"
    [[ -f "$LIB/.pom.sha256" ]] && have="$(<"$LIB/.pom.sha256")"
    if [[ "$want" == "$have" ]] && compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn (Maven 3) is needed to fetch the Kafka jars"
    log "fetching Kafka jars from Maven Central into $LIB (once)"
    local t0=$SECONDS tmp="$STATE/lib.tmp"
    rm -rf "$tmp"
    mkdir -p "$LOGS"
    if ! mvn -B -q -Dstyle.color=never -f "$CONF_DIR/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$LOGS/mvn.log" 2>&1; then
        tail -n 40 "$LOGS/mvn.log" >&2
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed (full output: $LOGS/mvn.log)"
    fi
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar after download"
    echo "$want" >"$tmp/.pom.sha256"
    rm -rf "$LIB"
    mv "$tmp" "$LIB"
    log "fetched $(find "$LIB" -name '*.jar' | wc -l) jars ($(du -sh "$LIB" | cut -f1)) in $((SECONDS - t0)) s"
}

write_props() {
    cat >"$PROPS" <<EOF
# Generated by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CPORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA

auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=3
group.initial.rebalance.delay.ms=0

# small machine: fewer threads than the defaults
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
}

# Format the KRaft storage once. A data dir without meta.properties is not
# usable by Kafka, so it is cleared and formatted afresh; one with
# meta.properties is kept as is (whatever its cluster id).
format_storage() {
    if [[ -f "$DATA/meta.properties" ]]; then
        return 0
    fi
    if [[ -d "$DATA" ]] && [[ -n "$(ls -A "$DATA")" ]]; then
        log "data dir $DATA has no meta.properties: clearing and re-formatting it"
    fi
    rm -rf "$DATA"
    mkdir -p "$DATA"
    local cid
    cid="$("$JAVA" "${JOPTS[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOGS/format.log" | tail -n 1)"
    [[ -n "$cid" ]] || die "kafka.tools.StorageTool random-uuid printed nothing (see $LOGS/format.log)"
    log "formatting $DATA (cluster id $cid)"
    "$JAVA" "${JOPTS[@]}" kafka.tools.StorageTool format \
        -t "$cid" -c "$PROPS" >>"$LOGS/format.log" 2>&1 ||
        { tail -n 50 "$LOGS/format.log" >&2; die "storage format failed"; }
}

# Wait until the broker logged its readiness line (the log is restarted on
# each launch) and its port accepts connections. $1 = pid.
wait_ready() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "broker (pid $pid) exited during startup; last 50 log lines:"
            tail -n 50 "$LOG" >&2
            rm -f "$PIDFILE"
            die "broker failed to start (log: $LOG)"
        fi
        if grep -q "$READY_LINE" "$LOG" 2>/dev/null &&
            port_open "$PORT"; then
            return 0
        fi
        sleep 0.5
    done
    log "broker (pid $pid) not ready after ${START_TIMEOUT} s; last 50 log lines:"
    tail -n 50 "$LOG" >&2
    die "timed out waiting for the broker (it is left running: scripts/kafka.sh stop)"
}

cmd_start() {
    take_lock
    local pid
    if pid="$(broker_pid)"; then
        local rport
        rport="$(running_port)"
        [[ "$rport" == "$PORT" ]] ||
            die "a broker from $STATE already runs on port $rport (pid $pid), not $PORT; stop it first"
        if port_open "$PORT"; then
            log "broker already running (pid $pid) on $HOST:$PORT"
            echo "$HOST:$PORT"
            return 0
        fi
        # Running but not serving yet (e.g. a start that timed out): wait.
        log "broker (pid $pid) runs but port $PORT is closed; waiting for it"
        wait_ready "$pid"
        echo "$HOST:$PORT"
        return 0
    fi
    rm -f "$PIDFILE"

    command -v "$JAVA" >/dev/null || die "java (17+) not found; set JAVA_HOME or JAVA"
    local p
    for p in "$PORT" "$CPORT"; do
        if port_open "$p"; then
            local who=""
            command -v ss >/dev/null && who="$(ss -Hltnp "sport = :$p" 2>/dev/null | sed -n 1,3p)" || true
            die "port $p on $HOST is in use by another process${who:+: $who}; free it or set WEIR_KAFKA_PORT (uses PORT and PORT+1)"
        fi
    done

    local t0=$SECONDS
    mkdir -p "$LOGS"
    fetch_jars
    java_opts
    write_props
    format_storage

    # Keep the previous run's log for post-mortems; this run starts afresh.
    [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"
    : >"$LOG"
    echo "$PORT" >"$PORTFILE"
    log "starting broker on $HOST:$PORT (controller $CPORT), state $STATE"
    # New session so the broker outlives the caller's terminal and Ctrl-C;
    # the inner shell writes its own pid, then becomes java (exec).
    # shellcheck disable=SC2016 # expanded by the inner shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
        "$JAVA" "${JOPTS[@]}" kafka.Kafka "$PROPS" \
        </dev/null >>"$LOG" 2>&1 9>&- &
    for _ in $(seq 50); do
        [[ -s "$PIDFILE" ]] && break
        sleep 0.1
    done
    [[ -s "$PIDFILE" ]] || die "broker did not write its pid file"
    pid="$(<"$PIDFILE")"
    wait_ready "$pid"
    log "broker ready (pid $pid) in $((SECONDS - t0)) s; log: $LOG"
    echo "$HOST:$PORT"
}

cmd_stop() {
    take_lock
    local pid
    if ! pid="$(broker_pid)"; then
        [[ -f "$PIDFILE" ]] && log "removing stale pid file"
        rm -f "$PIDFILE"
        log "broker not running"
        return 0
    fi
    local t0=$SECONDS
    log "stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "broker did not stop within ${STOP_TIMEOUT} s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$PIDFILE"
    log "broker stopped in $((SECONDS - t0)) s"
}

cmd_status() {
    local pid port
    if pid="$(broker_pid)"; then
        port="$(running_port)"
        if port_open "$port"; then
            log "running (pid $pid) on $HOST:$port"
            echo "$HOST:$port"
            return 0
        fi
        log "process $pid runs but port $port is closed"
        return 1
    fi
    log "not running"
    return 1
}

cmd_wipe() {
    cmd_stop
    log "deleting $DATA and $LOGS (keeping $LIB)"
    rm -rf "$DATA" "$LOGS" "$PROPS" "$PORTFILE" "$PIDFILE"
}

cmd_run() {
    [[ $# -ge 1 ]] || die "usage: $0 run <MainClass> [args...]"
    take_lock
    mkdir -p "$LOGS"
    fetch_jars
    java_opts
    exec 9>&-
    exec "$JAVA" "${JOPTS[@]}" "$@"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
wipe) cmd_wipe ;;
run) shift; cmd_run "$@" ;;
*)
    echo "usage: $0 start|stop|status|wipe|run <MainClass> [args...]" >&2
    exit 2
    ;;
esac
