package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// routeAccess states, independently of routes.go, who may use each route. A
// route added to the table without an entry here fails the test, and so does
// an entry whose route registers a different permission.
var routeAccess = map[string]string{
	"GET /healthz": "public", "GET /readyz": "public", "GET /static/": "public", "GET /{$}": "public",
	"GET /setup": "public", "POST /setup": "public", "GET /login": "public", "POST /login": "public",
	"GET /login/two-factor": "step", "POST /login/two-factor": "step", "GET /login/recovery": "step", "POST /login/recovery": "step",
	"POST /logout":         "session",
	"GET /password/forgot": "public", "POST /password/forgot": "public", "GET /password/reset": "public", "POST /password/reset": "public",
	"GET /invite/accept": "public", "POST /invite/accept": "public",
	"GET /dashboard": "self", "GET /profile": "self", "POST /profile/password": "self", "POST /profile/timezone": "self",
	"GET /profile/two-factor": "signedin", "POST /profile/two-factor/start": "signedin", "POST /profile/two-factor/confirm": "signedin",
	"POST /profile/two-factor/disable": "self", "POST /profile/two-factor/recovery-codes": "self",
	"POST /profile/sessions/{id}/revoke": "self", "POST /profile/tokens": "self", "POST /profile/tokens/{id}/revoke": "self",
	"GET /notifications": "self", "POST /notifications/{id}/read": "self", "POST /notifications/read-all": "self",
	"GET /notifications/settings": "self", "POST /notifications/settings": "self", "GET /notifications/stream": "self",
	"GET /api/v1/notifications": "self", "POST /api/v1/notifications/{id}/read": "self", "POST /api/v1/notifications/read-all": "self",
	"GET /api/v1/notifications/preferences": "self", "PUT /api/v1/notifications/preferences": "self",
	"GET /admin/users": "admin", "POST /admin/users/{id}/role": "admin", "POST /admin/users/{id}/delete": "admin",
	"POST /admin/invites": "admin", "POST /admin/invites/{id}/revoke": "admin",
	"GET /admin/settings": "admin", "POST /admin/settings": "admin", "GET /admin/security-events": "admin",
	"GET /settings/webhooks": "admin", "POST /settings/webhooks": "admin", "GET /settings/webhooks/{id}": "admin",
	"POST /settings/webhooks/{id}": "admin", "POST /settings/webhooks/{id}/test": "admin",
	"POST /settings/webhooks/{id}/rotate-secret": "admin", "POST /settings/webhooks/{id}/delete": "admin",
	"GET /api/v1/webhooks": "admin", "POST /api/v1/webhooks": "admin", "GET /api/v1/webhooks/{id}": "admin",
	"PATCH /api/v1/webhooks/{id}": "admin", "DELETE /api/v1/webhooks/{id}": "admin", "POST /api/v1/webhooks/{id}/test": "admin",
	"POST /api/v1/webhooks/{id}/rotate-secret": "admin", "GET /api/v1/webhooks/{id}/deliveries": "admin",
	"GET /activity":            "read",
	"GET /api/v1/openapi.json": "public", "GET /api/v1/me": "self",
	"GET /api/v1/users": "admin", "GET /api/v1/users/{id}": "admin", "PATCH /api/v1/users/{id}": "admin", "DELETE /api/v1/users/{id}": "admin",
	"GET /api/v1/invites": "admin", "POST /api/v1/invites": "admin", "DELETE /api/v1/invites/{id}": "admin",
	"GET /api/v1/tokens": "self", "POST /api/v1/tokens": "self", "DELETE /api/v1/tokens/{id}": "self",
	"GET /api/v1/sessions": "self", "DELETE /api/v1/sessions/{id}": "self",
	"GET /api/v1/security-events": "admin", "GET /api/v1/activity": "read",
	"GET /servers": "read", "GET /servers/new": "operate", "POST /servers": "operate", "GET /servers/{id}": "read",
	"POST /servers/{id}/{action}": "operate", "GET /bootstrap/{token}": "public", "POST /bootstrap/{token}/host-keys": "public",
	"GET /metrics":        "read",
	"GET /api/v1/servers": "read", "POST /api/v1/servers": "operate", "GET /api/v1/servers/{id}": "read",
	"PATCH /api/v1/servers/{id}": "operate", "DELETE /api/v1/servers/{id}": "operate",
	"POST /api/v1/servers/{id}/bootstrap-command": "operate", "POST /api/v1/servers/{id}/host-key/scan": "operate",
	"POST /api/v1/servers/{id}/host-key/confirm": "operate", "POST /api/v1/servers/{id}/onboard": "operate",
	"POST /api/v1/servers/{id}/provision": "operate", "POST /api/v1/servers/{id}/harden": "operate",
	"POST /api/v1/servers/{id}/maintenance": "operate",
	"POST /api/v1/servers/{id}/audit":       "operate", "GET /api/v1/servers/{id}/audit": "read",
	"GET /api/v1/servers/{id}/metrics": "read", "GET /api/v1/jobs/{id}": "read",
	"GET /api/v1/git-credentials": "read", "POST /api/v1/git-credentials": "operate", "GET /api/v1/git-credentials/{id}": "read",
	"PATCH /api/v1/git-credentials/{id}": "operate", "DELETE /api/v1/git-credentials/{id}": "operate", "POST /api/v1/git-credentials/{id}/test": "operate",
	"GET /api/v1/apps": "read", "POST /api/v1/apps": "operate", "GET /api/v1/apps/{id}": "read", "PATCH /api/v1/apps/{id}": "operate",
	"DELETE /api/v1/apps/{id}": "operate", "GET /api/v1/apps/{id}/env": "read", "PATCH /api/v1/apps/{id}/env/{scope}": "operate",
	"POST /api/v1/apps/{id}/test": "operate", "POST /api/v1/apps/{id}/rotate-hook-secret": "operate",
	"GET /apps": "read", "GET /apps/new": "operate", "POST /apps": "operate", "GET /apps/{id}": "read", "POST /apps/{id}": "operate",
	"POST /apps/{id}/env": "operate", "POST /apps/{id}/rotate-hook-secret": "operate", "POST /apps/{id}/test": "operate",
	"POST /apps/{id}/delete": "operate", "GET /credentials": "read", "GET /credentials/new": "operate", "POST /credentials": "operate",
	"GET /credentials/{id}": "read", "POST /credentials/{id}": "operate", "POST /credentials/{id}/delete": "operate",
	"POST /credentials/{id}/test": "operate",
	"POST /hooks/deploy/{hookID}": "public", "GET /apps/{id}/running": "read", "POST /apps/{id}/control": "operate",
	"GET /api/v1/apps/{id}/status": "read", "POST /api/v1/apps/{id}/start": "operate", "POST /api/v1/apps/{id}/stop": "operate",
	"POST /api/v1/apps/{id}/restart": "operate", "GET /api/v1/apps/{id}/logs": "read", "GET /api/v1/apps/{id}/hook-deliveries": "read",
	"POST /api/v1/apps/{id}/deployments": "operate", "GET /api/v1/apps/{id}/deployments": "read", "GET /api/v1/deployments/{id}": "read",
	"GET /api/v1/deployments/{id}/log": "read", "POST /api/v1/deployments/{id}/cancel": "operate", "POST /api/v1/deployments/{id}/rollback": "operate",
	"GET /apps/{id}/deployments": "read", "POST /apps/{id}/deployments": "operate", "GET /deployments/{id}": "read",
	"GET /deployments/{id}/events": "read", "POST /deployments/{id}/cancel": "operate", "POST /deployments/{id}/rollback": "operate",
	"POST /api/agent/v1/heartbeat": "agent", "POST /api/agent/v1/metrics": "agent", "POST /api/agent/v1/audit": "agent",
}

