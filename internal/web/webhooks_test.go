package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"upanel/internal/auth"
	"upanel/internal/notify"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// webhookEnv is a panel with outgoing webhooks that may reach the test
// receiver on 127.0.0.1.
func webhookEnv(t *testing.T, db *store.DB) (*env, *httptest.Server, *atomic.Int32) {
	t.Helper()
	e := newEnv(t, db)
	base, _ := url.Parse("https://panel.example.test")
	svc := notify.New(notify.Options{DB: db, BaseURL: base})
	e.srv.Webhooks = svc.Webhooks(notify.WebhookOptions{Recorder: e.srv.Audit, AllowPrivate: true})
	var hits atomic.Int32
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)
	e.user("admin@example.test", auth.Admin)
	e.user("operator@example.test", auth.Operator)
	e.user("viewer@example.test", auth.Viewer)
	return e, rc, &hits
}

type webhookOut struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	DisplayURL string   `json:"display_url"`
	Format     string   `json:"format"`
	Types      []string `json:"types"`
	Active     bool     `json:"active"`
	LastStatus *string  `json:"last_status"`
	Secret     string   `json:"secret"`
}

func TestWebhooksAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e, rc, hits := webhookEnv(t, db)
		admin := e.withToken("admin@example.test", auth.Admin)
		const path = "/hooks/T1/B2/api-secret-path-91f0"
		res := admin.api("POST", "/api/v1/webhooks", map[string]any{"name": "Ops", "url": rc.URL + path, "format": "discord",
			"types": []string{"server_offline", "backup_failed"}})
		if res.Code != http.StatusCreated {
			t.Fatalf("create: %d %s", res.Code, res.Body)
		}
		created := decode[webhookOut](t, res)
		if created.Secret == "" || created.DisplayURL != rc.URL+"/…" || created.Format != "discord" || !created.Active ||
			strings.Join(created.Types, ",") != "server_offline,backup_failed" || created.LastStatus != nil {
			t.Fatalf("created %s", res.Body)
		}
		if strings.Contains(res.Body.String(), "api-secret-path") || strings.Contains(res.Body.String(), `"url"`) {
			t.Fatalf("the create answer shows the URL: %s", res.Body)
		}
		// Neither the list nor the target shows the secret or the URL.
		for _, p := range []string{"/api/v1/webhooks", "/api/v1/webhooks/" + created.ID} {
			res := admin.api("GET", p, nil)
			if res.Code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", p, res.Code, res.Body)
			}
			body := res.Body.String()
			if strings.Contains(body, created.Secret) || strings.Contains(body, "api-secret-path") || strings.Contains(body, `"secret"`) ||
				!strings.Contains(body, `"display_url":"`+rc.URL+`/…"`) {
				t.Fatalf("GET %s shows a secret: %s", p, body)
			}
		}

		// PATCH changes only what it is given.
		res = admin.api("PATCH", "/api/v1/webhooks/"+created.ID, map[string]any{"name": "Ops 2", "active": false})
		if res.Code != http.StatusOK {
			t.Fatalf("patch: %d %s", res.Code, res.Body)
		}
		if got := decode[webhookOut](t, res); got.Name != "Ops 2" || got.Active || got.Format != "discord" || len(got.Types) != 2 || got.Secret != "" {
			t.Fatalf("patched %s", res.Body)
		}
		// A turned-off target cannot be tested.
		if res := admin.api("POST", "/api/v1/webhooks/"+created.ID+"/test", nil); res.Code != http.StatusConflict {
			t.Fatalf("test while off: %d %s", res.Code, res.Body)
		}
		if res := admin.api("PATCH", "/api/v1/webhooks/"+created.ID, map[string]any{"active": true, "types": []string{"*"}}); res.Code != http.StatusOK {
			t.Fatalf("patch: %d %s", res.Code, res.Body)
		}
		for _, bad := range []map[string]any{
			{"url": "http://"}, {"types": []string{}}, {"types": []string{"nope"}}, {"format": "teams"}, {"name": ""}, {"secret": "mine"},
		} {
			if res := admin.api("PATCH", "/api/v1/webhooks/"+created.ID, bad); res.Code != http.StatusBadRequest {
				t.Errorf("patch %v: %d %s", bad, res.Code, res.Body)
			}
		}
		for _, bad := range []map[string]any{
			{"name": "x", "url": "ftp://hooks.example.com/x", "types": []string{"*"}},
			{"name": "x", "url": rc.URL + "/x"},
			{"name": "x", "url": rc.URL + "/x", "types": []string{"*"}, "secret": "chosen"},
		} {
			if res := admin.api("POST", "/api/v1/webhooks", bad); res.Code != http.StatusBadRequest {
				t.Errorf("create %v: %d %s", bad, res.Code, res.Body)
			}
		}

		// Rotation answers the new secret, once.
		res = admin.api("POST", "/api/v1/webhooks/"+created.ID+"/rotate-secret", nil)
		rotated := decode[webhookOut](t, res)
		if res.Code != http.StatusOK || rotated.Secret == "" || rotated.Secret == created.Secret {
			t.Fatalf("rotate: %d %s", res.Code, res.Body)
		}
		if body := admin.api("GET", "/api/v1/webhooks/"+created.ID, nil).Body.String(); strings.Contains(body, rotated.Secret) {
			t.Fatal("the rotated secret shows afterwards")
		}

		// Test: a queued delivery, listed with the target's deliveries.
		res = admin.api("POST", "/api/v1/webhooks/"+created.ID+"/test", nil)
		if res.Code != http.StatusAccepted || !strings.Contains(res.Body.String(), `"event_type":"webhook.test"`) || !strings.Contains(res.Body.String(), `"status":"queued"`) {
			t.Fatalf("test: %d %s", res.Code, res.Body)
		}
		res = admin.api("GET", "/api/v1/webhooks/"+created.ID+"/deliveries", nil)
		if res.Code != http.StatusOK || strings.Count(res.Body.String(), `"event_type":"webhook.test"`) != 1 || !strings.Contains(res.Body.String(), `"webhook_id":"`+created.ID) {
			t.Fatalf("deliveries: %d %s", res.Code, res.Body)
		}
		if res := admin.api("GET", "/api/v1/webhooks/"+created.ID+"/deliveries?limit=0", nil); res.Code != http.StatusBadRequest {
			t.Fatalf("limit 0: %d", res.Code)
		}
		if hits.Load() != 0 {
			t.Fatal("the API delivered synchronously; it queues")
		}

		// Other roles may not see or touch webhooks (the route matrix covers
		// every route; this checks the real handlers say no too).
		for _, c := range []*client{e.withToken("operator@example.test", auth.Operator), e.loggedIn("viewer@example.test"), e.loggedIn("operator@example.test")} {
			for _, rq := range [][2]string{{"GET", "/api/v1/webhooks"}, {"GET", "/api/v1/webhooks/" + created.ID}, {"POST", "/api/v1/webhooks"},
				{"POST", "/api/v1/webhooks/" + created.ID + "/rotate-secret"}, {"DELETE", "/api/v1/webhooks/" + created.ID}} {
				if res := c.api(rq[0], rq[1], map[string]any{}); res.Code != http.StatusForbidden {
					t.Errorf("%s %s as a non-admin: %d", rq[0], rq[1], res.Code)
				}
			}
		}
		// Their activity log does not show webhook entries either.
		op := e.withToken("operator@example.test", auth.Operator)
		if body := op.api("GET", "/api/v1/activity", nil).Body.String(); strings.Contains(body, "WebhookTarget") {
			t.Fatalf("an operator sees webhook activity: %s", body)
		}
		if body := admin.api("GET", "/api/v1/activity?subject_type=WebhookTarget", nil).Body.String(); !strings.Contains(body, `"secret":{"changed":true}`) ||
			strings.Contains(body, "api-secret-path") || strings.Contains(body, rotated.Secret) {
			t.Fatalf("admin activity: %s", body)
		}

		if res := admin.api("DELETE", "/api/v1/webhooks/"+created.ID, nil); res.Code != http.StatusNoContent {
			t.Fatalf("delete: %d %s", res.Code, res.Body)
		}
		if res := admin.api("GET", "/api/v1/webhooks/"+created.ID, nil); res.Code != http.StatusNotFound {
			t.Fatalf("after delete: %d", res.Code)
		}
	})
}

