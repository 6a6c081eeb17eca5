#!/usr/bin/env bash
# Runs the benchmarks behind docs/benchmarks.md against SQLite and a private
# PostgreSQL, then prints the ratio of UPanel's batched metrics insert to the
# bare-driver ceiling measured in the same run. BENCHTIME and COUNT tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
trap stop_services EXIT
start_postgres

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
echo "# $(go version), PostgreSQL $("$(pg_bin)/postgres" --version | awk '{print $3}')"
out=$(mktemp)
go test -run '^$' -bench 'MetricsInsert|JobClaimComplete' -benchtime "${BENCHTIME:-3s}" -count "${COUNT:-3}" ./internal/store/ | tee "$out"

echo
echo "# metrics insert: UPanel against the bare driver (mean rows/s over runs)"
awk '
/^BenchmarkMetricsInsert\// {
	split($1, p, "/"); key = p[2] "/" p[3]; side = p[4]; sub(/-[0-9]+$/, "", side)
	for (i = 1; i <= NF; i++) if ($(i+1) == "rows/s") { sum[key, side] += $i; n[key, side]++ }
	keys[key] = 1
}
END {
	printf "%-22s %14s %14s %8s\n", "case", "upanel rows/s", "raw rows/s", "ratio"
	for (k in keys) {
		u = sum[k, "upanel"] / n[k, "upanel"]; r = sum[k, "raw"] / n[k, "raw"]
		printf "%-22s %14.0f %14.0f %7.0f%%\n", k, u, r, 100 * u / r
	}
}' "$out" | sort
rm -f "$out"
