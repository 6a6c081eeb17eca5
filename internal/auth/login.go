package auth

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/store"
)

// SessionCookie is the name of the session cookie.
const SessionCookie = "upanel_session"

// LoginResult is a new session: the secret for the cookie, and whether it
// still owes a second factor.
type LoginResult struct {
	Token   string
	Session *store.Session
	User    *store.User
	Pending bool
}

func (s *Service) newSession(ctx context.Context, tx *store.Tx, u *store.User, pending bool, m Meta) (*LoginResult, error) {
	token := newToken()
	ttl := s.AbsoluteTimeout
	if pending {
		ttl = pendingTTL
	}
	sess, err := tx.CreateSession(ctx, store.NewSession{UserID: u.ID, TokenHash: hashToken(token), TwoFactorPending: pending,
		IPAddress: m.IP, UserAgent: m.UserAgent, ExpiresAt: tx.Now().Add(ttl)})
	if err != nil {
		return nil, err
	}
	return &LoginResult{Token: token, Session: sess, User: u, Pending: pending}, nil
}

func (s *Service) event(typ string, u *store.User, m Meta, details map[string]any) store.SecurityEvent {
	ev := store.SecurityEvent{EventType: typ, IPAddress: m.IP, UserAgent: m.UserAgent, Details: details}
	if u != nil {
		ev.UserID = u.ID
	}
	return ev
}

// failed records a failed sign-in step as a security event; the attempt
// itself was counted when it was reserved.
func (s *Service) failed(ctx context.Context, email string, u *store.User, stage string, m Meta, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	details["email"], details["stage"] = eventEmail(email), stage
	s.security(ctx, s.event(audit.LoginFailed, u, m, details))
}

// eventEmail is what a security event keeps of a typed email: the address if
// it is one, never arbitrary text (a password pasted into the wrong field).
func eventEmail(typed string) string {
	if e, err := NormalizeEmail(typed); err == nil {
		return e
	}
	return "(not an email address)"
}

// loginKey is the throttle key of a typed email; text that cannot be an address
// is refused before it reaches the database.
func loginKey(email string) (string, bool) {
	key := strings.ToLower(strings.TrimSpace(email))
	return key, len(key) <= 254 && utf8.ValidString(key) && !strings.ContainsRune(key, 0)
}

// Login checks an email and password. The error never says which of the two was
// wrong, and an unknown email costs the same time as a wrong password.
func (s *Service) Login(ctx context.Context, email, password string, m Meta) (*LoginResult, error) {
	key, ok := loginKey(email)
	if !ok || len(password) > 4*MaxPasswordLen {
		return nil, errInvalidLogin
	}
	u, err := s.DB.GetUserByEmail(ctx, key)
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	attempt, err := s.reserve(ctx, key, u, "password", m)
	if err != nil {
		return nil, err
	}
	hash := ""
	if u != nil {
		if hash, err = s.DB.PasswordHash(ctx, u.ID); err != nil {
			return nil, err
		}
	}
	match, err := s.Hasher.Verify(ctx, hash, password)
	if err != nil {
		return nil, err
	}
	if !match || u == nil {
		s.failed(ctx, key, u, "password", m, nil)
		return nil, errInvalidLogin
	}
	var res *LoginResult
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		res, err = s.newSession(ctx, tx, u, u.TwoFactorEnabled(), m)
		return err
	})
	if err != nil {
		return nil, err
	}
	// A user with two-factor is not signed in yet: the right password
	// neither counts as a failure nor resets the count, so the code step
	// stays throttled however often the password is entered.
	s.settle(ctx, attempt, u, true, res.Pending)
	if !res.Pending {
		s.security(ctx, s.event(audit.LoginSuccess, u, m, map[string]any{"method": "password"}))
	}
	return res, nil
}

