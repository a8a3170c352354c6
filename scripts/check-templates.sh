#!/usr/bin/env bash
# Checks that the Python and JavaScript project templates build out of the
# box, outside the repository: instantiates runtime/templates/<lang>/ as
# `weir new` does (placeholders {{name}} / {{name_snake}} substituted in
# names and contents, the `.weir-embed` files copied verbatim) into a
# temporary directory, then runs exactly the commands each template's
# README documents. Prints the component sizes.
#
# Usage: scripts/check-templates.sh [python] [js]   (default: both)
# WEIR_TEMPLATE_OUT=DIR keeps the built components and manifests there, as
# DIR/<lang>-<name>.wasm and .toml (a modules folder weir can load).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="my-consumer"
name_snake="${name//-/_}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# instantiate LANG DEST
instantiate() {
    local src="$repo/runtime/templates/$1" dest="$2" file rel target
    mkdir -p "$dest"
    while IFS= read -r -d '' file; do
        rel="${file#"$src"/}"
        [[ "$rel" == .weir-embed ]] && continue
        target="$dest/${rel//\{\{name\}\}/$name}"
        target="${target//\{\{name_snake\}\}/$name_snake}"
        mkdir -p "$(dirname "$target")"
        sed -e "s/{{name}}/$name/g" -e "s/{{name_snake}}/$name_snake/g" "$file" >"$target"
    done < <(find "$src" -type f -print0)
    if [[ -f "$src/.weir-embed" ]]; then
        sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$src/.weir-embed" |
            while IFS='=' read -r to from; do
                to="$(echo "$to" | xargs)" from="$(echo "$from" | xargs)"
                mkdir -p "$(dirname "$dest/$to")"
                cp -r "$repo/$from" "$dest/$to"
            done
    fi
}

langs=("$@")
[[ ${#langs[@]} -gt 0 ]] || langs=(python js)
for lang in "${langs[@]}"; do
    dir="$tmp/$lang/$name"
    instantiate "$lang" "$dir"
    echo "== $lang template in $dir" >&2
    case "$lang" in
    python)
        (cd "$dir" &&
            python3 -m venv .venv && .venv/bin/pip install -q -r requirements-build.txt &&
            mkdir -p dist && .venv/bin/componentize-py -d wit -w consumer componentize app -p . -o "dist/$name.wasm" >/dev/null &&
            cp "$name.toml" dist/)
        ;;
    js)
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run -s build >/dev/null &&
            cp "$name.toml" dist/)
        ;;
    *)
        echo "error: no template check for \`$lang\`" >&2
        exit 2
        ;;
    esac
    printf '%-8s %10d  dist/%s.wasm\n' "$lang" "$(stat -c %s "$dir/dist/$name.wasm")" "$name"
    if [[ -n "${WEIR_TEMPLATE_OUT:-}" ]]; then
        mkdir -p "$WEIR_TEMPLATE_OUT"
        cp "$dir/dist/$name.wasm" "$WEIR_TEMPLATE_OUT/$lang-$name.wasm"
        cp "$dir/dist/$name.toml" "$WEIR_TEMPLATE_OUT/$lang-$name.toml"
    fi
done
