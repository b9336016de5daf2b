#!/usr/bin/env bash
# Installs the client libraries the end-to-end suite (e2e/) drives against
# the router: ollama, openai and anthropic from PyPI into a virtualenv at
# target/e2e-venv (pinned in e2e/clients/requirements.txt), and the ollama
# npm package into e2e/clients/node_modules (e2e/clients/package-lock.json).
#
# Idempotent and fast once done: each half is redone only when its pin file
# changed since the last install. When a registry cannot be reached it fails
# (non-zero) instead of skipping, so the client tests never pass by not
# running.
set -euo pipefail
cd "$(dirname "$0")/.."

clients=e2e/clients
venv=target/e2e-venv

fail() {
    echo "e2e-clients: $*" >&2
    exit 1
}

digest() { sha256sum "$1" | cut -d' ' -f1; }

# Python: ollama, openai and anthropic.
command -v python3 >/dev/null 2>&1 || fail "python3 is needed (with the venv module: apt-get install python3-venv)"
want="$(digest "$clients/requirements.txt")"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.herd-requirements" 2>/dev/null)" != "$want" ]; then
    echo "e2e-clients: creating $venv (ollama, openai, anthropic from PyPI)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$clients/requirements.txt" ||
        fail "pip install -r $clients/requirements.txt failed (is PyPI reachable?)"
    echo "$want" >"$venv/.herd-requirements"
fi
"$venv/bin/python" -c 'import ollama, openai, anthropic' || fail "the venv at $venv cannot import ollama, openai and anthropic"

# Node: the ollama npm package.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    fail "Node.js 20 or newer (node and npm) is needed"
want="$(digest "$clients/package-lock.json")"
if [ ! -d "$clients/node_modules/ollama" ] || [ "$(cat "$clients/node_modules/.herd-lock" 2>/dev/null)" != "$want" ]; then
    echo "e2e-clients: npm ci in $clients (ollama from npm)" >&2
    (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error) ||
        fail "npm ci in $clients failed (is the npm registry reachable?)"
    echo "$want" >"$clients/node_modules/.herd-lock"
fi
(cd "$clients" && node -e 'import("ollama").then(() => process.exit(0), () => process.exit(1))') ||
    fail "node cannot import the ollama package from $clients"
echo "e2e-clients: ready ($venv, $clients/node_modules)" >&2
