package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/notify"
)

// TestServeDeliversWebhooks runs a real serve with
// UPANEL_WEBHOOK_ALLOW_PRIVATE=true: a target made through the API gets its
// test event from the panel's own job runner, signed with the secret the API
// answered once, and the log never shows the target's URL or secret.
func TestServeDeliversWebhooks(t *testing.T) {
	vars, _, _ := panelEnv(t, "sqlite")
	vars["UPANEL_WEBHOOK_ALLOW_PRIVATE"] = "true"
	if _, _, err := runStdin(t, vars, "quartz falcon ribbon 88\n", "user", "create", "--email", "admin@example.test", "--role", "admin"); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, vars, "token", "create", "--user", "admin@example.test", "--name", "hooks", "--role", "admin")
	token := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(token, "upt_") {
		t.Fatalf("token create: %v\n%s", err, out)
	}

	type got struct {
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	var received []got
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		received = append(received, got{r.Header.Clone(), b})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)

	p := startServe(t, vars)
	call := func(method, path string, body any) (int, []byte) {
		t.Helper()
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, p.base+path, r)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	const path = "/services/serve-secret-path-e5f6"
	code, body := call("POST", "/api/v1/webhooks", map[string]any{"name": "chat", "url": receiver.URL + path, "types": []string{"*"}})
	var created struct{ ID, Secret string }
	if err := json.Unmarshal(body, &created); code != http.StatusCreated || err != nil || created.Secret == "" {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := call("POST", "/api/v1/webhooks/"+created.ID+"/test", nil); code != http.StatusAccepted {
		t.Fatalf("test: %d %s", code, body)
	}
	waitFor(t, 30*time.Second, "the test delivery", func() bool {
		_, body := call("GET", "/api/v1/webhooks/"+created.ID+"/deliveries", nil)
		return strings.Contains(string(body), `"status":"delivered"`)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(received) != 1 {
		t.Fatalf("the receiver got %d requests", len(received))
	}
	h := received[0].header
	if h.Get("X-UPanel-Event") != notify.WebhookTest || h.Get("X-UPanel-Signature") != notify.Sign(created.Secret, h.Get("X-UPanel-Timestamp"), received[0].body) {
		t.Fatalf("headers %v", h)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, `"msg":"webhook delivered"`) {
		t.Fatalf("no delivery in the log:\n%s", logs)
	}
	if strings.Contains(logs, "serve-secret-path") || strings.Contains(logs, created.Secret) {
		t.Fatalf("the log shows the URL or the secret:\n%s", logs)
	}
}
