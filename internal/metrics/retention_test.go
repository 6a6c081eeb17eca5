package metrics_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"upanel/internal/jobs"
	"upanel/internal/metrics"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestRetentionDeletesOnlyOldMetricsInBatches(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		serverID := storetest.SecretRows(t, db, "x")["servers"]
		now := db.Now()
		insert := func(age time.Duration, n int) {
			for range n {
				storetest.Exec(t, db, `INSERT INTO server_metrics (id, server_id, cpu_percent, ram_used_mb, ram_total_mb, disk_used_gb, disk_total_gb, recorded_at)
					VALUES (?, ?, 12.5, 100, 1000, 5, 50, ?)`, store.NewID(), serverID, now.Add(-age))
			}
		}
		insert(8*24*time.Hour, 7)                                                  // too old
		insert(metrics.Keep+time.Minute, 3)                                        // just too old
		insert(metrics.Keep-time.Minute, 2)                                        // just young enough
		insert(time.Hour, 4)                                                       // recent
		h := metrics.Retention(db, slog.New(slog.DiscardHandler), metrics.Keep, 3) // batches of 3: four batches for ten rows
		if err := h(ctx, &jobs.Job{Job: &store.Job{ID: store.NewID()}}); err != nil {
			t.Fatal(err)
		}
		var left, old int
		db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM server_metrics").Scan(&left)
		db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM server_metrics WHERE recorded_at < ?", now.Add(-metrics.Keep)).Scan(&old)
		if left != 6 || old != 0 {
			t.Fatalf("after retention: %d rows left (want 6), %d older than 7 days (want 0)", left, old)
		}
	})
}
