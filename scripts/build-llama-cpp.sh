#!/usr/bin/env bash
# Build llama.cpp's llama-server and llama-batched-bench from source, for the anchor of
# `leti bench generate` only (service/generation/llama_cpp_anchor.py). Not a dependency of the
# project and not part of scripts/install.sh.
#
# The sources come from the llama-cpp-python sdist on PyPI (it vendors llama.cpp under
# vendor/llama.cpp), so only PyPI has to be reachable. CPU only, native ISA, static binaries,
# no network code paths (no curl, no OpenSSL, no web UI download).
#
# Idempotent: the download, the extraction and the configure step are skipped when done, and
# the build is incremental. Usage:
#   scripts/build-llama-cpp.sh [target ...]    (default: llama-server llama-batched-bench)
# Environment: LETI_LLAMA_CPP_DIR (default .cache/llama.cpp), LLAMA_CPP_PYTHON_VERSION,
# LLAMA_CPP_JOBS (default 2), PYTHON (a python with pip; default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
ROOT=${LETI_LLAMA_CPP_DIR:-$PWD/.cache/llama.cpp}
JOBS=${LLAMA_CPP_JOBS:-2}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(llama-server llama-batched-bench)
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

SDIST_DIR=$ROOT/sdist
SRC=$ROOT/src/llama_cpp_python-$VERSION/vendor/llama.cpp
BUILD=$ROOT/build-$VERSION
BIN=$ROOT/bin
mkdir -p "$SDIST_DIR" "$ROOT/src" "$BIN"

sdist=$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz
if [ ! -f "$sdist" ]; then
    echo "build-llama-cpp: downloading the llama-cpp-python $VERSION sdist from PyPI"
    "$PYTHON" -m pip --disable-pip-version-check -q download --no-binary :all: --no-deps \
        "llama-cpp-python==$VERSION" -d "$SDIST_DIR"
fi
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    echo "build-llama-cpp: extracting $sdist"
    tar -xzf "$sdist" -C "$ROOT/src"
fi

# The sdist has no .git: take llama.cpp's commit from the CHANGELOG entry of this release
# ("update llama.cpp to ggml-org/llama.cpp@<hash>"), so --version names it.
COMMIT=$(sed -n "/^## \[$VERSION\]/,/^## \[/p" "$ROOT/src/llama_cpp_python-$VERSION/CHANGELOG.md" \
    | grep -o 'llama\.cpp@[0-9a-f]\{7,40\}' | head -n1 | cut -d@ -f2 || true)
COMMIT=${COMMIT:-unknown}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    echo "build-llama-cpp: configuring llama.cpp $COMMIT in $BUILD"
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON -DGGML_CPU=ON \
        -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_COMMIT="$COMMIT" >"$ROOT/configure.log" \
        || { tail -n 40 "$ROOT/configure.log"; exit 1; }
fi

echo "build-llama-cpp: building ${TARGETS[*]} with $JOBS jobs (log: $ROOT/build.log)"
cmake --build "$BUILD" --config Release -j "$JOBS" --target "${TARGETS[@]}" >"$ROOT/build.log" 2>&1 \
    || { tail -n 40 "$ROOT/build.log"; exit 1; }
for target in "${TARGETS[@]}"; do
    cp -f "$BUILD/bin/$target" "$BIN/$target.tmp" && mv -f "$BIN/$target.tmp" "$BIN/$target"
done
printf 'llama-cpp-python %s\nllama.cpp %s\n' "$VERSION" "$COMMIT" >"$BIN/VERSION"

echo "build-llama-cpp: llama.cpp $COMMIT (from llama-cpp-python $VERSION):"
for target in "${TARGETS[@]}"; do echo "  $BIN/$target"; done
echo "service/generation/llama_cpp_anchor.py finds them there (or set LETI_LLAMA_CPP_DIR=$ROOT)"
