# Shared by the bench scripts (sourced, not run).

# sluice_routes PROXY_PORT BACKEND_PORT: the route set every HTTP bench
# gives sluice — a Gateway listening on PROXY_PORT whose one HTTPRoute
# sends every path to the backend on 127.0.0.1:BACKEND_PORT.
sluice_routes() {
  cat <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, protocol: HTTP, port: $1}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: backend, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-bench
  namespace: bench
  labels: {kubernetes.io/service-name: backend}
addressType: IPv4
ports: [{name: http, port: $2, protocol: TCP}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
EOF
}

# wait_port PORT [PID]: waits up to 10 s until 127.0.0.1:PORT accepts a
# connection; fails at once if PID is given and that process has exited.
wait_port() {
  local port=$1 pid=${2:-} _
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# nginx_temp_paths DIR: the http-block lines that keep an nginx's
# temporary files under DIR (not the system's paths, which need root).
nginx_temp_paths() {
  cat <<EOF2
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
EOF2
}

# backend_nginx_conf DIR PORT: writes DIR/nginx.conf, the one-worker backend
# that the A/B scripts and scripts/build-pgo.sh start on 127.0.0.1:PORT — a
# 13-byte body at /small, a 1 MiB file at /big (written to DIR/big) — with
# its pid, log and temporary files under DIR.
backend_nginx_conf() {
  local dir=$1 port=$2 user_line=
  # As root, nginx's workers would otherwise run as nobody, who may not
  # read DIR.
  [ "$(id -u)" -eq 0 ] && user_line="user root;"
  mkdir -p "$dir"
  [ -f "$dir/big" ] || head -c 1048576 /dev/zero >"$dir/big"
  cat >"$dir/nginx.conf" <<EOF2
$user_line
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
$(nginx_temp_paths "$dir")
  server {
    listen 127.0.0.1:$port backlog=4096;
    location /small { default_type text/plain; return 200 'Hello, world!'; }
    location /big { default_type application/octet-stream; alias $dir/big; }
  }
}
EOF2
}

# ab_args SCRIPT ARGS...: the A/B scripts' options, into the caller's
# `load`, `rounds` and `duration` (whose defaults the caller sets) and
# `builds` (every NAME=PATH[:ARGS]); --help prints SCRIPT's header.
ab_args() {
  local script=$1
  shift
  builds=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --load) load=$2; shift 2 ;;
      --rounds) rounds=$2; shift 2 ;;
      --duration) duration=$2; shift 2 ;;
      -h|--help) sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *=*) builds+=("$1"); shift ;;
      *) echo "$(basename "$script"): unknown argument $1 (builds are NAME=PATH)" >&2; exit 2 ;;
    esac
  done
}

# sluice_build_bin PGO: builds sluice for a bench script and prints the
# binary's path — the profile-guided build (scripts/build-pgo.sh,
# target/pgo/release/sluice) when PGO is 1, else the workspace's release
# build. Build output goes to stderr; a failed build returns 1 (command
# substitution does not carry `set -e` into the function).
sluice_build_bin() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [ "$1" -eq 1 ]; then
    printf 'building sluice with PGO (scripts/build-pgo.sh)\n' >&2
    "$root/scripts/build-pgo.sh" >&2 || return 1
    echo "$root/target/pgo/release/sluice"
  else
    printf 'building sluice (cargo build --release -p sluice)\n' >&2
    (cd "$root" && cargo build --release -p sluice --quiet) >&2 || return 1
    echo "${CARGO_TARGET_DIR:-$root/target}/release/sluice"
  fi
}
