#!/usr/bin/env bash
# Runs weir's cargo-fuzz targets (fuzz/, see docs/FUZZING.md) on the nightly
# toolchain, installing nightly (through rustup) and cargo-fuzz if missing.
#
# Usage:
#   scripts/fuzz.sh                       lists the targets
#   scripts/fuzz.sh <target> [SECONDS]    fuzzes one target (default 600 s),
#                                         adding new inputs to fuzz/corpus/<target>
#   scripts/fuzz.sh <target> FILE...      runs the target once on each FILE
#                                         (reproduces a crash from fuzz/artifacts/)
#   scripts/fuzz.sh cmin <target>         minimizes fuzz/corpus/<target> in place (by
#                                         edge coverage; seed-* and regression-* stay)
#   scripts/fuzz.sh all [SECONDS]         fuzzes every target in turn
#
# Builds without a sanitizer (`-s none`, quicker to build and run): weir is
# safe Rust, so panics, overflow checks and debug assertions (on in cargo
# fuzz builds) are what catch bugs here.
# host_imports needs the fuzz-host guest: scripts/build-guests.sh builds it.
# FUZZ_ARGS adds libFuzzer flags, e.g. FUZZ_ARGS=-max_len=65536.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER="$PWD"
cd "$REPO/fuzz"
TARGETS=(config manifest replay_events component_load host_imports)

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

needs_guest() {
    if [[ "$1" == host_imports && ! -f "$REPO/target/test-guests/fuzz-host.wasm" ]]; then
        WEIR_SKIP_POLYGLOT=1 "$REPO/scripts/build-guests.sh" >/dev/null
    fi
}

# dict TARGET: the libFuzzer dictionary flag of TARGET, if it has one.
dict() {
    case "$1" in
        config | manifest) echo -dict=dicts/toml.dict ;;
        replay_events) echo -dict=dicts/jsonl.dict ;;
    esac
}

# fuzz TARGET SECONDS: one run, libFuzzer's final stats included.
fuzz() {
    needs_guest "$1"
    mkdir -p "corpus/$1"
    # shellcheck disable=SC2046,SC2086 # both expand to lists of flags
    cargo +nightly fuzz run -s none "$1" "corpus/$1" -- $(dict "$1") \
        -max_total_time="$2" -timeout=30 -print_final_stats=1 ${FUZZ_ARGS:-}
}

case "${1:-}" in
    "")
        printf '%s\n' "${TARGETS[@]}"
        ;;
    all)
        for t in "${TARGETS[@]}"; do fuzz "$t" "${2:-600}"; done
        ;;
    cmin)
        target="${2:?usage: scripts/fuzz.sh cmin <target>}"
        needs_guest "$target"
        # Named inputs (seed-*, regression-*) are kept whatever they cover.
        keep="$(mktemp -d)"
        find "corpus/$target" -name 'seed-*' -o -name 'regression-*' | xargs -r cp -t "$keep"
        # Edges only (no hit counters): a small corpus to check in.
        cargo +nightly fuzz cmin -s none "$target" "corpus/$target" -- -use_counters=0
        cp -n "$keep"/* "corpus/$target/" 2>/dev/null || true
        rm -r "$keep"
        ;;
    *)
        target="$1"
        shift
        if [[ $# -eq 0 || "$1" =~ ^[0-9]+$ ]]; then
            fuzz "$target" "${1:-600}"
        else
            needs_guest "$target"
            files=()
            for f in "$@"; do
                files+=("$(cd "$CALLER" && cd "$(dirname "$f")" && pwd)/$(basename "$f")")
            done
            cargo +nightly fuzz run -s none "$target" "${files[@]}"
        fi
        ;;
esac