// pendingSession returns the user of a session that owes a second factor.
func (s *Service) pendingSession(ctx context.Context, p *Principal) (*store.User, error) {
	if p == nil || !p.TwoFactorPending || p.User == nil {
		return nil, apperr.New(apperr.Unauthorized, "sign in again")
	}
	return p.User, nil
}

// completeLogin swaps the pending session for a full one: the session id
// changes at the moment the sign-in completes.
func (s *Service) completeLogin(ctx context.Context, p *Principal, u *store.User, kind string, m Meta) (*LoginResult, error) {
	var res *LoginResult
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.DeleteSession(ctx, u.ID, p.SessionID); err != nil {
			return err
		}
		var err error
		res, err = s.newSession(ctx, tx, u, false, m)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.security(ctx, s.event(audit.LoginSuccess, u, m, map[string]any{"method": kind}))
	return res, nil
}

// CompleteTwoFactor finishes a sign-in with a TOTP code. A code is accepted
// once: a replay is refused and recorded.
func (s *Service) CompleteTwoFactor(ctx context.Context, p *Principal, code string, m Meta) (*LoginResult, error) {
	u, err := s.pendingSession(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := s.verifyTOTP(ctx, u, code, m); err != nil {
		return nil, err
	}
	return s.completeLogin(ctx, p, u, "totp", m)
}

// verifyTOTP checks and consumes a code of a user with two-factor on,
// throttled like passwords.
func (s *Service) verifyTOTP(ctx context.Context, u *store.User, code string, m Meta) error {
	attempt, err := s.reserve(ctx, u.Email, u, "totp", m)
	if err != nil {
		return err
	}
	secret, ok, err := s.DB.TwoFactorSecret(ctx, u.ID)
	if err != nil {
		return err
	}
	step, match := int64(0), false
	if ok && u.TwoFactorEnabled() {
		step, match = matchTOTP(string(secret), code, s.DB.Now())
	}
	if !match {
		s.failed(ctx, u.Email, u, "totp", m, nil)
		return apperr.New(apperr.Unauthorized, "that code is not valid")
	}
	fresh, err := s.DB.ConsumeTOTPStep(ctx, u.ID, step)
	if err != nil {
		return err
	}
	if !fresh {
		s.security(ctx, s.event(audit.TwoFactorReplayed, u, m, map[string]any{"step": step}))
		s.failed(ctx, u.Email, u, "totp", m, map[string]any{"reason": "replay"})
		return apperr.New(apperr.Unauthorized, "that code was already used: wait for the next one")
	}
	s.settle(ctx, attempt, u, true, false)
	return nil
}

// UseRecoveryCode finishes a sign-in with a one-time recovery code.
func (s *Service) UseRecoveryCode(ctx context.Context, p *Principal, code string, m Meta) (*LoginResult, int, error) {
	u, err := s.pendingSession(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	attempt, err := s.reserve(ctx, u.Email, u, "recovery_code", m)
	if err != nil {
		return nil, 0, err
	}
	ok, left, err := s.DB.ConsumeRecoveryCode(ctx, u.ID, hashRecoveryCode(code))
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		s.failed(ctx, u.Email, u, "recovery_code", m, nil)
		return nil, 0, apperr.New(apperr.Unauthorized, "that recovery code is not valid")
	}
	s.settle(ctx, attempt, u, true, false)
	s.security(ctx, s.event(audit.RecoveryCodeUsed, u, m, map[string]any{"remaining": left}))
	res, err := s.completeLogin(ctx, p, u, "recovery_code", m)
	return res, left, err
}

// Authenticate resolves a session cookie to a principal, or nil when the
// cookie names no live session. Expired and idle sessions are deleted.
func (s *Service) Authenticate(ctx context.Context, cookie string) (*Principal, error) {
	if cookie == "" || len(cookie) > 100 {
		return nil, nil
	}
	sess, err := s.DB.SessionByTokenHash(ctx, hashToken(cookie))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := s.DB.Now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastActivityAt) > s.IdleTimeout {
		err := s.DB.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteSession(ctx, sess.UserID, sess.ID) })
		if err != nil && !isNotFound(err) {
			s.Log.Warn("delete expired session", "err", err)
		}
		return nil, nil
	}
	u, err := s.DB.GetUser(ctx, sess.UserID)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := &Principal{User: u, Role: Role(u.Role), SessionID: sess.ID, TwoFactorPending: sess.TwoFactorPending, csrf: csrfFor(cookie)}
	if err := s.applyTwoFactorRequirement(ctx, p); err != nil {
		return nil, err
	}
	if now.Sub(sess.LastActivityAt) > time.Minute && ctx.Value(passiveKey{}) == nil {
		if err := s.DB.TouchSession(ctx, sess.ID, now); err != nil {
			s.Log.Warn("touch session", "err", err)
		}
	}
	return p, nil
}

