package web

import (
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/store"
)

// dashboardData is the fleet at a glance and, for admins, the panel's health.
type dashboardData struct {
	Servers                map[string]int // by status
	Total, Maintenance     int
	Unread                 int
	MailFailed, MailQueued int // the last 24 hours; admins only
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Dashboard")
	pg.Nav = "dashboard"
	ctx := r.Context()
	d := dashboardData{Servers: map[string]int{}}
	list, err := s.DB.ListServers(ctx)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	for _, x := range list {
		d.Servers[x.Status]++
		d.Total++
		if x.MaintenanceSince != nil {
			d.Maintenance++
		}
	}
	if d.Unread, err = s.DB.UnreadNotifications(ctx, p.User.ID); err != nil {
		s.fail(w, r, false, err)
		return
	}
	if p.Role == auth.Admin {
		if d.MailFailed, err = s.DB.MailFailures(ctx, s.DB.Now().Add(-24*time.Hour)); err == nil {
			d.MailQueued, err = s.DB.MailPending(ctx)
		}
		if err != nil {
			s.fail(w, r, false, err)
			return
		}
	}
	pg.Data = d
	s.render(w, r, "dashboard", pg)
}

// profileData is what the profile page shows besides the user.
type profileData struct {
	Sessions       []*store.Session
	Tokens         []*store.APIToken
	RecoveryLeft   int
	Timezones      []string
	Roles          []auth.Role
	NewToken       string   // shown once, right after creation
	RecoveryCodes  []string // shown once, after enrolment or regeneration
	RequireTwoFact bool
}

func (s *Server) loadProfile(r *http.Request, p *auth.Principal) (*profileData, error) {
	ctx := r.Context()
	d := &profileData{Timezones: timezones, Roles: rolesUpTo(p.Role)}
	var err error
	if d.Sessions, err = s.Auth.Sessions(ctx, p); err != nil {
		return nil, err
	}
	if d.Tokens, err = s.Auth.Tokens(ctx, p); err != nil {
		return nil, err
	}
	if d.RecoveryLeft, err = s.Auth.RecoveryCodesLeft(ctx, p); err != nil {
		return nil, err
	}
	d.RequireTwoFact, err = s.Auth.RequireTwoFactor(ctx)
	return d, err
}

func rolesUpTo(r auth.Role) []auth.Role {
	var out []auth.Role
	for _, x := range auth.Roles {
		if r.AtLeast(x) {
			out = append(out, x)
		}
	}
	return out
}

func (s *Server) profilePage(w http.ResponseWriter, r *http.Request, p *auth.Principal, pg *page, d *profileData, err error) {
	if d == nil {
		var lerr error
		if d, lerr = s.loadProfile(r, p); lerr != nil {
			s.fail(w, r, false, lerr)
			return
		}
	}
	pg.Nav, pg.Data = "profile", d
	if err != nil {
		s.renderForm(w, r, "profile", pg, err)
		return
	}
	s.render(w, r, "profile", pg)
}

func (s *Server) profile(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.profilePage(w, r, p, s.newPage(w, r, "Your profile"), nil, nil)
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	f := r.PostForm
	var err error
	if f.Get("password") != f.Get("password_confirm") {
		err = apperr.New(apperr.Invalid, "the two new passwords differ")
	} else {
		err = s.Auth.ChangePassword(r.Context(), p, f.Get("current_password"), f.Get("password"), s.meta(r))
	}
	if err != nil {
		s.profilePage(w, r, p, s.newPage(w, r, "Your profile"), nil, err)
		return
	}
	s.redirect(w, r, "/profile", "Password changed. Every other session was signed out.")
}

func (s *Server) changeTimezone(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.SetTimezone(r.Context(), p, r.PostFormValue("timezone"), s.meta(r)); err != nil {
		s.profilePage(w, r, p, s.newPage(w, r, "Your profile"), nil, err)
		return
	}
	s.redirect(w, r, "/profile", "Time zone saved.")
}

// enrollData is the two-factor enrolment page.
type enrollData struct {
	Enrollment *auth.Enrollment
	// QR is the enrolment's QR code as a data: URL, marked safe for src only
	// after checking it is one (html/template refuses data: URLs otherwise).
	QR       template.URL
	Required bool
	Enabled  bool
}

