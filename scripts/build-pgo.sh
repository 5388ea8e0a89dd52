#!/usr/bin/env bash
# Builds sluice with profile-guided optimisation (PGO): an instrumented
# build serves a short training load through real processes, and the
# release build is then compiled with the profile it recorded, so LLVM
# lays out and inlines the request path by how often each branch runs.
#
#   scripts/build-pgo.sh            # writes target/pgo/release/sluice
#
# Needs what `scripts/setup.sh --bench` installs (nginx as the training
# backend, wrk, h2load) and the toolchain's llvm-tools component (added
# here through rustup if missing). Root is not needed: the training runs
# with `--ebpf off` on 127.0.0.1.
#
# The training load (about 30 s), each through one sluice worker to one
# nginx backend:
#   - HTTP/1.1 keep-alive, 13-byte responses  (wrk -c50)
#   - HTTP/1.1 keep-alive, 1 MiB responses    (wrk -c8)
#   - h2c, 13-byte responses                  (h2load -c32 -m16)
#   - h2c, 1 MiB responses                    (h2load -c8 -m1)
# Paths the load does not take (errors, reloads, gRPC, eBPF) are compiled
# as in a plain build, only laid out as cold. The profile is tied to the
# sources it was recorded from: run the script again after changing them
# (a stale profile still builds; functions that changed lose its hints).
#
# What it buys is measured in docs/benchmarks.md ("Ninth session").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
say() { printf 'build-pgo: %s\n' "$*" >&2; }

for tool in nginx wrk h2load python3; do
  command -v "$tool" >/dev/null 2>&1 || {
    say "$tool not found: run scripts/setup.sh --bench first"
    exit 1
  }
done

# llvm-profdata must come from the LLVM that rustc itself uses: the raw
# profile format changes between LLVM majors.
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | awk '/^host:/ {print $2}')
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  say "adding the llvm-tools component (llvm-profdata)"
  rustup component add llvm-tools-preview >/dev/null 2>&1 || true
fi
[ -x "$profdata" ] || {
  say "no llvm-profdata at $profdata: install the llvm-tools component of $(rustc -V)"
  exit 1
}

pgo_dir="$ROOT/target/pgo"
raw_dir="$pgo_dir/raw"
rm -rf "$raw_dir"
mkdir -p "$raw_dir"

say "building the instrumented sluice (target/pgo-gen)"
RUSTFLAGS="-Cprofile-generate=$raw_dir" \
  cargo build --release -p sluice --target-dir "$ROOT/target/pgo-gen" \
  --manifest-path "$ROOT/Cargo.toml"
instrumented="$ROOT/target/pgo-gen/release/sluice"

# === training ===
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

read -r backend_port proxy_port < <(python3 "$ROOT/bench/h1_helper.py" ports 2)
backend_nginx_conf "$work/backend" "$backend_port"
nginx -p "$work/backend" -c "$work/backend/nginx.conf" &
pids+=($!)
wait_port "$backend_port" "${pids[-1]}" || { say "the training backend did not start"; exit 1; }

sluice_routes "$proxy_port" "$backend_port" >"$work/routes.yaml"
"$instrumented" --workers 1 --bind 127.0.0.1 --ebpf off "$work/routes.yaml" >"$work/sluice.log" 2>&1 &
sluice_pid=$!
pids+=("$sluice_pid")
wait_port "$proxy_port" "$sluice_pid" || { say "sluice did not start: $(tail -n 5 "$work/sluice.log")"; exit 1; }

url=http://127.0.0.1:$proxy_port
say "training: HTTP/1.1 and h2c, small and 1 MiB responses (~30 s)"
wrk -t1 -c50 -d8s "$url/small" >"$work/train.txt"
wrk -t1 -c8 -d6s "$url/big" >>"$work/train.txt"
h2load -t1 -c32 -m16 -D 8 "$url/small" >>"$work/train.txt"
h2load -t1 -c8 -m1 -D 6 "$url/big" >>"$work/train.txt"
grep -E "Requests/sec|requests:" "$work/train.txt" | sed 's/^/build-pgo:   /' >&2
if grep -Eq "Non-2xx|Socket errors| [1-9][0-9]* failed| [1-9][0-9]* errored" "$work/train.txt"; then
  say "the training load saw errors:"; cat "$work/train.txt" >&2; exit 1
fi

# The profile is written when sluice exits normally (SIGTERM drains).
kill -TERM "$sluice_pid"
wait "$sluice_pid" || true
ls "$raw_dir"/*.profraw >/dev/null 2>&1 || { say "the instrumented sluice wrote no profile"; exit 1; }
"$profdata" merge -o "$pgo_dir/merged.profdata" "$raw_dir"
# Named by its content: cargo does not see a file that RUSTFLAGS names
# change, so a new profile must be a new path for the build below to use it.
profile="$pgo_dir/sluice-$(sha256sum "$pgo_dir/merged.profdata" | cut -c1-16).profdata"
mv "$pgo_dir/merged.profdata" "$profile"
find "$pgo_dir" -maxdepth 1 -name 'sluice-*.profdata' ! -path "$profile" -delete
say "profile: $profile ($(du -h "$profile" | cut -f1))"

say "building sluice with the profile (target/pgo)"
RUSTFLAGS="-Cprofile-use=$profile" \
  cargo build --release -p sluice --target-dir "$pgo_dir" \
  --manifest-path "$ROOT/Cargo.toml"
say "wrote $pgo_dir/release/sluice"
