#!/usr/bin/env bash
# Runs herd's whole test suite on a fresh machine: installs what the tests
# need, builds, and runs every crate's tests. This is the command README.md
# gives; CI (.ci/run) calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi

# Tests spawn helper binaries (fake-ollama, herd) from target/debug, so build
# every binary first; then run all tests of the workspace.
cargo build --workspace --bins --locked

# Real Ollama, OpenAI and Anthropic client libraries for the end-to-end
# tests (Python venv under target/, npm packages under e2e/clients/).
./scripts/e2e-clients.sh

# A real model for the end-to-end tests: llama.cpp's llama-server and
# SmolLM2-135M, built and cached under ~/.cache/herd/llama (about 6 minutes
# on 2 cores the first time on a machine, nothing after).
HERD_LLAMA_DIR="$(./scripts/llama.sh | tail -n 1)"
export HERD_LLAMA_DIR
# Debian's PostgreSQL for the PostgreSQL store's tests (each starts its own
# cluster on loopback).
./scripts/postgres.sh

cargo test --workspace --locked "$@"

# The dashboard in real headless Chromium (installs Debian's chromium and the
# npm test packages when missing).
./scripts/ui-test.sh

# Release packaging: the Linux archive and a `herd up` from it, the Windows
# .zip and .msi with herd.exe run under wine, `cargo check` for macOS, and
# actionlint on both workflows (installs wine, mingw-w64, msitools, zig and
# actionlint when missing; cross builds cached under ~/.cache/herd).
./scripts/package-test.sh

# Every parser of outside input under a fuzzer for a bounded time (installs
# cargo-fuzz once under ~/.cache/herd; fails on any crash).
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" ./scripts/fuzz.sh