var accessPerm = map[string]auth.Permission{"public": auth.Public, "step": auth.TwoFactorStep, "session": auth.AnySession, "signedin": auth.SignedIn,
	"self": auth.Self, "read": auth.Read, "operate": auth.Operate, "admin": auth.AdminOnly, "agent": auth.AgentOnly}

// who is a kind of caller.
type who struct {
	name     string
	c        *client
	kind     string // anon, pending, enroll, full
	role     auth.Role
	viaToken bool
}

type outcome int

const (
	reached outcome = iota
	needLogin
	needTwoFactor
	needEnroll
	denied
)

// expect is the intended policy, written out apart from auth.Decide.
func expect(access string, w who, write, api bool) outcome {
	if access == "public" {
		return reached
	}
	if w.kind == "agent" {
		if access == "agent" && api {
			return reached
		}
		return needLogin // an agent is nobody anywhere else
	}
	if access == "agent" {
		return needLogin
	}
	if w.kind == "anon" || (w.viaToken && !api) { // tokens only count under /api/
		return needLogin
	}
	if access == "session" {
		return reached // signing out works for every session
	}
	switch w.kind {
	case "pending":
		if access == "step" {
			return reached
		}
		return needTwoFactor
	case "enroll":
		if access == "signedin" {
			return reached
		}
		if access == "step" {
			return denied
		}
		return needEnroll
	}
	if access == "step" {
		return denied
	}
	if write && w.viaToken && w.role == auth.Viewer {
		return denied // a read-only token never writes
	}
	switch access {
	case "signedin", "self", "read":
		return reached
	case "operate":
		if w.role == auth.Operator || w.role == auth.Admin {
			return reached
		}
	case "admin":
		if w.role == auth.Admin {
			return reached
		}
	}
	return denied
}

