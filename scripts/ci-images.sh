#!/usr/bin/env bash
# Builds the images deploy/compose.ci.yml swaps in, offline: no registry is
# reachable in CI.
#   weir-ci-kafka:local       Kafka 4.x from scripts/kafka.sh's Maven jars, on
#                             the host's Java runtime (deploy/ci/kafka.Dockerfile)
#   weir-ci-prometheus:local  Debian's prometheus binary (deploy/ci/prometheus.Dockerfile)
# Both FROM scratch plus the shared libraries `ldd` names for their binaries.
# Needs a running engine (scripts/docker-engine.sh), java and prometheus.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CTX="$REPO/target/ci-images"
T0=$SECONDS
log() { printf '[ci-images.sh +%ds] %s\n' $((SECONDS - T0)) "$*" >&2; }

# copy_libs ROOT FILE...: the libraries ldd resolves for each FILE (and the
# loader), at the same paths under ROOT.
copy_libs() {
    local root="$1" lib
    shift
    # "name => /path (addr)" lines, and the loader's "/path (addr)" line;
    # "not found" ones (X11 for AWT, unused headless) are skipped.
    for lib in $(ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }
            $1 ~ /^\/.*\.so/ && $1 !~ /:$/ { print $1 }' | sort -u); do
        [[ -e "$root$lib" ]] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

# --- Kafka ---
# The jars: scripts/kafka.sh fetches them once (its `run` prints a uuid).
scripts/kafka.sh run kafka.tools.StorageTool random-uuid >/dev/null
LIB="$(realpath -m "${WEIR_KAFKA_LIB:-${WEIR_KAFKA_HOME:-$REPO/.kafka}/lib}")"
JAVA_BIN="$(readlink -f "$(command -v java)")"
JHOME="$(dirname "$(dirname "$JAVA_BIN")")"
k="$CTX/kafka"
rm -rf "$k"
mkdir -p "$k/rootfs/bin" "$k/rootfs/opt/java/bin" "$k/rootfs/opt/kafka/bin" \
    "$k/rootfs/opt/kafka/libs" "$k/rootfs/tmp" "$k/varlib/kafka/data"
chmod 1777 "$k/rootfs/tmp"
# The runtime part of the JDK (symlinks resolved: Debian points conf/ and
# the cacerts into /etc; dangling ones such as src.zip are skipped), not
# its jmods, headers or ct.sym.
cp -L "$JHOME/bin/java" "$k/rootfs/opt/java/bin/"
(cd "$JHOME" && find -L conf lib -type f ! -name ct.sym -print0 |
    xargs -0 cp -L --parents -t "$k/rootfs/opt/java/")
copy_libs "$k/rootfs" "$k/rootfs/opt/java/bin/java" $(find "$k/rootfs/opt/java/lib" -name '*.so')
cp /bin/busybox "$k/rootfs/bin/busybox"
cp "$LIB"/*.jar "$k/rootfs/opt/kafka/libs/"
mkdir -p "$k/rootfs/opt/kafka/config" "$k/rootfs/etc/kafka/docker"
cp scripts/kafka/log4j2.properties "$k/rootfs/opt/kafka/config/"
cp deploy/ci/kafka-run "$k/rootfs/etc/kafka/docker/run"
cp deploy/ci/kafka-topics.sh "$k/rootfs/opt/kafka/bin/kafka-topics.sh"
printf 'root:x:0:0::/:/bin/sh\nappuser:x:1000:1000::/var/lib/kafka:/bin/sh\n' >"$k/rootfs/etc/passwd"
# server.properties is written at start by the (non-root) broker user.
chmod 777 "$k/rootfs/opt/kafka/config"
cp deploy/ci/kafka.Dockerfile "$k/Dockerfile"
log "docker build weir-ci-kafka:local (context $(du -sh "$k" | cut -f1))"
DOCKER_BUILDKIT=0 docker build -q -t weir-ci-kafka:local "$k" >/dev/null

# --- Prometheus ---
p="$CTX/prometheus"
rm -rf "$p"
mkdir -p "$p/rootfs/bin" "$p/rootfs/etc/prometheus" "$p/data"
cp -L "$(command -v prometheus)" "$p/rootfs/bin/prometheus"
copy_libs "$p/rootfs" "$p/rootfs/bin/prometheus"
cp deploy/prometheus.yml "$p/rootfs/etc/prometheus/prometheus.yml"
cp deploy/ci/prometheus.Dockerfile "$p/Dockerfile"
log "docker build weir-ci-prometheus:local"
DOCKER_BUILDKIT=0 docker build -q -t weir-ci-prometheus:local "$p" >/dev/null
log "done: $(docker image inspect -f '{{.Size}}' weir-ci-kafka:local) and $(docker image inspect -f '{{.Size}}' weir-ci-prometheus:local) bytes"
