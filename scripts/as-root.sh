# Sourced by the scripts that need root (eBPF, network namespaces): as root
# they go on; otherwise they run again through sudo when the machine has it,
# or stop and say that root is needed.
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then
    exec sudo -E -- "$0" "$@"
  fi
  echo "$(basename "$0"): run as root (eBPF programs and network namespaces need it); sudo is not installed" >&2
  exit 1
fi
