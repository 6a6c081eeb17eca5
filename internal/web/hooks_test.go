package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/fleet"
	"upanel/internal/pin"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// appEnv is a panel with the deploy service, a server whose agent is
// "installed" on a loopback port where nothing listens, and an app on it.
type appEnv struct {
	*env
	app    *store.App
	secret string
}

func newAppEnv(t *testing.T, db *store.DB) *appEnv {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t, db)
	rec := audit.New(db)
	base, _ := url.Parse("https://panel.example.test")
	e.srv.Fleet = fleet.New(fleet.Options{DB: db, Recorder: rec, BaseURL: base})
	e.srv.Deploy = deploy.New(deploy.Options{DB: db, Recorder: rec, Fleet: e.srv.Fleet, BaseURL: base})
	// A port that was free a moment ago: the agent "does not answer".
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var srv *store.Server
	err = db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if srv, err = tx.CreateServer(ctx, store.NewServer{Name: "web-1", Host: "127.0.0.1", Username: "upanel", Port: 22, AgentPort: port,
			SSHPrivateKey: []byte("key"), SSHPublicKey: "ssh-ed25519 AAAA"}); err != nil {
			return err
		}
		_, hash := auth.NewAgentToken()
		return tx.SetAgentCredentials(ctx, srv.ID, pin.Fingerprint([]byte("agent")), hash)
	})
	if err != nil {
		t.Fatal(err)
	}
	app, secret, err := e.srv.Deploy.CreateApp(ctx, nil, deploy.AppInput{ServerID: srv.ID, Name: "Shop",
		GitRepository: "https://git.example.test/org/shop.git"}, auth.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return &appEnv{env: e, app: app, secret: secret}
}

