#!/usr/bin/env bash
# Issue 5's bench: sluice --ebpf on vs off, same run, three loads.
#
#   bench/ebpf.sh [--rounds N] [--duration S] [--quick] [--sluice PATH]
#                 [--loads small,big,huge,ws] [--modes off,on[,backend][,bypass][,splice][,responses]]
#                 [--ws-mib M] [--ws-tunnels T]
#
# sluice runs alone on CPU 0 (--workers 1, restarted per run); an nginx
# backend (13-byte /small, 1 MiB /big, sendfile), a WebSocket echo backend
# (bench/ws_echo.py), the load generators and this script share CPU 1.
# Loads: small = wrk -t1 -c50 keep-alive GET /small; big = wrk -t1 -c8 GET
# /big (1 MiB responses); huge = wrk -t1 -c2 GET /huge (64 MiB responses,
# not in the default loads); ws = T upgraded connections (default 4) each
# echoing M MiB (default 256). Modes: off = --ebpf off, on = --ebpf on
# --ebpf-local-clients true (loopback bypass of both legs; wrk and the
# echo client are local; tunnels spliced), backend = --ebpf on (the
# default: backend leg bypassed, tunnels spliced), bypass = --ebpf on
# --ebpf-splice false (backend leg only, tunnels copied in userspace),
# splice = --ebpf on --ebpf-splice true (the same as backend), responses =
# --ebpf on --ebpf-splice-responses (response bodies spliced, the backend
# leg's replies not bypassed; only big and huge). Modes
# alternate within a round, order reversed every other
# round. Per run: requests/s or MB/s, p99 (wrk), and the CPU cost on CPU 0
# (busy jiffies from /proc/stat, softirq included, over the measured
# window) per request and per GB. Prints every run, then medians over the
# rounds and each mode's CPU ÷ off's. --quick: 1 round, 3 s, 64 MiB echoes.
# Needs root for --ebpf on. Run it under the shared lock when others
# benchmark: flock /tmp/sluice-cpu.lock bench/ebpf.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER="$ROOT/bench/h1_helper.py"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
WS="$ROOT/bench/ws_echo.py"
rounds=3 duration=10 warmup=2 loads=small,big,ws modes=off,on mib=256 tunnels=4 sluice_bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --quick) rounds=1 duration=3 warmup=1 mib=64; shift ;;
    --sluice) sluice_bin=$2; shift 2 ;;
    --loads) loads=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --ws-mib) mib=$2; shift 2 ;;
    --ws-tunnels) tunnels=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "ebpf.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$sluice_bin" ]; then
  (cd "$ROOT" && cargo build --release -p sluice --quiet)
  sluice_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice"
fi
for t in wrk nginx taskset python3 curl; do
  command -v "$t" >/dev/null || { echo "ebpf.sh: missing $t (scripts/setup.sh --bench)" >&2; exit 1; }
done
IFS=, read -r -a loads <<<"$loads"
IFS=, read -r -a modes <<<"$modes"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-ebpf.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
taskset -pc 1 $$ >/dev/null   # this script and what it starts: CPU 1, but sluice
read -r nginx_port ws_port proxy_port admin_port <<<"$(python3 "$HELPER" ports 4 | tr '\n' ' ')"

mkdir -p "$TMP/nginx/logs"
head -c $((1 << 20)) /dev/zero | tr '\0' x >"$TMP/nginx/big.bin"
[[ ",${loads[*]}," == *huge* ]] && head -c $((64 << 20)) /dev/zero | tr '\0' y >"$TMP/nginx/huge.bin"
cat >"$TMP/nginx/nginx.conf" <<EOF
$([ "$(id -u)" -eq 0 ] && echo "user root;")
worker_processes 1; daemon off; pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn; worker_rlimit_nofile 65536;
events { worker_connections 60000; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s; sendfile on;
  client_body_temp_path $TMP/nginx/body; proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fcgi; uwsgi_temp_path $TMP/nginx/uwsgi; scgi_temp_path $TMP/nginx/scgi;
  server {
    listen 127.0.0.1:$nginx_port backlog=4096;
    location = /big { default_type application/octet-stream; alias $TMP/nginx/big.bin; }
    location = /huge { default_type application/octet-stream; alias $TMP/nginx/huge.bin; }
    location / { default_type text/plain; return 200 'Hello, world!'; }
  }
}
EOF
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout" 2>&1 & pids+=($!)
python3 "$WS" backend "$ws_port" & pids+=($!)
wait_port "$nginx_port" && wait_port "$ws_port" || { echo "ebpf.sh: backends did not start" >&2; exit 1; }

slice() {  # slice NAME PORT
  printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: %s-1, namespace: bench, labels: {kubernetes.io/service-name: %s}}\naddressType: IPv4\nports: [{name: http, port: %s, protocol: TCP}]\nendpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]\n' "$1" "$1" "$2"
}
{ cat <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec: {gatewayClassName: sluice, listeners: [{name: http, protocol: HTTP, port: $proxy_port}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /ws}}]
    backendRefs: [{name: ws, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web, port: 80}]
EOF
slice web "$nginx_port"; slice ws "$ws_port"; } >"$TMP/routes.yaml"

