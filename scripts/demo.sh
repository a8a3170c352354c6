#!/usr/bin/env bash
# The main job on the embedded broker: builds the example guests and weir,
# starts `weir dev` (an in-memory Kafka plus the example modules: json-enrich
# in Rust, Python and JavaScript, filter, router),
# pushes sample orders and prints what each output topic received.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-guests.sh >&2
cargo build -p weir >&2
weir=target/debug/weir

work=$(mktemp -d)
"$weir" dev --modules target/modules --bootstrap-file "$work/bootstrap" 2>"$work/weir.log" &
pid=$!
stop() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "weir log: $work/weir.log" >&2
}
trap stop EXIT

for _ in $(seq 300); do
  [[ -s "$work/bootstrap" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/weir.log" >&2; exit 1; }
  sleep 0.1
done
brokers=$(cat "$work/bootstrap")
echo "embedded Kafka (in memory only) at $brokers; modules from target/modules"

orders='o-1|{"id":1,"price":10,"quantity":3,"status":"paid","country":"DE"}
o-2|{"id":2,"price":1500,"quantity":1,"status":"new","country":"US"}
o-3|this is not JSON: every module dead-letters it and moves on
o-4|{"id":4,"price":5,"quantity":2,"status":"paid","country":"BR"}
o-5|{"id":5,"price":99,"quantity":20,"status":"paid","country":"FR"}'
echo "--- producing to 'orders' (key|value):"
echo "$orders"
echo "$orders" | "$weir" produce --brokers "$brokers" --topic orders --key-separator '|' 2>/dev/null

# partition offset key value [headers]
echo "--- orders-enriched (json-enrich in Rust, Python and JavaScript: each adds region and total, 3 x 4 records):"
"$weir" consume --brokers "$brokers" --topic orders-enriched --count 12 --idle 60s 2>/dev/null
echo "--- orders-paid (filter keeps status == paid):"
"$weir" consume --brokers "$brokers" --topic orders-paid --count 3 --idle 30s 2>/dev/null
# topic:records expected (the router loads last: the Python and JavaScript
# components take several seconds each to compile)
for tc in orders-eu:2 orders-us:1 orders-other:1 orders-audit:1; do
  echo "--- ${tc%%:*} (router, a batch consumer):"
  "$weir" consume --brokers "$brokers" --topic "${tc%%:*}" --count "${tc##*:}" --idle 60s 2>/dev/null
done
echo "--- weir-dlq-json-enrich (the dead letter of the event json-enrich rejected; headers say why):"
"$weir" consume --brokers "$brokers" --topic weir-dlq-json-enrich --count 1 --idle 30s 2>/dev/null
