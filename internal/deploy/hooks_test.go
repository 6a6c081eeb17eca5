package deploy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/pin"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// hookEnv is a panel's deploy service over a real database, with a server
// whose agent is installed (so deployments queue) and an app on it.
type hookEnv struct {
	t      *testing.T
	db     *store.DB
	svc    *Service
	app    *store.App
	secret string
	n      int // delivery ids
}

func newHookEnv(t *testing.T, db *store.DB, withAgent bool) *hookEnv {
	t.Helper()
	ctx := context.Background()
	e := &hookEnv{t: t, db: db}
	base, _ := url.Parse("https://panel.example.test")
	e.svc = New(Options{DB: db, Recorder: audit.New(db), BaseURL: base})
	var srv *store.Server
	err := db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		srv, err = tx.CreateServer(ctx, store.NewServer{Name: "web-1", Host: "192.0.2.1", Username: "upanel", Port: 22, AgentPort: 8443,
			SSHPrivateKey: []byte("key"), SSHPublicKey: "ssh-ed25519 AAAA"})
		if err != nil || !withAgent {
			return err
		}
		_, hash := auth.NewAgentToken()
		return tx.SetAgentCredentials(ctx, srv.ID, pin.Fingerprint([]byte("agent certificate")), hash)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.app, e.secret, err = e.svc.CreateApp(ctx, nil, AppInput{ServerID: srv.ID, Name: "Shop", GitRepository: "https://git.example.test/org/shop.git",
		EnvVars: map[string]string{"DATABASE_PASSWORD": "correct horse battery"}}, auth.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.app.DeployHookID) != 32 || e.secret == "" || e.app.GitBranch != "main" {
		t.Fatalf("app: %+v", e.app)
	}
	return e
}

func (e *hookEnv) deliveryID() string {
	e.n++
	return fmt.Sprintf("d-%04d-%s", e.n, store.NewID())
}

func hexHMAC(secret string, msg []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(msg)
	return hex.EncodeToString(m.Sum(nil))
}

// signed builds a delivery of a provider, signed with secret.
func (e *hookEnv) signed(provider, event, secret string, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	id := e.deliveryID()
	switch provider {
	case store.HookGitHub:
		h.Set("X-GitHub-Event", event)
		h.Set("X-GitHub-Delivery", id)
		h.Set("X-Hub-Signature-256", "sha256="+hexHMAC(secret, body))
	case store.HookGitLab:
		h.Set("X-Gitlab-Event", event)
		h.Set("X-Gitlab-Event-UUID", id)
		h.Set("X-Gitlab-Token", secret)
	case store.HookGitea:
		h.Set("X-Gitea-Event", event)
		h.Set("X-Gitea-Delivery", id)
		h.Set("X-Gitea-Signature", hexHMAC(secret, body))
		// Gitea sends GitHub's headers too.
		h.Set("X-GitHub-Event", event)
		h.Set("X-GitHub-Delivery", id)
		h.Set("X-Hub-Signature-256", "sha256="+hexHMAC(secret, body))
	case "forgejo":
		h.Set("X-Forgejo-Event", event)
		h.Set("X-Forgejo-Delivery", id)
		h.Set("X-Forgejo-Signature", hexHMAC(secret, body))
	case store.HookGeneric:
		ts := strconv.FormatInt(e.db.Now().Unix(), 10)
		h.Set("X-UPanel-Delivery", id)
		h.Set("X-UPanel-Timestamp", ts)
		h.Set("X-UPanel-Signature", "sha256="+hexHMAC(secret, []byte(ts+"."+string(body))))
	}
	return h
}

const (
	sha1 = "1111111111111111111111111111111111111111"
	sha2 = "2222222222222222222222222222222222222222"
	zero = "0000000000000000000000000000000000000000"
)

// pushBody is a push as each provider words it.
func pushBody(provider, ref, after, pusher string) []byte {
	var v map[string]any
	switch provider {
	case store.HookGitHub:
		v = map[string]any{"ref": ref, "before": sha1, "after": after, "deleted": after == zero,
			"pusher": map[string]any{"name": pusher, "email": "p@example.test"}, "sender": map[string]any{"login": pusher},
			"repository": map[string]any{"full_name": "org/shop"}}
	case store.HookGitLab:
		v = map[string]any{"object_kind": "push", "ref": ref, "before": sha1, "after": after, "checkout_sha": after,
			"user_username": pusher, "user_name": "Someone"}
		if after == zero {
			v["checkout_sha"] = nil
		}
	case store.HookGitea, "forgejo":
		v = map[string]any{"ref": ref, "before": sha1, "after": after, "pusher": map[string]any{"login": pusher, "username": pusher},
			"sender": map[string]any{"login": pusher}}
	case store.HookGeneric:
		v = map[string]any{"ref": ref, "after": after, "pusher": pusher}
	}
	b, _ := json.Marshal(v)
	return b
}

