#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for a bounded time
# (FUZZ_SECONDS, 20 by default); fails if any target crashes, leaving the
# crashing input under fuzz/artifacts/<target>/.
#
# cargo-fuzz is installed once into ~/.cache/herd/cargo-fuzz (outside the
# clone) and the instrumented build is kept in ~/.cache/herd/fuzz-target,
# so later runs only rebuild what changed. cargo-fuzz passes nightly-only
# -Z flags to rustc; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept
# them. No sanitizer is used (AddressSanitizer needs a nightly std);
# herd forbids unsafe code, so the crashes sought are panics, overflows in
# debug arithmetic (the build keeps debug assertions) and hangs.
set -euo pipefail

seconds="${FUZZ_SECONDS:-20}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${HERD_CACHE_DIR:-$HOME/.cache/herd}"
tool="$cache/cargo-fuzz"
version="0.13.2"

if ! "$tool/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$version"; then
    echo "installing cargo-fuzz $version into $tool"
    cargo install cargo-fuzz --locked --version "$version" --root "$tool"
fi
export PATH="$tool/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$cache/fuzz-target"

cd "$root/fuzz"
# Seeds: the example manifests, and the JSON they stand for.
mkdir -p corpus/manifest corpus/resource_json corpus/label_selector corpus/proxy_model corpus/translate
cp "$root"/manifests/*.yaml corpus/manifest/ 2>/dev/null || true
printf '%s' '{"apiVersion":"herd/v1","kind":"Node","metadata":{"name":"a","labels":{"gpu":"nvidia"}},"spec":{"ollamaUrl":"http://10.0.0.2:11434","weight":50}}' > corpus/resource_json/node.json
printf '%s' '{"apiVersion":"herd/v1","kind":"ModelAssignment","metadata":{"name":"m"},"spec":{"model":"llama3.2:1b","replicas":2,"nodeSelector":{"matchLabels":{"gpu":"nvidia"}}}}' > corpus/resource_json/assignment.json
printf '%s' 'gpu=nvidia,zone!=b,tier in (a, b),!old,herd.dev/x' > corpus/label_selector/selector.txt
printf '%s' '{"model":"llama3.2:1b","messages":[{"role":"user","content":"hi"}],"stream":false}' > corpus/proxy_model/chat.json

printf '%s' '{"model":"m","messages":[{"role":"user","content":"hi","images":["iVBORw0KGgo="]}],"options":{"temperature":0.2},"format":"json"}' > corpus/translate/chat.json
printf 'data: {"id":"c","created":1,"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\ndata: [DONE]\n\n' > corpus/translate/stream.sse

targets=(resource_json manifest label_selector proxy_model translate)
failed=()
started=$(date +%s)
for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${seconds}s"
    if ! cargo fuzz run --sanitizer none --debug-assertions "$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$t")
    fi
done
echo "fuzzing took $(( $(date +%s) - started ))s"
if ((${#failed[@]})); then
    echo "crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "${#targets[@]} passed, 0 failed"