flags_of() { case $1 in off) echo "--ebpf off" ;; on) echo "--ebpf on --ebpf-local-clients true" ;; backend) echo "--ebpf on" ;; splice) echo "--ebpf on --ebpf-splice true" ;; bypass) echo "--ebpf on --ebpf-splice false" ;; responses) echo "--ebpf on --ebpf-splice-responses" ;; *) echo "ebpf.sh: unknown mode $1" >&2; exit 2 ;; esac; }
url="http://127.0.0.1:$proxy_port"
rows="$TMP/rows.jsonl"; : >"$rows"
echo "sluice $sluice_bin; $rounds round(s) x ${duration}s; ws: $tunnels x $mib MiB; $(uname -r)"
for r in $(seq "$rounds"); do
  order=("${modes[@]}")
  if [ $((r % 2)) -eq 0 ]; then order=(); for ((i=${#modes[@]}-1; i>=0; i--)); do order+=("${modes[$i]}"); done; fi
  for load in "${loads[@]}"; do
    for mode in "${order[@]}"; do
      [ "$mode" = splice ] && [ "$load" != ws ] && continue   # splice changes only tunnels
      [ "$mode" = responses ] && [ "$load" != big ] && [ "$load" != huge ] && continue   # only large bodies
      # shellcheck disable=SC2046
      taskset -c 0 "$sluice_bin" --workers 1 --bind 127.0.0.1 --admin "127.0.0.1:$admin_port" \
        $(flags_of "$mode") "$TMP/routes.yaml" >"$TMP/sluice.log" 2>&1 &
      sp=$!; pids+=("$sp")
      wait_port "$proxy_port" || { cat "$TMP/sluice.log" >&2; exit 1; }
      out="$TMP/out-$load-$mode-$r.txt"
      case $load in
        small|big|huge)
          path=/small c=50; [ "$load" = big ] && path=/big c=8; [ "$load" = huge ] && path=/huge c=2
          wrk -t1 -c$c -d${warmup}s "$url$path" >/dev/null
          read -r b0 t0 < <(python3 "$HELPER" cpu 0)
          wrk -t1 -c$c -d${duration}s --latency "$url$path" >"$out"
          read -r b1 t1 < <(python3 "$HELPER" cpu 0)
          measure=$(python3 "$HELPER" wrk "$out") ;;
        ws)
          python3 "$WS" client "$proxy_port" 8 1 >/dev/null
          read -r b0 t0 < <(python3 "$HELPER" cpu 0)
          python3 "$WS" client "$proxy_port" "$mib" "$tunnels" >"$out"
          read -r b1 t1 < <(python3 "$HELPER" cpu 0)
          read -r wall bytes ok <"$out"
          measure="{\"wall\": $wall, \"bytes\": $bytes, \"ok\": $ok}" ;;
      esac
      metrics=$(curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^sluice_(ebpf_bytes|tunnel_userspace)' || true)
      kill "$sp"; wait "$sp" 2>/dev/null || true
      python3 - "$rows" "$load" "$mode" "$r" "$measure" "$((b1 - b0))" "$((t1 - t0))" "$metrics" <<'PY'
import json, os, sys
rows, load, mode, rnd, m, busy, total, metrics = sys.argv[1:9]
m, hz = json.loads(m), os.sysconf("SC_CLK_TCK")
busy_s = int(busy) / hz
if load == "ws":
    nbytes, req, p99, secs, ok = m["bytes"], None, None, m["wall"], bool(m["ok"])
else:
    req, p99, secs = m["requests"], m["p99_us"], m["wrk_seconds"]
    nbytes = req * {"big": 1 << 20, "huge": 64 << 20}.get(load, 13)
    ok = m["non_2xx"] == 0 and m["socket_errors"] == 0
def metric(prefix):
    return sum(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith(prefix))
x = {"load": load, "mode": mode, "round": int(rnd), "ok": ok,
     "rps": req / secs if req else None, "mbs": nbytes / secs / 1e6, "p99_us": p99,
     "cpu0_pct": 100 * int(busy) / max(int(total), 1),
     "us_per_req": busy_s * 1e6 / req if req else None, "ms_per_gb": busy_s * 1e3 / (nbytes / 1e9),
     "kernel_mb": (metric('sluice_ebpf_bytes_total{program="sk_msg",verdict="redirected"}')
                   + metric('sluice_ebpf_bytes_total{program="sk_skb",verdict="redirected"}')) / 1e6,
     "tunnel_userspace_mb": metric("sluice_tunnel_userspace_bytes_total") / 1e6}
with open(rows, "a") as f:
    f.write(json.dumps(x) + "\n")
f = lambda v, fmt: "-" if v is None else format(v, fmt)
print(f"round {rnd} {load:5} {mode:6} req/s {f(x['rps'], '.0f'):>7}  MB/s {x['mbs']:8.1f}  "
      f"p99 {f(p99, '.0f'):>6} us  CPU0 {x['cpu0_pct']:3.0f}%  {f(x['us_per_req'], '.2f'):>7} us/req  "
      f"{x['ms_per_gb']:9.1f} ms/GB  kernel-redirected {x['kernel_mb']:.0f} MB  ok={ok}")
PY
    done
  done
done
echo
echo "medians of $rounds round(s); CPU = busy time of CPU 0 (sluice's core, softirq included):"
python3 - "$rows" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs) if xs else None
f = lambda v, fmt: "-" if v is None else format(v, fmt)
print("| load | mode | req/s | MB/s | p99 (µs) | CPU 0 µs/req | CPU 0 ms/GB | CPU vs off | all ok |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|")
for load in dict.fromkeys(r["load"] for r in rows):
    base = None
    for mode in dict.fromkeys(r["mode"] for r in rows):
        rs = [r for r in rows if r["load"] == load and r["mode"] == mode]
        if not rs:
            continue
        g = lambda k: med([r[k] for r in rs if r[k] is not None])
        cpu = g("ms_per_gb")
        base = cpu if mode == "off" else base
        ratio = f"{cpu / base:.2f}x" if base else "-"
        print(f"| {load} | {mode} | {f(g('rps'), ',.0f')} | {g('mbs'):,.1f} | {f(g('p99_us'), '.0f')} | "
              f"{f(g('us_per_req'), '.2f')} | {cpu:,.1f} | {ratio} | {all(r['ok'] for r in rs)} |")
PY
