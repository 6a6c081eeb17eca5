package auth

import (
	"context"
	"strings"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/store"
)

// issuer names the panel in authenticator apps, with its host so that several
// panels are told apart.
func (s *Service) issuer() string {
	if s.BaseURL != nil && s.BaseURL.Hostname() != "" {
		return "UPanel (" + s.BaseURL.Hostname() + ")"
	}
	return "UPanel"
}

// StartTwoFactor creates a new secret for the caller, pending until confirmed
// with a code. It asks for the password first: whoever enrols a device
// controls the account from then on, so a stolen session must not be enough.
func (s *Service) StartTwoFactor(ctx context.Context, p *Principal, password string, m Meta) (*Enrollment, error) {
	if p.User.TwoFactorEnabled() {
		return nil, apperr.New(apperr.Conflict, "two-factor authentication is already on; turn it off first to enrol a new device")
	}
	if err := s.reauthenticate(ctx, p.User, password, m); err != nil {
		return nil, err
	}
	e, err := newEnrollment(s.issuer(), p.User.Email)
	if err != nil {
		return nil, err
	}
	err = s.DB.InTx(ctx, func(tx *store.Tx) error { return tx.SetPendingTwoFactor(ctx, p.User.ID, []byte(e.Secret)) })
	return e, err
}

// ConfirmTwoFactor turns two-factor on once the user proves the authenticator
// works, and returns the recovery codes, which are shown this once.
func (s *Service) ConfirmTwoFactor(ctx context.Context, p *Principal, code string, m Meta) ([]string, error) {
	u := p.User
	if u.TwoFactorEnabled() {
		return nil, apperr.New(apperr.Conflict, "two-factor authentication is already on")
	}
	attempt, err := s.reserve(ctx, u.Email, u, "totp", m)
	if err != nil {
		return nil, err
	}
	secret, ciphertext, err := s.DB.PendingTwoFactorSecret(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	step, match := matchTOTP(string(secret), code, s.DB.Now())
	if !match {
		s.failed(ctx, u.Email, u, "totp", m, map[string]any{"action": "enrol"})
		return nil, apperr.New(apperr.Invalid, "that code is not valid: check the time on your device and try the next code")
	}
	s.settle(ctx, attempt, u, true, false)
	codes, hashes := newRecoveryCodes()
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.ConfirmTwoFactor(ctx, u.ID, ciphertext, step, hashes); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: u.ID, Action: "updated", SubjectType: "User", SubjectID: u.ID,
			Description: "two-factor authentication enabled", IPAddress: m.IP,
			Changes: audit.Diff(map[string]any{"two_factor": false, "two_factor_secret": nil}, map[string]any{"two_factor": true, "two_factor_secret": "set"}, "two_factor_secret")})
	})
	if err != nil {
		return nil, err
	}
	s.security(ctx, s.event(audit.TwoFactorEnabled, u, m, nil))
	return codes, nil
}

// reauthenticate checks the caller's password before a sensitive change,
// throttled like a sign-in.
func (s *Service) reauthenticate(ctx context.Context, u *store.User, password string, m Meta) error {
	attempt, err := s.reserve(ctx, u.Email, u, "password", m)
	if err != nil {
		return err
	}
	hash, err := s.DB.PasswordHash(ctx, u.ID)
	if err != nil {
		return err
	}
	ok, err := s.Hasher.Verify(ctx, hash, password)
	if err != nil {
		return err
	}
	if !ok {
		s.failed(ctx, u.Email, u, "password", m, map[string]any{"action": "reauthenticate"})
		return apperr.New(apperr.Unauthorized, "the password is not right")
	}
	s.settle(ctx, attempt, u, true, false)
	return nil
}