var pushEvent = map[string]string{store.HookGitHub: "push", store.HookGitLab: "Push Hook", store.HookGitea: "push", "forgejo": "push", store.HookGeneric: "push"}

func recorded(p string) string {
	if p == "forgejo" {
		return store.HookGitea
	}
	return p
}

func (e *hookEnv) push(h http.Header, body []byte) (Outcome, error) {
	return e.svc.HandlePush(context.Background(), e.app.DeployHookID, h, body, "203.0.113.7")
}

func (e *hookEnv) count(q string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRowRaw(context.Background(), q, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *hookEnv) deliveries() int {
	return e.count("SELECT COUNT(*) FROM deploy_hook_deliveries WHERE app_id = ?", e.app.ID)
}

func (e *hookEnv) deployments() int {
	return e.count("SELECT COUNT(*) FROM deployments WHERE app_id = ?", e.app.ID)
}

func TestPushDeploysForEveryProvider(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newHookEnv(t, db, true)
		for _, provider := range []string{store.HookGitHub, store.HookGitLab, store.HookGitea, "forgejo", store.HookGeneric} {
			t.Run(provider, func(t *testing.T) {
				// Each push runs on its own: the earlier one's queued
				// deployment is over.
				storetest.Exec(t, db, "UPDATE deployments SET status = 'success', finished_at = created_at WHERE app_id = ?", e.app.ID)
				after := strings.Repeat(fmt.Sprintf("%x", len(provider)%16), 40)
				body := pushBody(provider, "refs/heads/main", after, "alice")
				h := e.signed(provider, pushEvent[provider], e.secret, body)
				out, err := e.push(h, body)
				if err != nil {
					t.Fatalf("push: %v", err)
				}
				if out.Status != http.StatusAccepted || out.DeploymentID == "" || out.Result != store.HookDeployed || out.Provider != recorded(provider) {
					t.Fatalf("outcome: %+v", out)
				}
				d, err := db.GetDeployment(ctx, out.DeploymentID)
				if err != nil {
					t.Fatal(err)
				}
				if d.AppID != e.app.ID || d.Environment != Production || d.TriggeredBy != TriggerWebhook || d.RequestedCommit != "" || d.UserID != "" {
					t.Fatalf("deployment: %+v", d)
				}
				list, err := db.DeployHookDeliveries(ctx, e.app.ID, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(list) != 1 || list[0].Outcome != store.HookDeployed || list[0].DeploymentID != out.DeploymentID || list[0].Provider != recorded(provider) {
					t.Fatalf("delivery: %+v", list)
				}
				acts, err := db.ListActivity(ctx, store.ActivityFilter{SubjectType: "App", SubjectID: e.app.ID, Action: "push_deploy", Limit: 1})
				if err != nil {
					t.Fatal(err)
				}
				if len(acts) != 1 || acts[0].UserID != "" || acts[0].Description != "push to main by alice" || acts[0].IPAddress != "203.0.113.7" ||
					acts[0].Changes["deployment_id"].New != out.DeploymentID {
					t.Fatalf("activity: %+v", acts)
				}
				// The push deploys the branch head; after is recorded.
				if acts[0].Changes["commit"].New != after {
					t.Fatalf("activity commit: %+v", acts[0].Changes)
				}
				if strings.Contains(fmt.Sprint(acts[0]), e.secret) {
					t.Fatal("the hook secret reached the activity log")
				}
			})
		}
	})
}

func TestPushRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newHookEnv(t, db, true)
		body := pushBody(store.HookGitHub, "refs/heads/main", sha1, "alice")
		nothing := func(what string) {
			t.Helper()
			if n := e.deliveries(); n != 0 {
				t.Fatalf("%s: %d deliveries recorded", what, n)
			}
			if n := e.deployments(); n != 0 {
				t.Fatalf("%s: %d deployments", what, n)
			}
		}
		refused := func(what string, code apperr.Code, h http.Header, body []byte) {
			t.Helper()
			if _, err := e.push(h, body); !apperr.Is(err, code) {
				t.Fatalf("%s: %v, want %s", what, err, code)
			}
			nothing(what)
		}
		for _, provider := range []string{store.HookGitHub, store.HookGitea, "forgejo", store.HookGeneric, store.HookGitLab} {
			b := pushBody(provider, "refs/heads/main", sha1, "alice")
			refused(provider+" with another secret", apperr.Unauthorized, e.signed(provider, pushEvent[provider], "not the secret", b), b)
			// A body changed after signing.
			h := e.signed(provider, pushEvent[provider], e.secret, b)
			if provider != store.HookGitLab {
				refused(provider+" with a tampered body", apperr.Unauthorized, h, []byte(strings.Replace(string(b), sha1, sha2, 1)))
			}
		}
		// Signatures that are not even well formed.
		for _, sig := range []string{"", "sha256=", "sha1=" + hexHMAC(e.secret, body), hexHMAC(e.secret, body), "sha256=" + hexHMAC(e.secret, body)[:63],
			"sha256=" + strings.ToUpper(hexHMAC(e.secret, body)[:2]) + "zz" + hexHMAC(e.secret, body)[4:]} {
			h := e.signed(store.HookGitHub, "push", e.secret, body)
			h.Set("X-Hub-Signature-256", sig)
			refused(fmt.Sprintf("signature %q", sig), apperr.Unauthorized, h, body)
		}
		// GitLab: a wrong, a prefixed, and an empty token.
		gl := pushBody(store.HookGitLab, "refs/heads/main", sha1, "alice")
		for _, tok := range []string{"", e.secret + "x", e.secret[:len(e.secret)-1], " " + e.secret} {
			h := e.signed(store.HookGitLab, "Push Hook", e.secret, gl)
			h.Set("X-Gitlab-Token", tok)
			refused(fmt.Sprintf("gitlab token %q", tok), apperr.Unauthorized, h, gl)
		}
		// No provider headers at all.
		refused("no headers", apperr.Unauthorized, http.Header{"Content-Type": {"application/json"}}, body)

		// The generic form's timestamp: stale, from the future, not a number.
		gb := pushBody(store.HookGeneric, "refs/heads/main", sha1, "alice")
		for _, ts := range []string{
			strconv.FormatInt(db.Now().Add(-6*time.Minute).Unix(), 10), strconv.FormatInt(db.Now().Add(6*time.Minute).Unix(), 10),
			"", "yesterday", "+" + strconv.FormatInt(db.Now().Unix(), 10), strconv.FormatInt(db.Now().Unix(), 10) + ".5",
		} {
			h := e.signed(store.HookGeneric, "push", e.secret, gb)
			h.Set("X-UPanel-Timestamp", ts)
			h.Set("X-UPanel-Signature", "sha256="+hexHMAC(e.secret, []byte(ts+"."+string(gb))))
			refused(fmt.Sprintf("generic timestamp %q", ts), apperr.Unauthorized, h, gb)
		}
		// Signed with a valid timestamp, sent with another.
		h := e.signed(store.HookGeneric, "push", e.secret, gb)
		h.Set("X-UPanel-Timestamp", strconv.FormatInt(db.Now().Unix()-1, 10))
		refused("generic timestamp swapped", apperr.Unauthorized, h, gb)

		// Authenticated, but no delivery id, or one that cannot be stored.
		for _, id := range []string{"", "has space", strings.Repeat("x", 101), "caf\u00e9"} {
			h := e.signed(store.HookGitHub, "push", e.secret, body)
			h.Set("X-GitHub-Delivery", id)
			refused(fmt.Sprintf("delivery id %q", id), apperr.Invalid, h, body)
		}
		// Authenticated, but not a push's JSON.
		for _, bad := range []string{"", "{", "[]", `{"ref":"refs/heads/main","after":"xyz"}`, `{"ref":"main","after":"` + sha1 + `"}`,
			`{"ref":"refs/heads/main","after":"` + sha1 + `"} {}`, `{"ref":"refs/heads/","after":"` + sha1 + `"}`, `{"ref":"refs/heads/main"}`} {
			for _, provider := range []string{store.HookGitHub, store.HookGeneric} {
				refused(fmt.Sprintf("%s body %q", provider, bad), apperr.Invalid, e.signed(provider, "push", e.secret, []byte(bad)), []byte(bad))
			}
		}
		// A hook that does not exist, or cannot.
		for _, id := range []string{store.NewID() + "abcdef", "", "short", strings.Repeat("a", 31) + "/", strings.Repeat("a", 33)} {
			if _, err := e.svc.HandlePush(context.Background(), id, e.signed(store.HookGitHub, "push", e.secret, body), body, ""); !apperr.Is(err, apperr.NotFound) {
				t.Errorf("hook id %q: %v", id, err)
			}
		}
		nothing("unknown hooks")

		// A burst of bad signatures is one security event (each is logged).
		var events int
		if err := db.QueryRowRaw(context.Background(), "SELECT COUNT(*) FROM security_events WHERE event_type = ? AND severity = 'warning' AND server_id = ?",
			HookRefused, e.app.ServerID).Scan(&events); err != nil {
			t.Fatal(err)
		}
		if events != 1 {
			t.Fatalf("%d deploy_hook_refused events, want 1 for the burst", events)
		}
		evs, err := db.ListSecurityEvents(context.Background(), store.SecurityEventFilter{EventType: HookRefused})
		if err != nil || len(evs) != 1 {
			t.Fatal(evs, err)
		}
		if evs[0].Details["app_id"] != e.app.ID || evs[0].IPAddress != "203.0.113.7" || strings.Contains(fmt.Sprint(evs[0].Details), e.secret) {
			t.Fatalf("event: %+v", evs[0])
		}
	})
}

