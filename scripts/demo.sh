#!/usr/bin/env bash
# The main job on the embedded broker: builds the example guests and weir,
# starts `weir dev` (an in-memory Kafka plus the example modules: json-enrich
# in Rust, Python and JavaScript, filter, router, and the stateful dedupe,
# count-by-key and enrich-join),
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

# Stateful modules: each keeps a store per input partition, backed by a
# compacted changelog topic (weir-state-<module>).
echo "--- producing to 'clicks' (key|value) for count-by-key:"
clicks='alice|/home
bob|/home
alice|/cart
alice|/pay'
echo "$clicks"
echo "$clicks" | "$weir" produce --brokers "$brokers" --topic clicks --key-separator '|' 2>/dev/null
echo "--- click-counts (count-by-key: the running count per key, kept in state):"
"$weir" consume --brokers "$brokers" --topic click-counts --count 4 --idle 30s 2>/dev/null
echo "--- producing to 'events' (the key is the event id; e-1 arrives twice) for dedupe:"
events='e-1|first
e-2|second
e-1|first again'
echo "$events"
echo "$events" | "$weir" produce --brokers "$brokers" --topic events --key-separator '|' 2>/dev/null
echo "--- events-deduped (dedupe: an id seen within its ttl is dropped):"
"$weir" consume --brokers "$brokers" --topic events-deduped --count 2 --idle 30s 2>/dev/null
echo "--- producing a customer, then orders keyed by customer id, for enrich-join:"
echo 'c-7|{"name":"Ada","tier":"gold"}' | "$weir" produce --brokers "$brokers" --topic customers --key-separator '|' 2>/dev/null
sleep 1
printf 'c-7|{"order":1,"total":30}\nc-9|{"order":2,"total":5}\n' \
  | "$weir" produce --brokers "$brokers" --topic customer-orders --key-separator '|' 2>/dev/null
echo "--- orders-with-customer (enrich-join: c-7 is known, c-9 is not):"
"$weir" consume --brokers "$brokers" --topic orders-with-customer --count 2 --idle 30s 2>/dev/null
