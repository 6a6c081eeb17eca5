package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"upanel/internal/apperr"
)

// User is a row of users. The password hash stays in the store: callers ask it
// to verify rather than carry hashes around.
type User struct {
	ID                   string
	Email                string
	Role                 string
	Timezone             string
	TwoFactorConfirmedAt *time.Time
	PasswordChangedAt    *time.Time
	CreatedAt            time.Time
	UpdatedAt            time.Time
}

// TwoFactorEnabled reports whether the user confirmed a TOTP secret.
func (u *User) TwoFactorEnabled() bool { return u.TwoFactorConfirmedAt != nil }

var (
	colTwoFactorSecret = SecretColumn{"users", "two_factor_secret"}
	colRecoveryCodes   = SecretColumn{"users", "recovery_codes"}
)

const userColumns = "id, email, role, timezone, two_factor_confirmed_at, password_changed_at, created_at, updated_at"

func scanUser(s interface{ Scan(...any) error }) (*User, error) {
	var u User
	var confirmed, changed, created, updated nullTime
	if err := s.Scan(&u.ID, &u.Email, &u.Role, &u.Timezone, &confirmed, &changed, &created, &updated); err != nil {
		return nil, err
	}
	u.TwoFactorConfirmedAt, u.PasswordChangedAt = confirmed.ptr(), changed.ptr()
	u.CreatedAt, u.UpdatedAt = created.Time, updated.Time
	return &u, nil
}

// NewUser is what creating a user takes. Email must already be normalised and
// PasswordHash computed; the store does not judge either.
type NewUser struct {
	Email        string
	PasswordHash string
	Role         string
	Timezone     string
}

