#!/usr/bin/env bash
# The proxy benchmarks of docs/benchmarks.md ("Proxy"): builds the release
# binaries, installs nginx (Debian package) when missing, then runs
#   proxy-bench   direct vs herd vs nginx against one fake-ollama
#   balance-bench p2c vs round_robin with one slow node of four
# Output goes to stdout and to target/bench-proxy-<time>.md.
#
# Extra arguments go to proxy-bench (e.g. --rounds 5 --duration 8s).
# The router is the release `herd server --no-controller`;
# HERD_BENCH_ROUTER=bench-router uses the bench-only binary that composes
# the apiserver and the proxy the same way.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx (Debian package)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx
fi

cargo build --release --locked -p herd -p herd-testkit -p herd-bench

out="target/bench-proxy-$(date -u +%Y%m%dT%H%M%SZ).md"
{
    echo "# proxy benchmarks, $(date -u +%FT%TZ), $(nproc) cores, $(uname -r)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    target/release/proxy-bench "$@"
    echo
    echo "## Balancing: one node of four 4x slower, 70 % load"
    echo
    target/release/balance-bench
    echo
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"
echo "written to $out" >&2
