package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/jobs"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

const testPassword = "violet stapler orbit 42"

// env is a panel under test: the real handler over a real database, with the
// mails it queued captured.
type env struct {
	t     *testing.T
	db    *store.DB
	svc   *auth.Service
	srv   *Server
	h     http.Handler
	mu    sync.Mutex
	mails []auth.Mail
}

func newEnv(t *testing.T, db *store.DB) *env {
	t.Helper()
	e := &env{t: t, db: db}
	rec := audit.New(db)
	base, _ := url.Parse("https://panel.example.test")
	e.svc = auth.New(auth.Options{DB: db, Audit: rec, BaseURL: base, IdleTimeout: time.Hour, AbsoluteTimeout: 24 * time.Hour,
		Hasher: auth.NewHasher(4),
		QueueMail: func(_ context.Context, _ *store.Tx, m auth.Mail) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.mails = append(e.mails, m)
			return nil
		}})
	srv, err := newServer(Deps{DB: db, Log: slog.New(slog.DiscardHandler), Auth: e.svc, Audit: rec, BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.h = srv, srv.handler()
	return e
}

// runJobs does what the panel's job runner would: it runs the queued reset
// requests.
func (e *env) runJobs() {
	e.t.Helper()
	ctx := context.Background()
	h := e.svc.ResetRequestHandler()
	for {
		j, ok, err := e.db.ClaimJob(ctx, "test", []string{auth.ResetRequestKind}, time.Minute)
		if err != nil {
			e.t.Fatal(err)
		}
		if !ok {
			return
		}
		if err := h(ctx, &jobs.Job{Job: j}); err != nil {
			e.t.Fatalf("reset job: %v", err)
		}
		if err := e.db.FinishJob(ctx, j.ID, "test", store.JobSucceeded, "", nil); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) lastMail() auth.Mail {
	e.runJobs()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.mails) == 0 {
		e.t.Fatal("no mail was queued")
	}
	return e.mails[len(e.mails)-1]
}

func (e *env) user(email string, role auth.Role) *store.User {
	e.t.Helper()
	u, err := e.svc.CreateUser(context.Background(), email, testPassword, role)
	if err != nil {
		e.t.Fatalf("create %s: %v", email, err)
	}
	return u
}

// client is a browser or script talking to the panel.
type client struct {
	e       *env
	cookies map[string]string
	bearer  string
	ip      string
}

func (e *env) client() *client {
	return &client{e: e, cookies: map[string]string{}, ip: "192.0.2.10"}
}

func (e *env) loggedIn(email string) *client {
	e.t.Helper()
	c := e.client()
	res := c.postForm("/login", url.Values{"email": {email}, "password": {testPassword}})
	if res.Code != http.StatusSeeOther {
		e.t.Fatalf("login %s: %d %s", email, res.Code, res.Body)
	}
	return c
}

func (e *env) withToken(email string, role auth.Role) *client {
	e.t.Helper()
	raw, _, err := e.svc.CreateTokenFor(context.Background(), email, auth.NewToken{Name: "test", Role: role})
	if err != nil {
		e.t.Fatal(err)
	}
	c := e.client()
	c.bearer = raw
	return c
}

// csrf is the token this client's forms carry: the session's when signed in,
// else the anonymous double-submit cookie.
// session is the client's session cookie value, under either of its names.
func (c *client) session() string {
	if v, ok := c.cookies["__Host-"+auth.SessionCookie]; ok {
		return v
	}
	return c.cookies[auth.SessionCookie]
}

func (c *client) csrf() string {
	if v := c.session(); v != "" {
		p, err := c.e.svc.Authenticate(context.Background(), v)
		if err == nil && p != nil {
			return p.CSRFToken()
		}
	}
	name := c.e.srv.cookieName(anonCSRFCookie)
	if v, ok := c.cookies[name]; ok {
		return v
	}
	c.cookies[name] = strings.Repeat("c", 43)
	return c.cookies[name]
}

func (c *client) do(req *http.Request) *httptest.ResponseRecorder {
	req.RemoteAddr = c.ip + ":40000"
	for k, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	rec := httptest.NewRecorder()
	c.e.h.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if ck.MaxAge < 0 || ck.Value == "" {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	return rec
}

func (c *client) get(path string) *httptest.ResponseRecorder {
	return c.do(httptest.NewRequest("GET", path, nil))
}

func (c *client) postForm(path string, form url.Values) *httptest.ResponseRecorder {
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf_token") == "" {
		form.Set("csrf_token", c.csrf())
	}
	req := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// api sends a JSON request; cookie clients send their CSRF token in the header.
func (c *client) api(method, path string, body any) *httptest.ResponseRecorder {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req := httptest.NewRequest(method, path, r)
	req.Header.Set("Content-Type", "application/json")
	if c.bearer == "" && isWrite(method) {
		req.Header.Set("X-CSRF-Token", c.csrf())
	}
	return c.do(req)
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return v
}

func countEvents(t *testing.T, db *store.DB, typ string) int {
	t.Helper()
	var n int
	if err := db.QueryRowRaw(context.Background(), "SELECT COUNT(*) FROM security_events WHERE event_type = ?", typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var _ = storetest.Each
