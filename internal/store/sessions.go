package store

import (
	"context"
	"fmt"
	"time"

	"upanel/internal/apperr"
)

// Session is a row of sessions. The cookie secret is never stored, only its hash.
type Session struct {
	ID               string
	UserID           string
	TwoFactorPending bool
	IPAddress        string
	UserAgent        string
	LastActivityAt   time.Time
	ExpiresAt        time.Time
	CreatedAt        time.Time
}

// NewSession is what creating a session takes.
type NewSession struct {
	UserID           string
	TokenHash        string
	TwoFactorPending bool
	IPAddress        string
	UserAgent        string
	ExpiresAt        time.Time
}

const sessionColumns = "id, user_id, two_factor_pending, COALESCE(ip_address, ''), COALESCE(user_agent, ''), last_activity_at, expires_at, created_at"

func scanSession(s interface{ Scan(...any) error }) (*Session, error) {
	var x Session
	var last, exp, created nullTime
	if err := s.Scan(&x.ID, &x.UserID, &x.TwoFactorPending, &x.IPAddress, &x.UserAgent, &last, &exp, &created); err != nil {
		return nil, err
	}
	x.LastActivityAt, x.ExpiresAt, x.CreatedAt = last.Time, exp.Time, created.Time
	return &x, nil
}

// CreateSession inserts a session.
func (tx *Tx) CreateSession(ctx context.Context, n NewSession) (*Session, error) {
	id, now := NewID(), tx.Now()
	_, err := tx.exec(ctx, `INSERT INTO sessions (id, user_id, token_hash, two_factor_pending, ip_address, user_agent, last_activity_at, expires_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, n.UserID, n.TokenHash, n.TwoFactorPending, nullString(cleanText(n.IPAddress, 45)),
		nullString(cleanText(n.UserAgent, 1000)), now, n.ExpiresAt, now)
	if err != nil {
		return nil, fmt.Errorf("store: create session: %w", err)
	}
	return &Session{ID: id, UserID: n.UserID, TwoFactorPending: n.TwoFactorPending, IPAddress: n.IPAddress,
		UserAgent: n.UserAgent, LastActivityAt: now, ExpiresAt: n.ExpiresAt, CreatedAt: now}, nil
}

// SessionByTokenHash finds the session a cookie belongs to.
func (db *DB) SessionByTokenHash(ctx context.Context, hash string) (*Session, error) {
	s, err := scanSession(db.queryRow(ctx, "SELECT "+sessionColumns+" FROM sessions WHERE token_hash = ?", hash))
	return s, notFound(err, "session")
}

// TouchSession records activity, for the idle timeout.
func (db *DB) TouchSession(ctx context.Context, id string, at time.Time) error {
	_, err := db.exec(ctx, "UPDATE sessions SET last_activity_at = ? WHERE id = ? AND last_activity_at < ?", at, id, at)
	return err
}

// ListSessions returns a user's sessions, most recently active first.
func (db *DB) ListSessions(ctx context.Context, userID string) ([]*Session, error) {
	rows, err := db.query(ctx, "SELECT "+sessionColumns+" FROM sessions WHERE user_id = ? AND two_factor_pending = FALSE ORDER BY last_activity_at DESC, id", userID)
	if err != nil {
		return nil, fmt.Errorf("store: list sessions: %w", err)
	}
	defer rows.Close()
	var out []*Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteSession deletes one session of a user. A session of another user is
// not found, exactly like a session that does not exist.
func (tx *Tx) DeleteSession(ctx context.Context, userID, id string) error {
	res, err := tx.exec(ctx, "DELETE FROM sessions WHERE id = ? AND user_id = ?", id, userID)
	if err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "session not found")
	}
	return nil
}

// DeleteUserSessions deletes every session of a user but keep (which may be "").
func (tx *Tx) DeleteUserSessions(ctx context.Context, userID, keep string) (int, error) {
	res, err := tx.exec(ctx, "DELETE FROM sessions WHERE user_id = ? AND id <> ?", userID, keep)
	if err != nil {
		return 0, fmt.Errorf("store: delete sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so the database never sees broken UTF-8.
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
