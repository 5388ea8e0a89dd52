#!/usr/bin/env bash
# Runs the proxy on the bundled demo: built-in backends that answer with
# their own name, example routes (canary, header, method, mirror), and the
# curl lines to try. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p sluice -p route-compiler
exec target/release/sluice demo "$@"
