#!/usr/bin/env bash
# Builds weir's container image offline: no base image is pulled. The image
# is FROM scratch (deploy/Dockerfile) with the weir binary, exactly the
# shared libraries `ldd` names for it, the CA bundle and deploy/weir.toml.
# Also builds the example-modules image that Kubernetes' init container
# copies into the pod (busybox-static + the modules of target/modules).
#
# Usage: scripts/image.sh
# Environment:
#   WEIR_BIN         weir binary to package (default: build it with
#                    `cargo build --release -p weir` into CARGO_TARGET_DIR)
#   WEIR_IMAGE       image name (default weir:local)
#   WEIR_MODULES_IMAGE  example-modules image (default weir-example-modules:local)
#   WEIR_MODULES_DIR    modules folder for it (default target/modules;
#                    built by scripts/build-guests.sh if missing)
# Installs docker.io from Debian and starts dockerd when no engine answers.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
IMAGE="${WEIR_IMAGE:-weir:local}"
MODULES_IMAGE="${WEIR_MODULES_IMAGE:-weir-example-modules:local}"
MODULES_DIR="${WEIR_MODULES_DIR:-$REPO/target/modules}"
CTX="$REPO/target/image"
T0=$SECONDS

log() { printf '[image.sh +%ds] %s\n' $((SECONDS - T0)) "$*" >&2; }

"$REPO/scripts/docker-engine.sh"

# 1. The binary: given, or a release build.
if [[ -n "${WEIR_BIN:-}" ]]; then
    BIN="$(realpath "$WEIR_BIN")"
else
    log "cargo build --release -p weir"
    cargo build --release -p weir
    BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/weir"
fi
[[ -x "$BIN" ]] || { log "no weir binary at $BIN"; exit 1; }

# 2. The build context: rootfs/ (copied to /) and varlib/ (owned by weir).
rm -rf "$CTX"
mkdir -p "$CTX/rootfs/usr/local/bin" "$CTX/rootfs/etc/weir" "$CTX/rootfs/etc/ssl/certs" \
    "$CTX/rootfs/tmp" "$CTX/rootfs/modules" "$CTX/varlib/weir"
chmod 1777 "$CTX/rootfs/tmp"
# Debug info is dropped (symbols stay, for readable backtraces).
strip --strip-debug -o "$CTX/rootfs/usr/local/bin/weir" "$BIN"
# Every library ldd resolves, at the path the loader looks for it, plus the
# loader itself (the binary's interpreter, /lib64/ld-linux-x86-64.so.2).
while read -r lib; do
    mkdir -p "$CTX/rootfs$(dirname "$lib")"
    cp -L "$lib" "$CTX/rootfs$lib"
done < <(ldd "$BIN" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
cp -L /etc/ssl/certs/ca-certificates.crt "$CTX/rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/nonexistent\nweir:x:10001:10001:weir:/var/lib/weir:/nonexistent\n' \
    >"$CTX/rootfs/etc/passwd"
printf 'root:x:0:\nweir:x:10001:\n' >"$CTX/rootfs/etc/group"
cp deploy/weir.toml "$CTX/rootfs/etc/weir/weir.toml"
cp deploy/Dockerfile "$CTX/Dockerfile"

log "docker build -t $IMAGE (context $(du -sh "$CTX" | cut -f1))"
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$CTX" >/dev/null
log "built $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE") bytes"

# 3. The example-modules image, for the Kubernetes init container.
if ! compgen -G "$MODULES_DIR/*.wasm" >/dev/null; then
    log "no modules in $MODULES_DIR: scripts/build-guests.sh"
    scripts/build-guests.sh "$MODULES_DIR" >&2
fi
mkdir -p "$CTX/modules/examples"
cp /bin/busybox "$CTX/modules/busybox"
cp "$MODULES_DIR"/*.wasm "$MODULES_DIR"/*.toml "$CTX/modules/examples/"
cp deploy/modules.Dockerfile "$CTX/modules/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$MODULES_IMAGE" "$CTX/modules" >/dev/null
log "built $MODULES_IMAGE: $(docker image inspect -f '{{.Size}}' "$MODULES_IMAGE") bytes"
log "done in $((SECONDS - T0)) s"
