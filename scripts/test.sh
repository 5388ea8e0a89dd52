#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, the route compiler's
# property, fuzz and acceptance tests, and the end-to-end tests that start
# real processes. Installs what they need first (scripts/setup.sh).
#
# The proxy's end-to-end suites run twice: with the eBPF acceleration off,
# then on (root only: loading eBPF programs needs CAP_BPF/CAP_SYS_ADMIN);
# both runs must give the same results.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --workspace --all-targets --locked
SLUICE_TEST_EBPF=off cargo test --workspace --locked "$@"
if [ "$(id -u)" -eq 0 ]; then
  echo "test.sh: the proxy's end-to-end suites again, with --ebpf on"
  SLUICE_TEST_EBPF=on cargo test -p sluice --tests --locked "$@"
else
  echo "test.sh: not root: skipping the --ebpf on run (the eBPF tests need root)"
fi
