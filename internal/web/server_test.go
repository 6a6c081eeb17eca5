package web

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// testHandler builds the panel's handler over a fresh SQLite database.
func testHandler(t *testing.T) (http.Handler, *store.DB) {
	t.Helper()
	db := storetest.Open(t, "sqlite")
	rec := audit.New(db)
	base, _ := url.Parse("http://panel.test")
	svc := auth.New(auth.Options{DB: db, Audit: rec, BaseURL: base, IdleTimeout: time.Hour, AbsoluteTimeout: 24 * time.Hour,
		QueueMail: func(context.Context, *store.Tx, auth.Mail) error { return nil }})
	h, err := New(Deps{DB: db, Log: slog.New(slog.DiscardHandler), Auth: svc, Audit: rec, BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	return h, db
}

func TestHealthAndReadiness(t *testing.T) {
	h, db := testHandler(t)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/nope": 404} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d", rec.Code)
	}
	db.Close()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "database") {
		t.Errorf("/readyz with the database closed = %d %q", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("/healthz must not depend on the database: %d", rec.Code)
	}
}

func TestEveryResponseCarriesSecurityHeadersAndARequestID(t *testing.T) {
	h, _ := testHandler(t)
	for _, path := range []string{"/healthz", "/missing"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		hdr := rec.Header()
		csp := hdr.Get("Content-Security-Policy")
		if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if hdr.Get("X-Content-Type-Options") != "nosniff" || hdr.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", path, hdr)
		}
		if _, err := ulid.ParseStrict(hdr.Get("X-Request-Id")); err != nil {
			t.Errorf("%s: request id %q", path, hdr.Get("X-Request-Id"))
		}
	}
}

func TestPanicsBecome500AndAreLoggedWithoutTheQuery(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{Deps: Deps{Log: slog.New(slog.NewJSONHandler(&logs, nil))}}
	h := s.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("bug") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/reset?token=SECRET-RESET-TOKEN", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "bug") {
		t.Fatalf("panic answered %d %q", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), `"panic":"bug"`) || !strings.Contains(logs.String(), `"status":500`) {
		t.Fatalf("panic not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "SECRET-RESET-TOKEN") {
		t.Fatalf("the query string reached the log:\n%s", logs.String())
	}
}
