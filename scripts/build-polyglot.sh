#!/usr/bin/env bash
# Builds the Python and JavaScript example consumers in guest-examples/ as
# WebAssembly components, next to the Rust ones (same layout):
#
#   <out>/<name>.wasm   the component (name = the example's directory name)
#   <out>/<name>.toml   its manifest, copied from <example>/manifest.toml
#
# An example is Python when its directory holds app.py (built with
# componentize-py, helper sdk/python/weir_sdk), JavaScript when it holds
# app.js (built with ComponentizeJS, helper sdk/js/weir.js copied next to it).
# It is built for world `consumer` when the app defines the per-event export
# (`Handler` in Python, `export const handler` in JavaScript) and for world
# `batch-consumer` when it defines the batch one (`BatchHandler`,
# `export const batchHandler`); an app defining both gives two components,
# <name>.wasm and <name>-batch.wasm, with the same manifest; the -batch twin
# goes to OUT_DIR-batch (e.g. target/modules-batch), out of the folder weir
# dev loads.
#
# The tools are pinned and installed on first use, inside the repository:
#   componentize-py  sdk/python/requirements-build.txt -> <repo>/.venv
#   componentize-js  sdk/js/package-lock.json (npm ci)  -> sdk/js/node_modules
# Needs python3 (3.10+, with venv) and node (18+) with npm; WEIR_NO_INSTALL=1
# refuses to install and fails if a tool is missing.
#
# Usage: scripts/build-polyglot.sh [OUT_DIR [SOURCES]]
#   OUT_DIR  default <repo>/target/modules
#   SOURCES  the folder whose <name>/app.py and <name>/app.js are built,
#            default <repo>/guest-examples (build-guests.sh also passes
#            tests/guests, for the Python and JavaScript test fixtures)
# Idempotent: a component is rebuilt only when its sources, the helper, the
# WIT or the tool changed, and installed by rename (see build-guests.sh).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/target/modules}"
sources="$(cd "${2:-$repo/guest-examples}" && pwd)"
work="$repo/target/polyglot"
venv="$repo/.venv"
py_req="$repo/sdk/python/requirements-build.txt"
js_sdk="$repo/sdk/js"
wit="$repo/wit"

die() {
    echo "error: $*" >&2
    exit 1
}

# ensure_componentize_py: .venv/bin/componentize-py at the pinned version.
ensure_componentize_py() {
    local want
    want="$(sed -n 's/^componentize-py==//p' "$py_req")"
    if [[ -x "$venv/bin/componentize-py" ]] &&
        [[ "$("$venv/bin/componentize-py" --version 2>/dev/null)" == "componentize-py $want" ]]; then
        return 0
    fi
    [[ "${WEIR_NO_INSTALL:-0}" != 1 ]] ||
        die "componentize-py $want is not installed in $venv (WEIR_NO_INSTALL=1). Install it with:
    python3 -m venv $venv && $venv/bin/pip install -r $py_req"
    command -v python3 >/dev/null ||
        die "python3 is needed to build Python consumers (componentize-py). Install Python 3.10+ with venv
    (Debian/Ubuntu: apt-get install python3 python3-venv), then run this script again."
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "componentize-py needs Python 3.10 or newer; python3 is $(python3 --version 2>&1)"
    echo "installing componentize-py $want into $venv" >&2
    if [[ ! -x "$venv/bin/pip" ]]; then
        python3 -m venv "$venv" ||
            die "python3 -m venv failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv)"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$py_req" ||
        die "pip could not install componentize-py $want from PyPI (see above)"
}

# ensure_componentize_js: sdk/js/node_modules from the committed lock file.
ensure_componentize_js() {
    local bin="$js_sdk/node_modules/.bin/componentize-js"
    local stamp="$js_sdk/node_modules/.weir-lock"
    if [[ -x "$bin" ]] && cmp -s "$js_sdk/package-lock.json" "$stamp"; then
        return 0
    fi
    [[ "${WEIR_NO_INSTALL:-0}" != 1 ]] ||
        die "ComponentizeJS is not installed in $js_sdk/node_modules (WEIR_NO_INSTALL=1). Install it with:
    npm ci --prefix $js_sdk"
    command -v node >/dev/null && command -v npm >/dev/null ||
        die "node and npm are needed to build JavaScript consumers (ComponentizeJS). Install Node.js 18+
    (Debian/Ubuntu: apt-get install nodejs npm), then run this script again."
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 18 ? 1 : 0)' ||
        die "ComponentizeJS needs Node.js 18 or newer; node is $(node --version)"
    echo "installing ComponentizeJS from $js_sdk/package-lock.json (npm ci)" >&2
    (cd "$js_sdk" && npm ci --no-audit --no-fund --loglevel=error) ||
        die "npm ci in $js_sdk failed (see above)"
    cp "$js_sdk/package-lock.json" "$stamp"
}

# install_file SRC DEST: copies SRC over DEST by rename unless identical.
install_file() {
    local src="$1" dest="$2"
    cmp -s "$src" "$dest" && return 0
    local tmp
    tmp="$(dirname "$dest")/.$(basename "$dest").tmp.$$"
    cp "$src" "$tmp"
    mv -f "$tmp" "$dest"
    echo "updated $dest"
}