func TestWebhookPages(t *testing.T) {
	defer func(d time.Duration) { webhookTestWait = d }(webhookTestWait)
	webhookTestWait = 50 * time.Millisecond
	e, rc, _ := webhookEnv(t, storetest.Open(t, "sqlite"))
	admin := e.loggedIn("admin@example.test")
	if res := admin.get("/admin/settings"); !strings.Contains(res.Body.String(), `href="/settings/webhooks"`) {
		t.Fatal("the settings page does not link to the webhooks")
	}
	res := admin.get("/settings/webhooks")
	if res.Code != http.StatusOK || !strings.Contains(res.Body.String(), "No webhooks yet") || !strings.Contains(res.Body.String(), `value="server_offline"`) {
		t.Fatalf("list: %d %s", res.Code, res.Body)
	}
	const path = "/hooks/page-secret-path-c4d5"

	// A refused URL: the error shows, the URL is not echoed back.
	res = admin.postForm("/settings/webhooks", url.Values{"name": {"Ops"}, "url": {"ftp://hooks.example.com" + path}, "types": {"*"}, "active": {"on"}})
	if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "must use https") || strings.Contains(res.Body.String(), "page-secret-path") ||
		!strings.Contains(res.Body.String(), `value="Ops"`) {
		t.Fatalf("refused create: %d %s", res.Code, res.Body)
	}

	res = admin.postForm("/settings/webhooks", url.Values{"name": {"Ops"}, "url": {rc.URL + path}, "format": {"slack"},
		"types": {"server_offline", "ssl_expiring"}, "active": {"on"}})
	body := res.Body.String()
	if res.Code != http.StatusOK || !strings.Contains(body, `id="new-secret"`) || !strings.Contains(body, `data-copy="new-secret"`) || strings.Contains(body, "page-secret-path") {
		t.Fatalf("create: %d %s", res.Code, body)
	}
	list, err := e.db.ListWebhookTargets(context.Background())
	if err != nil || len(list) != 1 {
		t.Fatalf("targets %v %v", list, err)
	}
	tg := list[0]
	creds, _ := e.db.WebhookTargetCredentials(context.Background(), tg.ID)
	if !strings.Contains(body, creds.Secret) || tg.Format != "slack" || strings.Join(tg.Types, ",") != "server_offline,ssl_expiring" {
		t.Fatalf("created %+v; the page shows the secret: %v", tg, strings.Contains(body, creds.Secret))
	}

	// Afterwards the secret and the URL are never shown.
	for _, p := range []string{"/settings/webhooks", "/settings/webhooks/" + tg.ID} {
		res := admin.get(p)
		if res.Code != http.StatusOK || strings.Contains(res.Body.String(), creds.Secret) || strings.Contains(res.Body.String(), "page-secret-path") ||
			!strings.Contains(res.Body.String(), rc.URL+"/…") {
			t.Fatalf("GET %s: %d", p, res.Code)
		}
	}

	// Edit: an empty URL keeps it; no types is refused.
	res = admin.postForm("/settings/webhooks/"+tg.ID, url.Values{"name": {"Ops 2"}, "url": {""}, "format": {"generic"}, "types": {"*"}})
	if res.Code != http.StatusSeeOther {
		t.Fatalf("update: %d %s", res.Code, res.Body)
	}
	if got, _ := e.db.GetWebhookTarget(context.Background(), tg.ID); got.Name != "Ops 2" || got.Active || !got.AllTypes() || got.Format != "generic" {
		t.Fatalf("updated %+v", got)
	}
	if c, _ := e.db.WebhookTargetCredentials(context.Background(), tg.ID); c.URL != creds.URL {
		t.Fatal("an edit with an empty URL changed it")
	}
	res = admin.postForm("/settings/webhooks/"+tg.ID, url.Values{"name": {"Ops 3"}, "format": {"generic"}, "active": {"on"}})
	if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "at least one event type") {
		t.Fatalf("update without types: %d %s", res.Code, res.Body)
	}
	if res := admin.get("/settings/webhooks/" + tg.ID); strings.Contains(res.Body.String(), "Send a test event") {
		t.Fatal("a turned-off webhook offers a test")
	}
	admin.postForm("/settings/webhooks/"+tg.ID, url.Values{"name": {"Ops 2"}, "format": {"generic"}, "types": {"*"}, "active": {"on"}})

	// Test: queued (no runner here), the page says so and lists it.
	res = admin.postForm("/settings/webhooks/"+tg.ID+"/test", nil)
	if res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/settings/webhooks/"+tg.ID {
		t.Fatalf("test: %d %s", res.Code, res.Body)
	}
	page := admin.get("/settings/webhooks/" + tg.ID).Body.String()
	if !strings.Contains(page, "Test event queued") || !strings.Contains(page, "webhook.test") || !strings.Contains(page, "job-queued") {
		t.Fatalf("after test: %s", page)
	}

	// New secret: shown once.
	res = admin.postForm("/settings/webhooks/"+tg.ID+"/rotate-secret", nil)
	c2, _ := e.db.WebhookTargetCredentials(context.Background(), tg.ID)
	if res.Code != http.StatusOK || c2.Secret == creds.Secret || !strings.Contains(res.Body.String(), c2.Secret) {
		t.Fatalf("rotate: %d", res.Code)
	}
	if strings.Contains(admin.get("/settings/webhooks/"+tg.ID).Body.String(), c2.Secret) {
		t.Fatal("the new secret shows again")
	}

	// Other roles are refused, and see no link.
	op := e.loggedIn("operator@example.test")
	if res := op.get("/settings/webhooks"); res.Code != http.StatusForbidden {
		t.Fatalf("operator: %d", res.Code)
	}
	if res := op.postForm("/settings/webhooks/"+tg.ID+"/delete", nil); res.Code != http.StatusForbidden {
		t.Fatalf("operator delete: %d", res.Code)
	}

	res = admin.postForm("/settings/webhooks/"+tg.ID+"/delete", nil)
	if res.Code != http.StatusSeeOther {
		t.Fatalf("delete: %d", res.Code)
	}
	if res := admin.get("/settings/webhooks/" + tg.ID); res.Code != http.StatusNotFound {
		t.Fatalf("after delete: %d", res.Code)
	}
}
