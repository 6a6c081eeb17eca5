// Package audit is the one door through which domain code leaves a trail:
// security events (who tried what, from where, and how it went) and the
// activity log (what changed in a domain object, as a field diff, in a hash
// chain).
//
// It is its own package, rather than part of auth or of the store, because
// every domain package records (accounts today, then servers, apps, backups),
// and they should share one vocabulary: the event types and the severity each
// defaults to, and the rule that a diff never carries a secret value. The SQL,
// the chain and its lock stay in the store; this package stays thin.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"time"

	"upanel/internal/logging"
	"upanel/internal/store"
)

// Security event types (issue 3, item 11, and issue 4). Keep DefaultSeverity
// in step.
const (
	LoginSuccess      = "login_success"
	LoginFailed       = "login_failed"
	Lockout           = "lockout"
	Logout            = "logout"
	TwoFactorEnabled  = "two_factor_enabled"
	TwoFactorDisabled = "two_factor_disabled"
	TwoFactorReplayed = "two_factor_replayed"
	RecoveryCodeUsed  = "recovery_code_used"
	// RecoveryCodesRegenerated: a fresh set replaced the old codes.
	RecoveryCodesRegenerated = "recovery_codes_regenerated"
	PasswordChanged          = "password_changed"
	PasswordResetRequested   = "password_reset_requested"
	PasswordResetCompleted   = "password_reset_completed"
	InviteCreated            = "invite_created"
	InviteAccepted           = "invite_accepted"
	InviteRevoked            = "invite_revoked"
	SessionRevoked           = "session_revoked"
	TokenCreated             = "token_created"
	TokenRevoked             = "token_revoked"
	RoleChanged              = "role_changed"
	PermissionDenied         = "permission_denied"
	// Servers (issue 4).
	HostKeyChanged = "ssh_host_key_changed" // raised as critical
	HostKeyPinned  = "ssh_host_key_pinned"
	ServerHardened = "server_hardened"
	AgentRefused   = "agent_refused"  // a replayed or stale agent message
	SecurityDrift  = "security_drift" // the score fell after hardening
)

// EventTypes lists every security event type above, for filters in the UI
// and API. It returns a new slice each time.
func EventTypes() []string {
	return []string{
		LoginSuccess, LoginFailed, Lockout, Logout,
		TwoFactorEnabled, TwoFactorDisabled, TwoFactorReplayed, RecoveryCodeUsed, RecoveryCodesRegenerated,
		PasswordChanged, PasswordResetRequested, PasswordResetCompleted,
		InviteCreated, InviteAccepted, InviteRevoked,
		SessionRevoked, TokenCreated, TokenRevoked, RoleChanged, PermissionDenied,
		HostKeyChanged, HostKeyPinned, ServerHardened, AgentRefused, SecurityDrift,
	}
}

// DefaultSeverity is the severity an event type is recorded with when the
// caller does not choose one. warning means "someone may be attacking or
// probing": an admin should look. critical is left to events that mean a
// compromise is likely (a changed SSH host key, DESIGN.md decided 3), which
// callers raise explicitly.
func DefaultSeverity(eventType string) string {
	switch eventType {
	case HostKeyChanged:
		return store.SeverityCritical
	case Lockout, AgentRefused, SecurityDrift, // the throttle tripped; an agent link was abused; protection weakened
		TwoFactorReplayed, // a correct code seen twice: it was intercepted or shoulder-surfed
		PermissionDenied,  // the UI never offers a forbidden action, so this is a crafted request
		TwoFactorDisabled: // removes a protection; worth a look even when the owner did it
		return store.SeverityWarning
	}
	// login_failed is info: single failures are typos, and the lockout event
	// is the signal. recovery_code_used and role_changed are legitimate but
	// noteworthy; they stay info and can be filtered by type.
	return store.SeverityInfo
}

// Recorder records security events and activity through the store.
type Recorder struct {
	db *store.DB
}

// New returns a Recorder writing to db.
func New(db *store.DB) *Recorder { return &Recorder{db: db} }

// prepare fills the default severity and masks details whose names mean a
// secret (password, token, ...): a safety net for a caller that passes the
// form it was given. The store never sees those values.
func prepare(e store.SecurityEvent) store.SecurityEvent {
	if e.Severity == "" {
		e.Severity = DefaultSeverity(e.EventType)
	}
	if len(e.Details) > 0 {
		d := make(map[string]any, len(e.Details))
		for k, v := range e.Details {
			if logging.SecretName(k) {
				v = logging.Redacted
			}
			d[k] = v
		}
		e.Details = d
	}
	return e
}

// Security records a security event in a transaction of its own, so that it
// is kept even when the action it reports fails (a failed login, a denied
// request). It returns the event's id.
func (r *Recorder) Security(ctx context.Context, e store.SecurityEvent) (string, error) {
	return r.db.InsertSecurityEvent(ctx, prepare(e))
}

// SecurityTx records a security event in the caller's transaction, so that it
// commits exactly with the change it reports (a role change, a revoked token).
func (r *Recorder) SecurityTx(ctx context.Context, tx *store.Tx, e store.SecurityEvent) (string, error) {
	return tx.InsertSecurityEvent(ctx, prepare(e))
}

// Activity appends to the activity log in the caller's transaction, the one
// that makes the change. It holds the log's append lock until that
// transaction ends, so make it the transaction's last write.
func (r *Recorder) Activity(ctx context.Context, tx *store.Tx, a store.Activity) (string, error) {
	return tx.InsertActivity(ctx, a)
}

// Diff returns the fields whose values differ between old and new (a field
// missing on one side counts as null), or nil when nothing changed. Values are
// compared as they would be stored, by their JSON encoding, so an int64 read
// from the database equals the int from a form. Times are taken in UTC
// (DESIGN.md: time is UTC in storage), so a zone alone is not a change.
//
// Fields named in secretFields, and fields whose names mean a secret
// (password, token, private_key, ...: logging.SecretName), are reported as
// changed with Secret set and no values. Compare a secret by its plaintext or
// a digest of it, not by a ciphertext, which differs on every encryption.
func Diff(old, new map[string]any, secretFields ...string) map[string]store.Change {
	var out map[string]store.Change
	seen := make(map[string]bool, len(old)+len(new))
	check := func(k string) {
		if seen[k] {
			return
		}
		seen[k] = true
		o, n := utc(old[k]), utc(new[k])
		if equal(o, n) {
			return
		}
		if out == nil {
			out = map[string]store.Change{}
		}
		if slices.Contains(secretFields, k) || logging.SecretName(k) {
			out[k] = store.Change{Secret: true}
			return
		}
		out[k] = store.Change{Old: o, New: n}
	}
	for k := range old {
		check(k)
	}
	for k := range new {
		check(k)
	}
	return out
}

// utc turns a time into UTC, so that its JSON says the instant and not the zone
// it was read in.
func utc(v any) any {
	switch t := v.(type) {
	case time.Time:
		return t.UTC()
	case *time.Time:
		if t != nil {
			return t.UTC()
		}
	}
	return v
}

// equal compares two values as the activity log would store them.
func equal(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	if errA != nil || errB != nil {
		return reflect.DeepEqual(a, b)
	}
	return bytes.Equal(ja, jb)
}
