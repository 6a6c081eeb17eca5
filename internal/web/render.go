package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
)

//go:embed templates static
var assets embed.FS

// parsePages parses each page template together with the layout and partials,
// so every page is one template set rendered by name.
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(assets, "templates/pages/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		t, err := template.Must(base.Clone()).ParseFS(assets, n)
		if err != nil {
			return nil, err
		}
		pages[strings.TrimSuffix(path.Base(n), ".html")] = t
	}
	return pages, nil
}

var funcs = template.FuncMap{
	"join":      strings.Join,
	"timezones": func() []string { return timezones },
	"list":      func(xs ...string) []string { return xs },
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + strings.ReplaceAll(s[1:], "_", " ")
	},
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
}

// page is what every page template gets.
type page struct {
	Title  string
	P      *auth.Principal
	CSRF   string
	Flash  string
	Error  string
	Nav    string // the active navigation entry
	Bare   bool   // no navigation: sign-in pages
	Data   any
	Form   url.Values
	loc    *time.Location
	emails map[string]string // user id → email, for pages that show who did what
	Status int
	// Bell is the header's link to the notifications, with the unread
	// count; nil where the header has none.
	Bell *bell
}

// Time shows a time in the viewer's time zone.
func (p *page) Time(t any) string {
	var tt time.Time
	switch v := t.(type) {
	case time.Time:
		tt = v
	case *time.Time:
		if v == nil {
			return "—"
		}
		tt = *v
	default:
		return ""
	}
	if tt.IsZero() {
		return "—"
	}
	return tt.In(p.loc).Format("2006-01-02 15:04:05 MST")
}

// Who names a user id by email where the page knows it.
func (p *page) Who(id string) string {
	if id == "" {
		return "system"
	}
	if e, ok := p.emails[id]; ok {
		return e
	}
	return id
}

// Can reports whether the viewer may use routes of a permission, so pages only
// offer what the policy allows.
func (p *page) Can(perm string) bool {
	m := map[string]auth.Permission{"read": auth.Read, "operate": auth.Operate, "admin": auth.AdminOnly, "self": auth.Self}
	return auth.Decide(p.P, m[perm], true) == auth.Allow
}

func (s *Server) newPage(w http.ResponseWriter, r *http.Request, title string) *page {
	pg := &page{Title: title, P: principalOf(r.Context()), loc: time.UTC, Status: http.StatusOK}
	if pg.P != nil && pg.P.User != nil {
		if l, err := time.LoadLocation(pg.P.User.Timezone); err == nil {
			pg.loc = l
		}
	}
	pg.CSRF = s.csrfToken(w, r)
	pg.Bell = s.bellFor(r, pg.P)
	if c, err := r.Cookie(s.cookieName(flashCookie)); err == nil {
		if v, err := url.QueryUnescape(c.Value); err == nil {
			pg.Flash = v
		}
		http.SetCookie(w, &http.Cookie{Name: s.cookieName(flashCookie), Path: "/", MaxAge: -1, HttpOnly: true,
			Secure: s.Auth.SecureCookies(), SameSite: http.SameSiteLaxMode})
	}
	return pg
}

