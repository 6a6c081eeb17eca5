package auth

import (
	"context"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/store"
)

// Users lists every user.
func (s *Service) Users(ctx context.Context) ([]*store.User, error) { return s.DB.ListUsers(ctx) }

// User returns one user.
func (s *Service) User(ctx context.Context, id string) (*store.User, error) {
	return s.DB.GetUser(ctx, id)
}

// ChangeRole sets a user's role. The last admin cannot be demoted, so the panel
// always has someone who can manage it.
func (s *Service) ChangeRole(ctx context.Context, p *Principal, userID string, role Role, m Meta) (*store.User, error) {
	if !role.Valid() {
		return nil, apperr.New(apperr.Invalid, "role must be admin, operator or viewer")
	}
	var u *store.User
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if u, err = tx.GetUser(ctx, userID); err != nil {
			return err
		}
		if u.Role == string(role) {
			return nil
		}
		if u.Role == string(Admin) {
			if n, err := tx.CountAdmins(ctx); err != nil {
				return err
			} else if n <= 1 {
				return apperr.New(apperr.Conflict, "%s is the last admin; make someone else admin first", u.Email)
			}
		}
		old := u.Role
		if err := tx.SetRole(ctx, userID, string(role)); err != nil {
			return err
		}
		u.Role = string(role)
		if _, err := s.Audit.SecurityTx(ctx, tx, s.event(audit.RoleChanged, u, m, map[string]any{"by": p.User.ID, "old": old, "new": string(role)})); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: p.User.ID, Action: "updated", SubjectType: "User", SubjectID: u.ID,
			Description: "role of " + u.Email + " changed", IPAddress: m.IP,
			Changes: audit.Diff(map[string]any{"role": old}, map[string]any{"role": string(role)})})
	})
	return u, err
}

// DeleteUser removes a user, with their sessions and tokens. Nobody deletes
// themselves or the last admin.
func (s *Service) DeleteUser(ctx context.Context, p *Principal, userID string, m Meta) error {
	if userID == p.User.ID {
		return apperr.New(apperr.Conflict, "you cannot delete your own account")
	}
	return s.DB.InTx(ctx, func(tx *store.Tx) error {
		u, err := tx.GetUser(ctx, userID)
		if err != nil {
			return err
		}
		if u.Role == string(Admin) {
			if n, err := tx.CountAdmins(ctx); err != nil {
				return err
			} else if n <= 1 {
				return apperr.New(apperr.Conflict, "%s is the last admin", u.Email)
			}
		}
		if err := tx.DeleteUser(ctx, userID); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: p.User.ID, Action: "deleted", SubjectType: "User", SubjectID: u.ID,
			Description: "user " + u.Email + " deleted", IPAddress: m.IP,
			Changes: audit.Diff(map[string]any{"email": u.Email, "role": u.Role}, nil)})
	})
}

// SetTimezone changes the caller's time zone, in which the UI shows times.
func (s *Service) SetTimezone(ctx context.Context, p *Principal, tz string, m Meta) error {
	if err := ValidTimezone(tz); err != nil {
		return err
	}
	if tz == p.User.Timezone {
		return nil
	}
	return s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetTimezone(ctx, p.User.ID, tz); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: p.User.ID, Action: "updated", SubjectType: "User", SubjectID: p.User.ID,
			Description: "time zone changed", IPAddress: m.IP,
			Changes: audit.Diff(map[string]any{"timezone": p.User.Timezone}, map[string]any{"timezone": tz})})
	})
}