func TestPushIgnoredAndReplayed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newHookEnv(t, db, true)
		cases := []struct {
			name, provider, event string
			body                  []byte
			status                int
			result, ignored       string
		}{
			{"github push to another branch", store.HookGitHub, "push", pushBody(store.HookGitHub, "refs/heads/feature", sha1, "bob"), 202, store.HookIgnoredBranch, "branch"},
			{"gitlab push to another branch", store.HookGitLab, "Push Hook", pushBody(store.HookGitLab, "refs/heads/mainline", sha1, "bob"), 202, store.HookIgnoredBranch, "branch"},
			{"generic push to another branch", store.HookGeneric, "push", pushBody(store.HookGeneric, "refs/heads/ma", sha1, "bob"), 202, store.HookIgnoredBranch, "branch"},
			{"github tag push", store.HookGitHub, "push", pushBody(store.HookGitHub, "refs/tags/v1.0", sha1, "bob"), 202, store.HookIgnoredTag, "tag"},
			{"gitea tag push", store.HookGitea, "push", pushBody(store.HookGitea, "refs/tags/main", sha1, "bob"), 202, store.HookIgnoredTag, "tag"},
			{"gitlab tag push", store.HookGitLab, "Tag Push Hook", []byte(`{"object_kind":"tag_push","ref":"refs/tags/v1","after":"` + sha1 + `"}`), 202, store.HookIgnoredTag, "tag"},
			{"github branch deleted", store.HookGitHub, "push", pushBody(store.HookGitHub, "refs/heads/main", zero, "bob"), 202, store.HookIgnoredDelete, "deleted"},
			{"gitlab branch deleted", store.HookGitLab, "Push Hook", pushBody(store.HookGitLab, "refs/heads/main", zero, "bob"), 202, store.HookIgnoredDelete, "deleted"},
			{"github pull request", store.HookGitHub, "pull_request", []byte(`{"action":"opened","pull_request":{"head":{"ref":"main","sha":"` + sha1 + `"}}}`), 202, store.HookIgnoredEvent, "event"},
			{"github pull request that looks like a push", store.HookGitHub, "pull_request", pushBody(store.HookGitHub, "refs/heads/main", sha1, "eve"), 202, store.HookIgnoredEvent, "event"},
			{"gitlab merge request", store.HookGitLab, "Merge Request Hook", []byte(`{"object_kind":"merge_request","object_attributes":{"target_branch":"main"}}`), 202, store.HookIgnoredEvent, "event"},
			{"gitea pull request", store.HookGitea, "pull_request", []byte(`{"action":"opened"}`), 202, store.HookIgnoredEvent, "event"},
			{"forgejo pull request", "forgejo", "pull_request", []byte(`{"action":"opened"}`), 202, store.HookIgnoredEvent, "event"},
			{"github ping", store.HookGitHub, "ping", []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`), 200, store.HookPing, ""},
		}
		for _, tc := range cases {
			h := e.signed(tc.provider, tc.event, e.secret, tc.body)
			out, err := e.push(h, tc.body)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if out.Status != tc.status || out.Result != tc.result || out.Ignored != tc.ignored || out.DeploymentID != "" || out.Message == "" {
				t.Errorf("%s: %+v", tc.name, out)
			}
			// Recorded, and a replay is refused.
			if _, err := e.push(h, tc.body); !apperr.Is(err, apperr.Conflict) || apperr.MessageOf(err) != "delivery already processed" {
				t.Errorf("%s replayed: %v", tc.name, err)
			}
		}
		if n := e.deployments(); n != 0 {
			t.Fatalf("%d deployments from ignored deliveries", n)
		}
		list, err := db.DeployHookDeliveries(ctx, e.app.ID, 100)
		if err != nil || len(list) != len(cases) {
			t.Fatalf("%d deliveries recorded, want %d: %v", len(list), len(cases), err)
		}
		events := map[string]bool{}
		for _, d := range list {
			events[d.Event] = true
		}
		for _, want := range []string{"push", "push_hook", "tag_push_hook", "pull_request", "merge_request_hook", "ping"} {
			if !events[want] {
				t.Errorf("no delivery recorded with event %q: %v", want, events)
			}
		}

		// A deploying push, replayed: refused, and still one deployment.
		body := pushBody(store.HookGitHub, "refs/heads/main", sha1, "alice")
		h := e.signed(store.HookGitHub, "push", e.secret, body)
		out, err := e.push(h, body)
		if err != nil || out.DeploymentID == "" {
			t.Fatal(out, err)
		}
		if _, err := e.push(h, body); !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("replayed push: %v", err)
		}
		// The same delivery id at the generic form is a replay too: ids are
		// per app, whatever the sender.
		gb := pushBody(store.HookGeneric, "refs/heads/main", sha2, "alice")
		gh := e.signed(store.HookGeneric, "push", e.secret, gb)
		gh.Set("X-UPanel-Delivery", h.Get("X-GitHub-Delivery"))
		if _, err := e.push(gh, gb); !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("the same id through another sender: %v", err)
		}
		// A burst of pushes while the first is queued deploys once, the
		// branch head: an older delivery (or a replay under a new id) that
		// arrives last does not move it back.
		gh = e.signed(store.HookGeneric, "push", e.secret, gb)
		out2, err := e.push(gh, gb)
		if err != nil || out2.DeploymentID != out.DeploymentID {
			t.Fatalf("second push of a burst: %+v %v (first %s)", out2, err, out.DeploymentID)
		}
		old := pushBody(store.HookGeneric, "refs/heads/main", sha1, "alice")
		out3, err := e.push(e.signed(store.HookGeneric, "push", e.secret, old), old)
		if err != nil || out3.DeploymentID != out.DeploymentID {
			t.Fatalf("an older push of the burst: %+v %v (first %s)", out3, err, out.DeploymentID)
		}
		if d, _ := db.GetDeployment(ctx, out.DeploymentID); d.RequestedCommit != "" {
			t.Fatalf("the queued deployment is pinned to %s, not the branch head", d.RequestedCommit)
		}
		if n := e.deployments(); n != 1 {
			t.Fatalf("%d deployments", n)
		}
	})
}

// A delivery whose deployment could not be queued may be sent again.
func TestPushRetriedAfterFailure(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newHookEnv(t, db, false) // the agent is not installed: nothing can deploy
		body := pushBody(store.HookGitHub, "refs/heads/main", sha1, "alice")
		h := e.signed(store.HookGitHub, "push", e.secret, body)
		if _, err := e.push(h, body); !apperr.Is(err, apperr.Conflict) || !strings.Contains(apperr.MessageOf(err), "not installed") {
			t.Fatalf("push without an agent: %v", err)
		}
		list, _ := db.DeployHookDeliveries(ctx, e.app.ID, 10)
		if len(list) != 1 || list[0].Outcome != store.HookFailed {
			t.Fatalf("deliveries: %+v", list)
		}
		_, hash := auth.NewAgentToken()
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			return tx.SetAgentCredentials(ctx, e.app.ServerID, pin.Fingerprint([]byte("agent")), hash)
		}); err != nil {
			t.Fatal(err)
		}
		out, err := e.push(h, body)
		if err != nil || out.DeploymentID == "" {
			t.Fatalf("redelivery: %+v %v", out, err)
		}
		if _, err := e.push(h, body); !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("replay after the redelivery: %v", err)
		}
		list, _ = db.DeployHookDeliveries(ctx, e.app.ID, 10)
		if len(list) != 1 || list[0].Outcome != store.HookDeployed || list[0].DeploymentID != out.DeploymentID {
			t.Fatalf("deliveries: %+v", list)
		}
	})
}

func TestPushFormEncodedAndPusherNames(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newHookEnv(t, db, true)
		// GitHub's application/x-www-form-urlencoded content type: the JSON
		// is in payload=, and the signature covers the body as sent.
		body := []byte(url.Values{"payload": {string(pushBody(store.HookGitHub, "refs/heads/main", sha1, "Jürgen <script>\u202eevil\x00"))}}.Encode())
		h := e.signed(store.HookGitHub, "push", e.secret, body)
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		out, err := e.push(h, body)
		if err != nil || out.DeploymentID == "" {
			t.Fatalf("form-encoded push: %+v %v", out, err)
		}
		acts, err := db.ListActivity(ctx, store.ActivityFilter{Action: "push_deploy", Limit: 1})
		if err != nil || len(acts) != 1 {
			t.Fatal(acts, err)
		}
		if got := acts[0].Description; got != "push to main by Jürgen scriptevil" {
			t.Fatalf("description %q", got)
		}
	})
	for in, want := range map[string]string{
		"alice":                 "alice",
		"":                      "unknown",
		"<>\"'`;$()":            "unknown",
		"a  b\tc\nd":            "a b cd",
		"bot@example.test":      "bot@example.test",
		"José.Ñ-1_2+3":          "José.Ñ-1_2+3",
		strings.Repeat("x", 99): strings.Repeat("x", 64),
		"a\u202eb\u200bc":       "abc",
	} {
		if got := sanitizePusher(in); got != want {
			t.Errorf("sanitizePusher(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEventNames(t *testing.T) {
	for in, want := range map[string]string{"push": "push", "Push Hook": "push_hook", "Merge Request Hook": "merge_request_hook",
		"pull_request": "pull_request", "": "unknown", "%%%": "unknown", strings.Repeat("A", 80): strings.Repeat("a", 50), "x-y.z": "x_y.z"} {
		if got := eventName(in); got != want {
			t.Errorf("eventName(%q) = %q, want %q", in, got, want)
		}
	}
}

// The functions that compare secret material use hmac.Equal and never ==,
// bytes.Equal or strings comparisons on it: a comparison that stops at the
// first differing byte tells an attacker, by its timing, how much of a guess
// was right. Every == and != in them has a constant or a length on one side.
func TestSignaturesComparedInConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "hooks.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]bool{}
	for _, imp := range f.Imports {
		path := strings.Trim(imp.Path.Value, `"`)
		pkgs[path[strings.LastIndex(path, "/")+1:]] = true
	}
	checked := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || (fn.Name.Name != "verifyDelivery" && fn.Name.Name != "validHubSignature") {
			return true
		}
		checked[fn.Name.Name] = true
		usesHMACEqual := false
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.BinaryExpr:
				if x.Op != token.EQL && x.Op != token.NEQ {
					return true
				}
				if !harmless(x.X, pkgs) && !harmless(x.Y, pkgs) {
					t.Errorf("%s: %s compares two variables with %s", fn.Name.Name, fset.Position(x.Pos()), x.Op)
				}
			case *ast.SelectorExpr:
				if pkg, ok := x.X.(*ast.Ident); ok {
					switch pkg.Name + "." + x.Sel.Name {
					case "hmac.Equal":
						usesHMACEqual = true
					case "bytes.Equal", "bytes.Compare", "strings.Compare", "strings.EqualFold", "reflect.DeepEqual":
						t.Errorf("%s: %s uses %s.%s", fn.Name.Name, fset.Position(x.Pos()), pkg.Name, x.Sel.Name)
					}
				}
			}
			return true
		})
		if !usesHMACEqual {
			t.Errorf("%s does not use hmac.Equal", fn.Name.Name)
		}
		return false
	})
	if len(checked) != 2 {
		t.Fatalf("checked %v: were the functions renamed?", checked)
	}
}

// harmless is an operand whose comparison leaks nothing: a literal, nil,
// a length, or a package's constant.
func harmless(e ast.Expr, pkgs map[string]bool) bool {
	switch x := e.(type) {
	case *ast.BasicLit:
		return true
	case *ast.Ident:
		return x.Name == "nil" || x.Name == "true" || x.Name == "false"
	case *ast.CallExpr:
		if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "len" {
			return true
		}
	case *ast.BinaryExpr:
		return harmless(x.X, pkgs) && harmless(x.Y, pkgs)
	case *ast.SelectorExpr:
		id, ok := x.X.(*ast.Ident)
		return ok && pkgs[id.Name]
	}
	return false
}
