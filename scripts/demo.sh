#!/usr/bin/env bash
# The demo: builds the default lab (network namespaces, veths, endpoints), starts
# flow-probe on it and a relay, generates traffic and follows the flows.
# Ctrl-C tears it down.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/as-root.sh
./scripts/setup.sh
cargo build --workspace --bins --quiet
exec cargo run --quiet --bin observe -- demo "$@"
