#!/usr/bin/env bash
# Build the docker sandbox image (leti-sandbox:latest) from sandbox/Dockerfile.
#
# Idempotent: does nothing when the image exists and was built from the current sandbox/runner
# package, unless --force. The base image is, in order:
#   $LETI_SANDBOX_BASE if set (any image the engine has or can pull);
#   python:3.12-slim if the engine already has it or Docker Hub answers;
#   otherwise (machines with no image registry) a Debian bookworm root filesystem built with
#   debootstrap from this machine's apt mirror and loaded with `docker import`. Its trimmed
#   tarball is cached under ${LETI_CACHE_DIR:-$HOME/.cache/leti}, so later builds take seconds.
# Needs a running engine (scripts/start-docker.sh), Python (.venv, else python3) for the runner's
# digest and, for the Debian base, root and debootstrap.
set -euo pipefail

IMAGE=${LETI_SANDBOX_IMAGE:-leti-sandbox:latest}
DEBIAN_BASE=leti-debian-base:bookworm
SUITE=bookworm
CACHE=${LETI_CACHE_DIR:-$HOME/.cache/leti}
HERE=$(cd "$(dirname "$0")/.." && pwd)
FORCE=0
for arg in "$@"; do
    case $arg in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown argument $arg (usage: $0 [--force])" >&2; exit 2 ;;
    esac
done

if ! docker info >/dev/null 2>&1; then
    echo "the docker engine is not answering: start it with scripts/start-docker.sh" >&2
    exit 1
fi
# The image carries the digest of the runner package it was built from, as the pool computes it
# (runner_digest in sandbox/docker_pool.py, its one definition): a changed sandbox/runner means a
# rebuild (and the pool refuses an image whose digest differs).
RUNNER_LABEL=leti.runner.sha256
PYTHON=$HERE/.venv/bin/python
[ -x "$PYTHON" ] || PYTHON=python3
want=$(cd "$HERE" && "$PYTHON" -c \
    'from sandbox.docker_pool import runner_digest; print(runner_digest())')
have=$(docker image inspect -f "{{ index .Config.Labels \"$RUNNER_LABEL\" }}" "$IMAGE" 2>/dev/null || true)
if [ "$FORCE" = 0 ] && [ "$have" = "$want" ]; then
    echo "$IMAGE already built from this sandbox/runner (use --force to rebuild)"
    exit 0
fi

# The first bookworm mirror in the apt sources (deb822 or one-line style), else deb.debian.org.
apt_mirror() {
    local uri=""
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        uri=$(awk -v suite="$SUITE" '
            /^[ \t]*$/ { if (u != "" && s ~ "(^| )" suite "( |$)" && t ~ /deb( |$)/) { print u; exit } u = s = t = "" }
            /^URIs:/   { u = $2 }
            /^Suites:/ { $1 = ""; s = $0 " " }
            /^Types:/  { $1 = ""; t = $0 " " }
            END        { if (u != "" && s ~ "(^| )" suite "( |$)" && t ~ /deb( |$)/) print u }
        ' "$f" | head -n 1)
        [ -n "$uri" ] && break
    done
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -e 's/\[[^]]*\]//' | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')
    fi
    shopt -u nullglob
    echo "${uri:-http://deb.debian.org/debian}"
}

# A trimmed Debian root filesystem with python3, cached as a tarball, imported as DEBIAN_BASE;
# prints the image name (progress goes to stderr).
debian_base() {
    local arch tarball root mirror
    if [ "$FORCE" = 0 ] && docker image inspect "$DEBIAN_BASE" >/dev/null 2>&1; then
        echo "$DEBIAN_BASE"
        return
    fi
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    tarball="$CACHE/debian-$SUITE-$arch-python3.tar"
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || {
            echo "debootstrap not found: apt-get install -y debootstrap (scripts/install.sh does)" >&2
            exit 1; }
        [ "$(id -u)" -eq 0 ] || { echo "debootstrap needs root: run 'sudo $0'" >&2; exit 1; }
        mirror=$(apt_mirror)
        mkdir -p "$CACHE"
        root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        trap 'rm -rf "$root"' EXIT
        echo "debootstrap $SUITE from $mirror (a few minutes, once)" >&2
        debootstrap --variant=minbase --include=python3-minimal,python3 "$SUITE" "$root" "$mirror" \
            >"$CACHE/debootstrap.log" 2>&1 || {
            echo "debootstrap failed; the end of $CACHE/debootstrap.log:" >&2
            tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
            "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
            "$root"/usr/share/locale/* "$root"/var/log/* "$root"/debootstrap "$root"/tmp/*
        find "$root/usr/lib" -name __pycache__ -type d -prune -exec rm -rf {} +
        tar --numeric-owner -C "$root" -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$root"
        trap - EXIT
    else
        echo "using the cached root filesystem $tarball" >&2
    fi
    docker import "$tarball" "$DEBIAN_BASE" >/dev/null
    echo "$DEBIAN_BASE"
}

registry_reachable() {
    timeout 5 bash -c '</dev/tcp/registry-1.docker.io/443' 2>/dev/null
}

old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
old_base=$(docker image inspect -f '{{.Id}}' "$DEBIAN_BASE" 2>/dev/null || true)
if [ -n "${LETI_SANDBOX_BASE:-}" ]; then
    base=$LETI_SANDBOX_BASE
elif docker image inspect python:3.12-slim >/dev/null 2>&1; then
    base=python:3.12-slim
elif registry_reachable && timeout 180 docker pull -q python:3.12-slim >/dev/null 2>&1; then
    base=python:3.12-slim
else
    base=$(debian_base)
fi

echo "building $IMAGE on $base"
# The legacy builder needs no buildx plugin (Debian's docker.io has none); --network none: the
# build downloads nothing. Its output is shown only if it fails.
log=$(mktemp)
if ! DOCKER_BUILDKIT=0 docker build --network none --build-arg "BASE=$base" \
        --label "$RUNNER_LABEL=$want" -t "$IMAGE" "$HERE/sandbox" >"$log" 2>&1; then
    echo "docker build failed:" >&2
    cat "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"
new=$(docker image inspect -f '{{.Id}}' "$IMAGE")
new_base=$(docker image inspect -f '{{.Id}}' "$DEBIAN_BASE" 2>/dev/null || true)
for replaced in "${old#"$new"}" "${old_base#"$new_base"}"; do  # empty when unchanged
    [ -n "$replaced" ] && { docker image rm "$replaced" >/dev/null 2>&1 || true; }  # unless in use
done
docker run --rm --network none "$IMAGE" python -I -S -c 'import sys; print("sandbox image ok:", sys.version.split()[0])'
