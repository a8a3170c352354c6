#!/usr/bin/env bash
# Apache Kafka brokers (KRaft, combined broker+controller) for weir's tests,
# run from Maven Central jars: no Docker, no tarball. One node by default;
# optionally with a SASL_SSL listener, or a three-node cluster.
#
# Usage: scripts/kafka.sh start|stop|status|wipe|kill|run <MainClass> [args...]
#        scripts/kafka.sh cluster-start|cluster-stop|cluster-status|cluster-wipe
#        scripts/kafka.sh kill-node N|start-node N
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
#   kill    SIGKILL the broker (a crash, for fault tests); no clean shutdown.
#   wait    Wait until a launched broker serves (used by cluster-start).
#   run     Run a Java main class on the broker's classpath, e.g.
#           scripts/kafka.sh run org.apache.kafka.tools.TopicCommand \
#               --bootstrap-server 127.0.0.1:19092 --list
#
# Secure listener (single node): with WEIR_KAFKA_SASL=1, `start` also opens
# a SASL_SSL listener on PORT+2 (mechanisms PLAIN and SCRAM-SHA-512, user
# $WEIR_KAFKA_SASL_USER with password $WEIR_KAFKA_SASL_PASSWORD), serving a
# certificate signed by a throwaway CA that the script makes with openssl in
# $WEIR_KAFKA_HOME/tls/ (clients: ssl.ca.location=<that dir>/ca.pem). The
# PLAINTEXT listener stays (inter-broker traffic, test setup). SCRAM
# credentials are written when the storage is formatted, so change the
# password only together with `wipe`. The setting must be the same for start
# and a later start after stop.
#
# ACLs (single node, with WEIR_KAFKA_SASL=1): WEIR_KAFKA_ACLS=1 also turns on
# KRaft's StandardAuthorizer. The PLAINTEXT and controller listeners'
# principal (User:ANONYMOUS: inter-broker traffic, test setup) is a super
# user; a resource without ACLs stays open to everyone
# (allow.everyone.if.no.acl.found), so the SASL user is restricted only
# where a test adds ACLs, e.g.
#   scripts/kafka.sh run org.apache.kafka.tools.AclCommand \
#       --bootstrap-server 127.0.0.1:PORT --add --allow-principal User:weir \
#       --operation Describe --topic T      # T: Describe only, no Read
#
# Cluster (three combined broker+controller nodes on loopback, static quorum,
# default.replication.factor=3, min.insync.replicas=2):
#   cluster-start   start (formatting once, one cluster id) all three nodes,
#                   wait until each serves; last stdout line: bootstrap list
#   cluster-stop    stop all three (SIGTERM, then SIGKILL)
#   cluster-status  exit 0 if all three serve (prints the bootstrap list)
#   cluster-wipe    stop all three and delete their data and logs
#   kill-node N     SIGKILL node N (1-3)
#   start-node N    start node N again (no re-format) and wait until it serves
# Node N uses PLAINTEXT port CLUSTER_PORT+2(N-1), controller port +1, and the
# state dir $WEIR_KAFKA_CLUSTER_HOME/nN; the nodes share the jar cache of
# WEIR_KAFKA_HOME.
#
# Environment:
#   WEIR_KAFKA_HOME           state dir (default: <repo>/.kafka): lib/ (jars),
#                             data/, logs/, server.properties, broker.pid
#   WEIR_KAFKA_LIB            jar cache (default: $WEIR_KAFKA_HOME/lib)
#   WEIR_KAFKA_PORT           PLAINTEXT port (default 19092); controller = +1,
#                             SASL_SSL (WEIR_KAFKA_SASL=1) = +2
#   WEIR_KAFKA_SASL           1: add the SASL_SSL listener (see above)
#   WEIR_KAFKA_SASL_USER      user of PLAIN and SCRAM (default weir)
#   WEIR_KAFKA_SASL_PASSWORD  its password (default weir-secret)
#   WEIR_KAFKA_ACLS           1: ACL authorizer (with WEIR_KAFKA_SASL=1; see above)
#   WEIR_KAFKA_CLUSTER_PORT   first port of the cluster (default 19100; uses 6)
#   WEIR_KAFKA_CLUSTER_HOME   cluster state dir (default: $WEIR_KAFKA_HOME/cluster)
#   WEIR_KAFKA_HEAP           broker heap (default 512m; cluster nodes 384m)
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

