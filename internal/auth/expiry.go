// Package auth is UPanel's accounts: passwords, sessions, two-factor codes,
// throttling, invites and password resets, and the one access policy.
package auth

import (
	"context"
	"log/slog"
	"time"

	"upanel/internal/jobs"
	"upanel/internal/store"
)

// ExpiryKind is the job that deletes stale sessions and dead tokens.
const ExpiryKind = "auth.expiry"

// Expiry deletes sessions past their absolute timeout or idle longer than idle,
// used or expired reset tokens, invites that ended more than 30 days ago, and
// login attempts older than 7 days (throttling looks back one day at most).
func Expiry(db *store.DB, log *slog.Logger, idle time.Duration) jobs.Handler {
	return func(ctx context.Context, j *jobs.Job) error {
		now := db.Now()
		const batch = 1000
		steps := []struct {
			what string
			del  func(ctx context.Context, limit int) (int, error)
		}{
			{"sessions", func(ctx context.Context, limit int) (int, error) {
				return db.DeleteStaleSessions(ctx, now, now.Add(-idle), limit)
			}},
			{"password reset tokens", func(ctx context.Context, limit int) (int, error) {
				return db.DeleteExpiredResetTokens(ctx, now, limit)
			}},
			{"invites", func(ctx context.Context, limit int) (int, error) {
				return db.DeleteEndedInvites(ctx, now.Add(-30*24*time.Hour), limit)
			}},
			{"login attempts", func(ctx context.Context, limit int) (int, error) {
				return db.DeleteOldLoginAttempts(ctx, now.Add(-7*24*time.Hour), limit)
			}},
		}
		for _, s := range steps {
			n, err := jobs.DeleteInBatches(ctx, batch, s.del)
			if err != nil {
				return err
			}
			if n > 0 {
				log.Info("expired rows deleted", "what", s.what, "rows", n)
			}
		}
		return nil
	}
}
