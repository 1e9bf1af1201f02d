#!/usr/bin/env bash
# Start the Docker engine for the docker sandbox backend, if it is not already answering.
#
# Idempotent and installs nothing (scripts/install.sh installs docker.io). Meant for machines
# without systemd (CI VMs, dev containers): dockerd runs in the background, logging to
# ${LETI_DOCKERD_LOG:-/var/log/leti-dockerd.log}. The sandbox containers use --network none, so
# the engine needs no bridge and must not touch the host's firewall.
set -euo pipefail

LOG=${LETI_DOCKERD_LOG:-/var/log/leti-dockerd.log}
WAIT_S=${LETI_DOCKERD_WAIT_S:-60}

if docker info >/dev/null 2>&1; then
    echo "docker engine already running"
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "dockerd not found: install it with 'apt-get install -y docker.io' (scripts/install.sh does)" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "starting dockerd needs root: run 'sudo $0'" >&2
    exit 1
fi

# A dockerd that died uncleanly leaves its pid file behind, and a new one refuses to start.
PIDFILE=/var/run/docker.pid
if [ -s "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    rm -f "$PIDFILE"
fi
if [ -s "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")  # started a moment ago (another run of this script): wait for it
    echo "dockerd (pid $pid) is starting; waiting for it"
else
    mkdir -p "$(dirname "$LOG")"
    echo "starting dockerd (log: $LOG)"
    # setsid: its own session, so it outlives the shell (and process group) that started it.
    setsid nohup dockerd --storage-driver=overlay2 --iptables=false --ip6tables=false --bridge=none \
        >>"$LOG" 2>&1 </dev/null &
    pid=$!
fi

for _ in $(seq "$((WAIT_S * 2))"); do
    if docker info >/dev/null 2>&1; then
        echo "docker engine ready (dockerd pid $pid)"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "dockerd exited during start-up; the last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
    fi
    sleep 0.5
done
echo "dockerd did not answer within ${WAIT_S}s; see $LOG" >&2
exit 1
