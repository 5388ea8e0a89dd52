#!/usr/bin/env bash
# HTTP/1.1 keep-alive load through sluice, nginx and HAProxy, side by side.
#
#   bench/h1.sh [--rounds N] [--duration S] [--warmup S] [--connections C]
#               [--idle N] [--quick] [--sluice PATH | --pgo] [--no-setup]
#               [--out DIR] [--quiet-pct P] [--max-wait S]
#
# One nginx backend serves a fixed 13-byte body on CPU 1; wrk runs on CPU 1
# too; each proxy runs alone, with one worker, pinned to CPU 0. Each round
# runs every proxy once, in an order rotated per round (sluice nginx
# haproxy, then nginx haproxy sluice, …); every proxy start gets a
# warm-up. Per run: requests/s and p99 (wrk --latency), the CPU cost per
# request on the proxy's core (busy jiffies of CPU 0 from
# /proc/stat — everything but idle and iowait, so softirq included — over the
# measurement window, divided by the requests wrk completed), the proxy
# process tree's own run time per request (/proc/PID/task/*/schedstat) and
# its RSS at the end. Then each proxy holds --idle idle keep-alive client
# connections (one request each) and its RSS is read.
#
# On a shared machine other processes on CPU 0 inflate its busy time: before
# each measurement (proxy idle) the script waits, up to --max-wait seconds
# (default 600), until CPUs 0 and 1 are both under --quiet-pct % busy
# (default 10), and records what it saw. The proxy's own run time per
# request is recorded too; it does not include softirq work.
#
# Writes bench/results/<date>/h1.json (raw) and h1.md (medians, ratios,
# per-round rows); --quick (1 round of 3 s, 1,000 idle connections) writes
# h1-quick.json and h1-quick.md instead.
#
# --sluice PATH uses that binary; --pgo builds and uses the profile-guided
# build (scripts/build-pgo.sh, target/pgo/release/sluice); otherwise the
# workspace's sluice is built with `cargo build --release -p sluice`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
orig_args="$*"
HELPER="$ROOT/bench/h1_helper.py"

rounds=3
duration=10
warmup=3
connections=50
idle_conns=10000
quiet_pct=10
max_wait=600
quick=0
sluice_bin=
pgo=0
do_setup=1
out_dir=
proxies=(sluice nginx haproxy)
body='Hello, world!'   # 13 bytes

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --idle) idle_conns=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --quiet-pct) quiet_pct=$2; shift 2 ;;
    --max-wait) max_wait=$2; shift 2 ;;
    --sluice) sluice_bin=$2; shift 2 ;;
    --pgo) pgo=1; shift ;;
    --no-setup) do_setup=0; shift ;;
    --out) out_dir=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "h1.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$quick" -eq 1 ]; then
  rounds=1; duration=3; warmup=1; idle_conns=1000; max_wait=10
fi

say() { printf 'h1: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (proxy on CPU 0, load generator and backend on CPU 1)"

# --- tools ---------------------------------------------------------------
if [ "$do_setup" -eq 1 ]; then
  "$ROOT/scripts/setup.sh" --bench >&2
fi
for t in wrk nginx haproxy taskset python3 curl; do
  command -v "$t" >/dev/null 2>&1 || die "missing $t (run scripts/setup.sh --bench)"
done
[ -n "$sluice_bin" ] || sluice_bin=$(sluice_build_bin "$pgo")
[ -x "$sluice_bin" ] || die "no sluice binary at $sluice_bin"
sluice_bin=$(cd "$(dirname "$sluice_bin")" && pwd)/$(basename "$sluice_bin")
sluice_flags=(--workers 1 --bind 127.0.0.1)
if "$sluice_bin" --help 2>/dev/null | grep -q -- '--ebpf'; then
  sluice_flags+=(--ebpf off)
fi

# 10,000 idle connections need as many descriptors in the proxy and client.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 65536 ]; then
  ulimit -Hn 65536 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] && nofile=1048576