LIB="$(realpath -m "${WEIR_KAFKA_LIB:-$STATE/lib}")"
HEAP="${WEIR_KAFKA_HEAP:-512m}"
SASL="${WEIR_KAFKA_SASL:-0}"
SASL_USER="${WEIR_KAFKA_SASL_USER:-weir}"
SASL_PASSWORD="${WEIR_KAFKA_SASL_PASSWORD:-weir-secret}"
ACLS="${WEIR_KAFKA_ACLS:-0}"
TLS="$STATE/tls"
# Set (internally) for a cluster node: node id, quorum voters, cluster id and
# replication settings. Unset: the single-node values.
NODE_ID="${WEIR_KAFKA_NODE_ID:-1}"
VOTERS="${WEIR_KAFKA_VOTERS:-}"
CLUSTER_ID="${WEIR_KAFKA_CLUSTER_ID:-}"
REPLICATION="${WEIR_KAFKA_REPLICATION:-1}"
MIN_ISR="${WEIR_KAFKA_MIN_ISR:-1}"
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
SPORT=$((PORT + 2))
[[ -n "$VOTERS" ]] || VOTERS="$NODE_ID@$HOST:$CPORT"
[[ "$SASL_USER$SASL_PASSWORD" =~ ^[A-Za-z0-9._-]+$ ]] ||
    die "WEIR_KAFKA_SASL_USER and WEIR_KAFKA_SASL_PASSWORD may hold only letters, digits, '.', '_' and '-'"

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# True if $1 is a live process running our broker (guards against pid reuse).
is_our_broker() {
    local pid="$1" cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
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
        -Xms256m "-Xmx$HEAP"
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
    # The jar cache may be shared by several state dirs (WEIR_KAFKA_LIB).
    mkdir -p "$(dirname "$LIB")"
    exec 8>"$LIB.lock"
    flock -w 600 8 || die "another kafka.sh holds $LIB.lock for more than 600 s"
    [[ -f "$LIB/.pom.sha256" ]] && have="$(<"$LIB/.pom.sha256")"
    if [[ "$want" == "$have" ]] && compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null; then
        exec 8>&-
        return 0
    fi
    command -v mvn >/dev/null || die "mvn (Maven 3) is needed to fetch the Kafka jars"
    log "fetching Kafka jars from Maven Central into $LIB (once)"
    local t0=$SECONDS tmp="$LIB.tmp"
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
    exec 8>&-
}

write_props() {
    local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT"
    local advertised="PLAINTEXT://$HOST:$PORT"
    local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if [[ "$SASL" == 1 ]]; then
        listeners+=",SASL_SSL://$HOST:$SPORT"
        advertised+=",SASL_SSL://$HOST:$SPORT"
        protocols+=",SASL_SSL:SASL_SSL"
    fi
    cat >"$PROPS" <<EOF
# Generated by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$VOTERS
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$DATA

auto.create.topics.enable=false
num.partitions=3
default.replication.factor=$REPLICATION
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$REPLICATION
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$REPLICATION
transaction.state.log.min.isr=$MIN_ISR
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=$REPLICATION
share.coordinator.state.topic.min.isr=$MIN_ISR
share.coordinator.state.topic.num.partitions=3
group.initial.rebalance.delay.ms=0

# small machine: fewer threads than the defaults
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
    if [[ "$SASL" == 1 ]]; then
        cat >>"$PROPS" <<EOF

# SASL_SSL listener for clients (WEIR_KAFKA_SASL=1): PLAIN users from the JAAS
# line below, SCRAM users from the metadata log (kafka-storage --add-scram).
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$(<"$TLS/store.pass")
ssl.key.password=$(<"$TLS/store.pass")
ssl.client.auth=none
EOF
    fi
    if [[ "$ACLS" == 1 ]]; then
        [[ "$SASL" == 1 ]] || die "WEIR_KAFKA_ACLS=1 needs WEIR_KAFKA_SASL=1"
        cat >>"$PROPS" <<EOF

# ACLs (WEIR_KAFKA_ACLS=1): the PLAINTEXT/controller principal is a super
# user; resources without ACLs stay open.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=true
EOF
    fi
}