// render writes a page; a template error is logged and becomes a plain 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, pg *page) {
	t, ok := s.pages[name]
	if !ok {
		s.Log.Error("no such page template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout.html", pg); err != nil {
		s.Log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(pg.Status)
	w.Write(b.Bytes())
}

// renderForm re-renders a form page after err, keeping what was typed (never
// passwords) and showing the error's user-safe message.
func (s *Server) renderForm(w http.ResponseWriter, r *http.Request, name string, pg *page, err error) {
	pg.Error = sentence(apperr.MessageOf(err))
	pg.Status = statusOf(err)
	if pg.Status >= 500 {
		s.Log.Error("request failed", "path", r.URL.Path, "err", err)
	}
	if pg.Form == nil {
		pg.Form = url.Values{}
		for k, v := range r.PostForm {
			if !strings.Contains(k, "password") && k != "csrf_token" {
				pg.Form[k] = v
			}
		}
	}
	s.render(w, r, name, pg)
}

const flashCookie = "upanel_flash"

// redirect sends the browser on with a one-time message for the next page.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, to, flash string) {
	if flash != "" {
		http.SetCookie(w, &http.Cookie{Name: s.cookieName(flashCookie), Value: url.QueryEscape(flash), Path: "/", MaxAge: 60,
			HttpOnly: true, Secure: s.Auth.SecureCookies(), SameSite: http.SameSiteLaxMode})
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// statusOf maps the one error type to HTTP statuses, in one place.
func statusOf(err error) int {
	switch apperr.CodeOf(err) {
	case apperr.Invalid:
		return http.StatusBadRequest
	case apperr.NotFound:
		return http.StatusNotFound
	case apperr.Conflict:
		return http.StatusConflict
	case apperr.Unauthorized:
		return http.StatusUnauthorized
	case apperr.Forbidden:
		return http.StatusForbidden
	case apperr.RateLimited:
		return http.StatusTooManyRequests
	case apperr.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail answers an error as JSON or as an error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, api bool, err error) {
	if api {
		s.apiError(w, r, err)
		return
	}
	s.htmlError(w, r, statusOf(err), apperr.MessageOf(err))
}

func (s *Server) htmlError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	pg := s.newPage(w, r, http.StatusText(status))
	pg.Status, pg.Error = status, sentence(msg)
	pg.Bare = pg.P == nil
	s.render(w, r, "error", pg)
}

// apiError writes {"error": {"code", "message"}}. Internal errors are logged
// with the request id and never shown.
func (s *Server) apiError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status >= 500 {
		s.Log.Error("api request failed", "request_id", RequestID(r.Context()), "path", logPath(r.URL.Path), "err", err)
	}
	code := apperr.CodeOf(err)
	var body struct {
		Error struct {
			Code    apperr.Code `json:"code"`
			Message string      `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, apperr.MessageOf(err)
	var te *auth.ThrottledError
	if errors.As(err, &te) {
		w.Header().Set("Retry-After", te.RetryAt.UTC().Format(http.TimeFormat))
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
	w.Write([]byte("\n"))
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		s.apiError(w, r, apperr.New(apperr.NotFound, "no such API endpoint"))
		return
	}
	s.htmlError(w, r, http.StatusNotFound, "There is no page here.")
}

// cookieName prefixes a cookie name with __Host- over https: browsers only
// accept such a cookie with Secure, Path=/ and no Domain, so a subdomain
// cannot plant it.
func (s *Server) cookieName(name string) string {
	if s.Auth.SecureCookies() {
		return "__Host-" + name
	}
	return name
}

func (s *Server) sessionCookieName() string { return s.cookieName(auth.SessionCookie) }

func (s *Server) setSessionCookie(w http.ResponseWriter, res *auth.LoginResult) {
	http.SetCookie(w, &http.Cookie{Name: s.sessionCookieName(), Value: res.Token, Path: "/", Expires: res.Session.ExpiresAt,
		HttpOnly: true, Secure: s.Auth.SecureCookies(), SameSite: http.SameSiteLaxMode})
}

func (s *Server) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: s.sessionCookieName(), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.Auth.SecureCookies(), SameSite: http.SameSiteLaxMode})
}

// sentence turns an error message ("invalid email or password") into one a
// page shows: capitalised, ending with a full stop.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") && !strings.HasSuffix(msg, "?") && !strings.HasSuffix(msg, ")") {
		msg += "."
	}
	return msg
}

// withEmails lets pg name users by email.
func (s *Server) withEmails(r *http.Request, pg *page) {
	users, err := s.Auth.Users(r.Context())
	if err != nil {
		s.Log.Warn("load users for names", "err", err)
		return
	}
	pg.emails = make(map[string]string, len(users))
	for _, u := range users {
		pg.emails[u.ID] = u.Email
	}
}
