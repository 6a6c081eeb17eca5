package store

import (
	"context"
	"fmt"
	"time"
)

// LoginAttempt is one password, TOTP or recovery-code try.
type LoginAttempt struct {
	Email     string // normalised; recorded even when no such user exists
	UserID    string
	IPAddress string
	Kind      string // password, totp, recovery_code
	Succeeded bool
}

// RecordLoginAttempt stores an attempt.
func (db *DB) RecordLoginAttempt(ctx context.Context, a LoginAttempt) error {
	_, err := db.exec(ctx, `INSERT INTO login_attempts (id, email, user_id, ip_address, kind, succeeded, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, NewID(), truncate(a.Email, 255), nullString(a.UserID), truncate(a.IPAddress, 45), a.Kind, a.Succeeded, db.Now())
	if err != nil {
		return fmt.Errorf("store: record login attempt: %w", err)
	}
	return nil
}

// FailureStats summarise recent failures for one key (an account or an IP).
type FailureStats struct {
	SinceSuccess int       // failures after the last success within the window
	InWindow     int       // all failures within the window
	Last         time.Time // latest failure
	Oldest       time.Time // oldest failure within the window
}

// AccountFailures summarises failures for an email since window start.
func (db *DB) AccountFailures(ctx context.Context, email string, since time.Time) (FailureStats, error) {
	return db.failures(ctx, "email", email, since)
}

// IPFailures summarises failures from an IP address since window start.
func (db *DB) IPFailures(ctx context.Context, ip string, since time.Time) (FailureStats, error) {
	return db.failures(ctx, "ip_address", ip, since)
}

func (db *DB) failures(ctx context.Context, col, key string, since time.Time) (FailureStats, error) {
	var st FailureStats
	var last, oldest, success nullTime
	err := db.queryRow(ctx, "SELECT COUNT(*), MAX(created_at), MIN(created_at) FROM login_attempts WHERE "+col+" = ? AND succeeded = FALSE AND created_at > ?",
		key, since).Scan(&st.InWindow, &last, &oldest)
	if err != nil {
		return st, fmt.Errorf("store: login failures: %w", err)
	}
	st.Last, st.Oldest = last.Time, oldest.Time
	if err := db.queryRow(ctx, "SELECT MAX(created_at) FROM login_attempts WHERE "+col+" = ? AND succeeded = TRUE AND created_at > ?", key, since).Scan(&success); err != nil {
		return st, fmt.Errorf("store: login failures: %w", err)
	}
	if !success.Valid {
		st.SinceSuccess = st.InWindow
		return st, nil
	}
	err = db.queryRow(ctx, "SELECT COUNT(*) FROM login_attempts WHERE "+col+" = ? AND succeeded = FALSE AND created_at > ?", key, success.Time).Scan(&st.SinceSuccess)
	return st, err
}
