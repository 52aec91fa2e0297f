#!/usr/bin/env bash
# Latency overhead of observing (issue 7): sidecar vs eBPF on the lab.
#
#   sudo benches/run-latency.sh            # short mode, about a minute of load
#   sudo benches/run-latency.sh --long     # for publication: 5 rounds x 30 s
#
# Builds flow-probe and the load generator in release, then runs
# `loadgen run`: one lab (client + server), five scenarios interleaved
# (baseline, observing, full datapath, full every-packet, sidecar proxies), and
# writes benches/RESULTS.md. Overrides: QPS, CONNECTIONS, SECS, ROUNDS, WARMUP,
# BODY, OUT, NOTE, FLOW_PROBE_BIN (a flow-probe binary to use instead of
# building one) (environment).
set -euo pipefail

cd "$(dirname "$0")/.."
mode=short
for arg in "$@"; do
  case "$arg" in
    --long) mode=long ;;
    --short) mode=short ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "run-latency.sh: needs root (network namespaces, nftables, BPF)" >&2
  exit 1
fi

if [ "$mode" = long ]; then
  : "${ROUNDS:=5}" "${SECS:=30}"
else
  : "${ROUNDS:=2}" "${SECS:=5}"
fi
: "${QPS:=1000}" "${CONNECTIONS:=64}" "${WARMUP:=0.5}" "${BODY:=64}"
: "${OUT:=benches/RESULTS.md}" "${NOTE:=}"

target=${CARGO_TARGET_DIR:-target}/release
if [ -n "${FLOW_PROBE_BIN:-}" ]; then
  # A flow-probe built elsewhere (or earlier): build only the load generator.
  cargo build --release -p benches --bin loadgen
  flow_probe=$FLOW_PROBE_BIN
else
  cargo build --release -p flow-probe --bin flow-probe -p benches --bin loadgen
  flow_probe=$target/flow-probe
fi

state_dir=$(mktemp -d /tmp/latency-XXXXXX)
rmdir "$state_dir" # the lab creates it
cleanup() {
  # A run that was killed leaves its lab behind: take it down by its state.
  "$target/loadgen" cleanup --state-dir "$state_dir" || true
  rm -rf "$state_dir"
}
trap cleanup EXIT

"$target/loadgen" run --mode "$mode" \
  --qps "$QPS" --connections "$CONNECTIONS" --secs "$SECS" --warmup "$WARMUP" \
  --rounds "$ROUNDS" --body "$BODY" --note "$NOTE" \
  --out "$OUT" --flow-probe "$flow_probe" --state-dir "$state_dir"
