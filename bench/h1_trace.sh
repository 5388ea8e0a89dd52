#!/usr/bin/env bash
# Where a proxy's CPU goes per request, without perf: syscalls and io_uring
# operations per request under the same wrk load as bench/h1.sh, from
# tracefs events on CPU 0 only, filtered to the proxy's threads (root).
# Diagnostic only: tracing slows the proxy, so its CPU figures are not
# comparable with h1.sh's; the counts per request are.
#
#   bench/h1_trace.sh [--sluice PATH] [--duration S] [--proxy sluice|nginx|haproxy]...
#
# For each proxy: start it on CPU 0 (backend and wrk on CPU 1), warm up,
# then count for --duration seconds (default 3):
#   * syscalls by name made by the proxy's threads (raw_syscalls:sys_enter),
#   * io_uring requests submitted by opcode (io_uring:io_uring_submit_req),
#     and how many went to the poll path (io_uring_poll_arm: issued before
#     data was ready) or to io-wq worker threads (io_uring_queue_async_work),
#   * voluntary context switches of the proxy's threads,
# each divided by the requests wrk completed while tracing was on.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
HELPER="$ROOT/bench/h1_helper.py"
duration=3
sluice_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice"
proxies=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sluice) sluice_bin=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --proxy) proxies+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "h1_trace.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ ${#proxies[@]} -gt 0 ] || proxies=(sluice nginx haproxy)
[ "$(id -u)" -eq 0 ] || { echo "h1_trace.sh: needs root (tracefs)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-h1trace.XXXXXX")
TFS=
for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do
  [ -f "$d/trace" ] && TFS=$d && break
done
mounted=0
if [ -z "$TFS" ]; then
  mkdir -p "$TMP/tracefs"
  mount -t tracefs nodev "$TMP/tracefs"
  TFS=$TMP/tracefs; mounted=1
fi
declare -A started=()
EVENTS=(raw_syscalls/sys_enter io_uring/io_uring_submit_req io_uring/io_uring_poll_arm io_uring/io_uring_queue_async_work)
# a private trace instance: leaves the top-level buffer and anyone else's alone
INST="$TFS/instances/sluice-h1-$$"
mkdir "$INST"
echo 1 >"$INST/tracing_cpumask"          # CPU 0: the proxy's
echo 262144 >"$INST/buffer_size_kb"
echo 0 >"$INST/tracing_on"
stop_tracing() {
  local ev
  echo 0 >"$INST/tracing_on" 2>/dev/null || true
  for ev in "${EVENTS[@]}"; do echo 0 >"$INST/events/$ev/enable" 2>/dev/null || true; done
}
cleanup() {
  local pid
  stop_tracing
  rmdir "$INST" 2>/dev/null || true
  for pid in "${!started[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ "$mounted" -eq 1 ] && umount "$TMP/tracefs"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r bport sport nport hport < <(python3 "$HELPER" ports 4)
user_line=; [ "$(id -u)" -eq 0 ] && user_line="user root;"
nginx_conf() {  # nginx_conf DIR PORT [UPSTREAM_PORT]
  local dir=$1 port=$2 up=${3:-}
  mkdir -p "$dir"
  local loc="default_type text/plain; return 200 'Hello, world!';"
  local upstream=
  if [ -n "$up" ]; then
    upstream="upstream backend { server 127.0.0.1:$up; keepalive 64; keepalive_requests 1000000; }"
    loc='proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
  fi
  cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $dir/b; proxy_temp_path $dir/p; fastcgi_temp_path $dir/f;
  uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;
  $upstream
  server { listen 127.0.0.1:$port backlog=4096; location / { $loc } } }
EOF
}
nginx_conf "$TMP/backend" "$bport"
taskset -c 1 nginx -p "$TMP/backend" -e "$TMP/backend/error.log" -c "$TMP/backend/nginx.conf" &
started[$!]=backend
wait_port "$bport"

nginx_conf "$TMP/nginx" "$nport" "$bport"
mkdir -p "$TMP/haproxy" "$TMP/sluice"
cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
  nbthread 1
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$hport
  default_backend be
backend be
  server s1 127.0.0.1:$bport
EOF
sluice_routes "$sport" "$bport" >"$TMP/sluice/routes.yaml"
sluice_flags=(--workers 1 --bind 127.0.0.1)
"$sluice_bin" --help 2>/dev/null | grep -q -- '--ebpf' && sluice_flags+=(--ebpf off)

