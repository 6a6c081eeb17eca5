package store

import (
	"context"
	"fmt"
	"net/netip"
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

// AttemptBucket is the address attempts are counted under: the address itself,
// or for IPv6 its /64, which one client usually holds whole, so that rotating
// through it buys nothing.
func AttemptBucket(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return truncate(ip, 45)
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// FailureStats summarise failures for one key within a window.
type FailureStats struct {
	SinceSuccess int       // failures after the key's last success
	InWindow     int       // all failures
	Last         time.Time // latest failure
	Oldest       time.Time // oldest failure
}

// ThrottleView is what the throttle decides on, read under the account's lock.
type ThrottleView struct {
	Account     FailureStats // the email, from every address
	AccountAtIP FailureStats // the email, from this address
	IP          FailureStats // this address, for every email
	// KnownAddress: the account signed in from this address within the
	// window of KnownSince; such a client is not held to the account-wide cap.
	KnownAddress bool
}

// ReserveLoginAttempt records an attempt as failed before the credential is
// checked, once check approved it, in one transaction holding a lock on the
// account: concurrent attempts queue for the lock and each sees the ones before
// it, so a burst of parallel guesses is counted like a sequence. check is
// called with the view before the attempt (recorded false), then with the view
// after it (recorded true, to spot the attempt that starts a lockout). Mark the
// attempt succeeded or drop it once the credential is checked.
func (db *DB) ReserveLoginAttempt(ctx context.Context, a LoginAttempt, since, knownSince time.Time,
	check func(v ThrottleView, recorded bool) error) (id string, err error) {
	a.IPAddress = AttemptBucket(a.IPAddress)
	a.Email = truncate(a.Email, 255)
	err = db.InTx(ctx, func(tx *Tx) error {
		if db.d.name == "postgres" {
			if _, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(?, hashtext(?))", attemptsLockSpace, a.Email); err != nil {
				return err
			}
		}
		before, err := tx.throttleView(ctx, a.Email, a.IPAddress, since, knownSince)
		if err != nil {
			return err
		}
		if err := check(before, false); err != nil {
			return err
		}
		id = NewID()
		if _, err := tx.exec(ctx, `INSERT INTO login_attempts (id, email, user_id, ip_address, kind, succeeded, created_at)
			VALUES (?, ?, ?, ?, ?, FALSE, ?)`, id, a.Email, nullString(a.UserID), a.IPAddress, a.Kind, tx.Now()); err != nil {
			return fmt.Errorf("store: record login attempt: %w", err)
		}
		after, err := tx.throttleView(ctx, a.Email, a.IPAddress, since, knownSince)
		if err != nil {
			return err
		}
		return check(after, true)
	})
	return id, err
}

// attemptsLockSpace is the first key of the per-account advisory lock.
const attemptsLockSpace = 7_411_025

// MarkAttemptSucceeded turns a reserved attempt into a success.
func (db *DB) MarkAttemptSucceeded(ctx context.Context, id, userID string) error {
	_, err := db.exec(ctx, "UPDATE login_attempts SET succeeded = TRUE, user_id = COALESCE(?, user_id) WHERE id = ?", nullString(userID), id)
	return err
}

// DropAttempt forgets a reserved attempt whose credential was right but that
// is not a sign-in yet (the password of a user who still owes a second
// factor): it must neither count as a failure nor reset the count.
func (db *DB) DropAttempt(ctx context.Context, id string) error {
	_, err := db.exec(ctx, "DELETE FROM login_attempts WHERE id = ?", id)
	return err
}

// RecordLoginSuccess records a success outside a reserved attempt (a
// completed password reset), which clears the delays on this address.
func (db *DB) RecordLoginSuccess(ctx context.Context, email, userID, ip, kind string) error {
	_, err := db.exec(ctx, `INSERT INTO login_attempts (id, email, user_id, ip_address, kind, succeeded, created_at)
		VALUES (?, ?, ?, ?, ?, TRUE, ?)`, NewID(), truncate(email, 255), nullString(userID), AttemptBucket(ip), kind, db.Now())
	return err
}

// ClearLoginFailures forgets an account's failures: an admin's unlock.
func (db *DB) ClearLoginFailures(ctx context.Context, email string) (int, error) {
	res, err := db.exec(ctx, "DELETE FROM login_attempts WHERE email = ? AND succeeded = FALSE", email)
	if err != nil {
		return 0, fmt.Errorf("store: clear login failures: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func (tx *Tx) throttleView(ctx context.Context, email, ip string, since, knownSince time.Time) (ThrottleView, error) {
	var v ThrottleView
	var err error
	if v.Account, err = tx.failures(ctx, "email = ?", []any{email}, since); err != nil {
		return v, err
	}
	if v.AccountAtIP, err = tx.failures(ctx, "email = ? AND ip_address = ?", []any{email, ip}, since); err != nil {
		return v, err
	}
	if v.IP, err = tx.failures(ctx, "ip_address = ?", []any{ip}, since); err != nil {
		return v, err
	}
	var n int
	err = tx.queryRow(ctx, "SELECT COUNT(*) FROM login_attempts WHERE email = ? AND ip_address = ? AND succeeded = TRUE AND created_at > ?",
		email, ip, knownSince).Scan(&n)
	v.KnownAddress = n > 0
	return v, err
}

func (tx *Tx) failures(ctx context.Context, where string, args []any, since time.Time) (FailureStats, error) {
	var st FailureStats
	var last, oldest, success nullTime
	q := "SELECT COUNT(*), MAX(created_at), MIN(created_at) FROM login_attempts WHERE " + where + " AND succeeded = FALSE AND created_at > ?"
	if err := tx.queryRow(ctx, q, append(args, since)...).Scan(&st.InWindow, &last, &oldest); err != nil {
		return st, fmt.Errorf("store: login failures: %w", err)
	}
	st.Last, st.Oldest = last.Time, oldest.Time
	q = "SELECT MAX(created_at) FROM login_attempts WHERE " + where + " AND succeeded = TRUE AND created_at > ?"
	if err := tx.queryRow(ctx, q, append(args, since)...).Scan(&success); err != nil {
		return st, fmt.Errorf("store: login failures: %w", err)
	}
	if !success.Valid {
		st.SinceSuccess = st.InWindow
		return st, nil
	}
	q = "SELECT COUNT(*) FROM login_attempts WHERE " + where + " AND succeeded = FALSE AND created_at > ?"
	err := tx.queryRow(ctx, q, append(args, success.Time)...).Scan(&st.SinceSuccess)
	return st, err
}
