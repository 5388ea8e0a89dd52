#!/usr/bin/env bash
# WebSocket echo throughput through sluice, --ebpf off vs on, in one run.
#
#   bench/ebpf-ws.sh [--rounds N] [--mib M] [--tunnels T] [--sluice PATH]
#
# A WebSocket echo backend (Python, a thread per connection) on 127.0.0.1
# and the client both run on CPU 1; sluice runs alone on CPU 0 with one
# worker. Per run, T tunnels at once (default 4) each send M MiB (default
# 256) and read the echo back (every byte checked, in order). Modes,
# alternated per round: `off` (--ebpf off), `bypass` (--ebpf on
# --ebpf-splice false: loopback bypass only, tunnel copied in userspace) and
# `splice` (--ebpf on, whose default splices tunnels with the sk_skb
# verdict). Prints, per mode, the median over the rounds of: echo
# throughput in MB/s (bytes echoed / wall time, one direction) and the CPU
# cost on the proxy's core per GB echoed (busy jiffies of CPU 0 from
# /proc/stat via bench/h1_helper.py — everything but idle and iowait,
# softirq included — in ms per GB), the same for CPU 1 (the client, the
# backend, and the kernel work the splice does on the sending side's CPU:
# the verdict runs in the sender's softirq and the redirected bytes are
# written by a kworker there), plus sluice's
# sluice_tunnel_userspace_bytes_total at the end of the run. Needs root.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
HELPER="$ROOT/bench/h1_helper.py"
rounds=3 mib=256 tunnels=4 sluice_bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    --tunnels) tunnels=$2; shift 2 ;;
    --sluice) sluice_bin=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$sluice_bin" ]; then
  (cd "$ROOT" && cargo build --release -p sluice >/dev/null)
  sluice_bin="$ROOT/target/release/sluice"
fi
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
read -r backend_port proxy_port admin_port <<<"$(python3 "$HELPER" ports 3 | tr "\n" " ")"

WS="$ROOT/bench/ws_echo.py"

taskset -c 1 python3 "$WS" backend "$backend_port" & pids+=($!)
sluice_routes "$proxy_port" "$backend_port" >"$TMP/routes.yaml"

wait_port "$backend_port"
rows="$TMP/rows"; : >"$rows"
for r in $(seq "$rounds"); do
  for mode in off bypass splice; do
    case $mode in
      off) flags=(--ebpf off) ;;
      bypass) flags=(--ebpf on --ebpf-splice false) ;;
      splice) flags=(--ebpf on) ;;
    esac
    taskset -c 0 "$sluice_bin" --workers 1 --bind 127.0.0.1 --admin "127.0.0.1:$admin_port" \
      "${flags[@]}" "$TMP/routes.yaml" >"$TMP/sluice-$mode.log" 2>&1 &
    sp=$!; pids+=("$sp")
    wait_port "$proxy_port" || { cat "$TMP/sluice-$mode.log" >&2; exit 1; }
    read -r b0 t0 < <(python3 "$HELPER" cpu 0)
    read -r o0 _ < <(python3 "$HELPER" cpu 1)
    read -r wall bytes ok < <(taskset -c 1 python3 "$WS" client "$proxy_port" "$mib" "$tunnels")
    read -r b1 t1 < <(python3 "$HELPER" cpu 0)
    read -r o1 _ < <(python3 "$HELPER" cpu 1)
    userspace=$(curl -s "http://127.0.0.1:$admin_port/metrics" | awk '/^sluice_tunnel_userspace_bytes_total/ {print $2}')
    kill "$sp"; wait "$sp" 2>/dev/null || true
    hz=$(getconf CLK_TCK)
    python3 - "$mode" "$wall" "$bytes" "$ok" "$((b1 - b0))" "$hz" "${userspace:-0}" "$((o1 - o0))" >>"$rows" <<'PY'
import sys
mode, wall, nbytes, ok, busy, hz, us, other = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
mbs = nbytes / wall / 1e6
ms_per_gb = busy / hz * 1000 / (nbytes / 1e9)
other_per_gb = other / hz * 1000 / (nbytes / 1e9)
print(mode, f"{mbs:.1f}", f"{ms_per_gb:.1f}", ok, f"{us:.0f}", f"{other_per_gb:.1f}")
PY
    tail -1 "$rows" | awk -v r="$r" '{printf "round %s %-7s %8s MB/s  %8s ms CPU0/GB  %8s ms CPU1/GB  ok=%s  userspace=%s B\n", r, $1, $2, $3, $6, $4, $5}'
  done
done
echo
echo "median of $rounds rounds ($tunnels tunnels x $mib MiB echoed each):"
echo "| mode | echo throughput | CPU 0 per GB | CPU 0 vs off | CPU 1 per GB | userspace bytes |"
echo "|---|---:|---:|---:|---:|---:|"
python3 - "$rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
base = None
for mode in ["off", "bypass", "splice"]:
    r = [x for x in rows if x[0] == mode]
    mbs = statistics.median(float(x[1]) for x in r)
    cpu = statistics.median(float(x[2]) for x in r)
    us = statistics.median(float(x[4]) for x in r)
    other = statistics.median(float(x[5]) for x in r)
    if base is None: base = cpu
    print(f"| {mode} | {mbs:.0f} MB/s | {cpu:.0f} ms/GB | {cpu/base:.2f}x | {other:.0f} ms/GB | {us/1e6:.1f} MB |")
PY
