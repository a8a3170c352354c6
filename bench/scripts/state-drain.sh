#!/bin/bash
# A rough drain of a stateful module on Kafka (docs/BENCHMARKS.md, "State
# stores"): starts weir with $CONFIG (default weir.toml) whose module reads
# topic dclicks2 (200,000 prefilled keyed events), waits until its group has
# committed offset 200000 there, and prints the wall time (start-up
# included) and the process's CPU time. Usage: CONFIG=x.toml state-drain.sh LABEL
# The weir binary: $WEIR (default target/release/weir).
start=$(date +%s.%N)
${WEIR:-target/release/weir} run --config ${CONFIG:-weir.toml} > "run-$1.log" 2>&1 &
pid=$!
while true; do
  c=$(curl -s 127.0.0.1:19466/metrics | awk '/^weir_committed_offset\{.*dclicks2/ {print $2}')
  if [ "${c:-0}" = "200000" ]; then break; fi
  sleep 0.2
done
end=$(date +%s.%N)
cpu=$(awk '{print ($14+$15)/100}' /proc/$pid/stat)
kill -TERM $pid; wait $pid
python3 -c "d=$end-$start; print(f'$1: 200000 events in {d:.2f} s = {200000/d:.0f} ev/s (incl. start-up), cpu {float(\"$cpu\"):.1f} s')"
