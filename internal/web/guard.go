package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/oklog/ulid/v2"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/store"
)

// route is one entry of the route table: a ServeMux pattern, the permission it
// needs, and whether it speaks JSON. machine routes are called by programs
// that prove themselves with a secret of their own (an agent token, a
// bootstrap token in the path), not by browsers, so they take no CSRF token.
type route struct {
	pattern string
	perm    auth.Permission
	api     bool
	machine bool
	h       func(w http.ResponseWriter, r *http.Request, p *auth.Principal)
}

type principalKey struct{}

// principalOf returns the request's principal, or nil.
func principalOf(ctx context.Context) *auth.Principal {
	p, _ := ctx.Value(principalKey{}).(*auth.Principal)
	return p
}

// authenticate resolves the request's principal: an API token (only under
// /api/, as a bearer) or the session cookie.
func (s *Server) authenticate(r *http.Request) (*auth.Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" && (strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/metrics") {
		bearer, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, nil
		}
		bearer = strings.TrimSpace(bearer)
		if strings.HasPrefix(r.URL.Path, "/api/agent/") {
			return s.Auth.AuthenticateAgent(r.Context(), bearer)
		}
		return s.Auth.AuthenticateToken(r.Context(), bearer)
	}
	c, err := r.Cookie(s.sessionCookieName())
	if err != nil {
		return nil, nil
	}
	return s.Auth.Authenticate(r.Context(), c.Value)
}

func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// guard applies the policy to a route: it is the only way a handler is reached.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r.Context())
		write := isWrite(r.Method)
		switch auth.Decide(p, rt.perm, write) {
		case auth.Allow:
		case auth.NeedLogin:
			if rt.api {
				s.apiError(w, r, apperr.New(apperr.Unauthorized, "sign in or send an API token"))
			} else if write {
				s.htmlError(w, r, http.StatusUnauthorized, "Your session has ended. Sign in again.")
			} else {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(safeNext(r.URL.RequestURI())), http.StatusSeeOther)
			}
			return
		case auth.NeedTwoFactor:
			if rt.api || write {
				s.fail(w, r, rt.api, apperr.New(apperr.Unauthorized, "finish signing in with your second factor"))
			} else {
				http.Redirect(w, r, "/login/two-factor", http.StatusSeeOther)
			}
			return
		case auth.NeedEnrollment:
			if rt.api || write {
				s.fail(w, r, rt.api, apperr.New(apperr.Forbidden, "this panel requires two-factor authentication: enrol first"))
			} else {
				http.Redirect(w, r, "/profile/two-factor", http.StatusSeeOther)
			}
			return
		default:
			if rt.perm == auth.TwoFactorStep && !rt.api && !write {
				http.Redirect(w, r, "/", http.StatusSeeOther)
				return
			}
			s.denied(r, p, rt)
			s.fail(w, r, rt.api, apperr.New(apperr.Forbidden, "you do not have permission to do this"))
			return
		}
		if r.PathValue("id") != "" && !validID(r.PathValue("id")) {
			// Ids are ULIDs: anything else names nothing, and never reaches
			// a handler or a query.
			s.fail(w, r, rt.api, apperr.New(apperr.NotFound, "not found"))
			return
		}
		if write && !rt.api {
			// Forms are small: bound the body and refuse multipart, which
			// would otherwise be parsed into memory and temporary files.
			if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
				s.fail(w, r, false, apperr.New(apperr.Invalid, "forms must be sent as application/x-www-form-urlencoded"))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
			if err := r.ParseForm(); err != nil {
				s.fail(w, r, false, apperr.New(apperr.Invalid, "the form is too large or malformed"))
				return
			}
		}
		if write && !rt.machine && (p == nil || !p.ViaToken()) && !s.checkCSRF(r, p) {
			s.fail(w, r, rt.api, apperr.New(apperr.Forbidden, "the form has expired or did not come from this panel: reload the page and try again"))
			return
		}
		rt.h(w, r, p)
	})
}

// denied records a request the policy refused. The UI never offers what a role
// may not do, so such a request was crafted or replayed.
func (s *Server) denied(r *http.Request, p *auth.Principal, rt route) {
	ev := store.SecurityEvent{EventType: audit.PermissionDenied, IPAddress: s.clientIP(r), UserAgent: r.UserAgent(),
		Details: map[string]any{"route": rt.pattern, "permission": rt.perm.String()}}
	if p != nil && p.User != nil {
		ev.UserID = p.User.ID
		ev.Details["role"] = string(p.Role)
		ev.Details["via_token"] = p.ViaToken()
	}
	if _, err := s.Audit.Security(r.Context(), ev); err != nil {
		s.Log.Error("record permission denied", "err", err)
	}
}

// maxFormBody bounds HTML form bodies.
const maxFormBody = 64 << 10

func validID(id string) bool {
	_, err := ulid.ParseStrict(id)
	return err == nil
}

// anonCSRFCookie carries the CSRF secret of visitors without a session (login,
// setup, reset forms): the form must echo it (double submit), which a
// cross-site page cannot read.
const anonCSRFCookie = "upanel_csrf"

// csrfToken is the token forms on this request must carry.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if p := principalOf(r.Context()); p != nil && p.CSRFToken() != "" {
		return p.CSRFToken()
	}
	if c, err := r.Cookie(s.cookieName(anonCSRFCookie)); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(anonCSRFCookie), Value: v, Path: "/", HttpOnly: true,
		Secure: s.Auth.SecureCookies(), SameSite: http.SameSiteLaxMode})
	// Make the cookie visible to this request's own rendering.
	r.AddCookie(&http.Cookie{Name: s.cookieName(anonCSRFCookie), Value: v})
	return v
}

func (s *Server) checkCSRF(r *http.Request, p *auth.Principal) bool {
	sent := r.Header.Get("X-CSRF-Token")
	if sent == "" {
		sent = r.PostFormValue("csrf_token")
	}
	if sent == "" {
		return false
	}
	if p != nil && p.CSRFToken() != "" {
		return auth.CheckCSRF(p, sent)
	}
	c, err := r.Cookie(s.cookieName(anonCSRFCookie))
	return err == nil && len(c.Value) >= 32 && subtle.ConstantTimeCompare([]byte(c.Value), []byte(sent)) == 1
}

// clientIP is the peer's address, or, when the peer is a trusted proxy, the
// nearest untrusted address in X-Forwarded-For.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if !s.trusted(addr) {
		return addr.Unmap().String()
	}
	hops := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !s.trusted(a) {
			return a.Unmap().String()
		}
	}
	return addr.Unmap().String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

func (s *Server) meta(r *http.Request) auth.Meta {
	return auth.Meta{IP: s.clientIP(r), UserAgent: r.UserAgent()}
}

// safeNext keeps a post-login redirect on this site: a local absolute path
// only, with no control characters or backslashes anywhere (browsers drop
// tabs and read "/\t/evil" as "//evil").
func safeNext(next string) string {
	if next == "" || next[0] != '/' || len(next) > 2000 {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") || strings.HasPrefix(next, "//") {
		return "/"
	}
	return next
}
