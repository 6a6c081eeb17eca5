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

// CleanupKind removes finished jobs once they are no longer worth showing, and
// ends jobs that no process can run.
const CleanupKind = "jobs.cleanup"

// unclaimedGrace is how long a job of a kind this process lacks may wait for
// another process (a newer panel version, say) before it is failed.
const unclaimedGrace = time.Hour

// Cleanup deletes jobs that ended more than keep ago, and fails jobs of kinds
// that no handler registered here knows once they waited unclaimedGrace.
func (r *Runner) Cleanup(keep time.Duration) Handler {
	return func(ctx context.Context, j *Job) error {
		now := r.db.Now()
		if n, err := r.db.FailUnclaimedJobs(ctx, r.kinds(), now.Add(-unclaimedGrace)); err != nil {
			return err
		} else if n > 0 {
			r.log.Error("failed jobs that no process handles", "jobs", n)
		}
		_, err := DeleteInBatches(ctx, 1000, func(ctx context.Context, limit int) (int, error) {
			return r.db.DeleteFinishedJobs(ctx, now.Add(-keep), limit)
		})
		return err
	}
}
