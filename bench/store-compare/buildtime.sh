#!/usr/bin/env bash
# Clean release build time of each engine alone: a throwaway crate whose only dependency is
# the engine (default features), its own empty target dir, timed by /usr/bin/time -v.
# Usage: bench/store-compare/buildtime.sh [fjall|redb|rocksdb ...]   (default: all three)
# Run it on an otherwise idle machine; it uses `nice -n 19` and cargo's default -j.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${BUILDTIME_DIR:-$(mktemp -d /tmp/store-buildtime.XXXXXX)}"
engines=("$@")
[ ${#engines[@]} -eq 0 ] && engines=(fjall redb rocksdb)
declare -A dep=([fjall]='fjall = "=3.1.13"' [redb]='redb = "=5.0.0"' [rocksdb]='rocksdb = "=0.25.0"')
for e in "${engines[@]}"; do
  d="$work/only-$e"
  rm -rf "$d" && mkdir -p "$d/src"
  printf '[package]\nname = "only-%s"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n[workspace]\n\n[dependencies]\n%s\n' "$e" "${dep[$e]}" > "$d/Cargo.toml"
  echo 'fn main() {}' > "$d/src/main.rs"
  # Download and resolve first, so the timed build compiles only.
  (cd "$d" && cargo fetch -q)
  echo "== $e: $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd "$d" && nice -n 19 /usr/bin/time -v -o "$d/time.txt" \
      cargo build --release --target-dir "$d/target" > "$d/build.log" 2>&1) && st=ok || st="FAILED (see $d/build.log)"
  wall=$(grep 'Elapsed (wall clock)' "$d/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$d/time.txt" | awk '{print $NF}')
  user=$(grep 'User time' "$d/time.txt" | awk '{print $NF}')
  crates=$(grep -c '^ *Compiling' "$d/build.log" || true)
  tsize=$(du -sm "$d/target" | cut -f1)
  echo "== $e: $st wall=$wall user_s=$user max_rss_kb=$rss crates_compiled=$crates target_dir_mib=$tsize load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  [ "$st" = ok ] || tail -n 30 "$d/build.log"
done
echo "(work dir: $work)"