func TestEveryRouteHasAnExpectation(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	seen := map[string]bool{}
	for _, rt := range e.srv.routes {
		access, ok := routeAccess[rt.pattern]
		if !ok {
			t.Errorf("route %q has no entry in routeAccess: say who may use it", rt.pattern)
			continue
		}
		if accessPerm[access] != rt.perm {
			t.Errorf("route %q is registered as %s, routeAccess says %s", rt.pattern, rt.perm, access)
		}
		if path := strings.Fields(rt.pattern)[1]; (strings.HasPrefix(path, "/api/") || path == "/metrics") != rt.api && !rt.machine {
			t.Errorf("route %q: api flag %v disagrees with its path", rt.pattern, rt.api)
		}
		seen[rt.pattern] = true
	}
	for pattern := range routeAccess {
		if !seen[pattern] {
			t.Errorf("routeAccess names %q, which is not a route", pattern)
		}
	}
}

// TestRouteRoleMatrix sends every route a request from every kind of caller
// and checks that the guard lets through exactly what the policy allows.
// Handlers are replaced by a sentinel, so only the guard is under test.
func TestRouteRoleMatrix(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		e.user("admin@example.test", auth.Admin)
		e.user("operator@example.test", auth.Operator)
		e.user("viewer@example.test", auth.Viewer)
		e.user("pending@example.test", auth.Operator)
		enableTwoFactor(t, e, "pending@example.test")
		pending := e.client()
		if res := pending.postForm("/login", url.Values{"email": {"pending@example.test"}, "password": {testPassword}}); res.Code != http.StatusSeeOther {
			t.Fatalf("pending login: %d", res.Code)
		}
		callers := []who{
			{name: "anonymous", c: e.client(), kind: "anon"},
			{name: "pending 2FA", c: pending, kind: "pending", role: auth.Operator},
			{name: "viewer", c: e.loggedIn("viewer@example.test"), kind: "full", role: auth.Viewer},
			{name: "operator", c: e.loggedIn("operator@example.test"), kind: "full", role: auth.Operator},
			{name: "admin", c: e.loggedIn("admin@example.test"), kind: "full", role: auth.Admin},
			{name: "viewer token", c: e.withToken("admin@example.test", auth.Viewer), kind: "full", role: auth.Viewer, viaToken: true},
			{name: "operator token", c: e.withToken("operator@example.test", auth.Operator), kind: "full", role: auth.Operator, viaToken: true},
			{name: "admin token", c: e.withToken("admin@example.test", auth.Admin), kind: "full", role: auth.Admin, viaToken: true},
		}
		// An agent, with the token of a server's agent.
		srvID := storetest.SecretRows(t, db, "x")["servers"]
		agentToken, agentHash := auth.NewAgentToken()
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.SetAgentToken(ctx, srvID, agentHash) }); err != nil {
			t.Fatal(err)
		}
		agentClient := e.client()
		agentClient.bearer = agentToken
		callers = append(callers, who{name: "agent", c: agentClient, kind: "agent"})
		// Callers of a panel that requires two-factor, whose user has none.
		enrollEnv := newEnv(t, storetest.Open(t, "sqlite"))
		enrollEnv.user("late@example.test", auth.Admin)
		lateSession := enrollEnv.loggedIn("late@example.test")
		lateToken := enrollEnv.withToken("late@example.test", auth.Admin)
		if err := enrollEnv.db.InTx(ctx, func(tx *store.Tx) error { return tx.SetSetting(ctx, auth.SettingRequireTwoFactor, "true") }); err != nil {
			t.Fatal(err)
		}

		sentinel := func(w http.ResponseWriter, r *http.Request, p *auth.Principal) { w.WriteHeader(http.StatusAccepted) }
		for _, x := range []*env{e, enrollEnv} {
			for i := range x.srv.routes {
				x.srv.routes[i].h = sentinel
			}
			x.h = x.srv.handler()
		}
		deniedBefore := countEvents(t, db, "permission_denied")
		deniedCases := 0
		for _, rt := range e.srv.routes {
			access := routeAccess[rt.pattern]
			method, path, _ := strings.Cut(rt.pattern, " ")
			path = strings.NewReplacer("{id}", store.NewID(), "{$}", "", "{token}", "ubt_nothing", "{action}", "provision", "{hookID}", strings.Repeat("h", 32)).Replace(path)
			if path == "/static/" {
				path = "/static/app.css"
			}
			write := isWrite(method)
			run := func(w who) {
				var res *httptest.ResponseRecorder
				switch {
				case rt.api:
					res = w.c.api(method, path, map[string]any{})
				case write:
					res = w.c.postForm(path, nil)
				default:
					res = w.c.get(path)
				}
				want := expect(access, w, write, rt.api)
				if want == denied {
					deniedCases++
				}
				if !matches(want, res, rt.api, write) {
					t.Errorf("%s as %s: got %d (Location %q), want %s", rt.pattern, w.name, res.Code, res.Header().Get("Location"), outcomeName(want, rt.api, write))
				}
			}
			for _, w := range callers {
				run(w)
			}
			run(who{name: "session of a user who must enrol", c: lateSession, kind: "enroll", role: auth.Admin})
			if rt.api {
				run(who{name: "token of a user who must enrol", c: lateToken, kind: "enroll", role: auth.Admin, viaToken: true})
			}
		}
		// Each refusal by role is recorded as a security event (the enrol
		// panel's refusals go to its own database).
		if got := countEvents(t, db, "permission_denied") - deniedBefore; got == 0 || got > deniedCases {
			t.Errorf("%d permission_denied events for %d denied requests", got, deniedCases)
		}
	})
}