func githubPush(secret, delivery string, body []byte) *http.Request {
	req := httptest.NewRequest("POST", "/hooks/deploy/HOOK", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	return req
}

// TestDeployHookRoute drives the push-to-deploy URL through the panel's
// real handler: public (no session, no CSRF token), bounded, and as picky
// as the service.
func TestDeployHookRoute(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newAppEnv(t, db)
		path := "/hooks/deploy/" + e.app.DeployHookID
		body := []byte(`{"ref":"refs/heads/main","after":"` + strings.Repeat("a", 40) + `","pusher":{"name":"alice"}}`)
		send := func(c *client, req *http.Request) *httptest.ResponseRecorder {
			req.URL.Path = path
			req.RequestURI = path
			return c.do(req)
		}
		deliveries := func() int {
			ds, err := db.DeployHookDeliveries(ctx, e.app.ID, 100)
			if err != nil {
				t.Fatal(err)
			}
			return len(ds)
		}

		anon := e.client()
		res := send(anon, githubPush(e.secret, "delivery-1", body))
		if res.Code != http.StatusAccepted {
			t.Fatalf("signed push: %d %s", res.Code, res.Body)
		}
		out := decode[map[string]string](t, res)
		if out["deployment_id"] == "" || out["outcome"] != store.HookDeployed {
			t.Fatalf("answer: %v", out)
		}
		if d, err := db.GetDeployment(ctx, out["deployment_id"]); err != nil || d.TriggeredBy != deploy.TriggerWebhook {
			t.Fatalf("deployment: %+v %v", d, err)
		}
		// The answer carries nothing secret.
		if strings.Contains(res.Body.String(), e.secret) || len(res.Result().Cookies()) != 0 {
			t.Fatalf("answer: %s cookies %v", res.Body, res.Result().Cookies())
		}

		// Replayed.
		res = send(anon, githubPush(e.secret, "delivery-1", body))
		if res.Code != http.StatusConflict || !strings.Contains(res.Body.String(), "delivery already processed") {
			t.Fatalf("replay: %d %s", res.Code, res.Body)
		}
		// A signed-in browser's cookies change nothing, and no CSRF token is asked for.
		e.user("operator@example.test", auth.Operator)
		browser := e.loggedIn("operator@example.test")
		other := []byte(strings.Replace(string(body), "refs/heads/main", "refs/heads/feature", 1))
		res = send(browser, githubPush(e.secret, "delivery-2", other))
		if res.Code != http.StatusAccepted || decode[map[string]string](t, res)["ignored"] != "branch" {
			t.Fatalf("push to another branch from a browser: %d %s", res.Code, res.Body)
		}

		// Refusals record nothing.
		before := deliveries()
		for _, tc := range []struct {
			name   string
			req    *http.Request
			status int
		}{
			{"wrong secret", githubPush("guess", "delivery-3", body), http.StatusUnauthorized},
			{"no delivery id", githubPush(e.secret, "", body), http.StatusBadRequest},
			{"malformed JSON", githubPush(e.secret, "delivery-4", []byte(`{"ref":`)), http.StatusBadRequest},
			{"too large", githubPush(e.secret, "delivery-5", append(append([]byte(`{"ref":"refs/heads/main","after":"`+strings.Repeat("a", 40)+`","x":"`),
				strings.Repeat("x", deploy.MaxHookBody)...), `"}`...)), http.StatusRequestEntityTooLarge},
		} {
			res := send(anon, tc.req)
			if res.Code != tc.status || res.Header().Get("Content-Type") != "application/json" {
				t.Errorf("%s: %d %s", tc.name, res.Code, res.Body)
			}
			var v struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if json.Unmarshal(res.Body.Bytes(), &v) != nil || v.Error.Message == "" {
				t.Errorf("%s: not an API error: %s", tc.name, res.Body)
			}
		}
		if n := deliveries(); n != before {
			t.Fatalf("refused deliveries were recorded: %d → %d", before, n)
		}
		// An unknown hook, a malformed id, the wrong method.
		for _, p := range []string{"/hooks/deploy/" + strings.Repeat("z", 32), "/hooks/deploy/x", "/hooks/deploy/" + url.PathEscape("' OR 1=1 --"+strings.Repeat("a", 21))} {
			req := githubPush(e.secret, "delivery-6", body)
			req.URL.Path, req.RequestURI = p, p
			if res := anon.do(req); res.Code != http.StatusNotFound {
				t.Errorf("POST %s: %d %s", p, res.Code, res.Body)
			}
		}
		if res := anon.get(path); res.Code != http.StatusMethodNotAllowed && res.Code != http.StatusNotFound {
			t.Errorf("GET of the hook URL: %d", res.Code)
		}

		// The deliveries API shows what came in.
		tok := e.withToken("operator@example.test", auth.Viewer)
		res = tok.api("GET", "/api/v1/apps/"+e.app.ID+"/hook-deliveries", nil)
		if res.Code != http.StatusOK {
			t.Fatalf("deliveries: %d %s", res.Code, res.Body)
		}
		list := decode[listJSON[hookDeliveryJSON]](t, res)
		if len(list.Items) != 2 || list.Items[0].Outcome != store.HookIgnoredBranch || list.Items[1].DeploymentID == nil ||
			*list.Items[1].DeploymentID != out["deployment_id"] || list.Items[1].Provider != "github" {
			t.Fatalf("deliveries: %+v", list.Items)
		}
		for _, q := range []string{"?limit=0", "?limit=501", "?limit=x"} {
			if res := tok.api("GET", "/api/v1/apps/"+e.app.ID+"/hook-deliveries"+q, nil); res.Code != http.StatusBadRequest {
				t.Errorf("deliveries%s: %d", q, res.Code)
			}
		}
		if res := tok.api("GET", "/api/v1/apps/"+store.NewID()+"/hook-deliveries", nil); res.Code != http.StatusNotFound {
			t.Errorf("deliveries of no app: %d", res.Code)
		}
	})
}

