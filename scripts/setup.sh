#!/usr/bin/env bash
# Installs, idempotently, exactly the Debian packages that building and testing
# read (README.md lists them with the same reasons):
#   clang-19        compiles the eBPF probes (ebpf-probes/, flow-probe/build.rs)
#   libbpf-dev      bpf_helpers.h and friends, included by the probes
#   linux-libc-dev  linux/bpf.h and asm/ headers, included by the probes
#   iproute2        ip and tc: the lab's namespaces, veths and qdiscs
#   nftables        nft: tests that make the kernel drop packets, latency bench
#   graphviz        dot: tests render `observe graph -o dot`
#   tmux            the terminal UI test drives `observe flows --follow` in tmux
#   prometheus      the metrics test scrapes the probe with the real Prometheus
#   podman          the container tests and `observe lab up --containers`: real
#                   containers, and `podman system service` (the Docker Engine API)
#                   that flow-probe --containers discovers them through
#   runc            podman's OCI runtime here (crun refuses a hybrid cgroup layout)
#   conmon          podman's container monitor
#   netavark        podman's network backend: internal bridge networks, veths
#   aardvark-dns    netavark's DNS server, which it starts for every bridge network
#   iptables        netavark's firewall rules (it fails without the binary)
#   busybox-static  the container image's one binary (sh, sleep, httpd, nc),
#                   imported as a local image: no registry needed
#   python3-venv    the virtual environment below (Debian's python3 lacks venv
#                   without it; skipped when python3 already makes one)
# and, from PyPI into a virtual environment (default /var/cache/observe-ci/venv,
# or $OBSERVE_VENV), a Flight SQL client that is not ours for the SQL client
# test (e2e/tests/sql_clients.rs), and gRPC's own health client for the
# health test (e2e/tests/health.rs):
#   adbc-driver-flightsql, adbc-driver-manager, pyarrow
#   grpcio, grpcio-health-checking, protobuf
# The Rust build itself needs no system package (protobuf is compiled by protox).
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
packages=(clang-19 libbpf-dev linux-libc-dev iproute2 nftables graphviz tmux prometheus
  podman runc conmon netavark aardvark-dns iptables busybox-static)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The ADBC Flight SQL driver and gRPC's health client, in their own virtual
# environment (idempotent: only when one cannot be imported from it yet).
venv=${OBSERVE_VENV:-/var/cache/observe-ci/venv}
python_packages=(adbc-driver-flightsql==1.13.0 adbc-driver-manager==1.13.0 pyarrow==26.0.1
  grpcio==1.85.4 grpcio-health-checking==1.85.1 protobuf==7.36.2)
if ! "$venv/bin/python" -c 'import adbc_driver_flightsql.dbapi, pyarrow, grpc_health.v1.health_pb2_grpc' 2>/dev/null; then
  echo "setup: installing ${python_packages[*]} into $venv"
  mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${python_packages[@]}"
fi
echo "setup: the SQL and health client tests' Python is $venv/bin/python"