func matches(want outcome, res *httptest.ResponseRecorder, api, write bool) bool {
	loc := res.Header().Get("Location")
	switch want {
	case reached:
		return res.Code == http.StatusAccepted
	case needLogin:
		if api || write {
			return res.Code == http.StatusUnauthorized
		}
		return res.Code == http.StatusSeeOther && strings.HasPrefix(loc, "/login?next=")
	case needTwoFactor:
		if api || write {
			return res.Code == http.StatusUnauthorized
		}
		return res.Code == http.StatusSeeOther && loc == "/login/two-factor"
	case needEnroll:
		if api || write {
			return res.Code == http.StatusForbidden
		}
		return res.Code == http.StatusSeeOther && loc == "/profile/two-factor"
	}
	if !api && !write && res.Code == http.StatusSeeOther && loc == "/" {
		return true // a signed-in user sent back from the two-factor step
	}
	return res.Code == http.StatusForbidden
}

func outcomeName(o outcome, api, write bool) string {
	return map[outcome]string{reached: "the handler (202)", needLogin: "sign-in (401/303)", needTwoFactor: "the two-factor step",
		needEnroll: "enrolment", denied: "403"}[o]
}

// Cookie-authenticated writes need the CSRF token; token-authenticated ones
// have no ambient authority and need none.
func TestCSRFIsRequiredForCookieWrites(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("admin@example.test", auth.Admin)
	c := e.loggedIn("admin@example.test")
	for _, forged := range []string{"", "wrong", strings.Repeat("c", 43)} {
		res := c.postForm("/profile/timezone", url.Values{"timezone": {"Europe/Paris"}, "csrf_token": {forged}})
		if forged == "" {
			req := httptest.NewRequest("POST", "/profile/timezone", strings.NewReader("timezone=Europe/Paris"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			res = c.do(req)
		}
		if res.Code != http.StatusForbidden {
			t.Errorf("POST with CSRF token %q: %d", forged, res.Code)
		}
	}
	req := httptest.NewRequest("POST", "/api/v1/tokens", strings.NewReader(`{"name":"x"}`))
	if res := c.do(req); res.Code != http.StatusForbidden {
		t.Errorf("cookie API write without X-CSRF-Token: %d", res.Code)
	}
	if res := c.postForm("/profile/timezone", url.Values{"timezone": {"Europe/Paris"}}); res.Code != http.StatusSeeOther {
		t.Errorf("POST with the right token: %d %s", res.Code, res.Body)
	}
	tok := e.withToken("admin@example.test", auth.Admin)
	if res := tok.api("POST", "/api/v1/invites", map[string]any{"email": "script@example.test", "role": "viewer"}); res.Code != http.StatusCreated {
		t.Errorf("token write without CSRF: %d %s", res.Code, res.Body)
	}
	// A token cannot mint tokens, which could outlive it.
	if res := tok.api("POST", "/api/v1/tokens", map[string]any{"name": "child"}); res.Code != http.StatusForbidden {
		t.Errorf("a token made a token: %d %s", res.Code, res.Body)
	}
}
