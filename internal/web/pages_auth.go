package web

import (
	"net/http"
	"net/url"
	"strconv"

	"upanel/internal/apperr"
	"upanel/internal/auth"
)

func (s *Server) static(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.FileServerFS(assets).ServeHTTP(w, r)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	switch {
	case p != nil && p.TwoFactorPending:
		http.Redirect(w, r, "/login/two-factor", http.StatusSeeOther)
	case p != nil:
		http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
	default:
		if need, err := s.Auth.NeedsSetup(r.Context()); err == nil && need {
			http.Redirect(w, r, "/setup", http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	}
}

func (s *Server) bare(w http.ResponseWriter, r *http.Request, title string) *page {
	pg := s.newPage(w, r, title)
	pg.Bare = true
	return pg
}

func (s *Server) setupPage(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	need, err := s.Auth.NeedsSetup(r.Context())
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	if !need {
		s.redirect(w, r, "/login", "The panel is already set up.")
		return
	}
	pg := s.bare(w, r, "Set up UPanel")
	pg.Form = map[string][]string{"token": {r.URL.Query().Get("token")}, "timezone": {"UTC"}}
	s.render(w, r, "setup", pg)
}

func (s *Server) setupSubmit(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	pg := s.bare(w, r, "Set up UPanel")
	f := r.PostForm
	if f.Get("password") != f.Get("password_confirm") {
		s.renderForm(w, r, "setup", pg, apperr.New(apperr.Invalid, "the two passwords differ"))
		return
	}
	_, err := s.Auth.Setup(r.Context(), f.Get("token"), f.Get("email"), f.Get("password"), f.Get("timezone"), s.meta(r))
	if err != nil {
		s.renderForm(w, r, "setup", pg, err)
		return
	}
	s.redirect(w, r, "/login", "Your admin account is ready. Sign in, then turn on two-factor authentication in your profile.")
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if p != nil && !p.TwoFactorPending {
		http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
		return
	}
	if need, err := s.Auth.NeedsSetup(r.Context()); err == nil && need {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	pg := s.bare(w, r, "Sign in")
	pg.Form = map[string][]string{"next": {safeNext(r.URL.Query().Get("next"))}}
	s.render(w, r, "login", pg)
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request, old *auth.Principal) {
	pg := s.bare(w, r, "Sign in")
	res, err := s.Auth.Login(r.Context(), r.PostFormValue("email"), r.PostFormValue("password"), s.meta(r))
	if err != nil {
		s.renderForm(w, r, "login", pg, err)
		return
	}
	if old != nil && old.SessionID != "" {
		// The browser had a session (perhaps another user's): it ends here
		// rather than linger as an orphan.
		if err := s.Auth.Logout(r.Context(), old, s.meta(r)); err != nil {
			s.Log.Warn("end previous session at sign-in", "err", err)
		}
	}
	s.setSessionCookie(w, res)
	next := safeNext(r.PostFormValue("next"))
	if res.Pending {
		http.Redirect(w, r, "/login/two-factor?next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) twoFactorPage(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	pg := s.bare(w, r, "Two-factor authentication")
	pg.Form = map[string][]string{"next": {safeNext(r.URL.Query().Get("next"))}}
	s.render(w, r, "two_factor", pg)
}

func (s *Server) twoFactorSubmit(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.bare(w, r, "Two-factor authentication")
	res, err := s.Auth.CompleteTwoFactor(r.Context(), p, r.PostFormValue("code"), s.meta(r))
	if err != nil {
		s.renderForm(w, r, "two_factor", pg, err)
		return
	}
	s.setSessionCookie(w, res)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (s *Server) recoveryPage(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	s.render(w, r, "recovery", s.bare(w, r, "Use a recovery code"))
}

func (s *Server) recoverySubmit(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.bare(w, r, "Use a recovery code")
	res, left, err := s.Auth.UseRecoveryCode(r.Context(), p, r.PostFormValue("code"), s.meta(r))
	if err != nil {
		s.renderForm(w, r, "recovery", pg, err)
		return
	}
	s.setSessionCookie(w, res)
	msg := "Signed in with a recovery code. You have " + strconv.Itoa(left) + " left."
	if left <= 3 {
		msg += " Generate new ones in your profile soon."
	}
	s.redirect(w, r, "/profile", msg)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Auth.Logout(r.Context(), p, s.meta(r)); err != nil {
		s.fail(w, r, false, err)
		return
	}
	s.clearSessionCookie(w)
	s.redirect(w, r, "/login", "You are signed out.")
}

func (s *Server) forgotPage(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	s.render(w, r, "forgot", s.bare(w, r, "Reset your password"))
}

// forgotSubmit answers the same whether the address has an account or not.
func (s *Server) forgotSubmit(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	if err := s.Auth.RequestReset(r.Context(), r.PostFormValue("email"), s.meta(r)); err != nil {
		s.fail(w, r, false, err)
		return
	}
	s.redirect(w, r, "/login", "If that address has an account, a reset link is on its way. It works once, for 60 minutes.")
}

func (s *Server) resetPage(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	pg := s.bare(w, r, "Choose a new password")
	token := r.URL.Query().Get("token")
	if err := s.Auth.CheckResetToken(r.Context(), token); err != nil {
		pg.Status, pg.Error = statusOf(err), apperr.MessageOf(err)
		s.render(w, r, "error", pg)
		return
	}
	pg.Form = map[string][]string{"token": {token}}
	s.render(w, r, "reset", pg)
}

func (s *Server) resetSubmit(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	pg := s.bare(w, r, "Choose a new password")
	f := r.PostForm
	if f.Get("password") != f.Get("password_confirm") {
		s.renderForm(w, r, "reset", pg, apperr.New(apperr.Invalid, "the two passwords differ"))
		return
	}
	if err := s.Auth.ResetPassword(r.Context(), f.Get("token"), f.Get("password"), s.meta(r)); err != nil {
		s.renderForm(w, r, "reset", pg, err)
		return
	}
	s.clearSessionCookie(w)
	s.redirect(w, r, "/login", "Your password is changed and every session was signed out. Sign in with the new password.")
}

func (s *Server) invitePage(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	pg := s.bare(w, r, "Accept your invitation")
	token := r.URL.Query().Get("token")
	inv, err := s.Auth.InviteByToken(r.Context(), token)
	if err != nil {
		pg.Status, pg.Error = statusOf(err), apperr.MessageOf(err)
		s.render(w, r, "error", pg)
		return
	}
	pg.Data = inv
	pg.Form = map[string][]string{"token": {token}, "timezone": {"UTC"}}
	s.render(w, r, "invite", pg)
}

// inviteSubmit reads only the token, the password and the time zone: the
// email and the role come from the invitation, whatever else is posted.
func (s *Server) inviteSubmit(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	pg := s.bare(w, r, "Accept your invitation")
	f := r.PostForm
	inv, err := s.Auth.InviteByToken(r.Context(), f.Get("token"))
	if err != nil {
		s.renderForm(w, r, "error", pg, err)
		return
	}
	pg.Data = inv
	if f.Get("password") != f.Get("password_confirm") {
		s.renderForm(w, r, "invite", pg, apperr.New(apperr.Invalid, "the two passwords differ"))
		return
	}
	res, err := s.Auth.AcceptInvite(r.Context(), f.Get("token"), f.Get("password"), f.Get("timezone"), s.meta(r))
	if err != nil {
		s.renderForm(w, r, "invite", pg, err)
		return
	}
	s.setSessionCookie(w, res)
	s.redirect(w, r, "/dashboard", "Welcome to UPanel. Your account is ready.")
}
