#!/usr/bin/env bash
# weir's whole test suite, on a fresh machine or a developer's:
#   1. the wasm32-wasip2 Rust target (installed if missing),
#   2. the Wasm guest components (scripts/build-guests.sh),
#   3. a real Kafka broker (scripts/kafka.sh) unless WEIR_TEST_BROKERS is set,
#   4. the workspace binaries (the integration tests run target/<profile>/weir,
#      which `cargo test` alone does not build: it builds bins only as tests),
#   5. cargo test with WEIR_TEST_BROKERS=<bootstrap address>.
# Exits with cargo test's status; stops the broker it started on the way out.
#
# Usage: scripts/test.sh [cargo test args...]
#   With no arguments it runs CARGO_TEST_ARGS below; any arguments replace
#   them, e.g. scripts/test.sh -p weir-tests --release -- --test-threads=1
# Environment:
#   WEIR_TEST_BROKERS  use this broker (bootstrap list) instead of starting one
#   WEIR_SKIP_GUESTS=1 skip step 2 (guests already built)
#   WEIR_KAFKA_HOME, WEIR_KAFKA_PORT  passed on to scripts/kafka.sh
set -euo pipefail

# Tune here: what `cargo test` runs. The dev profile optimises dependencies
# (see Cargo.toml), so no --release is needed; two test threads for a
# 2-core machine that also runs the broker; --no-fail-fast so a unit-test
# failure does not hide the integration results.
CARGO_TEST_ARGS=(--workspace --no-fail-fast -- --test-threads=2)

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [[ $# -gt 0 ]]; then
    CARGO_TEST_ARGS=("$@")
fi
# Build the binaries in the profile the tests use (--release or not).
CARGO_BUILD_ARGS=(--workspace --bins)
for a in "${CARGO_TEST_ARGS[@]}"; do
    [[ "$a" == -- ]] && break
    [[ "$a" == --release || "$a" == -r ]] && CARGO_BUILD_ARGS+=(--release)
done

T0=$SECONDS
STARTED_BROKER=0

step() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# shellcheck disable=SC2329 # invoked by the EXIT trap
on_exit() {
    local rc=$?
    if [[ $STARTED_BROKER == 1 ]]; then
        step "stopping the broker this script started"
        scripts/kafka.sh stop || true
    fi
    local t=$((SECONDS - T0))
    printf '\ntest.sh: exit %d, wall time %dm%02ds\n' "$rc" $((t / 60)) $((t % 60)) >&2
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "prometheus + promtool (the metrics tests run both)"
if ! { command -v promtool && command -v prometheus; } >/dev/null; then
    SUDO=()
    [[ $(id -u) == 0 ]] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
fi

step "docker-registry (the OCI module tests push to and pull from it)"
if ! command -v docker-registry >/dev/null; then
    SUDO=()
    [[ $(id -u) == 0 ]] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry
fi

step "rust target wasm32-wasip2"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

if [[ "${WEIR_SKIP_GUESTS:-0}" == 1 ]]; then
    step "guests: skipped (WEIR_SKIP_GUESTS=1)"
else
    step "building guests (scripts/build-guests.sh)"
    [[ -x scripts/build-guests.sh ]] || { echo "scripts/build-guests.sh is missing or not executable" >&2; exit 1; }
    scripts/build-guests.sh
fi

if [[ -n "${WEIR_TEST_BROKERS:-}" ]]; then
    step "using the broker(s) in WEIR_TEST_BROKERS=$WEIR_TEST_BROKERS"
elif scripts/kafka.sh status >/dev/null 2>&1; then
    # A broker the developer started: use it, leave it running.
    WEIR_TEST_BROKERS="$(scripts/kafka.sh status 2>/dev/null | tail -n 1)"
    step "using the already running broker at $WEIR_TEST_BROKERS (left running)"
else
    step "starting a fresh Kafka broker (scripts/kafka.sh)"
    STARTED_BROKER=1
    scripts/kafka.sh wipe >/dev/null 2>&1 || true # a fresh cluster per run
    WEIR_TEST_BROKERS="$(scripts/kafka.sh start)"
fi
export WEIR_TEST_BROKERS

step "cargo build ${CARGO_BUILD_ARGS[*]}"
cargo build "${CARGO_BUILD_ARGS[@]}"

rc=0
if [[ $# -eq 0 ]]; then
    # The example guests' own unit tests run natively, on the host target.
    host="$(rustc -vV | sed -n 's/^host: //p')"
    step "guest-examples unit tests (native, $host)"
    cargo test --manifest-path guest-examples/Cargo.toml --target "$host" || rc=$?
fi

step "cargo test ${CARGO_TEST_ARGS[*]} (WEIR_TEST_BROKERS=$WEIR_TEST_BROKERS)"
cargo test "${CARGO_TEST_ARGS[@]}" || rc=$?
[[ $# -gt 0 ]] || { step "benchmark smoke (weir-bench --smoke: embedded broker, fails only on missing outputs)"; cargo run -q -p weir-bench -- --smoke || rc=$?; }
exit "$rc"
