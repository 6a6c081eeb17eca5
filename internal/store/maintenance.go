package store

import (
	"context"
	"time"
)

// DeleteOldMetrics removes up to limit server_metrics rows recorded before cutoff.
func (db *DB) DeleteOldMetrics(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return db.deleteBatch(ctx, "server_metrics", "recorded_at < ?", limit, cutoff)
}

// DeleteStaleSessions removes up to limit sessions past their absolute expiry or
// idle since idleCutoff.
func (db *DB) DeleteStaleSessions(ctx context.Context, now, idleCutoff time.Time, limit int) (int, error) {
	return db.deleteBatch(ctx, "sessions", "expires_at < ? OR last_activity_at < ?", limit, now, idleCutoff)
}

// DeleteExpiredResetTokens removes up to limit reset tokens that expired or were
// used before cutoff; they are useless, and keeping hashes around helps nobody.
func (db *DB) DeleteExpiredResetTokens(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return db.deleteBatch(ctx, "password_reset_tokens", "expires_at < ? OR used_at < ?", limit, cutoff, cutoff)
}

// DeleteEndedInvites removes up to limit invites that expired, were accepted or
// were revoked before cutoff. Pending invites stay until they expire.
func (db *DB) DeleteEndedInvites(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return db.deleteBatch(ctx, "user_invites", "expires_at < ? OR accepted_at < ? OR revoked_at < ?", limit, cutoff, cutoff, cutoff)
}

// DeleteOldLoginAttempts removes up to limit login attempts made before cutoff.
// Throttling looks back at most a day; older attempts only add weight.
func (db *DB) DeleteOldLoginAttempts(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return db.deleteBatch(ctx, "login_attempts", "created_at < ?", limit, cutoff)
}
