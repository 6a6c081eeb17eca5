package store

import (
	"context"
	"fmt"
	"time"

	"upanel/internal/apperr"
)

// APIToken is a row of api_tokens, without its hash.
type APIToken struct {
	ID         string
	UserID     string
	Name       string
	Role       string
	Prefix     string
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
	CreatedAt  time.Time
}

// NewAPIToken is what creating a token takes.
type NewAPIToken struct {
	UserID, Name, Role, Hash, Prefix string
	ExpiresAt                        *time.Time
}

const apiTokenColumns = "id, user_id, name, role, token_prefix, expires_at, last_used_at, revoked_at, created_at"

func scanAPIToken(s interface{ Scan(...any) error }) (*APIToken, error) {
	var t APIToken
	var exp, used, revoked, created nullTime
	if err := s.Scan(&t.ID, &t.UserID, &t.Name, &t.Role, &t.Prefix, &exp, &used, &revoked, &created); err != nil {
		return nil, err
	}
	t.ExpiresAt, t.LastUsedAt, t.RevokedAt, t.CreatedAt = exp.ptr(), used.ptr(), revoked.ptr(), created.Time
	return &t, nil
}

// CreateAPIToken inserts a token.
func (tx *Tx) CreateAPIToken(ctx context.Context, n NewAPIToken) (*APIToken, error) {
	id, now := NewID(), tx.Now()
	_, err := tx.exec(ctx, `INSERT INTO api_tokens (id, user_id, name, role, token_hash, token_prefix, expires_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, n.UserID, n.Name, n.Role, n.Hash, n.Prefix, n.ExpiresAt, now, now)
	if err != nil {
		return nil, fmt.Errorf("store: create api token: %w", err)
	}
	return &APIToken{ID: id, UserID: n.UserID, Name: n.Name, Role: n.Role, Prefix: n.Prefix, ExpiresAt: n.ExpiresAt, CreatedAt: now}, nil
}

// APITokenByHash finds the token a bearer secret belongs to, revoked or not;
// the caller decides.
func (db *DB) APITokenByHash(ctx context.Context, hash string) (*APIToken, error) {
	t, err := scanAPIToken(db.queryRow(ctx, "SELECT "+apiTokenColumns+" FROM api_tokens WHERE token_hash = ?", hash))
	return t, notFound(err, "token")
}

// ListAPITokens returns a user's tokens, newest first.
func (db *DB) ListAPITokens(ctx context.Context, userID string) ([]*APIToken, error) {
	rows, err := db.query(ctx, "SELECT "+apiTokenColumns+" FROM api_tokens WHERE user_id = ? ORDER BY created_at DESC, id DESC", userID)
	if err != nil {
		return nil, fmt.Errorf("store: list api tokens: %w", err)
	}
	defer rows.Close()
	var out []*APIToken
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeAPIToken revokes one of a user's tokens. Another user's token is not
// found, exactly like one that does not exist.
func (tx *Tx) RevokeAPIToken(ctx context.Context, userID, id string) (*APIToken, error) {
	res, err := tx.exec(ctx, "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL", tx.Now(), id, userID)
	if err != nil {
		return nil, fmt.Errorf("store: revoke api token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, apperr.New(apperr.NotFound, "token not found")
	}
	t, err := scanAPIToken(tx.queryRow(ctx, "SELECT "+apiTokenColumns+" FROM api_tokens WHERE id = ?", id))
	return t, notFound(err, "token")
}

// TouchAPIToken records use, at most once a minute per token.
func (db *DB) TouchAPIToken(ctx context.Context, id string, at time.Time) error {
	_, err := db.exec(ctx, "UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)", at, id, at.Add(-time.Minute))
	return err
}

// RevokeUserTokens revokes every live token of a user (after a password
// reset, which may follow a compromise).
func (tx *Tx) RevokeUserTokens(ctx context.Context, userID string) (int, error) {
	res, err := tx.exec(ctx, "UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", tx.Now(), userID)
	if err != nil {
		return 0, fmt.Errorf("store: revoke tokens: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
