#!/usr/bin/env bash
# Instructions `herd server` executes per proxied request, with
# `--inference-auth open` and no key against `--inference-auth key` with a
# valid inference key: the key check's cost, counted by callgrind, which
# counts the same on a busy machine as on an idle one (unlike requests/s).
#
# Usage: scripts/bench-auth-instructions.sh [REQUESTS]   (default 2000)
# Needs release binaries: cargo build --release -p herd -p herd-testkit --bins
# (the iteration profile of docs/benchmarks.md is fine), valgrind, python3.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
n="${1:-2000}"
bin=target/release
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "callgrind files kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Waits for `pattern` in `file` and prints the rest of that line.
wait_line() {
    local file=$1 pattern=$2
    for _ in $(seq 1 3000); do
        if line=$(grep -m1 -o "$pattern.*" "$file" 2>/dev/null); then
            echo "${line#"$pattern"}"
            return 0
        fi
        sleep 0.1
    done
    echo "timed out waiting for '$pattern' in $file" >&2
    cat "$file" >&2
    return 1
}

"$bin/fake-ollama" serve --listen 127.0.0.1:0 --models bench --num-parallel 64 \
    >"$work/fake.log" 2>&1 &
pids+=($!)
fake="$(wait_line "$work/fake.log" "Listening on ")"
fake="http://${fake%% *}"

# Runs one router under callgrind; prints instructions per request.
measure() {
    local mode=$1 dir="$work/$1"
    mkdir -p "$dir"
    RUST_LOG=warn,herd=info valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
        --instr-atstart=no \
        "$bin/herd" server --no-controller --listen 127.0.0.1:0 --data-dir "$dir/data" \
        --http-workers 1 --inference-auth "$mode" >"$dir/log" 2>&1 &
    local vg=$!
    pids+=("$vg")
    local url
    url=$(wait_line "$dir/log" "listening on ")
    url="${url%% *}"
    local admin
    admin=$(cat "$dir/data/admin.key")
    local api="$url/apis/herd/v1"
    local auth=(-H "Authorization: Bearer $admin" -H "Content-Type: application/json")
    curl -sf "${auth[@]}" -X POST "$api/nodes" \
        -d "{\"metadata\":{\"name\":\"fake\"},\"spec\":{\"ollamaUrl\":\"$fake\",\"maxParallel\":64}}" >/dev/null
    local node
    node=$(curl -sf "${auth[@]}" "$api/nodes/fake")
    python3 - "$node" >"$dir/status.json" <<'EOF'
import json, sys
node = json.loads(sys.argv[1])
node["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Benchmark",
    "message": "registered by the benchmark", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    "models": [{"name": "bench", "loaded": True}]}
print(json.dumps(node))
EOF
    curl -sf "${auth[@]}" -X PUT "$api/nodes/fake/status" --data @"$dir/status.json" >/dev/null
    local key=""
    if [ "$mode" = key ]; then
        key=$(curl -sf "${auth[@]}" -X POST "$api/apikeys" \
            -d '{"metadata":{"name":"bench"},"spec":{"role":"inference"}}' |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["secret"])')
    fi
    # Warm up (connections, caches), then count exactly the measured requests.
    python3 /dev/stdin "$url" 200 "$key" <<<"$CLIENT" >/dev/null
    callgrind_control -i on "$vg" >/dev/null
    python3 /dev/stdin "$url" "$n" "$key" <<<"$CLIENT" >&2
    callgrind_control -i off "$vg" >/dev/null
    callgrind_control -d "$vg" >/dev/null
    sleep 1
    local total=0 part ir
    # The dump's own summary line stays 0 when instrumentation starts off;
    # callgrind_annotate sums the costs it holds.
    for part in "$dir"/cg.*.*; do
        ir=$(callgrind_annotate "$part" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
        total=$((total + ${ir:-0}))
    done
    kill "$vg" 2>/dev/null || true
    echo "$mode $((total / n))"
}

CLIENT='
import http.client, json, sys, urllib.parse
url, n, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
u = urllib.parse.urlparse(url)
body = json.dumps({"model": "bench"}).encode()
h = {"Content-Type": "application/json"}
if key:
    h["Authorization"] = "Bearer " + key
c = http.client.HTTPConnection(u.hostname, u.port)
ok = 0
for _ in range(n):
    c.request("POST", "/api/show", body, h)
    r = c.getresponse()
    r.read()
    ok += r.status == 200
print(f"{ok} of {n} answered 200")
if ok != n:
    sys.exit(1)
'

echo "instructions per request (POST /api/show, $n requests, one connection):"
open=$(measure open)
key=$(measure key)
echo "$open"
echo "$key"
python3 - "${open#open }" "${key#key }" <<'EOF'
import sys
o, k = int(sys.argv[1]), int(sys.argv[2])
print(f"key - open: {k - o:+d} instructions per request ({(k - o) / o * 100:+.2f} %)")
EOF
