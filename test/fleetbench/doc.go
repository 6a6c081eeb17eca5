// Package fleetbench measures how many agents one panel serves: a real upanel
// process, started from a fresh build, on SQLite or PostgreSQL, is pushed to by
// hundreds to thousands of simulated agents that send what upanel-agent sends
// (a heartbeat and a one-sample metrics batch every interval, each with a
// growing sequence number) over their own keep-alive connections. The store
// benchmarks (internal/store) measure the database alone; this one measures the
// whole ingest path (HTTP, agent authentication, replay check, heartbeat and
// metrics transactions) and the panel's memory and CPU while it runs.
//
// It holds benchmarks only, so "make test" compiles it and runs nothing. Run it
// with "make bench", or:
//
//	go test -run '^$' -bench Fleet -benchtime 1x -timeout 60m ./test/fleetbench/
//
// FLEETBENCH_DURATION (default 60s) sets each case's measured window, after a
// warm-up of two agent intervals; FLEETBENCH_AGENTS (default "100,1000,5000")
// picks the fleet sizes. PostgreSQL cases need UPANEL_TEST_POSTGRES_URL, which
// scripts/bench.sh sets; each case gets a database of its own.
package fleetbench
