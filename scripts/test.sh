#!/usr/bin/env bash
# Runs every test, the ones that load real probes into the kernel included.
# Needs root (BPF, network namespaces); installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/as-root.sh
./scripts/setup.sh
# The end-to-end tests run the real binaries; build them first.
cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast 2>&1