# A throwaway CA and a broker certificate for 127.0.0.1/localhost signed by
# it, made once per state dir: $TLS/ca.pem (what clients trust) and the
# broker's PKCS#12 keystore $TLS/broker.p12 (password in $TLS/store.pass).
make_tls() {
    [[ -f "$TLS/broker.p12" && -f "$TLS/ca.pem" && -f "$TLS/store.pass" ]] && return 0
    command -v openssl >/dev/null || die "openssl is needed for the SASL_SSL listener"
    log "making a throwaway CA and broker certificate in $TLS"
    rm -rf "$TLS"
    mkdir -p "$TLS"
    (
        cd "$TLS"
        umask 077
        openssl rand -hex 16 >store.pass
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=weir-test-ca" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout broker.key -out broker.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 30 -extfile san.ext -out broker.pem
        openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem \
            -name broker -passout "file:store.pass" -out broker.p12
        chmod 644 ca.pem
    ) >"$LOGS/tls.log" 2>&1 || { cat "$LOGS/tls.log" >&2; die "making the test certificates failed"; }
}

# Format the KRaft storage once. A data dir without meta.properties is not
# usable by Kafka, so it is cleared and formatted afresh; one with
# meta.properties is kept as is (whatever its cluster id).
new_cluster_id() {
    local cid
    cid="$("$JAVA" "${JOPTS[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOGS/format.log" | tail -n 1)"
    [[ -n "$cid" ]] || die "kafka.tools.StorageTool random-uuid printed nothing (see $LOGS/format.log)"
    echo "$cid"
}

format_storage() {
    if [[ -f "$DATA/meta.properties" ]]; then
        return 0
    fi
    if [[ -d "$DATA" ]] && [[ -n "$(ls -A "$DATA")" ]]; then
        log "data dir $DATA has no meta.properties: clearing and re-formatting it"
    fi
    rm -rf "$DATA"
    mkdir -p "$DATA"
    local cid="$CLUSTER_ID" extra=()
    [[ -n "$cid" ]] || cid="$(new_cluster_id)"
    if [[ "$SASL" == 1 ]]; then
        extra=(--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]")
    fi
    log "formatting $DATA (cluster id $cid)"
    "$JAVA" "${JOPTS[@]}" kafka.tools.StorageTool format \
        -t "$cid" -c "$PROPS" "${extra[@]}" >>"$LOGS/format.log" 2>&1 ||
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
    local p ports=("$PORT" "$CPORT")
    [[ "$SASL" == 1 ]] && ports+=("$SPORT")
    for p in "${ports[@]}"; do
        if port_open "$p"; then
            local who=""
            command -v ss >/dev/null && who="$(ss -Hltnp "sport = :$p" 2>/dev/null | sed -n 1,3p)" || true
            die "port $p on $HOST is in use by another process${who:+: $who}; free it or set WEIR_KAFKA_PORT (uses PORT, PORT+1 and, with SASL, PORT+2)"
        fi
    done

    local t0=$SECONDS
    mkdir -p "$LOGS"
    fetch_jars
    java_opts
    [[ "$SASL" == 1 ]] && make_tls
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
    if [[ "${WEIR_KAFKA_NO_WAIT:-0}" == 1 ]]; then
        log "broker launched (pid $pid); not waiting for it"
        return 0
    fi
    wait_ready "$pid"
    log "broker ready (pid $pid) in $((SECONDS - t0)) s; log: $LOG"
    [[ "$SASL" == 1 ]] && log "SASL_SSL listener on $HOST:$SPORT (CA: $TLS/ca.pem)"
    echo "$HOST:$PORT"
}

# Wait until a launched broker serves (cluster-start launches all nodes
# first: none is ready before a quorum of controllers runs).
cmd_wait() {
    local pid
    pid="$(broker_pid)" || die "no broker from $STATE runs"
    wait_ready "$pid"
    echo "$HOST:$PORT"
}

# SIGKILL: a crash, for fault tests. Idempotent.
cmd_kill() {
    take_lock
    local pid
    if ! pid="$(broker_pid)"; then
        log "broker not running"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$PIDFILE"
    log "broker (pid $pid) killed"
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

# ---- three-node cluster: each node is this script on its own state dir ----

CLUSTER_HOME="$(realpath -m "${WEIR_KAFKA_CLUSTER_HOME:-$STATE/cluster}")"
CLUSTER_PORT="${WEIR_KAFKA_CLUSTER_PORT:-19100}"
[[ "$CLUSTER_PORT" =~ ^[0-9]+$ ]] && ((CLUSTER_PORT > 0 && CLUSTER_PORT < 65530)) ||
    die "WEIR_KAFKA_CLUSTER_PORT must be a port number below 65530, got '$CLUSTER_PORT'"
NODES=(1 2 3)

node_port() { echo $((CLUSTER_PORT + 2 * ($1 - 1))); }

cluster_bootstrap() {
    local n list=()
    for n in "${NODES[@]}"; do list+=("$HOST:$(node_port "$n")"); done
    (IFS=,; echo "${list[*]}")
}

# Runs this script's command $2... for node $1 of the cluster.
node_cmd() {
    local n="$1" voters=() m
    shift
    [[ " ${NODES[*]} " == *" $n "* ]] || die "no node '$n' (nodes: ${NODES[*]})"
    for m in "${NODES[@]}"; do voters+=("$m@$HOST:$(($(node_port "$m") + 1))"); done
    WEIR_KAFKA_HOME="$CLUSTER_HOME/n$n" WEIR_KAFKA_LIB="$LIB" WEIR_KAFKA_PORT="$(node_port "$n")" \
        WEIR_KAFKA_NODE_ID="$n" WEIR_KAFKA_VOTERS="$(IFS=,; echo "${voters[*]}")" \
        WEIR_KAFKA_CLUSTER_ID="$(<"$CLUSTER_HOME/cluster.id")" \
        WEIR_KAFKA_REPLICATION=3 WEIR_KAFKA_MIN_ISR=2 WEIR_KAFKA_SASL=0 \
        WEIR_KAFKA_HEAP="${WEIR_KAFKA_HEAP:-384m}" \
        "$SCRIPT_DIR/kafka.sh" "$@"
}

cmd_cluster_start() {
    local t0=$SECONDS n
    LOGS="$CLUSTER_HOME/logs" # for format.log; each node logs in its own dir
    mkdir -p "$CLUSTER_HOME" "$LOGS"
    if [[ ! -s "$CLUSTER_HOME/cluster.id" ]]; then
        fetch_jars
        java_opts
        new_cluster_id >"$CLUSTER_HOME/cluster.id"
    fi
    for n in "${NODES[@]}"; do
        WEIR_KAFKA_NO_WAIT=1 node_cmd "$n" start >/dev/null
    done
    for n in "${NODES[@]}"; do
        node_cmd "$n" wait >/dev/null
    done
    log "cluster of ${#NODES[@]} nodes ready in $((SECONDS - t0)) s: $(cluster_bootstrap)"
    cluster_bootstrap
}

cmd_cluster_stop() {
    local n
    [[ -s "$CLUSTER_HOME/cluster.id" ]] || { log "no cluster in $CLUSTER_HOME"; return 0; }
    # In parallel: a node waits for the others while it shuts down.
    for n in "${NODES[@]}"; do node_cmd "$n" stop & done
    wait
}

cmd_cluster_status() {
    local n
    [[ -s "$CLUSTER_HOME/cluster.id" ]] || { log "no cluster in $CLUSTER_HOME"; return 1; }
    for n in "${NODES[@]}"; do node_cmd "$n" status >/dev/null || return 1; done
    cluster_bootstrap
}

cmd_cluster_wipe() {
    cmd_cluster_stop
    log "deleting $CLUSTER_HOME"
    rm -rf "$CLUSTER_HOME"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
wipe) cmd_wipe ;;
kill) cmd_kill ;;
wait) cmd_wait ;;
run) shift; cmd_run "$@" ;;
cluster-start) cmd_cluster_start ;;
cluster-stop) cmd_cluster_stop ;;
cluster-status) cmd_cluster_status ;;
cluster-wipe) cmd_cluster_wipe ;;
kill-node) [[ $# -eq 2 ]] || die "usage: $0 kill-node N"; node_cmd "$2" kill ;;
start-node) [[ $# -eq 2 ]] || die "usage: $0 start-node N"; node_cmd "$2" start ;;
*)
    echo "usage: $0 start|stop|status|wipe|kill|run <MainClass> [args...]" >&2
    echo "       $0 cluster-start|cluster-stop|cluster-status|cluster-wipe|kill-node N|start-node N" >&2
    exit 2
    ;;
esac
