package store_test

// Benchmarks for docs/benchmarks.md; run them with "make bench". Each metrics
// benchmark has a "raw" twin: the same multi-row INSERTs through the bare
// database/sql driver with the same connection settings and no UPanel code, on
// the same machine in the same run. The figure that matters is UPanel's
// throughput as a share of that ceiling.

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func BenchmarkMetricsInsert(b *testing.B) {
	for _, d := range storetest.Dialects {
		for _, batch := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d/upanel", d, batch), func(b *testing.B) {
				db := storetest.Open(b, d)
				serverID := storetest.SecretRows(b, db, "x")["servers"]
				ctx := context.Background()
				ms := make([]store.ServerMetric, batch)
				for b.Loop() {
					now := time.Now()
					for i := range ms {
						ms[i] = store.ServerMetric{ID: ulid.Make().String(), ServerID: serverID, CPUPercent: 12.5, RAMUsedMB: 512,
							RAMTotalMB: 4096, DiskUsedGB: 10, DiskTotalGB: 80, RecordedAt: now}
					}
					if err := db.InsertServerMetrics(ctx, ms); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
			})
			b.Run(fmt.Sprintf("%s/batch=%d/raw", d, batch), func(b *testing.B) {
				env := storetest.New(b, d)
				serverID := storetest.SecretRows(b, env.DB, "x")["servers"]
				raw, placeholder, stamp := rawDB(b, d, env.URL)
				benchRawInsert(b, raw, placeholder, stamp, serverID, batch)
			})
		}
	}
}

// rawDB opens the bare driver on the test database with the settings the store
// uses, and says how that driver wants placeholders and timestamps.
func rawDB(b *testing.B, dialect, url string) (*sql.DB, func(int) string, func(time.Time) any) {
	b.Helper()
	var db *sql.DB
	var err error
	if dialect == "sqlite" {
		db, err = sql.Open("sqlite", "file:"+store.SQLitePath(url)+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
		db.SetMaxOpenConns(1)
	} else {
		db, err = sql.Open("pgx", url)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if dialect == "sqlite" {
		return db, func(int) string { return "?" }, func(t time.Time) any { return t.UTC().Format("2006-01-02 15:04:05.000") }
	}
	return db, func(n int) string { return fmt.Sprintf("$%d", n) }, func(t time.Time) any { return t }
}

func benchRawInsert(b *testing.B, db *sql.DB, ph func(int) string, stamp func(time.Time) any, serverID string, batch int) {
	var q strings.Builder
	q.WriteString("INSERT INTO server_metrics (id, server_id, cpu_percent, ram_used_mb, ram_total_mb, disk_used_gb, disk_total_gb, network_in_bytes, network_out_bytes, recorded_at) VALUES ")
	n := 0
	for i := range batch {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(")
		for c := range 10 {
			if c > 0 {
				q.WriteString(", ")
			}
			n++
			q.WriteString(ph(n))
		}
		q.WriteString(")")
	}
	query := q.String()
	args := make([]any, 0, batch*10)
	for b.Loop() {
		now := stamp(time.Now())
		args = args[:0]
		for range batch {
			args = append(args, ulid.Make().String(), serverID, 12.5, 512, 4096, 10, 80, nil, nil, now)
		}
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(query, args...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkJobClaimComplete measures a job's whole trip through the queue:
// claim (with its lease) and finish, one transaction each. "parallel" runs
// several workers at once, as a panel does.
func BenchmarkJobClaimComplete(b *testing.B) {
	for _, d := range storetest.Dialects {
		for _, mode := range []string{"serial", "parallel"} {
			b.Run(d+"/"+mode, func(b *testing.B) {
				db := storetest.Open(b, d)
				ctx := context.Background()
				kinds := []string{"bench"}
				err := db.InTx(ctx, func(tx *store.Tx) error {
					for range b.N {
						if _, _, err := tx.EnqueueJob(ctx, store.NewJob{Kind: "bench", RunAt: time.Now().Add(-time.Second)}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				// work claims and finishes one job. Under SKIP LOCKED a claim
				// can find nothing while other workers hold the candidate
				// rows, so it tries again; errors are returned, not fatal,
				// because RunParallel goroutines must not call b.Fatal.
				work := func(owner string) error {
					for {
						j, ok, err := db.ClaimJob(ctx, owner, kinds, time.Minute)
						if err != nil {
							return err
						}
						if ok {
							return db.FinishJob(ctx, j.ID, owner, store.JobSucceeded, "", nil)
						}
					}
				}
				b.ResetTimer()
				if mode == "serial" {
					for range b.N {
						if err := work("w"); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					var failed atomic.Value
					b.SetParallelism(2) // 2 × GOMAXPROCS workers
					b.RunParallel(func(pb *testing.PB) {
						owner := ulid.Make().String()
						for pb.Next() {
							if err := work(owner); err != nil {
								failed.Store(err)
								return
							}
						}
					})
					if err, _ := failed.Load().(error); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
			})
		}
	}
}
