#!/usr/bin/env bash
# Runs every test, the ones that load real probes into the kernel included.
# Needs root (BPF, network namespaces). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (the tests load eBPF programs and build network namespaces)" >&2; exit 1; }
./scripts/setup.sh
# The end-to-end tests run the real binaries; build them first.
cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast 2>&1
