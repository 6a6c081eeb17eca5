package jobs

import (
	"context"
	"time"
)

// DeleteInBatches calls del until a batch comes back short, checking ctx between
// batches, so retention work never holds the write lock for long and stops
// promptly at shutdown. It returns the total deleted.
func DeleteInBatches(ctx context.Context, batch int, del func(ctx context.Context, limit int) (int, error)) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := del(ctx, batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}

// CleanupKind removes finished jobs once they are no longer worth showing.
const CleanupKind = "jobs.cleanup"

// Cleanup deletes jobs that ended more than keep ago.
func Cleanup(db interface {
	Now() time.Time
	DeleteFinishedJobs(ctx context.Context, cutoff time.Time, limit int) (int, error)
}, keep time.Duration) Handler {
	return func(ctx context.Context, j *Job) error {
		cutoff := db.Now().Add(-keep)
		_, err := DeleteInBatches(ctx, 1000, func(ctx context.Context, limit int) (int, error) {
			return db.DeleteFinishedJobs(ctx, cutoff, limit)
		})
		return err
	}
}
