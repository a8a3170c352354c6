#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io,
# docker-compose (v1, the Compose file runner bookworm ships; Debian has no
# `docker compose` plugin) and busybox-static (the shell of the images built
# for CI) when missing, then starts dockerd in the background if `docker
# info` fails, and waits for it. dockerd's log: /tmp/weir-dockerd.log.
set -euo pipefail

log() { printf '[docker-engine.sh] %s\n' "$*" >&2; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
{ [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static) # static: ldd fails
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    SUDO=()
    [[ $(id -u) == 0 ]] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -q >&2
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi
log "starting dockerd (log: /tmp/weir-dockerd.log)"
SUDO=()
[[ $(id -u) == 0 ]] || SUDO=(sudo)
# setsid: the engine outlives this script and the caller's Ctrl-C.
"${SUDO[@]}" setsid dockerd >/tmp/weir-dockerd.log 2>&1 </dev/null &
for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && { log "dockerd is up"; exit 0; }
    sleep 0.5
done
tail -n 30 /tmp/weir-dockerd.log >&2
log "dockerd did not answer within 60 s"
exit 1
