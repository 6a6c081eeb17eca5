package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"upanel/internal/apperr"
)

// Invite is a row of user_invites, without its hash.
type Invite struct {
	ID         string
	Email      string
	Role       string
	InvitedBy  string
	ExpiresAt  time.Time
	AcceptedAt *time.Time
	RevokedAt  *time.Time
	CreatedAt  time.Time
}

// Pending reports whether the invite can still be accepted at now.
func (i *Invite) Pending(now time.Time) bool {
	return i.AcceptedAt == nil && i.RevokedAt == nil && now.Before(i.ExpiresAt)
}

const inviteColumns = "id, email, role, COALESCE(invited_by, ''), expires_at, accepted_at, revoked_at, created_at"

func scanInvite(s interface{ Scan(...any) error }) (*Invite, error) {
	var i Invite
	var exp, acc, rev, created nullTime
	if err := s.Scan(&i.ID, &i.Email, &i.Role, &i.InvitedBy, &exp, &acc, &rev, &created); err != nil {
		return nil, err
	}
	i.ExpiresAt, i.AcceptedAt, i.RevokedAt, i.CreatedAt = exp.Time, acc.ptr(), rev.ptr(), created.Time
	return &i, nil
}

// CreateInvite inserts an invite.
func (tx *Tx) CreateInvite(ctx context.Context, email, role, hash, invitedBy string, expires time.Time) (*Invite, error) {
	id, now := NewID(), tx.Now()
	_, err := tx.exec(ctx, `INSERT INTO user_invites (id, email, role, token_hash, invited_by, expires_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, id, email, role, hash, nullString(invitedBy), expires, now, now)
	if err != nil {
		return nil, fmt.Errorf("store: create invite: %w", err)
	}
	return &Invite{ID: id, Email: email, Role: role, InvitedBy: invitedBy, ExpiresAt: expires, CreatedAt: now}, nil
}

// InviteByTokenHash finds the invite an emailed token belongs to.
func (db *DB) InviteByTokenHash(ctx context.Context, hash string) (*Invite, error) {
	i, err := scanInvite(db.queryRow(ctx, "SELECT "+inviteColumns+" FROM user_invites WHERE token_hash = ?", hash))
	return i, notFound(err, "invite")
}

// ListInvites returns invites, newest first; pendingAt filters to those still
// pending at that time unless it is zero.
func (db *DB) ListInvites(ctx context.Context, pendingAt time.Time) ([]*Invite, error) {
	q := "SELECT " + inviteColumns + " FROM user_invites"
	var args []any
	if !pendingAt.IsZero() {
		q += " WHERE accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?"
		args = append(args, pendingAt)
	}
	rows, err := db.query(ctx, q+" ORDER BY created_at DESC, id DESC", args...)
	if err != nil {
		return nil, fmt.Errorf("store: list invites: %w", err)
	}
	defer rows.Close()
	var out []*Invite
	for rows.Next() {
		i, err := scanInvite(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// AcceptInvite marks a pending invite accepted by userID. It fails as not found
// if the invite is no longer pending, so a token is used at most once.
func (tx *Tx) AcceptInvite(ctx context.Context, id, userID string) error {
	now := tx.Now()
	res, err := tx.exec(ctx, `UPDATE user_invites SET accepted_at = ?, accepted_user_id = ?
		WHERE id = ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?`, now, userID, id, now)
	if err != nil {
		return fmt.Errorf("store: accept invite: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "this invitation is no longer valid")
	}
	return nil
}

// RevokeInvite revokes a pending invite.
func (tx *Tx) RevokeInvite(ctx context.Context, id string) (*Invite, error) {
	now := tx.Now()
	res, err := tx.exec(ctx, "UPDATE user_invites SET revoked_at = ? WHERE id = ? AND accepted_at IS NULL AND revoked_at IS NULL", now, id)
	if err != nil {
		return nil, fmt.Errorf("store: revoke invite: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, apperr.New(apperr.NotFound, "invite not found or no longer pending")
	}
	i, err := scanInvite(tx.queryRow(ctx, "SELECT "+inviteColumns+" FROM user_invites WHERE id = ?", id))
	return i, notFound(err, "invite")
}

// CreateResetToken stores a password reset token's hash.
func (tx *Tx) CreateResetToken(ctx context.Context, userID, hash, ip string, expires time.Time) error {
	_, err := tx.exec(ctx, `INSERT INTO password_reset_tokens (id, user_id, token_hash, ip_address, expires_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, NewID(), userID, hash, nullString(truncate(ip, 45)), expires, tx.Now())
	if err != nil {
		return fmt.Errorf("store: create reset token: %w", err)
	}
	return nil
}

// ConsumeResetToken marks an unused, unexpired token used and returns its user.
// A token that is unknown, used or expired is not found, all alike.
func (tx *Tx) ConsumeResetToken(ctx context.Context, hash string) (userID string, err error) {
	now := tx.Now()
	err = tx.queryRow(ctx, `UPDATE password_reset_tokens SET used_at = ?
		WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING user_id`, now, hash, now).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", apperr.New(apperr.NotFound, "this reset link is invalid or has expired")
	}
	return userID, err
}

// ResetTokenUser returns the user of a reset token that could be used now,
// without using it. Unknown, used and expired tokens are all not found.
func (db *DB) ResetTokenUser(ctx context.Context, hash string) (string, error) {
	var userID string
	err := db.queryRow(ctx, "SELECT user_id FROM password_reset_tokens WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?", hash, db.Now()).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", apperr.New(apperr.NotFound, "this reset link is invalid or has expired")
	}
	return userID, err
}

// InvalidateResetTokens marks every unused token of a user used.
func (tx *Tx) InvalidateResetTokens(ctx context.Context, userID string) error {
	_, err := tx.exec(ctx, "UPDATE password_reset_tokens SET used_at = ? WHERE user_id = ? AND used_at IS NULL", tx.Now(), userID)
	return err
}

// CountResetRequests counts a user's reset requests since t.
func (db *DB) CountResetRequests(ctx context.Context, userID string, since time.Time) (int, error) {
	var n int
	err := db.queryRow(ctx, "SELECT COUNT(*) FROM password_reset_tokens WHERE user_id = ? AND created_at > ?", userID, since).Scan(&n)
	return n, err
}
