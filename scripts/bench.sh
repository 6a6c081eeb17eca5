#!/usr/bin/env bash
# Runs the benchmarks behind docs/benchmarks.md against SQLite and a private
# PostgreSQL, then prints the ratio of UPanel's batched metrics insert to the
# bare-driver ceiling measured in the same run. BENCHTIME and COUNT tune the
# store benchmarks. Then it runs the fleet benchmark (test/fleetbench): a real
# panel with 100, 1,000 and 5,000 simulated agents per database, each case a
# window of FLEETBENCH_DURATION (60s) after a 20 s warm-up; FLEETBENCH_AGENTS
# (e.g. "100,1000") picks the sizes. About 12 minutes in all on 2 cores.
# Last, the real agent's memory and CPU on a Debian test host over
# UPANEL_AGENT_BENCH_DURATION (10m), and a deployment of a small app by the
# panel against the same clone and compose up by hand on such a host
# (DEPLOY_BENCHTIME iterations, 5x); they need Docker, which it starts.
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

# The fleet: the bare driver's ceiling for the agents' batch shape (one row a
# transaction), then the panel under N agents, one fixed window per case.
fleet=$(mktemp)
trap 'rm -f "$out" "$fleet"; stop_services' EXIT
echo
go test -run '^$' -bench 'RawInsertOneRow' -benchtime "${BENCHTIME:-3s}" -count "${COUNT:-3}" ./test/fleetbench/ | tee "$fleet"
# A case with failed pushes fails; the summary is still printed, then the exit status.
status=0
go test -run '^$' -bench 'Fleet' -benchtime 1x -timeout 90m ./test/fleetbench/ | tee -a "$fleet" || status=$?

echo
echo "# fleet: ingested samples/s against the bare driver's insert ceiling (mean rows/s) for"
echo "# one row a transaction (the agents' shape) and for batches of 100 (the store benchmark)"
awk '
function metric(unit,   i) { for (i = 2; i < NF; i++) if ($(i+1) == unit) return $i; return "" }
FILENAME == ARGV[1] && /^BenchmarkMetricsInsert\/[a-z]+\/batch=100\/raw/ {
	split($1, p, "/"); b100[p[2]] += metric("rows/s"); n100[p[2]]++
}
FILENAME == ARGV[2] && /^BenchmarkRawInsertOneRow\// {
	split($1, p, "/"); d = p[2]; sub(/-[0-9]+$/, "", d); one[d] += metric("rows/s"); n1[d]++
}
FILENAME == ARGV[2] && /^BenchmarkFleet\// {
	split($1, p, "/"); d = p[2]; a = p[3]; sub(/-[0-9]+$/, "", a); sub(/agents=/, "", a)
	k = ++cases; db[k] = d; agents[k] = a
	sps[k] = metric("samples/s"); kept[k] = metric("kept_up_%"); p50[k] = metric("p50_ms"); p99[k] = metric("p99_ms")
	rss[k] = metric("panel_rss_max_MB"); cpu[k] = metric("panel_cpu_%"); cli[k] = metric("client_cpu_%")
	dbc[k] = metric("db_cpu_%"); oth[k] = metric("other_cpu_%"); errs[k] = metric("errors")
}
END {
	printf "%-9s %6s %10s %6s %8s %8s %8s %7s %7s %7s %7s %6s %9s %9s\n", "database", "agents", "samples/s", "kept", "p50 ms", "p99 ms", "RSS MB", "panel%", "agents%", "db%", "other%", "errors", "vs 1-row", "vs b=100"
	for (k = 1; k <= cases; k++) {
		d = db[k]
		r1 = (n1[d] ? sprintf("%8.2f%%", 100 * sps[k] / (one[d] / n1[d])) : "       -")
		r100 = (n100[d] ? sprintf("%8.2f%%", 100 * sps[k] / (b100[d] / n100[d])) : "       -")
		printf "%-9s %6s %10.1f %5.0f%% %8.1f %8.1f %8.0f %7.0f %7.0f %7s %7.0f %6d %9s %9s\n", d, agents[k], sps[k], kept[k], p50[k], p99[k], rss[k], cpu[k], cli[k], (dbc[k] == "" ? "-" : sprintf("%.0f", dbc[k])), oth[k], errs[k], r1, r100
	}
	for (d in one) printf "# bare driver, one row a transaction, %s: %.0f rows/s\n", d, one[d] / n1[d]
	for (d in b100) printf "# bare driver, batches of 100, %s: %.0f rows/s\n", d, b100[d] / n100[d]
}' "$out" "$fleet"

echo
echo "# agent footprint on a Debian test host"
start_docker
go test -run '^$' -bench 'AgentFootprint' -benchtime 1x -timeout 40m ./test/e2e/ || status=$?

echo
echo "# deployments on a Debian test host: the panel against the same work by hand"
go test -run '^$' -bench '^BenchmarkDeploy$' -benchtime "${DEPLOY_BENCHTIME:-5x}" -timeout 40m ./test/e2e/ || status=$?
exit $status
