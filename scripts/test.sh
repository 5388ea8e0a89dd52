#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, the route compiler's
# property, fuzz and acceptance tests, and the end-to-end tests that start
# real processes. Installs what they need first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked "$@"
