#!/usr/bin/env bash
# Smoke test of docker-compose.yml with deploy/compose.ci.yml (images built
# here, no registry): starts Kafka, the topic set-up, weir with the example
# modules and Prometheus; produces orders and reads the enriched records
# back through 127.0.0.1; checks Prometheus's target `up == 1` through its
# HTTP API and every metric of the Grafana dashboard against a real scrape
# (scripts/check-dashboard.py); stops weir (SIGTERM: must drain and exit 0);
# tears everything down. Prints its timings.
#
# Usage: scripts/compose-smoke.sh
# Environment:
#   WEIR_BIN        weir binary for the image (default: release build, see
#                   scripts/image.sh); CI passes the debug one test.sh built
#   WEIR_MODULES     modules to copy into the mounted folder
#                   (default target/modules; built if missing)
#   SMOKE_KEEP=1    leave the containers running (then: docker-compose -p
#                   weir-smoke -f docker-compose.yml -f deploy/compose.ci.yml down -v)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
T0=$SECONDS
log() { printf '[compose-smoke.sh +%ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# Host ports away from the defaults (a developer's own weir or Kafka may
# hold 9464 or 9094); still 127.0.0.1 only.
export KAFKA_PORT=29094 WEIR_HTTP_PORT=29464 PROMETHEUS_PORT=29090
MODULES="${WEIR_MODULES:-$REPO/target/modules}"
# A copy is mounted, so the test can change a module (hot reload).
export WEIR_MODULES_DIR="$REPO/target/compose-smoke/modules"
BROKER="127.0.0.1:$KAFKA_PORT"

scripts/docker-engine.sh
# docker-compose (v1, Debian's) or the `docker compose` plugin, if present.
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    COMPOSE=(docker-compose)
fi
COMPOSE+=(-p weir-smoke -f docker-compose.yml -f deploy/compose.ci.yml)

compgen -G "$MODULES/*.wasm" >/dev/null || scripts/build-guests.sh "$MODULES" >&2
rm -rf "$WEIR_MODULES_DIR"
mkdir -p "$WEIR_MODULES_DIR"
cp "$MODULES"/*.wasm "$MODULES"/*.toml "$WEIR_MODULES_DIR/"
t=$SECONDS
scripts/image.sh
scripts/ci-images.sh
IMAGES_S=$((SECONDS - t))

# `weir produce` / `weir consume` from the image, on the host's network.
weir() { docker run --rm -i --network host weir:local "$@"; }

teardown() {
    local rc=$?
    if ((rc != 0)); then
        log "logs of the failed run:"
        "${COMPOSE[@]}" logs --no-color --tail=40 >&2 || true
    fi
    if [[ "${SMOKE_KEEP:-0}" != 1 ]]; then
        "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    exit "$rc"
}
trap teardown EXIT

"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
t=$SECONDS
"${COMPOSE[@]}" up -d
# Ready: every module's consumer joined its group (weir's /readyz).
for _ in $(seq 180); do
    curl -fsS "127.0.0.1:$WEIR_HTTP_PORT/readyz" >/dev/null 2>&1 && break
    sleep 1
done
curl -fsS "127.0.0.1:$WEIR_HTTP_PORT/readyz" >/dev/null ||
    die "weir not ready after 180 s: $(curl -sS "127.0.0.1:$WEIR_HTTP_PORT/readyz" 2>&1)"
UP_S=$((SECONDS - t))
log "all up and weir ready in $UP_S s"

# Orders in: four valid ones and one that is not JSON (dead-lettered).
t=$SECONDS
printf '%s\n' \
    'o-1|{"id":1,"price":10,"quantity":3,"status":"paid","country":"DE"}' \
    'o-2|{"id":2,"price":1500,"quantity":1,"status":"new","country":"US"}' \
    'o-3|not JSON' \
    'o-4|{"id":4,"price":5,"quantity":2,"status":"paid","country":"BR"}' \
    'o-5|{"id":5,"price":99,"quantity":20,"status":"paid","country":"FR"}' |
    weir produce --brokers "$BROKER" --topic orders --key-separator '|'
# Enriched records out: each json-enrich twin (Rust, Python, JavaScript)
# found in the modules folder writes one per valid order.
enrichers=$(find "$WEIR_MODULES_DIR" -maxdepth 1 -name '*json-enrich.wasm' | wc -l)
((enrichers > 0)) || die "no json-enrich module in $WEIR_MODULES_DIR"
want=$((4 * enrichers))
out=$(weir consume --brokers "$BROKER" --topic orders-enriched --count "$want" --idle 60s)
got=$(grep -c '"region"' <<<"$out" || true)
echo "$out" | head -n 4
((got == want)) || die "orders-enriched: $got records with a region, expected $want"
paid=$(weir consume --brokers "$BROKER" --topic orders-paid --count 3 --idle 30s | grep -c paid || true)
((paid == 3)) || die "orders-paid: $paid records, expected 3"
FLOW_S=$((SECONDS - t))
log "orders in, $got enriched + $paid paid records out in $FLOW_S s"

# Prometheus scrapes weir: up == 1 through its HTTP API.
prom="http://127.0.0.1:$PROMETHEUS_PORT"
up=""
for _ in $(seq 60); do
    up=$(curl -fsS "$prom/api/v1/query" --data-urlencode 'query=up{job="weir"}' 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' || true)
    [[ "$up" == 1 ]] && break
    sleep 1
done
[[ "$up" == 1 ]] || die "Prometheus: up{job=\"weir\"} is '$up', expected 1"
log "Prometheus target up == 1"

# Hot reload through the bind mount: a changed manifest (written aside,
# renamed into place) is reloaded in place; weir_module_reloads_total counts it.
t=$SECONDS
cp "$WEIR_MODULES_DIR/filter.toml" "$WEIR_MODULES_DIR/.filter.toml.tmp"
printf '\n# changed by compose-smoke.sh\n' >>"$WEIR_MODULES_DIR/.filter.toml.tmp"
mv "$WEIR_MODULES_DIR/.filter.toml.tmp" "$WEIR_MODULES_DIR/filter.toml"
reload='weir_module_reloads_total{module="filter",result="ok"} 1'
for _ in $(seq 60); do
    curl -fsS "127.0.0.1:$WEIR_HTTP_PORT/metrics" | grep -qF "$reload" && break
    sleep 0.5
done
curl -fsS "127.0.0.1:$WEIR_HTTP_PORT/metrics" | grep -qF "$reload" ||
    die "no '$reload' on /metrics 30 s after changing filter.toml"
log "filter.toml changed -> reloaded in $((SECONDS - t)) s"

# weir_consumer_lag comes from librdkafka's statistics (every 5 s), for
# partitions with a committed offset: wait for its first series.
for _ in $(seq 30); do
    curl -fsS "127.0.0.1:$WEIR_HTTP_PORT/metrics" | grep -q '^weir_consumer_lag{' && break
    sleep 1
done

# The dashboard's metric names against this scrape, its queries against
# this Prometheus.
scripts/check-dashboard.py deploy/grafana/weir-dashboard.json \
    "http://127.0.0.1:$WEIR_HTTP_PORT/metrics" "$prom"

cid=$("${COMPOSE[@]}" ps -q weir)
log "weir's container memory now: $(docker stats --no-stream --format '{{.MemUsage}}' "$cid")"

# SIGTERM drains: weir exits 0 after "shutdown complete".
t=$SECONDS
"${COMPOSE[@]}" stop weir >/dev/null 2>&1
code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
docker logs "$cid" 2>&1 | grep -q 'shutdown complete' || die "weir's log has no 'shutdown complete'"
((code == 0)) || die "weir exited $code after SIGTERM"
log "weir stopped (SIGTERM) in $((SECONDS - t)) s, exit code 0"

log "PASS: images ${IMAGES_S} s, up+ready ${UP_S} s, orders round trip ${FLOW_S} s, total $((SECONDS - T0)) s"
