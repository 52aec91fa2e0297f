#!/usr/bin/env bash
# The demo: builds the default lab (network namespaces, veths, endpoints), starts
# flow-probe on it, generates traffic and follows the flows. Ctrl-C tears it down.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (eBPF and network namespaces need it)" >&2; exit 1; }
./scripts/setup.sh
cargo build --workspace --bins --quiet
exec cargo run --quiet --bin observe -- demo "$@"
