#!/usr/bin/env bash
# A/B of sluice builds: the CPU cost per request of two or more sluice
# binaries under the same load, alternating, in one run — to tell whether a
# change pays off on a machine whose speed drifts (compare within a round,
# quote medians).
#
#   bench/ab.sh [--load small|big|h2c|h2c-big] [--rounds N] [--duration S]
#               NAME=PATH[:ARGS] NAME=PATH[:ARGS] ...
#
#   bench/ab.sh --load small --rounds 6 before=/tmp/sluice-before after=target/release/sluice
#   bench/ab.sh --load big 16k=target/release/sluice "64k=target/release/sluice:--buffer-size 65536"
#
# Loads: small = wrk -t1 -c50, 13-byte body (issue 3's load); big = wrk -t1
# -c8, 1 MiB body; h2c = h2load -t1 -c32 -m16, 13-byte body (issue 4's);
# h2c-big = h2load -t1 -c8 -m1, 1 MiB body.
# An nginx backend and the load generator run on CPU 1; each binary in turn
# runs alone on CPU 0 (`--workers 1 --bind 127.0.0.1 --ebpf off`, plus
# ARGS), is warmed up for 2 s and measured for --duration seconds (default
# 8). Per run it prints requests, CPU 0 µs/request (busy jiffies of CPU 0
# from /proc/stat, softirq included) and the process's own µs/request
# (utime + stime); at the end the median of each per binary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
HELPER="$ROOT/bench/h1_helper.py"

load=small
rounds=4
duration=8
ab_args "$0" "$@"
[ ${#builds[@]} -ge 1 ] || { echo "ab.sh: name at least one build, NAME=PATH[:ARGS]" >&2; exit 2; }
case "$load" in
  small) path=/small ;;
  big) path=/big ;;
  h2c) path=/small ;;
  h2c-big) path=/big ;;
  *) echo "ab.sh: --load is small, big, h2c or h2c-big" >&2; exit 2 ;;
esac
for t in wrk h2load nginx taskset python3; do
  command -v "$t" >/dev/null 2>&1 || { echo "ab.sh: missing $t (run scripts/setup.sh --bench)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-ab.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r backend_port proxy_port < <(python3 "$HELPER" ports 2)
backend_nginx_conf "$TMP/backend" "$backend_port"
taskset -c 1 nginx -p "$TMP/backend" -e "$TMP/backend/error.log" -c "$TMP/backend/nginx.conf" &
pids+=($!)
wait_port "$backend_port" || { cat "$TMP/backend/error.log" >&2; echo "ab.sh: backend did not start" >&2; exit 1; }
sluice_routes "$proxy_port" "$backend_port" >"$TMP/routes.yaml"

cpu0_busy() { awk '/^cpu0 /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
url="http://127.0.0.1:$proxy_port$path"
load_run() { # SECONDS OUT
  if [ "${load#h2c}" != "$load" ]; then
    local streams=(-c32 -m16)
    [ "$load" = h2c-big ] && streams=(-c8 -m1)
    taskset -c 1 h2load -t1 "${streams[@]}" -D "$1" "$url" >"$2" 2>&1
    awk '/^requests:/{print $8}' "$2"
  else
    local c=50
    [ "$load" = big ] && c=8
    taskset -c 1 wrk -t1 -c"$c" -d"$1"s "$url" >"$2" 2>&1
    awk '/requests in/{print $1}' "$2"
  fi
}

results="$TMP/results"
: >"$results"
printf '%-5s %-12s %10s %14s %14s\n' round build requests cpu0_us/req proc_us/req
for r in $(seq "$rounds"); do
  for b in "${builds[@]}"; do
    name=${b%%=*}
    spec=${b#*=}
    bin=${spec%%:*}
    extra=
    [ "$spec" != "$bin" ] && extra=${spec#*:}
    # shellcheck disable=SC2086 # ARGS are words
    taskset -c 0 "$bin" --workers 1 --bind 127.0.0.1 --ebpf off $extra "$TMP/routes.yaml" >"$TMP/sluice.log" 2>&1 &
    sp=$!
    pids+=("$sp")
    wait_port "$proxy_port" || { cat "$TMP/sluice.log" >&2; echo "ab.sh: $name did not start" >&2; exit 1; }
    load_run 2 "$TMP/warm.out" >/dev/null
    a=$(cpu0_busy); pa=$(proc_ticks "$sp")
    n=$(load_run "$duration" "$TMP/load.out")
    b_=$(cpu0_busy); pb=$(proc_ticks "$sp")
    kill "$sp"; wait "$sp" 2>/dev/null || true
    [ -n "$n" ] && [ "$n" -gt 0 ] || { cat "$TMP/load.out" >&2; echo "ab.sh: no requests through $name" >&2; exit 1; }
    tick_us=$((1000000 / $(getconf CLK_TCK)))
    python3 - "$r" "$name" "$n" "$((b_ - a))" "$((pb - pa))" "$tick_us" <<'EOF' | tee -a "$results"
import sys
r, name, n, cpu, proc, tick = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
print(f"{r:<5} {name:<12} {n:>10} {cpu * tick / n:>14.2f} {proc * tick / n:>14.2f}")
EOF
  done
done
echo
python3 - "$results" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault(f[1], []).append((float(f[3]), float(f[4])))
print(f"{'build':<12} {'median cpu0_us/req':>20} {'median proc_us/req':>20}  (rounds)")
for name, v in runs.items():
    print(f"{name:<12} {statistics.median(c for c, _ in v):>20.2f} {statistics.median(p for _, p in v):>20.2f}  ({len(v)})")
EOF
