#!/usr/bin/env bash
# Installs what Sluice's build, tests and benchmarks need, idempotently.
# A fresh machine has only the Rust toolchain, gcc and Python; this adds the
# rest from Debian's packages and crates.io. Safe to run again: every step
# checks first.
#
#   scripts/setup.sh            # what the tests need
#   scripts/setup.sh --bench    # plus wrk, h2load, nginx, HAProxy
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

if [ "$want_bench" -eq 1 ]; then
  need_apt wrk wrk
  need_apt h2load nghttp2-client
  need_apt nginx nginx
  need_apt haproxy haproxy
fi
say "ready"
