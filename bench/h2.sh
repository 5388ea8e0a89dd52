#!/usr/bin/env bash
# Issue 4's measurement: h2load h2c (prior knowledge), -c32 -m16, 13-byte
# responses, through sluice (one worker, --ebpf off), nginx (`listen ...
# http2`) and HAProxy (`bind ... proto h2`), one worker each, each alone on
# CPU 0, the same HTTP/1.1 nginx backend and h2load on CPU 1; requests/s and
# CPU cost per request on the proxy's core. A mode of bench/run.sh:
#
#   bench/h2.sh [run.sh options, e.g. --rounds 5 --duration 10 --sluice PATH]
#
# Writes bench/results/<date>/h2/ (report.md, results.json, plots).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=
for a in "$@"; do [ "$a" = --out ] && out=1; done
extra=()
[ -z "$out" ] && extra=(--out "$ROOT/bench/results/$(date +%F)/h2")
exec "$ROOT/bench/run.sh" --proxies sluice-off,nginx,haproxy --loads h2c32 --duration 8 "${extra[@]}" "$@"
