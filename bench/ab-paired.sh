#!/usr/bin/env bash
# A/B of two sluice builds run at the same time: both on CPU 0, each with
# its own load generator (on CPU 1, with the nginx backend), and each
# build's CPU per request taken from its own process's run time.
#
#   bench/ab-paired.sh [--load small|h2c] [--rounds N] [--duration S] A=PATH B=PATH
#
#   bench/ab-paired.sh --load h2c --rounds 5 base=/tmp/sluice-before pgo=target/pgo/release/sluice
#
# Why: bench/ab.sh runs the builds one after the other, and on a shared
# machine whose speed drifts by ±20 % from one 10 s window to the next, a
# 5 % change needs tens of rounds to show. Here both builds live through
# the same moments of the machine, so the drift cancels in the ratio B/A
# of each round: a change of a few percent shows within a round or two.
# The absolute µs/request are higher than ab.sh's (two proxies share one
# core, with the context switches and cache sharing that brings) and are
# not comparable with the other scripts' figures; the ratio is the result.
#
# Loads: small = wrk -t1 -c25 per build, 13-byte body (HTTP/1.1
# keep-alive); h2c = h2load -t1 -c16 -m16 per build. Each build gets a
# fresh process per round (`--workers 1 --bind 127.0.0.1 --ebpf off`), a
# 2 s warm-up, then --duration seconds (default 10) measured. CPU per
# request = the process's utime + stime (/proc/PID/stat) ÷ the requests
# its load generator completed. Prints each round and the median B/A.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
HELPER="$ROOT/bench/h1_helper.py"

load=small
rounds=5
duration=10
ab_args "$0" "$@"
[ ${#builds[@]} -eq 2 ] || { echo "ab-paired.sh: name exactly two builds, A=PATH B=PATH" >&2; exit 2; }
case "$load" in
  small|h2c) ;;
  *) echo "ab-paired.sh: --load is small or h2c" >&2; exit 2 ;;
esac
for t in wrk h2load nginx taskset python3; do
  command -v "$t" >/dev/null 2>&1 || { echo "ab-paired.sh: missing $t (run scripts/setup.sh --bench)" >&2; exit 1; }
done
name_a=${builds[0]%%=*} bin_a=${builds[0]#*=}
name_b=${builds[1]%%=*} bin_b=${builds[1]#*=}
for bin in "$bin_a" "$bin_b"; do
  [ -x "$bin" ] || { echo "ab-paired.sh: no executable at $bin" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-ab-paired.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r backend_port port_a port_b < <(python3 "$HELPER" ports 3)
backend_nginx_conf "$TMP/backend" "$backend_port"
taskset -c 1 nginx -p "$TMP/backend" -e "$TMP/backend/error.log" -c "$TMP/backend/nginx.conf" &
pids+=($!)
wait_port "$backend_port" || { cat "$TMP/backend/error.log" >&2; echo "ab-paired.sh: backend did not start" >&2; exit 1; }
sluice_routes "$port_a" "$backend_port" >"$TMP/routes-a.yaml"
sluice_routes "$port_b" "$backend_port" >"$TMP/routes-b.yaml"

proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
load_run() { # PORT SECONDS OUT: prints the requests completed
  local url="http://127.0.0.1:$1/small"
  if [ "$load" = h2c ]; then
    taskset -c 1 h2load -t1 -c16 -m16 -D "$2" "$url" >"$3" 2>&1
    awk '/^requests:/{print $8}' "$3"
  else
    taskset -c 1 wrk -t1 -c25 -d"$2"s "$url" >"$3" 2>&1
    awk '/requests in/{print $1}' "$3"
  fi
}
both() { # SECONDS TAG: runs both loads at once, each count into $TMP/TAG-{a,b}
  load_run "$port_a" "$1" "$TMP/$2-a.out" >"$TMP/$2-a" &
  local gen=$!
  load_run "$port_b" "$1" "$TMP/$2-b.out" >"$TMP/$2-b"
  wait "$gen"
}

hz=$(getconf CLK_TCK)
ratios=()
printf '%-5s %-12s %10s %12s   %-12s %10s %12s   %6s\n' round A requests us/req B requests us/req "B/A"
for r in $(seq "$rounds"); do
  taskset -c 0 "$bin_a" --workers 1 --bind 127.0.0.1 --ebpf off "$TMP/routes-a.yaml" >"$TMP/a.log" 2>&1 &
  pid_a=$!
  pids+=("$pid_a")
  taskset -c 0 "$bin_b" --workers 1 --bind 127.0.0.1 --ebpf off "$TMP/routes-b.yaml" >"$TMP/b.log" 2>&1 &
  pid_b=$!
  pids+=("$pid_b")
  wait_port "$port_a" "$pid_a" || { cat "$TMP/a.log" >&2; echo "ab-paired.sh: $name_a did not start" >&2; exit 1; }
  wait_port "$port_b" "$pid_b" || { cat "$TMP/b.log" >&2; echo "ab-paired.sh: $name_b did not start" >&2; exit 1; }
  both 2 warm
  a0=$(proc_ticks "$pid_a") b0=$(proc_ticks "$pid_b")
  both "$duration" run
  a1=$(proc_ticks "$pid_a") b1=$(proc_ticks "$pid_b")
  kill "$pid_a" "$pid_b"
  wait "$pid_a" "$pid_b" 2>/dev/null || true
  pids=("${pids[0]}")
  line=$(python3 - "$r" "$name_a" "$(cat "$TMP/run-a")" "$((a1 - a0))" "$name_b" "$(cat "$TMP/run-b")" "$((b1 - b0))" "$hz" <<'EOF'
import sys
r, na, qa, ta, nb, qb, tb, hz = sys.argv[1:]
qa, qb, ta, tb, hz = int(qa or 0), int(qb or 0), int(ta), int(tb), int(hz)
if qa == 0 or qb == 0:
    sys.exit(f"ab-paired.sh: round {r}: a load generator completed no request")
ua, ub = ta * 1e6 / hz / qa, tb * 1e6 / hz / qb
print(f"{r:<5} {na:<12} {qa:>10,} {ua:>12.2f}   {nb:<12} {qb:>10,} {ub:>12.2f}   {ub / ua:>6.3f}")
EOF
  )
  echo "$line"
  ratios+=("$(awk '{print $NF}' <<<"$line")")
done
python3 - "$name_a" "$name_b" "${ratios[@]}" <<'EOF'
import statistics, sys
a, b, *ratios = sys.argv[1:]
ratios = [float(x) for x in ratios]
print(f"\n{b} ÷ {a}, process CPU µs per request: median {statistics.median(ratios):.3f} "
      f"(rounds {min(ratios):.3f}–{max(ratios):.3f}, {len(ratios)} rounds)")
EOF
