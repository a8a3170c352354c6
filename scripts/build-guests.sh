#!/usr/bin/env bash
# Builds the example consumers in guest-examples/ as WebAssembly components
# and assembles a modules folder the weir host can load:
#
#   <out>/<name>.wasm   the component (name = the example's directory name)
#   <out>/<name>.toml   its manifest, copied from <example>/manifest.toml
#
# The Python and JavaScript examples (directories with app.py or app.js
# instead of Cargo.toml) are built by scripts/build-polyglot.sh, called at the
# end with the same OUT_DIR; WEIR_SKIP_POLYGLOT=1 skips them.
#
# Usage: scripts/build-guests.sh [OUT_DIR]     (default: <repo>/target/modules)
#
# Idempotent: cargo rebuilds only what changed, and a file is replaced only
# when its content differs, by writing a hidden temporary file and renaming
# it over the old one, so a host watching OUT_DIR never reads a half-written
# file and does not reload modules that did not change. A manifest is
# installed before its component, so the component never appears without it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
examples="$repo/guest-examples"
out="${1:-$repo/target/modules}"
target=wasm32-wasip2

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
fi

# Run from the examples' workspace so its .cargo/config.toml applies too.
cd "$examples"
cargo build --release --target "$target"

target_dir="${CARGO_TARGET_DIR:-$examples/target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$examples/$target_dir" ;;
esac
artifacts="$target_dir/$target/release"

mkdir -p "$out"
out="$(cd "$out" && pwd)"

# install SRC DEST: copies SRC over DEST unless they are already identical.
install_file() {
    local src="$1" dest="$2"
    if cmp -s "$src" "$dest"; then
        return 0
    fi
    local tmp
    tmp="$(dirname "$dest")/.$(basename "$dest").tmp.$$"
    cp "$src" "$tmp"
    mv -f "$tmp" "$dest"
    echo "updated $dest"
}

# is_component FILE: a component's header is `\0asm` then version 0x0d and
# layer 1 (bytes 0d 00 01 00); a core module has 01 00 00 00 there.
is_component() {
    [[ "$(od -An -tx1 -j4 -N4 "$1" | tr -d ' \n')" == "0d000100" ]]
}

printf '%-16s %10s  %s\n' module bytes path
status=0
for manifest in "$examples"/*/manifest.toml; do
    dir="$(dirname "$manifest")"
    name="$(basename "$dir")"
    [[ -f "$dir/Cargo.toml" ]] || continue # Python/JS: build-polyglot.sh
    wasm="$artifacts/${name//-/_}.wasm"
    if [[ ! -f "$wasm" ]]; then
        echo "error: $name: $wasm was not built (is $dir a cdylib in the workspace?)" >&2
        status=1
        continue
    fi
    if ! is_component "$wasm"; then
        echo "error: $name: $wasm is a core module, not a component" >&2
        status=1
        continue
    fi
    install_file "$manifest" "$out/$name.toml"
    install_file "$wasm" "$out/$name.wasm"
    printf '%-16s %10d  %s\n' "$name" "$(stat -c %s "$out/$name.wasm")" "$out/$name.wasm"
done
# Test fixtures (tests/guests): components only the integration tests use,
# copied to target/test-guests/ (not a modules folder: no manifests).
if [[ -z "${1:-}" ]]; then
    fixtures="$repo/tests/guests"
    (cd "$fixtures" && cargo build --release --target "$target")
    fixture_out="$repo/target/test-guests"
    mkdir -p "$fixture_out"
    for wasm in "$fixtures/target/$target/release/"{echo_v1,echo_v2,wrong-world,misbehave,uses_files,identity,identity_batch,state_probe,fuzz_host}.wasm; do
        if ! is_component "$wasm"; then
            echo "error: test fixture $wasm is not a component" >&2
            status=1
            continue
        fi
        name="$(basename "$wasm" .wasm)"
        install_file "$wasm" "$fixture_out/${name//_/-}.wasm"
    done
fi
if [[ "${WEIR_SKIP_POLYGLOT:-0}" != 1 ]]; then
    "$repo/scripts/build-polyglot.sh" "$out" || status=1
    # The Python and JavaScript test fixtures (tests/guests/*/app.{py,js}).
    if [[ -n "${fixture_out:-}" ]]; then
        "$repo/scripts/build-polyglot.sh" "$fixture_out" "$repo/tests/guests" || status=1
    fi
fi
exit "$status"
