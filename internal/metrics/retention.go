// Package metrics keeps server metrics: ingestion from agents, retention, and the
// queries behind charts.
package metrics

import (
	"context"
	"log/slog"
	"time"

	"upanel/internal/jobs"
	"upanel/internal/store"
)

// RetentionKind is the job that deletes metrics older than Keep.
const RetentionKind = "metrics.retention"

// Keep is how long server_metrics rows are kept: 7 days, as the seed says.
const Keep = 7 * 24 * time.Hour

// Retention deletes server_metrics rows recorded more than keep ago, batch rows
// per transaction.
func Retention(db *store.DB, log *slog.Logger, keep time.Duration, batch int) jobs.Handler {
	return func(ctx context.Context, j *jobs.Job) error {
		cutoff := db.Now().Add(-keep)
		n, err := jobs.DeleteInBatches(ctx, batch, func(ctx context.Context, limit int) (int, error) {
			return db.DeleteOldMetrics(ctx, cutoff, limit)
		})
		if n > 0 {
			log.Info("old metrics deleted", "rows", n, "before", cutoff)
		}
		return err
	}
}