func (s *Server) twoFactorEnrollPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Two-factor authentication")
	pg.Nav = "profile"
	pg.Data = &enrollData{Required: p.MustEnrollTwoFactor, Enabled: p.User.TwoFactorEnabled()}
	s.render(w, r, "two_factor_enroll", pg)
}

func (s *Server) twoFactorStart(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Two-factor authentication")
	pg.Nav = "profile"
	d := &enrollData{Required: p.MustEnrollTwoFactor, Enabled: p.User.TwoFactorEnabled()}
	pg.Data = d
	e, err := s.Auth.StartTwoFactor(r.Context(), p, r.PostFormValue("password"), s.meta(r))
	if err != nil {
		s.renderForm(w, r, "two_factor_enroll", pg, err)
		return
	}
	d.Enrollment = e
	if strings.HasPrefix(e.QRPNG, "data:image/png;base64,") {
		d.QR = template.URL(e.QRPNG)
	}
	s.render(w, r, "two_factor_enroll", pg)
}

func (s *Server) twoFactorConfirm(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	codes, err := s.Auth.ConfirmTwoFactor(r.Context(), p, r.PostFormValue("code"), s.meta(r))
	if err != nil {
		pg := s.newPage(w, r, "Two-factor authentication")
		pg.Nav, pg.Data = "profile", &enrollData{Required: p.MustEnrollTwoFactor}
		s.renderForm(w, r, "two_factor_enroll", pg, err)
		return
	}
	s.showRecoveryCodes(w, r, codes, "Two-factor authentication is on.")
}

func (s *Server) showRecoveryCodes(w http.ResponseWriter, r *http.Request, codes []string, msg string) {
	pg := s.newPage(w, r, "Your recovery codes")
	pg.Nav, pg.Flash, pg.Data = "profile", msg, codes
	s.render(w, r, "recovery_codes", pg)
}

func (s *Server) twoFactorDisable(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.DisableTwoFactor(r.Context(), p, r.PostFormValue("password"), r.PostFormValue("code"), s.meta(r)); err != nil {
		s.profilePage(w, r, p, s.newPage(w, r, "Your profile"), nil, err)
		return
	}
	s.redirect(w, r, "/profile", "Two-factor authentication is off.")
}

func (s *Server) recoveryCodesRegenerate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	codes, err := s.Auth.RegenerateRecoveryCodes(r.Context(), p, r.PostFormValue("password"), s.meta(r))
	if err != nil {
		s.profilePage(w, r, p, s.newPage(w, r, "Your profile"), nil, err)
		return
	}
	s.showRecoveryCodes(w, r, codes, "New recovery codes: the old ones no longer work.")
}

func (s *Server) sessionRevoke(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.RevokeSession(r.Context(), p, r.PathValue("id"), s.meta(r)); err != nil {
		s.fail(w, r, false, err)
		return
	}
	if r.PathValue("id") == p.SessionID {
		s.clearSessionCookie(w)
		s.redirect(w, r, "/login", "You are signed out.")
		return
	}
	s.redirect(w, r, "/profile", "Session signed out.")
}

// tokenTTL parses the expiry choice of the token forms: a number of days, 0
// for never.
func tokenTTL(v string) (time.Duration, error) {
	if strings.TrimSpace(v) == "" {
		return 0, nil
	}
	days, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || days < 0 || days > 5*365 {
		return 0, apperr.New(apperr.Invalid, "expiry must be a number of days from 0 (never) to 1825")
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

func (s *Server) tokenCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	ttl, err := tokenTTL(r.PostFormValue("expires_days"))
	var raw string
	if err == nil {
		raw, _, err = s.Auth.CreateToken(r.Context(), p, auth.NewToken{Name: r.PostFormValue("name"), Role: auth.Role(r.PostFormValue("role")), TTL: ttl}, s.meta(r))
	}
	pg := s.newPage(w, r, "Your profile")
	if err != nil {
		s.profilePage(w, r, p, pg, nil, err)
		return
	}
	d, err := s.loadProfile(r, p)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	d.NewToken = raw
	pg.Flash = "Token created. Copy it now: it is not shown again."
	s.profilePage(w, r, p, pg, d, nil)
}

func (s *Server) tokenRevoke(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.RevokeToken(r.Context(), p, r.PathValue("id"), s.meta(r)); err != nil {
		s.fail(w, r, false, err)
		return
	}
	s.redirect(w, r, "/profile", "Token revoked.")
}
