package web

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"upanel/internal/store/storetest"
)

func TestHealthAndReadiness(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	h := New(db, slog.New(slog.DiscardHandler))
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
	db := storetest.Open(t, "sqlite")
	h := New(db, slog.New(slog.DiscardHandler))
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
	s := &Server{log: slog.New(slog.NewJSONHandler(&logs, nil))}
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