# --- processes we start, and only those, are stopped on exit -------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-h1.XXXXXX")
declare -A started=()   # pid -> name
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || { unset "started[$pid]"; return 0; }
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "started[$pid]"
}
cleanup() {
  local pid
  for pid in "${!started[@]}"; do stop_pid "$pid"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r backend_port p_sluice p_nginx p_haproxy < <(python3 "$HELPER" ports 4)
declare -A port=([sluice]=$p_sluice [nginx]=$p_nginx [haproxy]=$p_haproxy)
user_line=
[ "$(id -u)" -eq 0 ] && user_line="user root;"

# --- backend: nginx, a fixed small body, keep-alive, CPU 1 ---------------
mkdir -p "$TMP/backend/logs"
cat >"$TMP/backend/nginx.conf" <<EOF
$user_line
worker_processes 1;
daemon off;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/logs/error.log warn;
worker_rlimit_nofile $nofile;
events { worker_connections $((nofile - 100)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
$(nginx_temp_paths "$TMP/backend")
  server {
    listen 127.0.0.1:$backend_port backlog=4096;
    location / { default_type text/plain; return 200 '$body'; }
  }
}
EOF
taskset -c 1 nginx -p "$TMP/backend" -e "$TMP/backend/logs/error.log" -c "$TMP/backend/nginx.conf" \
  >"$TMP/backend/stdout" 2>&1 &
started[$!]=backend
backend_pid=$!
wait_port "$backend_port" "$backend_pid" || { cat "$TMP/backend/logs/error.log" >&2; die "backend did not start"; }

# --- proxy configurations --------------------------------------------------
mkdir -p "$TMP/sluice"
sluice_routes "${port[sluice]}" "$backend_port" >"$TMP/sluice/routes.yaml"

mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
$user_line
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
worker_rlimit_nofile $nofile;
events { worker_connections $((nofile - 100)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
$(nginx_temp_paths "$TMP/nginx")
  upstream backend {
    server 127.0.0.1:$backend_port;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port[nginx]} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF

mkdir -p "$TMP/haproxy"
cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
  nbthread 1
  ulimit-n $nofile
  maxconn $(( idle_conns + 500 ))
  # maxconn may need more descriptors than ulimit-n allows (it reserves two
  # per connection); the idle test needs one per client plus a few upstream.
  no strict-limits
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:${port[haproxy]}
  default_backend be
backend be
  server s1 127.0.0.1:$backend_port
EOF

start_proxy() {  # start_proxy NAME: sets proxy_pid
  local name=$1
  case "$name" in
    sluice)
      taskset -c 0 "$sluice_bin" "${sluice_flags[@]}" "$TMP/sluice/routes.yaml" \
        >"$TMP/sluice/stdout" 2>&1 & ;;
    nginx)
      taskset -c 0 nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf" \
        >"$TMP/nginx/stdout" 2>&1 & ;;
    haproxy)
      taskset -c 0 haproxy -db -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/stdout" 2>&1 & ;;
  esac
  proxy_pid=$!
  started[$proxy_pid]=$name
  if ! wait_port "${port[$name]}" "$proxy_pid"; then
    cat "$TMP/$name/stdout" >&2; die "$name did not start"
  fi
  # the proxy must answer 200 with the backend's body
  local got
  got=$(curl -s --max-time 5 "http://127.0.0.1:${port[$name]}/") || true
  [ "$got" = "$body" ] || { cat "$TMP/$name/stdout" >&2; die "$name answered '$got', not '$body'"; }
}


# --- results ------------------------------------------------------------------
date_dir=$(date +%F)
out_dir=${out_dir:-$ROOT/bench/results/$date_dir}
mkdir -p "$out_dir"
stem=h1
[ "$quick" -eq 1 ] && stem=h1-quick
jsonl="$TMP/rows.jsonl"
: >"$jsonl"

url_base=http://127.0.0.1
wrk_cmd="wrk -t1 -c$connections -d${duration}s --latency"
sluice_rev=$(git -C "$(dirname "$sluice_bin")" rev-parse --short HEAD 2>/dev/null || echo unknown)
ver() { "$@" 2>&1 | head -n 1 || true; }
versions="sluice $(ver "$sluice_bin" --version | awk '{print $NF}') (commit $sluice_rev, flags: ${sluice_flags[*]}), $(ver nginx -v | sed 's/^nginx version: //'), HAProxy $(ver haproxy -v | awk '{print $3}'), wrk $(ver wrk -v | awk '{print $2}')."
python3 - "$jsonl" <<EOF
import json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
meta = {"kind": "meta", "date": "$(date -u +%FT%TZ)", "cpu": cpu, "nproc": os.cpu_count(),
        "kernel": platform.release(), "versions": """$versions""",
        "rounds": $rounds, "duration": $duration, "warmup": $warmup, "connections": $connections,
        "body_bytes": len("$body"), "wrk_cmd": "taskset -c 1 $wrk_cmd", "sluice_bin": "$sluice_bin",
        "command": """bench/h1.sh $orig_args""".strip()}
open(sys.argv[1], "a").write(json.dumps(meta) + "\n")
EOF
say "$versions"
say "backend :$backend_port on CPU 1; proxies on CPU 0: sluice :${port[sluice]}, nginx :${port[nginx]}, haproxy :${port[haproxy]}"
say "$rounds round(s) × ${duration}s per proxy (warm-up ${warmup}s), $connections connections"

printf '%-6s %-8s %10s %10s %10s %12s %12s %8s %8s %8s\n' \
  round proxy req/s p50_us p99_us cpu0_us/req proc_us/req busy% before% rss_MB >&2
for r in $(seq "$rounds"); do
  # The order rotates each round (sluice nginx haproxy, nginx haproxy
  # sluice, ...): no proxy always runs first after the others' load, or
  # always last as the machine drifts within a round.
  order=()
  for ((i = 0; i < ${#proxies[@]}; i++)); do
    order+=("${proxies[$(((i + r - 1) % ${#proxies[@]}))]}")
  done
  for p in "${order[@]}"; do
    start_proxy "$p"
    taskset -c 1 wrk -t1 -c"$connections" -d"${warmup}s" "$url_base:${port[$p]}/" >/dev/null
    # others' load on the CPUs (the proxy is idle now): wait for quiet
    before=$(python3 "$HELPER" quiet "$quiet_pct" "$max_wait")
    read -r b0 b1 waited <<<"$before"
    [ "$waited" -gt 0 ] && say "waited ${waited}s for CPUs 0 and 1 to be quiet (now $b0% and $b1% busy)"
    c0=$(python3 "$HELPER" cpu 0)
    s0=$(python3 "$HELPER" proc "$proxy_pid")
    taskset -c 1 $wrk_cmd "$url_base:${port[$p]}/" >"$TMP/wrk-$p-$r.txt"
    c1=$(python3 "$HELPER" cpu 0)
    s1=$(python3 "$HELPER" proc "$proxy_pid")
    row=$(python3 "$HELPER" row "$p" "$r" "$TMP/wrk-$p-$r.txt" "$c0" "$c1" "$s0" "$s1" "$before")
    echo "$row" >>"$jsonl"
    python3 - "$row" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['round']:<6} {r['proxy']:<8} {r['rps']:>10,.0f} {r['p50_us']:>10,.0f} {r['p99_us']:>10,.0f} "
      f"{r['cpu_us_per_req']:>12.2f} {r['proc_cpu_us_per_req']:>12.2f} {r['cpu0_busy_pct']:>8.0f} "
      f"{r['cpu0_busy_pct_before']:>3.0f}/{r['cpu1_busy_pct_before']:<4.0f} {r['rss_kb']/1024:>8.1f}"
      + (f"  ERRORS non-2xx {r['non_2xx']} socket {r['socket_errors']}" if r['non_2xx'] or r['socket_errors'] else ""))
EOF
    stop_pid "$proxy_pid"
  done
done

# --- idle keep-alive connections ----------------------------------------------
if [ "$idle_conns" -gt 0 ]; then
  for p in "${proxies[@]}"; do
    start_proxy "$p"
    say "$p: opening $idle_conns idle keep-alive connections"
    idle=$(taskset -c 1 python3 "$HELPER" idle 127.0.0.1 "${port[$p]}" "$idle_conns" "$proxy_pid")
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d={"kind":"idle","proxy":sys.argv[2],**d}; print(json.dumps(d))' \
      "$idle" "$p" | tee -a "$jsonl" >&2
    stop_pid "$proxy_pid"
  done
fi

echo >&2
python3 "$HELPER" report "$jsonl" "$out_dir/$stem.json" "$out_dir/$stem.md"
say "wrote $out_dir/$stem.json and $out_dir/$stem.md"
