#!/usr/bin/env bash
# Browser tests of the dashboard (ui/tests/): Debian's headless Chromium,
# driven by playwright-core, against a real `herd server` with
# `fake-ollama` processes as the nodes' Ollamas. Builds nothing itself:
# target/debug/herd and target/debug/fake-ollama must exist
# (`cargo build --workspace --bins`, as scripts/test.sh does first).
#
# Screenshots of every view and the page-weight/first-render figures go to
# test-artifacts/ui/. Environment: HERD_BIN, FAKE_OLLAMA_BIN and CHROMIUM
# override the binaries used.
set -euo pipefail
cd "$(dirname "$0")/.."

herd="${HERD_BIN:-target/debug/herd}"
fake="${FAKE_OLLAMA_BIN:-target/debug/fake-ollama}"
for bin in "$herd" "$fake"; do
    if [ ! -x "$bin" ]; then
        echo "ui-test: $bin is missing; run 'cargo build --workspace --bins' first" >&2
        exit 1
    fi
done
export HERD_BIN="$(realpath "$herd")" FAKE_OLLAMA_BIN="$(realpath "$fake")"

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    echo "ui-test: $chromium is missing; installing Debian's chromium" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # Fonts too: without any, pages render (and screenshots show) empty boxes.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium fonts-dejavu-core fonts-liberation
fi
export CHROMIUM="$chromium"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "ui-test: Node.js 20 or newer (node and npm) is needed for the browser tests" >&2
    exit 1
fi

cd ui/tests
npm ci --no-audit --no-fund --loglevel=error
node --test --test-concurrency=1 --test-timeout=180000 dashboard.test.mjs
