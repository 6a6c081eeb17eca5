package auth

import (
	"context"
	"net/url"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/jobs"
	"upanel/internal/store"
)

// resetsPerHour bounds reset emails per account, so the form cannot be used to
// flood someone's inbox.
const resetsPerHour = 3

// ResetRequestKind is the job that handles a password reset request.
const ResetRequestKind = "auth.password_reset"

type resetRequest struct {
	Email     string `json:"email"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
}

// RequestReset takes a password reset request. It does the same work whether
// or not the address has an account, queueing a job that finds out, so
// neither the answer nor its timing tells. The emailed link is built from the
// panel's configured URL, never from the request's Host header.
func (s *Service) RequestReset(ctx context.Context, email string, m Meta) error {
	norm, err := NormalizeEmail(email)
	if err != nil {
		return nil // same answer as for an unknown address
	}
	_, _, err = s.DB.EnqueueJob(ctx, store.NewJob{Kind: ResetRequestKind, MaxAttempts: 3,
		Payload: resetRequest{Email: norm, IP: m.IP, UserAgent: truncateRunes(m.UserAgent, 300)}})
	return err
}

// ResetRequestHandler emails a reset link if the requested address has an
// account, at most resetsPerHour times an hour.
func (s *Service) ResetRequestHandler() jobs.Handler {
	return func(ctx context.Context, j *jobs.Job) error {
		var req resetRequest
		if err := j.Decode(&req); err != nil {
			return err
		}
		m := Meta{IP: req.IP, UserAgent: req.UserAgent}
		u, err := s.DB.GetUserByEmail(ctx, req.Email)
		if isNotFound(err) {
			s.security(ctx, s.event(audit.PasswordResetRequested, nil, m, map[string]any{"email": req.Email, "known": false}))
			return nil
		}
		if err != nil {
			return err
		}
		n, err := s.DB.CountResetRequests(ctx, u.ID, s.DB.Now().Add(-time.Hour))
		if err != nil {
			return err
		}
		if n >= resetsPerHour {
			s.security(ctx, s.event(audit.PasswordResetRequested, u, m, map[string]any{"email": req.Email, "suppressed": "too many requests"}))
			return nil
		}
		token := newToken()
		err = s.DB.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.CreateResetToken(ctx, u.ID, hashToken(token), m.IP, tx.Now().Add(ResetTTL)); err != nil {
				return err
			}
			return s.QueueMail(ctx, tx, Mail{Kind: "password_reset", To: u.Email, Expires: ResetTTL,
				Link: s.link("/password/reset", url.Values{"token": {token}}), Data: map[string]string{"ip": m.IP}})
		})
		if err != nil {
			return err
		}
		s.security(ctx, s.event(audit.PasswordResetRequested, u, m, map[string]any{"email": req.Email}))
		return nil
	}
}

func truncateRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}

// CheckResetToken reports whether a reset link can still be used.
func (s *Service) CheckResetToken(ctx context.Context, token string) error {
	_, err := s.DB.ResetTokenUser(ctx, hashToken(token))
	return err
}

// ResetPassword sets a new password with a reset link. The link works once, and
// every session of the user ends.
func (s *Service) ResetPassword(ctx context.Context, token, password string, m Meta) error {
	hash := hashToken(token)
	userID, err := s.DB.ResetTokenUser(ctx, hash)
	if err != nil {
		return err
	}
	u, err := s.DB.GetUser(ctx, userID)
	if err != nil {
		return err
	}
	if err := CheckPassword(password, u.Email); err != nil {
		return err
	}
	pwHash, err := s.Hasher.Hash(ctx, password)
	if err != nil {
		return err
	}
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ConsumeResetToken(ctx, hash); err != nil {
			return err
		}
		if err := tx.SetPassword(ctx, u.ID, pwHash); err != nil {
			return err
		}
		if _, err := tx.DeleteUserSessions(ctx, u.ID, ""); err != nil {
			return err
		}
		if err := tx.InvalidateResetTokens(ctx, u.ID); err != nil {
			return err
		}
		// A reset may follow a compromise: the attacker's tokens go too.
		if _, err := tx.RevokeUserTokens(ctx, u.ID); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: u.ID, Action: "updated", SubjectType: "User", SubjectID: u.ID,
			Description: "password reset by email link; sessions ended and API tokens revoked", IPAddress: m.IP,
			Changes: audit.Diff(map[string]any{"password": "old"}, map[string]any{"password": "new"}, "password")})
	})
	if err != nil {
		return err
	}
	// Proving control of the mailbox clears this address's delays, so an
	// attacker hammering the account cannot keep its owner out.
	if err := s.DB.RecordLoginSuccess(ctx, u.Email, u.ID, m.IP, "password"); err != nil {
		s.Log.Error("record reset as success", "err", err)
	}
	s.security(ctx, s.event(audit.PasswordResetCompleted, u, m, nil))
	return nil
}

// Invite creates an invitation with a role of the admin's choosing and emails
// its link. The invitee can choose a password, never the role.
func (s *Service) Invite(ctx context.Context, p *Principal, email string, role Role, m Meta) (*store.Invite, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	if !role.Valid() {
		return nil, apperr.New(apperr.Invalid, "role must be admin, operator or viewer")
	}
	if _, err := s.DB.GetUserByEmail(ctx, email); err == nil {
		return nil, apperr.New(apperr.Conflict, "%s already has an account", email)
	} else if !isNotFound(err) {
		return nil, err
	}
	token := newToken()
	var inv *store.Invite
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		var err error
		inv, err = tx.CreateInvite(ctx, email, string(role), hashToken(token), p.User.ID, tx.Now().Add(InviteTTL))
		if err != nil {
			return err
		}
		if err := s.QueueMail(ctx, tx, Mail{Kind: "invite", To: email, Expires: InviteTTL,
			Link: s.link("/invite/accept", url.Values{"token": {token}}),
			Data: map[string]string{"inviter": p.User.Email, "role": string(role)}}); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: p.User.ID, Action: "created", SubjectType: "Invite", SubjectID: inv.ID,
			Description: "invited " + email + " as " + string(role), IPAddress: m.IP,
			Changes: audit.Diff(nil, map[string]any{"email": email, "role": string(role)})})
	})
	if err != nil {
		return nil, err
	}
	s.security(ctx, s.event(audit.InviteCreated, p.User, m, map[string]any{"invite_id": inv.ID, "email": email, "role": string(role)}))
	return inv, nil
}

// Invites lists invitations, pending first then the rest, newest first.
func (s *Service) Invites(ctx context.Context, pendingOnly bool) ([]*store.Invite, error) {
	at := time.Time{}
	if pendingOnly {
		at = s.DB.Now()
	}
	return s.DB.ListInvites(ctx, at)
}

// RevokeInvite revokes a pending invitation.
func (s *Service) RevokeInvite(ctx context.Context, p *Principal, id string, m Meta) error {
	var inv *store.Invite
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if inv, err = tx.RevokeInvite(ctx, id); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: p.User.ID, Action: "deleted", SubjectType: "Invite", SubjectID: inv.ID,
			Description: "invitation for " + inv.Email + " revoked", IPAddress: m.IP})
	})
	if err != nil {
		return err
	}
	s.security(ctx, s.event(audit.InviteRevoked, p.User, m, map[string]any{"invite_id": id, "email": inv.Email}))
	return nil
}

var errInviteInvalid = apperr.New(apperr.NotFound, "this invitation is invalid, used or expired: ask an admin for a new one")

// InviteByToken returns the pending invitation a link names. An invitation
// is only as good as its sender: once the inviting admin is gone or no longer
// an admin, it is void, so a compromised admin's invites die with their rights.
func (s *Service) InviteByToken(ctx context.Context, token string) (*store.Invite, error) {
	if len(token) > 100 {
		return nil, errInviteInvalid
	}
	inv, err := s.DB.InviteByTokenHash(ctx, hashToken(token))
	if isNotFound(err) || (err == nil && !inv.Pending(s.DB.Now())) {
		return nil, errInviteInvalid
	}
	if err != nil {
		return nil, err
	}
	if inv.InvitedBy == "" {
		return nil, errInviteInvalid
	}
	inviter, err := s.DB.GetUser(ctx, inv.InvitedBy)
	if isNotFound(err) || (err == nil && inviter.Role != string(Admin)) {
		return nil, errInviteInvalid
	}
	return inv, err
}

// AcceptInvite creates the invited user, with the role and email of the
// invitation whatever the request says, and signs them in.
func (s *Service) AcceptInvite(ctx context.Context, token, password, timezone string, m Meta) (*LoginResult, error) {
	inv, err := s.InviteByToken(ctx, token)
	if err != nil {
		return nil, err
	}
	var res *LoginResult
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		u, err := s.createUser(ctx, tx, inv.Email, password, Role(inv.Role), timezone, "", m)
		if err != nil {
			return err
		}
		if err := tx.AcceptInvite(ctx, inv.ID, u.ID); err != nil {
			return errInviteInvalid
		}
		if res, err = s.newSession(ctx, tx, u, false, m); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: u.ID, Action: "updated", SubjectType: "Invite", SubjectID: inv.ID,
			Description: "invitation accepted by " + u.Email, IPAddress: m.IP,
			Changes: audit.Diff(map[string]any{"status": "pending"}, map[string]any{"status": "accepted"})})
	})
	if err != nil {
		return nil, err
	}
	s.security(ctx, s.event(audit.InviteAccepted, res.User, m, map[string]any{"invite_id": inv.ID, "role": inv.Role}))
	s.security(ctx, s.event(audit.LoginSuccess, res.User, m, map[string]any{"method": "invite"}))
	return res, nil
}