# fingerprint FILES...: one hash of the inputs of a build.
fingerprint() {
    cat "$@" | sha256sum | cut -d' ' -f1
}

mkdir -p "$out" "$work"
out="$(cd "$out" && pwd)"
shopt -s nullglob
python_examples=("$sources"/*/app.py)
js_examples=("$sources"/*/app.js)

# exports APP WORLD: whether the app module defines the export of WORLD,
# by the name componentize-py / ComponentizeJS look it up under.
exports() {
    local app="$1" world="$2"
    case "$app:$world" in
        *.py:consumer) grep -Eq '^(Handler[[:space:]]*=|class Handler\b)' "$app" ;;
        *.py:batch-consumer) grep -Eq '^(BatchHandler[[:space:]]*=|class BatchHandler\b)' "$app" ;;
        *.js:consumer) grep -Eq '^export (const|let|var|function) handler\b' "$app" ;;
        *.js:batch-consumer) grep -Eq '^export (const|let|var|function) batchHandler\b' "$app" ;;
        *) return 1 ;;
    esac
}

# build_python DIR NAME WORLD: $work/NAME.wasm from DIR/app.py, unless current.
build_python() {
    local dir="$1" name="$2" world="$3" wasm="$work/$2.wasm" sum
    sum="$(fingerprint "$dir"/*.py "$repo"/sdk/python/weir_sdk/*.py "$wit"/*.wit "$py_req" <(echo "$world"))"
    [[ -f "$wasm" && "$(cat "$wasm.sum" 2>/dev/null)" == "$sum" ]] && return 0
    echo "building $name (componentize-py, world $world)" >&2
    (cd "$dir" && "$venv/bin/componentize-py" -d "$wit" -w "$world" componentize \
        -p "$dir" -p "$repo/sdk/python" app -o "$wasm.tmp" >/dev/null) ||
        { echo "error: $name: componentize-py failed (see above)" >&2; return 1; }
    mv -f "$wasm.tmp" "$wasm"
    # By rename: a target/ copied with hard links must not write through.
    echo "$sum" >"$wasm.sum.tmp" && mv -f "$wasm.sum.tmp" "$wasm.sum"
}

# build_js DIR NAME WORLD: $work/NAME.wasm from DIR/app.js, unless current.
build_js() {
    local dir="$1" name="$2" world="$3" wasm="$work/$2.wasm" sum stage
    sum="$(fingerprint "$dir"/*.js "$js_sdk/weir.js" "$wit"/*.wit "$js_sdk/package-lock.json" <(echo "$world"))"
    [[ -f "$wasm" && "$(cat "$wasm.sum" 2>/dev/null)" == "$sum" ]] && return 0
    echo "building $name (ComponentizeJS, world $world)" >&2
    # ComponentizeJS resolves imports inside the source's directory only:
    # stage the example with the helper beside it.
    stage="$work/$name.src"
    rm -rf "$stage" && mkdir -p "$stage"
    cp "$dir"/*.js "$js_sdk/weir.js" "$stage/"
    "$js_sdk/node_modules/.bin/componentize-js" "$stage/app.js" --wit "$wit" -n "$world" \
        -d http fetch-event -o "$wasm.tmp" >/dev/null ||
        { echo "error: $name: componentize-js failed (see above)" >&2; return 1; }
    mv -f "$wasm.tmp" "$wasm"
    # By rename: a target/ copied with hard links must not write through.
    echo "$sum" >"$wasm.sum.tmp" && mv -f "$wasm.sum.tmp" "$wasm.sum"
}

status=0
printf '%-26s %10s  %s\n' module bytes path
for app in "${python_examples[@]}" "${js_examples[@]}"; do
    case "$app" in
        *.py) ensure_componentize_py; lang=python ;;
        *) ensure_componentize_js; lang=js ;;
    esac
    dir="$(dirname "$app")"
    name="$(basename "$dir")"
    [[ -f "$dir/manifest.toml" ]] || { echo "error: $name: $dir/manifest.toml is missing" >&2; status=1; continue; }
    built=0
    for world in consumer batch-consumer; do
        exports "$app" "$world" || continue
        module="$name"
        # The batch build of an app that has both exports is the -batch twin.
        if [[ "$world" == batch-consumer ]] && exports "$app" consumer; then
            module="$name-batch"
        fi
        built=1
        "build_$lang" "$dir" "$module" "$world" || { status=1; continue; }
        # A -batch twin goes to <out>-batch: a folder weir loads (the demo's)
        # must not run both twins, which write the same topics.
        dest="$out"
        if [[ "$module" != "$name" ]]; then
            dest="$out-batch"
            mkdir -p "$dest"
            rm -f "$out/$module.wasm" "$out/$module.toml"
        fi
        install_file "$dir/manifest.toml" "$dest/$module.toml"
        install_file "$work/$module.wasm" "$dest/$module.wasm"
        printf '%-26s %10d  %s\n' "$module" "$(stat -c %s "$dest/$module.wasm")" "$dest/$module.wasm"
    done
    if [[ "$built" == 0 ]]; then
        echo "error: $name: $app defines no export (Handler or BatchHandler in Python, export const handler or batchHandler in JavaScript)" >&2
        status=1
    fi
done
exit "$status"
