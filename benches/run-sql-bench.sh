#!/usr/bin/env bash
# Top-talkers SQL over the flow history (issue 4): the relay's SqlEngine
# (DataFusion) against DuckDB on the same Parquet files, in the same run.
#
#   benches/run-sql-bench.sh            # 10,000,000 flows
#   benches/run-sql-bench.sh 2000000    # another size (flows)
#
# Makes a temporary directory, a Python venv in it with `duckdb` from PyPI
# (pip, nothing installed system-wide), then runs `cargo bench --bench
# sql_top_talkers`, which writes the flows through the relay's history writer
# into the same directory and times the query on both engines. The directory
# is removed at the end. Overrides (environment): SQL_BENCH_ROUNDS (3),
# KEEP=1 to keep the directory (reused by a later run with the same size when
# given as SQL_BENCH_DIR), PYTHON (python3), VENV (a venv to reuse or make,
# e.g. /var/cache/sql-bench-venv; default: one in the temporary directory).
set -euo pipefail

cd "$(dirname "$0")/.."
flows="${1:-10000000}"
case "$flows" in
  -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
  *[!0-9_]*|'') echo "flows must be a number: $flows" >&2; exit 2 ;;
esac

tmp="$(mktemp -d "${TMPDIR:-/tmp}/sql-bench.XXXXXX")"
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

venv="${VENV:-$tmp/venv}"
if "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  echo "== reusing the venv with duckdb in $venv" >&2
else
  echo "== venv with duckdb in $venv" >&2
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb
fi
"$venv/bin/python" -c 'import duckdb; print("duckdb", duckdb.__version__)'

echo "== cargo bench (release) with $flows flows" >&2
SQL_BENCH_FLOWS="$flows" \
SQL_BENCH_DIR="${SQL_BENCH_DIR:-$tmp/history}" \
SQL_BENCH_PYTHON="$venv/bin/python" \
  cargo bench -p benches --bench sql_top_talkers