func TestHookURLNotLogged(t *testing.T) {
	for in, want := range map[string]string{
		"/hooks/deploy/" + strings.Repeat("k", 32):     "/hooks/deploy/[redacted]",
		"/hooks/deploy/abc/x":                          "/hooks/deploy/[redacted]",
		"/hooks/deploy//" + strings.Repeat("k", 32):    "/hooks/deploy/[redacted]",
		"/hooks/deploy/x/y/" + strings.Repeat("k", 32): "/hooks/deploy/[redacted]",
		"/bootstrap/ubt_secret/host-keys":              "/bootstrap/[redacted]/host-keys",
		"/bootstrap//ubt_secret/host-keys":             "/bootstrap/[redacted]/host-keys",
		"/bootstrap/ubt_secret":                        "/bootstrap/[redacted]",
		"/bootstrap/ubt_secret/other":                  "/bootstrap/[redacted]",
		"/api/v1/apps":                                 "/api/v1/apps",
	} {
		if got := logPath(in); got != want {
			t.Errorf("logPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// The running-app controls check their input before reaching an agent, and
// answer an unreachable agent with 503, on the API and the page.
func TestRunningControlsInput(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newAppEnv(t, db)
		e.user("operator@example.test", auth.Operator)
		e.user("viewer@example.test", auth.Viewer)
		op := e.withToken("operator@example.test", auth.Operator)
		base := "/api/v1/apps/" + e.app.ID
		for _, tc := range []struct {
			method, path string
			body         any
			status       int
		}{
			{"GET", base + "/status?environment=qa", nil, 400},
			{"GET", base + "/logs?tail=0", nil, 400},
			{"GET", base + "/logs?tail=1001", nil, 400},
			{"GET", base + "/logs?tail=ten", nil, 400},
			{"GET", base + "/logs?service=-rm", nil, 400},
			{"GET", base + "/logs?service=" + url.QueryEscape("web;id"), nil, 400},
			{"GET", base + "/logs?environment=dev", nil, 400},
			{"POST", base + "/restart", map[string]any{"environment": "qa"}, 400},
			{"POST", base + "/restart?environment=staging", map[string]any{"environment": "production"}, 400},
			{"POST", base + "/stop", map[string]any{"environment": "staging", "force": true}, 400},
			{"GET", "/api/v1/apps/" + store.NewID() + "/status", nil, 404},
			{"POST", "/api/v1/apps/" + store.NewID() + "/start", nil, 404},
			{"GET", "/api/v1/apps/" + store.NewID() + "/logs", nil, 404},
			// Valid, but the agent does not answer.
			{"GET", base + "/status", nil, 503},
			{"GET", base + "/status?environment=staging", nil, 503},
			{"GET", base + "/logs?tail=1000&service=web", nil, 503},
			{"POST", base + "/start", nil, 503},
			{"POST", base + "/stop?environment=staging", map[string]any{}, 503},
			{"POST", base + "/restart", map[string]any{"environment": "staging"}, 503},
		} {
			res := op.api(tc.method, tc.path, tc.body)
			if res.Code != tc.status {
				t.Errorf("%s %s %v: %d %s", tc.method, tc.path, tc.body, res.Code, res.Body)
			}
		}
		// Nothing happened, so nothing was recorded.
		acts, err := db.ListActivity(context.Background(), store.ActivityFilter{SubjectType: "App", SubjectID: e.app.ID})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acts {
			if a.Action != "created" {
				t.Errorf("activity after failed controls: %+v", a)
			}
		}

		// The page shows what it can, and offers the buttons by role.
		viewer := e.loggedIn("viewer@example.test")
		res := viewer.get("/apps/" + e.app.ID + "/running")
		if res.Code != http.StatusOK || !strings.Contains(res.Body.String(), "did not answer") || strings.Contains(res.Body.String(), `action="/apps/`+e.app.ID+`/control"`) {
			t.Fatalf("running page as viewer: %d %s", res.Code, res.Body)
		}
		browser := e.loggedIn("operator@example.test")
		res = browser.get("/apps/" + e.app.ID + "/running?environment=staging")
		if res.Code != http.StatusOK || !strings.Contains(res.Body.String(), `action="/apps/`+e.app.ID+`/control"`) {
			t.Fatalf("running page as operator: %d", res.Code)
		}
		for _, q := range []string{"?environment=qa", "?tail=5000"} {
			if res := browser.get("/apps/" + e.app.ID + "/running" + q); res.Code != http.StatusBadRequest {
				t.Errorf("running page %s: %d", q, res.Code)
			}
		}
		if res := browser.get("/apps/" + store.NewID() + "/running"); res.Code != http.StatusNotFound {
			t.Errorf("running page of no app: %d", res.Code)
		}
		res = browser.postForm("/apps/"+e.app.ID+"/control", url.Values{"action": {"restart"}, "environment": {"staging"}})
		if res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/apps/"+e.app.ID+"/running?environment=staging" {
			t.Fatalf("control form: %d %v", res.Code, res.Header())
		}
		if flash := browser.get(res.Header().Get("Location")).Body.String(); !strings.Contains(flash, "Not done") {
			t.Fatal("the failed control left no message")
		}
		res = browser.postForm("/apps/"+e.app.ID+"/control", url.Values{"action": {"explode"}, "back": {"app"}})
		if res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/apps/"+e.app.ID {
			t.Fatalf("control form with a bad action: %d %v", res.Code, res.Header())
		}
		if res := viewer.postForm("/apps/"+e.app.ID+"/control", url.Values{"action": {"stop"}}); res.Code != http.StatusForbidden {
			t.Fatalf("viewer control: %d", res.Code)
		}
	})
}
