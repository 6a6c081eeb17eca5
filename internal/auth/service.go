package auth

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/store"
)

// Meta is what every account action records about the request behind it.
type Meta struct {
	IP        string
	UserAgent string
}

// Mail is an account email to queue: a password reset or an invitation. Link
// is absolute and built from the panel's configured URL, never from request
// headers.
type Mail struct {
	Kind    string // "password_reset" or "invite"
	To      string
	Link    string
	Expires time.Duration
	Data    map[string]string // e.g. requesting IP, inviter, role
}

// Options configures the Service.
type Options struct {
	DB    *store.DB
	Log   *slog.Logger
	Audit *audit.Recorder
	// BaseURL is UPANEL_URL: links in emails and the cookie's Secure flag
	// follow it.
	BaseURL         *url.URL
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	Hasher          *Hasher
	// QueueMail queues an email in the caller's transaction, so it goes out
	// if and only if the change behind it commits.
	QueueMail func(ctx context.Context, tx *store.Tx, m Mail) error
}

// Service is accounts: setup, sign-in, sessions, two-factor, tokens, resets,
// invites and users. Handlers call it; it calls the store and the audit trail.
type Service struct {
	Options
	mu        sync.Mutex // guards setupHash
	setupHash string
}

// pendingTTL bounds a session that passed the password and owes a code.
const pendingTTL = 10 * time.Minute

// Durations of emailed tokens.
const (
	ResetTTL  = 60 * time.Minute
	InviteTTL = 7 * 24 * time.Hour
)

// SettingRequireTwoFactor makes two-factor mandatory for every user.
const SettingRequireTwoFactor = "require_two_factor"

// New returns the service.
func New(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Hasher == nil {
		o.Hasher = NewHasher(2)
	}
	return &Service{Options: o}
}

// SecureCookies reports whether cookies must be Secure: whenever the panel's
// URL is https.
func (s *Service) SecureCookies() bool { return s.BaseURL != nil && s.BaseURL.Scheme == "https" }

// link builds an absolute link under the panel's URL.
func (s *Service) link(path string, q url.Values) string {
	u := *s.BaseURL
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = q.Encode()
	return u.String()
}

// NormalizeEmail validates an address and returns it lower-cased, the form it
// is stored and looked up in.
func NormalizeEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	if e == "" || len(e) > 254 {
		return "", apperr.New(apperr.Invalid, "enter an email address")
	}
	for i := 0; i < len(e); i++ {
		// ASCII only: every address UPanel stores must be one it can mail.
		if e[i] < 0x21 || e[i] > 0x7e {
			return "", apperr.New(apperr.Invalid, "the email address must be plain ASCII without spaces")
		}
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" || !strings.Contains(e, "@") || strings.ContainsAny(e, " <>\"\r\n") {
		return "", apperr.New(apperr.Invalid, "%q is not a valid email address", email)
	}
	return e, nil
}

// ValidTimezone checks an IANA zone name.
func ValidTimezone(tz string) error {
	if tz == "" || len(tz) > 50 || tz == "Local" {
		return apperr.New(apperr.Invalid, "choose a time zone")
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return apperr.New(apperr.Invalid, "%q is not a known time zone", tz)
	}
	return nil
}

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.TrimSpace(s))
	if !r.Valid() {
		return "", apperr.New(apperr.Invalid, "role must be admin, operator or viewer")
	}
	return r, nil
}

// NewSetupToken makes the one-time token that first-run setup requires while
// no user exists. serve prints it to its log: only someone who can read the
// server's log can claim the panel, not whoever reaches the URL first.
func (s *Service) NewSetupToken(ctx context.Context) (string, error) {
	n, err := s.DB.CountUsers(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	t := newToken()
	s.mu.Lock()
	s.setupHash = hashToken(t)
	s.mu.Unlock()
	return t, nil
}

// NeedsSetup reports whether no user exists yet.
func (s *Service) NeedsSetup(ctx context.Context) (bool, error) {
	n, err := s.DB.CountUsers(ctx)
	return n == 0, err
}

// Setup creates the first admin, given the setup token.
func (s *Service) Setup(ctx context.Context, token, email, password, timezone string, m Meta) (*store.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.setupHash == "" || subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(s.setupHash)) != 1 {
		return nil, apperr.New(apperr.Invalid, "the setup token is not valid: use the one serve printed to its log")
	}
	var u *store.User
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		n, err := tx.CountUsers(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			return apperr.New(apperr.Conflict, "setup is already done")
		}
		u, err = s.createUser(ctx, tx, email, password, Admin, timezone, "", m)
		return err
	})
	if err == nil {
		s.setupHash = ""
	}
	return u, err
}

