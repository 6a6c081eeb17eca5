package fleetbench

import (
	"database/sql"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// BenchmarkRawInsertOneRow is the ceiling for the agents' batch shape: one
// sample per transaction, through the bare database/sql driver with the
// store's connection settings and no UPanel code (internal/store's
// BenchmarkMetricsInsert "raw" twin, at a batch of one). A fleet in steady
// state sends exactly that: one sample per agent per interval.
func BenchmarkRawInsertOneRow(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(d, func(b *testing.B) {
			env := storetest.New(b, d)
			serverID := storetest.SecretRows(b, env.DB, "x")["servers"]
			var db *sql.DB
			var err error
			query := "INSERT INTO server_metrics (id, server_id, cpu_percent, ram_used_mb, ram_total_mb, disk_used_gb, disk_total_gb, network_in_bytes, network_out_bytes, recorded_at) VALUES "
			stamp := func(t time.Time) any { return t }
			if d == "sqlite" {
				db, err = sql.Open("sqlite", "file:"+store.SQLitePath(env.URL)+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
				query += "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
				stamp = func(t time.Time) any { return t.UTC().Format("2006-01-02 15:04:05.000") }
			} else {
				db, err = sql.Open("pgx", env.URL)
				query += "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
			}
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if d == "sqlite" {
				db.SetMaxOpenConns(1)
			}
			in, out := int64(1000), int64(100)
			for b.Loop() {
				tx, err := db.Begin()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Exec(query, ulid.Make().String(), serverID, 12.5, 512, 4096, 10, 80, in, out, stamp(time.Now())); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
