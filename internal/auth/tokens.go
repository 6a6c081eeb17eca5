package auth

import (
	"context"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/store"
)

// APITokenPrefix starts every API token, so leaked tokens are recognisable
// (secret scanners, logs) and never mistaken for a session cookie.
const APITokenPrefix = "upt_"

// MaxTokenLifetime bounds a token's expiry.
const MaxTokenLifetime = 5 * 365 * 24 * time.Hour

// NewToken is what creating an API token takes. TTL 0 means no expiry.
type NewToken struct {
	Name string
	Role Role
	TTL  time.Duration
}

func validName(name string, max int) (string, error) {
	name = strings.TrimSpace(name)
	if !utf8.ValidString(name) {
		return "", apperr.New(apperr.Invalid, "the name is not valid text")
	}
	if name == "" || len([]rune(name)) > max {
		return "", apperr.New(apperr.Invalid, "the name must be 1 to %d characters", max)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "", apperr.New(apperr.Invalid, "the name must not contain control characters")
		}
	}
	return name, nil
}

// CreateToken makes an API token for the caller, with at most the caller's
// role. The secret is returned this once; only its hash is kept.
func (s *Service) CreateToken(ctx context.Context, p *Principal, n NewToken, m Meta) (string, *store.APIToken, error) {
	if p.ViaToken() {
		// A token that could mint tokens could outlive its own expiry and
		// revocation through its children.
		return "", nil, apperr.New(apperr.Forbidden, "API tokens are created from a signed-in session, not with another token")
	}
	return s.createToken(ctx, p.User, p.Role, n, m)
}

func (s *Service) createToken(ctx context.Context, u *store.User, ceiling Role, n NewToken, m Meta) (string, *store.APIToken, error) {
	name, err := validName(n.Name, 100)
	if err != nil {
		return "", nil, err
	}
	if n.Role == "" {
		n.Role = ceiling
	}
	if !n.Role.Valid() {
		return "", nil, apperr.New(apperr.Invalid, "role must be admin, operator or viewer")
	}
	if !ceiling.AtLeast(n.Role) {
		return "", nil, apperr.New(apperr.Forbidden, "a token cannot have a higher role (%s) than its owner (%s)", n.Role, ceiling)
	}
	if n.TTL < 0 || n.TTL > MaxTokenLifetime {
		return "", nil, apperr.New(apperr.Invalid, "a token expires after at most 5 years")
	}
	raw := APITokenPrefix + newToken()
	var t *store.APIToken
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		var exp *time.Time
		if n.TTL > 0 {
			e := tx.Now().Add(n.TTL)
			exp = &e
		}
		var err error
		t, err = tx.CreateAPIToken(ctx, store.NewAPIToken{UserID: u.ID, Name: name, Role: string(n.Role), Hash: hashToken(raw), Prefix: raw[:12], ExpiresAt: exp})
		if err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: u.ID, Action: "created", SubjectType: "ApiToken", SubjectID: t.ID,
			Description: "API token " + name + " created", IPAddress: m.IP,
			Changes: audit.Diff(nil, map[string]any{"name": name, "role": string(n.Role), "token": "x"}, "token")})
	})
	if err != nil {
		return "", nil, err
	}
	s.security(ctx, s.event(audit.TokenCreated, u, m, map[string]any{"token_id": t.ID, "name": name, "role": string(n.Role)}))
	return raw, t, nil
}

// CreateTokenFor makes a token for a user named by email (the CLI).
func (s *Service) CreateTokenFor(ctx context.Context, email string, n NewToken) (string, *store.APIToken, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return "", nil, err
	}
	u, err := s.DB.GetUserByEmail(ctx, email)
	if err != nil {
		return "", nil, err
	}
	return s.createToken(ctx, u, Role(u.Role), n, Meta{UserAgent: "upanel command line"})
}

// Tokens lists the caller's tokens.
func (s *Service) Tokens(ctx context.Context, p *Principal) ([]*store.APIToken, error) {
	return s.DB.ListAPITokens(ctx, p.User.ID)
}

// RevokeToken revokes one of the caller's tokens.
func (s *Service) RevokeToken(ctx context.Context, p *Principal, id string, m Meta) error {
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		t, err := tx.RevokeAPIToken(ctx, p.User.ID, id)
		if err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: p.User.ID, Action: "deleted", SubjectType: "ApiToken", SubjectID: t.ID,
			Description: "API token " + t.Name + " revoked", IPAddress: m.IP})
	})
	if err != nil {
		return err
	}
	s.security(ctx, s.event(audit.TokenRevoked, p.User, m, map[string]any{"token_id": id}))
	return nil
}

// AuthenticateToken resolves a bearer token to a principal, or nil when it is
// unknown, revoked or expired. The role in force is the lower of the token's
// and the owner's current role.
func (s *Service) AuthenticateToken(ctx context.Context, bearer string) (*Principal, error) {
	if !strings.HasPrefix(bearer, APITokenPrefix) || len(bearer) > 100 {
		return nil, nil
	}
	t, err := s.DB.APITokenByHash(ctx, hashToken(bearer))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := s.DB.Now()
	if t.RevokedAt != nil || (t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)) {
		return nil, nil
	}
	u, err := s.DB.GetUser(ctx, t.UserID)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := &Principal{User: u, Role: Lower(Role(t.Role), Role(u.Role)), TokenID: t.ID}
	if err := s.applyTwoFactorRequirement(ctx, p); err != nil {
		return nil, err
	}
	if err := s.DB.TouchAPIToken(ctx, t.ID, now); err != nil {
		s.Log.Warn("touch api token", "err", err)
	}
	return p, nil
}