count_events() {  # count_events TRACEFILE REQUESTS
  python3 - "$1" "$2" <<'EOF'
import collections, re, sys
OPS = ("NOP READV WRITEV FSYNC READ_FIXED WRITE_FIXED POLL_ADD POLL_REMOVE SYNC_FILE_RANGE "
       "SENDMSG RECVMSG TIMEOUT TIMEOUT_REMOVE ACCEPT ASYNC_CANCEL LINK_TIMEOUT CONNECT FALLOCATE "
       "OPENAT CLOSE FILES_UPDATE STATX READ WRITE FADVISE MADVISE SEND RECV OPENAT2 EPOLL_CTL "
       "SPLICE PROVIDE_BUFFERS REMOVE_BUFFERS TEE SHUTDOWN RENAMEAT UNLINKAT MKDIRAT SYMLINKAT "
       "LINKAT MSG_RING FSETXATTR SETXATTR FGETXATTR GETXATTR SOCKET URING_CMD SEND_ZC SENDMSG_ZC "
       "READ_MULTISHOT").split()
reqs = int(sys.argv[2])
evs = ("sys_enter", "io_uring_submit_req", "io_uring_poll_arm", "io_uring_queue_async_work")
counts = {k: collections.Counter() for k in evs}
pat = re.compile(r" (sys_enter|io_uring_submit_req|io_uring_poll_arm|io_uring_queue_async_work): (.*)")
for line in open(sys.argv[1], errors="replace"):
    m = pat.search(line)
    if not m:
        continue
    ev, rest = m.groups()
    if ev == "sys_enter":
        k = re.search(r"NR (\d+)", rest)
        key = "syscall " + (k.group(1) if k else "?")
    else:
        k = re.search(r"opcode (\w+)", rest)
        key = k.group(1) if k else "?"
        if key.isdigit() and int(key) < len(OPS):
            key = OPS[int(key)]
    counts[ev][key] += 1
NAMES = {0: "read", 1: "write", 7: "poll", 20: "writev", 19: "readv", 44: "sendto", 45: "recvfrom",
         46: "sendmsg", 47: "recvmsg", 232: "epoll_wait", 233: "epoll_ctl", 281: "epoll_pwait",
         426: "io_uring_enter", 288: "accept4", 42: "connect", 3: "close", 202: "futex",
         228: "clock_gettime", 54: "setsockopt", 55: "getsockopt", 10: "mprotect", 41: "socket", 72: "fcntl", 16: "ioctl",
         441: "epoll_pwait2", 271: "ppoll"}
titles = {"sys_enter": "syscalls", "io_uring_submit_req": "io_uring requests submitted",
          "io_uring_poll_arm": "io_uring requests that armed a poll (not ready when issued)",
          "io_uring_queue_async_work": "io_uring requests punted to io-wq threads"}
for ev, c in counts.items():
    total = sum(c.values())
    print(f"  {titles[ev]}: {total / reqs:.3f}/req")
    for key, n in c.most_common(8):
        if key.startswith("syscall "):
            nr = key.split()[1]
            key = NAMES.get(int(nr), key) if nr.isdigit() else key
        print(f"    {key:<28} {n / reqs:8.3f}/req")
EOF
}

for p in "${proxies[@]}"; do
  case "$p" in
    sluice) taskset -c 0 "$sluice_bin" "${sluice_flags[@]}" "$TMP/sluice/routes.yaml" >"$TMP/sluice/out" 2>&1 & port=$sport ;;
    nginx) taskset -c 0 nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" & port=$nport ;;
    haproxy) taskset -c 0 haproxy -db -f "$TMP/haproxy/haproxy.cfg" >"$TMP/haproxy/out" 2>&1 & port=$hport ;;
  esac
  pid=$!; started[$pid]=$p
  wait_port "$port"
  taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:$port/" >/dev/null
  # the proxy's threads (nginx: the worker processes too)
  tids=()
  for q in $(python3 -c "import json,sys; print(' '.join(map(str, json.loads(sys.argv[1])['pids'])))" \
             "$(python3 "$HELPER" proc "$pid")"); do
    for t in /proc/"$q"/task/*; do tids+=("${t##*/}"); done
  done
  echo "${tids[*]}" >"$INST/set_event_pid"
  for ev in "${EVENTS[@]}"; do echo 1 >"$INST/events/$ev/enable"; done
  echo >"$INST/trace"
  s0=$(python3 "$HELPER" proc "$pid")
  echo 1 >"$INST/tracing_on"
  taskset -c 1 wrk -t1 -c50 -d"${duration}s" "http://127.0.0.1:$port/" >"$TMP/wrk.txt"
  echo 0 >"$INST/tracing_on"
  s1=$(python3 "$HELPER" proc "$pid")
  stop_tracing
  lost=$(awk '$1=="overrun:" {print $2}' "$INST/per_cpu/cpu0/stats")
  cat "$INST/trace" >"$TMP/trace.txt"
  reqs=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['requests'])" "$(python3 "$HELPER" wrk "$TMP/wrk.txt")")
  python3 - "$s0" "$s1" "$reqs" "$p" "$lost" <<'EOF'
import json, sys
a, b, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
print(f"== {sys.argv[4]}: {n} requests (traced; events lost: {sys.argv[5]}); "
      f"voluntary ctx switches {(b['vol_cs'] - a['vol_cs']) / n:.3f}/req, "
      f"involuntary {(b['invol_cs'] - a['invol_cs']) / n:.3f}/req")
EOF
  count_events "$TMP/trace.txt" "$reqs"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; unset "started[$pid]"
done