// DisableTwoFactor turns two-factor off, after checking the password and a
// current code (or a recovery code): both factors, as to sign in.
func (s *Service) DisableTwoFactor(ctx context.Context, p *Principal, password, code string, m Meta) error {
	if !p.User.TwoFactorEnabled() {
		return apperr.New(apperr.Conflict, "two-factor authentication is not on")
	}
	if err := s.reauthenticate(ctx, p.User, password, m); err != nil {
		return err
	}
	if err := s.secondFactor(ctx, p.User, code, m); err != nil {
		return err
	}
	return s.disableTwoFactor(ctx, p.User, p.User.ID, m)
}

// secondFactor checks a TOTP code, or a recovery code (which it uses up).
func (s *Service) secondFactor(ctx context.Context, u *store.User, code string, m Meta) error {
	digits := strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if len(digits) == 6 && strings.Trim(digits, "0123456789") == "" {
		return s.verifyTOTP(ctx, u, digits, m)
	}
	attempt, err := s.reserve(ctx, u.Email, u, "recovery_code", m)
	if err != nil {
		return err
	}
	ok, _, err := s.DB.ConsumeRecoveryCode(ctx, u.ID, hashRecoveryCode(code))
	if err != nil {
		return err
	}
	if !ok {
		s.failed(ctx, u.Email, u, "recovery_code", m, map[string]any{"action": "disable two-factor"})
		return apperr.New(apperr.Unauthorized, "that code is not valid")
	}
	s.settle(ctx, attempt, u, true, false)
	s.security(ctx, s.event(audit.RecoveryCodeUsed, u, m, map[string]any{"action": "disable two-factor"}))
	return nil
}

func (s *Service) disableTwoFactor(ctx context.Context, u *store.User, actorID string, m Meta) error {
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.DisableTwoFactor(ctx, u.ID); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: actorID, Action: "updated", SubjectType: "User", SubjectID: u.ID,
			Description: "two-factor authentication disabled", IPAddress: m.IP,
			Changes: audit.Diff(map[string]any{"two_factor": true, "two_factor_secret": "set"}, map[string]any{"two_factor": false, "two_factor_secret": nil}, "two_factor_secret")})
	})
	if err != nil {
		return err
	}
	by := actorID
	if by == "" {
		by = "command line"
	}
	s.security(ctx, s.event(audit.TwoFactorDisabled, u, m, map[string]any{"by": by}))
	return nil
}

// RegenerateRecoveryCodes replaces the recovery codes, after checking the password.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, p *Principal, password string, m Meta) ([]string, error) {
	if !p.User.TwoFactorEnabled() {
		return nil, apperr.New(apperr.Conflict, "two-factor authentication is not on")
	}
	if err := s.reauthenticate(ctx, p.User, password, m); err != nil {
		return nil, err
	}
	codes, hashes := newRecoveryCodes()
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.ReplaceRecoveryCodes(ctx, p.User.ID, hashes); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: p.User.ID, Action: "updated", SubjectType: "User", SubjectID: p.User.ID,
			Description: "recovery codes regenerated", IPAddress: m.IP,
			Changes: audit.Diff(map[string]any{"recovery_codes": "old"}, map[string]any{"recovery_codes": "new"}, "recovery_codes")})
	})
	if err == nil {
		s.security(ctx, s.event(audit.RecoveryCodesRegenerated, p.User, m, nil))
	}
	return codes, err
}

// RecoveryCodesLeft counts the caller's unused recovery codes.
func (s *Service) RecoveryCodesLeft(ctx context.Context, p *Principal) (int, error) {
	return s.DB.RecoveryCodesLeft(ctx, p.User.ID)
}

// ResetTwoFactor is the admin's way back in for a user who lost their device:
// it turns two-factor off and ends the user's sessions.
func (s *Service) ResetTwoFactor(ctx context.Context, email string, m Meta) (*store.User, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	u, err := s.DB.GetUserByEmail(ctx, email)
	if err != nil {
		return nil, err
	}
	if err := s.disableTwoFactor(ctx, u, "", m); err != nil { // the system acts, not the user
		return nil, err
	}
	err = s.DB.InTx(ctx, func(tx *store.Tx) error { _, err := tx.DeleteUserSessions(ctx, u.ID, ""); return err })
	return u, err
}
