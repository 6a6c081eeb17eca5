package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/browsertest"
	"upanel/internal/jobs"
	"upanel/internal/notify"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// TestWebhookPagesInBrowser drives chromium through the webhook pages of a
// panel whose job runner really delivers: add a Slack-format target, see its
// secret once, send a test event to a receiver on 127.0.0.1 and see it
// delivered, make a new secret and delete the target, both after a
// confirmation. Screenshots are named webhooks-NN-step.png; no page may break
// the Content Security Policy.
func TestWebhookPagesInBrowser(t *testing.T) {
	chromium := browsertest.Chromium(t)
	db := storetest.Open(t, "sqlite")

	var hits atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("ok"))
	}))
	t.Cleanup(receiver.Close)

	ts := httptest.NewUnstartedServer(nil)
	base, _ := url.Parse("http://" + ts.Listener.Addr().String())
	rec := audit.New(db)
	accounts := auth.New(auth.Options{DB: db, Audit: rec, BaseURL: base, IdleTimeout: time.Hour, AbsoluteTimeout: 24 * time.Hour,
		Hasher: auth.NewHasher(4), QueueMail: func(context.Context, *store.Tx, auth.Mail) error { return nil }})
	runner := jobs.NewRunner(db, jobs.Options{Workers: 1, Poll: 25 * time.Millisecond, ShutdownGrace: 5 * time.Second})
	svc := notify.New(notify.Options{DB: db, BaseURL: base, Wake: runner.Wake})
	hooks := svc.Webhooks(notify.WebhookOptions{Recorder: rec, AllowPrivate: true})
	runner.Handle(store.WebhookDeliveryJobKind, hooks.Handler())
	srv, err := newServer(Deps{DB: db, Log: slog.New(slog.DiscardHandler), Auth: accounts, Audit: rec, Notify: svc, Webhooks: hooks, BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv.handler()
	ts.Start()
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var wg sync.WaitGroup
	wg.Go(func() { runner.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	if _, err := accounts.CreateUser(ctx, "admin@example.test", testPassword, auth.Admin); err != nil {
		t.Fatal(err)
	}

	s := browsertest.NewSession(t, chromium, base.String(), "webhooks-")
	b := s.Open(ctx, "admin")
	b.Navigate("/login")
	b.Login("admin@example.test", testPassword)
	b.Navigate("/admin/settings")
	b.Follow(`a[href="/settings/webhooks"]`)
	b.ExpectPath("/settings/webhooks")
	b.ExpectText("main", "No webhooks yet")
	b.Fill("#wh_name", "Team chat")
	b.Fill("#wh_url", receiver.URL+"/services/T1/B2/browser-secret-path")
	b.Fill("#wh_format", "slack")
	b.Run(chromedp.Click(`input[name="types"][value="*"]`, chromedp.NodeVisible)) // untick "all"
	b.Run(chromedp.Click(`input[name="types"][value="server_offline"]`, chromedp.NodeVisible))
	b.Run(chromedp.Click(`input[name="types"][value="backup_failed"]`, chromedp.NodeVisible))
	b.Shot("add-form")
	b.Submit(`form[action="/settings/webhooks"] button`)
	b.ExpectText(".flash", "Copy its signing secret now")
	secret := b.Text("#new-secret")
	if len(secret) < 40 {
		b.Fatalf("secret %q", secret)
	}
	b.ExpectVisible(`button[data-copy="new-secret"]`)
	b.ExpectText("#status", "server_offline, backup_failed")
	b.Shot("created-with-secret")
	// The secret comes in the answer to the form, which is the target's page.
	action := b.EvalStrings(`[document.querySelector("#edit form").getAttribute("action")]`)
	if len(action) != 1 || len(action[0]) != len("/settings/webhooks/")+26 {
		b.Fatalf("edit form action %q", action)
	}
	id := action[0][len("/settings/webhooks/"):]

	b.Submit(`form[action$="/test"] button`)
	b.ExpectPath("/settings/webhooks/" + id)
	b.ExpectText(".flash", "Test event delivered")
	b.ExpectText("#deliveries", "webhook.test")
	b.ExpectText("#deliveries", "delivered")
	if hits.Load() != 1 {
		b.Fatalf("the receiver got %d requests", hits.Load())
	}
	if n := b.Count("#new-secret"); n != 0 {
		b.Fatalf("the secret shows again")
	}
	b.Shot("tested")

	if msg := b.Confirm(`form[action$="/rotate-secret"] button`, true); msg == "" {
		b.Fatalf("no confirmation for a new secret")
	}
	if b.Text("#new-secret") == secret {
		b.Fatalf("the secret did not change")
	}
	b.Shot("new-secret")

	b.Navigate("/settings/webhooks")
	b.ExpectText("table.webhooks", "Team chat")
	b.ExpectText("table.webhooks", "delivered")
	b.Shot("list")

	b.Navigate("/settings/webhooks/" + id)
	b.Confirm(`form[action$="/delete"] button`, true)
	b.ExpectPath("/settings/webhooks")
	b.ExpectText(".flash", "Webhook deleted")
	s.CheckConsoles()
}
