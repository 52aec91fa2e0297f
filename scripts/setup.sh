#!/usr/bin/env bash
# Installs what building and running the project needs, idempotently:
# clang-19 (builds the eBPF probes), protoc (builds the gRPC types), iproute2 (the
# lab), libbpf headers, tmux (terminal tests). Run as root.
set -euo pipefail
need=()
command -v clang-19 >/dev/null || need+=(clang-19)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v ip >/dev/null || need+=(iproute2)
command -v tc >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v dot >/dev/null || need+=(graphviz)
command -v tmux >/dev/null || need+=(tmux)
command -v prometheus >/dev/null || need+=(prometheus)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