// CreateUser inserts a user; an email in use is a conflict.
func (tx *Tx) CreateUser(ctx context.Context, n NewUser) (*User, error) {
	if n.Timezone == "" {
		n.Timezone = "UTC"
	}
	id, now := NewID(), tx.Now()
	_, err := tx.exec(ctx, `INSERT INTO users (id, email, password, role, timezone, password_changed_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, id, n.Email, n.PasswordHash, n.Role, n.Timezone, now, now, now)
	if isUniqueViolation(err) {
		return nil, apperr.New(apperr.Conflict, "a user with this email already exists")
	}
	if err != nil {
		return nil, fmt.Errorf("store: create user: %w", err)
	}
	return tx.GetUser(ctx, id)
}

// GetUser returns a user by id.
func (tx *Tx) GetUser(ctx context.Context, id string) (*User, error) {
	u, err := scanUser(tx.queryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id))
	return u, notFound(err, "user")
}

// GetUser returns a user by id.
func (db *DB) GetUser(ctx context.Context, id string) (*User, error) {
	u, err := scanUser(db.queryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id))
	return u, notFound(err, "user")
}

// GetUserByEmail returns a user by normalised email.
func (db *DB) GetUserByEmail(ctx context.Context, email string) (*User, error) {
	u, err := scanUser(db.queryRow(ctx, "SELECT "+userColumns+" FROM users WHERE email = ?", email))
	return u, notFound(err, "user")
}

// PasswordHash returns a user's password hash, for verification only.
func (db *DB) PasswordHash(ctx context.Context, userID string) (string, error) {
	var h string
	err := db.queryRow(ctx, "SELECT password FROM users WHERE id = ?", userID).Scan(&h)
	return h, notFound(err, "user")
}

// ListUsers returns every user, oldest first.
func (db *DB) ListUsers(ctx context.Context) ([]*User, error) {
	rows, err := db.query(ctx, "SELECT "+userColumns+" FROM users ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	defer rows.Close()
	var out []*User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// CountUsers counts users; zero means the panel is not set up yet.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := db.queryRow(ctx, "SELECT COUNT(*) FROM users").Scan(&n)
	return n, err
}

// CountUsers counts users in the transaction, for first-run setup, which must
// find none.
func (tx *Tx) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := tx.queryRow(ctx, "SELECT COUNT(*) FROM users").Scan(&n)
	return n, err
}

// CountAdmins counts admins, so the last one cannot be demoted or deleted. On
// PostgreSQL it first locks the admin rows: two admins demoting each other at
// once then queue, and the second sees the first's change, instead of both
// counting two admins and leaving none.
func (tx *Tx) CountAdmins(ctx context.Context) (int, error) {
	if tx.db.d.name == "postgres" {
		rows, err := tx.query(ctx, "SELECT id FROM users WHERE role = 'admin' FOR UPDATE")
		if err != nil {
			return 0, err
		}
		rows.Close()
	}
	var n int
	err := tx.queryRow(ctx, "SELECT COUNT(*) FROM users WHERE role = 'admin'").Scan(&n)
	return n, err
}

func (tx *Tx) updateUser(ctx context.Context, id, set string, args ...any) error {
	res, err := tx.exec(ctx, "UPDATE users SET "+set+" WHERE id = ?", append(args, id)...)
	if err != nil {
		return fmt.Errorf("store: update user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "user not found")
	}
	return nil
}

// SetPassword replaces a user's password hash.
func (tx *Tx) SetPassword(ctx context.Context, userID, hash string) error {
	return tx.updateUser(ctx, userID, "password = ?, password_changed_at = ?", hash, tx.Now())
}

// SetRole changes a user's role.
func (tx *Tx) SetRole(ctx context.Context, userID, role string) error {
	return tx.updateUser(ctx, userID, "role = ?", role)
}

// SetTimezone changes a user's time zone.
func (tx *Tx) SetTimezone(ctx context.Context, userID, tz string) error {
	return tx.updateUser(ctx, userID, "timezone = ?", tz)
}

// DeleteUser removes a user; sessions, tokens and resets go with it.
func (tx *Tx) DeleteUser(ctx context.Context, userID string) error {
	res, err := tx.exec(ctx, "DELETE FROM users WHERE id = ?", userID)
	if err != nil {
		return fmt.Errorf("store: delete user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "user not found")
	}
	return nil
}

// SetPendingTwoFactor stores a new, unconfirmed TOTP secret (encrypted),
// replacing any earlier unconfirmed one. It refuses when two-factor is already
// on, whatever the caller last read, so starting enrolment in one tab cannot
// silently turn off what another tab just confirmed.
func (tx *Tx) SetPendingTwoFactor(ctx context.Context, userID string, secret []byte) error {
	v, err := tx.db.seal(colTwoFactorSecret, userID, secret)
	if err != nil {
		return err
	}
	res, err := tx.exec(ctx, `UPDATE users SET two_factor_secret = ?, recovery_codes = NULL, two_factor_last_step = NULL
		WHERE id = ? AND two_factor_confirmed_at IS NULL`, v, userID)
	if err != nil {
		return fmt.Errorf("store: start two-factor: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.Conflict, "two-factor authentication is already on")
	}
	return nil
}

// PendingTwoFactorSecret returns the unconfirmed secret and its ciphertext,
// which ConfirmTwoFactor must still find in place.
func (db *DB) PendingTwoFactorSecret(ctx context.Context, userID string) (plain []byte, ciphertext string, err error) {
	var ct sql.NullString
	err = db.queryRow(ctx, "SELECT two_factor_secret FROM users WHERE id = ? AND two_factor_confirmed_at IS NULL", userID).Scan(&ct)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", apperr.New(apperr.Conflict, "two-factor authentication is already on")
	}
	if err != nil {
		return nil, "", err
	}
	if !ct.Valid {
		return nil, "", apperr.New(apperr.Invalid, "start two-factor enrolment first")
	}
	plain, err = db.unseal(colTwoFactorSecret, userID, ct.String)
	return plain, ct.String, err
}

// ConfirmTwoFactor turns two-factor on with the pending secret the caller
// checked the code against (its ciphertext), stores the recovery code hashes
// (encrypted) and records step as used. If the pending secret changed
// meanwhile (enrolment restarted elsewhere) or two-factor is already on, it
// refuses rather than turn on a secret the user never saw.
func (tx *Tx) ConfirmTwoFactor(ctx context.Context, userID, ciphertext string, step int64, codeHashes []string) error {
	b, err := json.Marshal(codeHashes)
	if err != nil {
		return err
	}
	codes, err := tx.db.seal(colRecoveryCodes, userID, b)
	if err != nil {
		return err
	}
	res, err := tx.exec(ctx, `UPDATE users SET two_factor_confirmed_at = ?, two_factor_last_step = ?, recovery_codes = ?
		WHERE id = ? AND two_factor_confirmed_at IS NULL AND two_factor_secret = ?`, tx.Now(), step, codes, userID, ciphertext)
	if err != nil {
		return fmt.Errorf("store: confirm two-factor: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.Conflict, "two-factor enrolment changed in another window: start again")
	}
	return nil
}

// DisableTwoFactor removes the secret and the recovery codes.
func (tx *Tx) DisableTwoFactor(ctx context.Context, userID string) error {
	return tx.updateUser(ctx, userID, "two_factor_secret = NULL, two_factor_confirmed_at = NULL, recovery_codes = NULL, two_factor_last_step = NULL")
}

// TwoFactorSecret decrypts a user's TOTP secret; ok is false when there is none.
func (db *DB) TwoFactorSecret(ctx context.Context, userID string) ([]byte, bool, error) {
	return db.GetSecret(ctx, colTwoFactorSecret, userID)
}

// ConsumeTOTPStep records step as used if it is later than every step used
// before. false means the code was already used (a replay) or is older than one
// that was: either way it must be refused.
func (db *DB) ConsumeTOTPStep(ctx context.Context, userID string, step int64) (bool, error) {
	res, err := db.exec(ctx, `UPDATE users SET two_factor_last_step = ?
		WHERE id = ? AND two_factor_confirmed_at IS NOT NULL AND (two_factor_last_step IS NULL OR two_factor_last_step < ?)`, step, userID, step)
	if err != nil {
		return false, fmt.Errorf("store: consume totp step: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (tx *Tx) setRecoveryCodes(ctx context.Context, userID string, hashes []string) error {
	b, err := json.Marshal(hashes)
	if err != nil {
		return err
	}
	v, err := tx.db.seal(colRecoveryCodes, userID, b)
	if err != nil {
		return err
	}
	return tx.updateUser(ctx, userID, "recovery_codes = ?", v)
}

// ReplaceRecoveryCodes stores a new set of recovery code hashes.
func (tx *Tx) ReplaceRecoveryCodes(ctx context.Context, userID string, hashes []string) error {
	return tx.setRecoveryCodes(ctx, userID, hashes)
}

// ConsumeRecoveryCode removes the code whose hash matches, in constant time per
// comparison, and reports whether there was one and how many remain. The update
// is conditional on the ciphertext it read, so two requests racing with the same
// code cannot both succeed.
func (db *DB) ConsumeRecoveryCode(ctx context.Context, userID, codeHash string) (ok bool, remaining int, err error) {
	err = db.InTx(ctx, func(tx *Tx) error {
		var ct sql.NullString
		if err := tx.queryRow(ctx, "SELECT recovery_codes FROM users WHERE id = ? AND two_factor_confirmed_at IS NOT NULL", userID).Scan(&ct); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			return err
		}
		if !ct.Valid {
			return nil
		}
		plain, err := db.unseal(colRecoveryCodes, userID, ct.String)
		if err != nil {
			return err
		}
		var hashes []string
		if err := json.Unmarshal(plain, &hashes); err != nil {
			return fmt.Errorf("store: recovery codes of %s: %w", userID, err)
		}
		found := -1
		for i, h := range hashes {
			if subtle.ConstantTimeCompare([]byte(h), []byte(codeHash)) == 1 {
				found = i
			}
		}
		if found < 0 {
			remaining = len(hashes)
			return nil
		}
		hashes = append(hashes[:found], hashes[found+1:]...)
		b, _ := json.Marshal(hashes)
		v, err := db.seal(colRecoveryCodes, userID, b)
		if err != nil {
			return err
		}
		res, err := tx.exec(ctx, "UPDATE users SET recovery_codes = ? WHERE id = ? AND recovery_codes = ?", v, userID, ct.String)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			ok, remaining = true, len(hashes)
		}
		return nil
	})
	return ok, remaining, err
}

// RecoveryCodesLeft counts unused recovery codes.
func (db *DB) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	plain, ok, err := db.GetSecret(ctx, colRecoveryCodes, userID)
	if err != nil || !ok {
		return 0, err
	}
	var hashes []string
	if err := json.Unmarshal(plain, &hashes); err != nil {
		return 0, err
	}
	return len(hashes), nil
}

// UserTimezone returns a user's time zone name.
func (tx *Tx) UserTimezone(ctx context.Context, id string) (string, error) {
	var tz sql.NullString
	err := tx.queryRow(ctx, "SELECT timezone FROM users WHERE id = ?", id).Scan(&tz)
	if err != nil {
		return "", notFound(err, "user")
	}
	if tz.String == "" {
		return "UTC", nil
	}
	return tz.String, nil
}
