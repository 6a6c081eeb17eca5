package web

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"upanel/internal/auth"
	"upanel/internal/store/storetest"
)

// TestOpenAPIMatchesRoutes keeps the document honest: every API route is
// described with its method, and every described operation is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	res := e.client().get("/api/v1/openapi.json")
	if res.Code != http.StatusOK || res.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json: %d %s", res.Code, res.Header().Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(res.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" || method == "summary" {
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	routed := map[string]bool{}
	for _, rt := range e.srv.routes {
		// The document covers /api/v1; the agent protocol is internal/wire,
		// and /metrics speaks Prometheus.
		if rt.api && strings.Contains(rt.pattern, " /api/v1/") {
			routed[rt.pattern] = true
		}
	}
	var missing, extra []string
	for r := range routed {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for d := range documented {
		if !routed[d] {
			extra = append(extra, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("openapi.json and routes.go differ:\n  routes not documented: %v\n  documented, not routes: %v", missing, extra)
	}
}

func TestAPIErrorsAreJSON(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("admin@example.test", auth.Admin)
	c := e.withToken("admin@example.test", auth.Admin)
	type apiErr struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	raw := func(method, path, body string) *struct {
		code int
		err  apiErr
	} {
		req := newRawRequest(method, path, body)
		res := c.do(req)
		out := &struct {
			code int
			err  apiErr
		}{code: res.Code}
		if err := json.Unmarshal(res.Body.Bytes(), &out.err); err != nil {
			t.Fatalf("%s %s: not JSON: %q", method, path, res.Body)
		}
		return out
	}
	for _, tc := range []struct {
		method, path, body, code string
		status                   int
	}{
		{"POST", "/api/v1/invites", `{"email":`, "invalid", 400},
		{"POST", "/api/v1/invites", `{"email":"a@example.test","role":"viewer","admin":true}`, "invalid", 400},
		{"POST", "/api/v1/invites", `{"email":"a@example.test","role":"god"}`, "invalid", 400},
		{"POST", "/api/v1/invites", `{"email":"not an email","role":"viewer"}`, "invalid", 400},
		{"POST", "/api/v1/invites", `{"email":"a@example.test","role":"viewer"} {}`, "invalid", 400},
		{"POST", "/api/v1/tokens", `{"name":"` + strings.Repeat("x", 70000) + `"}`, "invalid", 400},
		{"POST", "/api/v1/tokens", `{"name":"x","expires_in_days":-1}`, "invalid", 400},
		{"GET", "/api/v1/users/01JZZZZZZZZZZZZZZZZZZZZZZZ", "", "not_found", 404},
		{"GET", "/api/v1/users/%27%20OR%201=1--", "", "not_found", 404},
		{"GET", "/api/v1/nothing-here", "", "not_found", 404},
		{"GET", "/api/v1/security-events?since=yesterday", "", "invalid", 400},
		{"DELETE", "/api/v1/invites/not-an-id", "", "not_found", 404},
	} {
		got := raw(tc.method, tc.path, tc.body)
		if got.code != tc.status || got.err.Error.Code != tc.code || got.err.Error.Message == "" {
			t.Errorf("%s %s %.40q: %d %+v; want %d %s", tc.method, tc.path, tc.body, got.code, got.err, tc.status, tc.code)
		}
	}
	anon := e.client()
	res := anon.api("GET", "/api/v1/me", nil)
	if res.Code != 401 || !strings.Contains(res.Body.String(), `"code":"unauthorized"`) {
		t.Errorf("anonymous /me: %d %s", res.Code, res.Body)
	}
}

func newRawRequest(method, path, body string) *http.Request {
	req, _ := http.NewRequest(method, "http://panel.example.test"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}