// createUser validates and inserts a user, with its activity entry.
func (s *Service) createUser(ctx context.Context, tx *store.Tx, email, password string, role Role, timezone, actorID string, m Meta) (*store.User, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	if !role.Valid() {
		return nil, apperr.New(apperr.Invalid, "role must be admin, operator or viewer")
	}
	if timezone == "" {
		timezone = "UTC"
	}
	if err := ValidTimezone(timezone); err != nil {
		return nil, err
	}
	if err := CheckPassword(password, email); err != nil {
		return nil, err
	}
	hash, err := s.Hasher.Hash(ctx, password)
	if err != nil {
		return nil, err
	}
	u, err := tx.CreateUser(ctx, store.NewUser{Email: email, PasswordHash: hash, Role: string(role), Timezone: timezone})
	if err != nil {
		return nil, err
	}
	if actorID == "" {
		actorID = u.ID
	}
	err = s.activity(ctx, tx, store.Activity{UserID: actorID, Action: "created", SubjectType: "User", SubjectID: u.ID,
		Description: "user " + u.Email + " created as " + u.Role, IPAddress: m.IP,
		Changes: audit.Diff(nil, map[string]any{"email": u.Email, "role": u.Role, "timezone": u.Timezone, "password": "x"}, "password")})
	return u, err
}

// CreateUser creates a user from the command line (no actor).
func (s *Service) CreateUser(ctx context.Context, email, password string, role Role) (*store.User, error) {
	var u *store.User
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		var err error
		u, err = s.createUser(ctx, tx, email, password, role, "UTC", "", Meta{UserAgent: "upanel command line"})
		return err
	})
	return u, err
}

// RequireTwoFactor reports the panel-wide two-factor requirement.
func (s *Service) RequireTwoFactor(ctx context.Context) (bool, error) {
	v, _, err := s.DB.Setting(ctx, SettingRequireTwoFactor)
	return v == "true", err
}

// SetRequireTwoFactor changes the panel-wide two-factor requirement.
func (s *Service) SetRequireTwoFactor(ctx context.Context, p *Principal, on bool, m Meta) error {
	old, err := s.RequireTwoFactor(ctx)
	if err != nil || old == on {
		return err
	}
	return s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetSetting(ctx, SettingRequireTwoFactor, boolString(on)); err != nil {
			return err
		}
		return s.activity(ctx, tx, store.Activity{UserID: p.User.ID, Action: "updated", SubjectType: "Setting",
			SubjectID: store.DeterministicID(time.Unix(0, 0), "setting", SettingRequireTwoFactor), Description: "two-factor requirement changed",
			IPAddress: m.IP, Changes: audit.Diff(map[string]any{SettingRequireTwoFactor: old}, map[string]any{SettingRequireTwoFactor: on})})
	})
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// security records a security event; failures to record are logged, never
// allowed to change the outcome the user sees.
func (s *Service) security(ctx context.Context, ev store.SecurityEvent) {
	if _, err := s.Audit.Security(ctx, ev); err != nil {
		s.Log.Error("record security event", "event_type", ev.EventType, "err", err)
	}
}

// activity appends to the activity log in tx.
func (s *Service) activity(ctx context.Context, tx *store.Tx, a store.Activity) error {
	_, err := s.Audit.Activity(ctx, tx, a)
	return err
}

func isNotFound(err error) bool { return apperr.Is(err, apperr.NotFound) }

var errInvalidLogin = apperr.New(apperr.Unauthorized, "invalid email or password")

// Unlock forgets an account's failed attempts, for an admin helping a user
// locked out by someone else's guessing.
func (s *Service) Unlock(ctx context.Context, email string) (int, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return 0, err
	}
	return s.DB.ClearLoginFailures(ctx, email)
}