type passiveKey struct{}

// Passive marks a request the browser makes on its own, such as a live
// stream reconnecting: Authenticate does not count it as the user's
// activity, so a tab left open does not keep an idle session alive.
func Passive(ctx context.Context) context.Context {
	return context.WithValue(ctx, passiveKey{}, true)
}

func (s *Service) applyTwoFactorRequirement(ctx context.Context, p *Principal) error {
	if p.TwoFactorPending || p.User.TwoFactorEnabled() {
		return nil
	}
	req, err := s.RequireTwoFactor(ctx)
	p.MustEnrollTwoFactor = req
	return err
}

// Logout ends the caller's session.
func (s *Service) Logout(ctx context.Context, p *Principal, m Meta) error {
	if p == nil || p.SessionID == "" {
		return nil
	}
	err := s.DB.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteSession(ctx, p.User.ID, p.SessionID) })
	if err != nil && !isNotFound(err) {
		return err
	}
	s.security(ctx, s.event(audit.Logout, p.User, m, nil))
	return nil
}

// Sessions lists the caller's sessions.
func (s *Service) Sessions(ctx context.Context, p *Principal) ([]*store.Session, error) {
	return s.DB.ListSessions(ctx, p.User.ID)
}

// RevokeSession ends one of the caller's sessions. Another user's session id
// is not found, like one that does not exist.
func (s *Service) RevokeSession(ctx context.Context, p *Principal, id string, m Meta) error {
	err := s.DB.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteSession(ctx, p.User.ID, id) })
	if err != nil {
		return err
	}
	s.security(ctx, s.event(audit.SessionRevoked, p.User, m, map[string]any{"session_id": id}))
	return nil
}

// ChangePassword checks the current password, sets the new one, and ends every
// other session of the user, and any pending reset link.
func (s *Service) ChangePassword(ctx context.Context, p *Principal, current, next string, m Meta) error {
	if err := s.reauthenticate(ctx, p.User, current, m); err != nil {
		return err
	}
	return s.setPassword(ctx, p.User, next, p.SessionID, m)
}

// setPassword stores a new password and ends every session but keep.
func (s *Service) setPassword(ctx context.Context, u *store.User, password, keep string, m Meta) error {
	if err := CheckPassword(password, u.Email); err != nil {
		return err
	}
	hash, err := s.Hasher.Hash(ctx, password)
	if err != nil {
		return err
	}
	var ended int
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetPassword(ctx, u.ID, hash); err != nil {
			return err
		}
		if ended, err = tx.DeleteUserSessions(ctx, u.ID, keep); err != nil {
			return err
		}
		if err := tx.InvalidateResetTokens(ctx, u.ID); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: u.ID, Action: "updated", SubjectType: "User", SubjectID: u.ID,
			Description: "password changed", IPAddress: m.IP,
			Changes: audit.Diff(map[string]any{"password": "old"}, map[string]any{"password": "new"}, "password")})
	})
	if err != nil {
		return err
	}
	s.security(ctx, s.event(audit.PasswordChanged, u, m, map[string]any{"sessions_ended": ended}))
	return nil
}
