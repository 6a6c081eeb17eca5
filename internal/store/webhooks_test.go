package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestWebhookDisplayURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T000/B000/XXXXSECRET": "https://hooks.slack.com/…",
		"https://discord.com/api/webhooks/1/tok?wait=true":      "https://discord.com/…",
		"https://example.test":                                  "https://example.test/",
		"https://example.test/":                                 "https://example.test/",
		"https://example.test/?k=secret":                        "https://example.test/…",
		"http://127.0.0.1:8080/hook":                            "http://127.0.0.1:8080/…",
		"https://[2001:db8::1]:8443/x":                          "https://[2001:db8::1]:8443/…",
		"https://user:pw@example.test/x":                        "https://…@example.test/…",
		"not a url":                                             "…",
	} {
		if got := store.WebhookDisplayURL(in); got != want {
			t.Errorf("WebhookDisplayURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func createWebhook(t *testing.T, db *store.DB, n store.NewWebhookTarget) *store.WebhookTarget {
	t.Helper()
	ctx := context.Background()
	var out *store.WebhookTarget
	if err := db.InTx(ctx, func(tx *store.Tx) (err error) {
		out, err = tx.CreateWebhookTarget(ctx, n)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWebhookTargets(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const hookURL = "https://hooks.example.test/services/T1/B2/path-secret-8f3a"
		const secret = "uwhsec_signing-secret-value-1234567890"
		a := createWebhook(t, db, store.NewWebhookTarget{Name: "Ops", URL: hookURL, Format: store.WebhookSlack, Secret: secret,
			Types: []string{"server_offline", "backup_failed"}, Active: true})
		if a.Name != "Ops" || a.DisplayURL != "https://hooks.example.test/…" || a.Format != "slack" || !a.Active ||
			strings.Join(a.Types, ",") != "server_offline,backup_failed" || a.LastStatus != "" || a.LastDeliveryAt != nil {
			t.Fatalf("created %+v", a)
		}
		b := createWebhook(t, db, store.NewWebhookTarget{Name: "All", URL: "https://b.example.test/x", Format: store.WebhookGeneric, Secret: "s-2-abcdefgh",
			Types: []string{store.WebhookAllTypes}, Active: false})
		if !b.AllTypes() || b.Active {
			t.Fatalf("second %+v", b)
		}
		list, err := db.ListWebhookTargets(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "All" || list[1].Name != "Ops" {
			t.Fatalf("list: %v %+v", err, list)
		}
		for _, x := range list {
			if strings.Contains(x.DisplayURL, "path-secret") {
				t.Fatalf("the list shows the URL: %+v", x)
			}
		}
		creds, err := db.WebhookTargetCredentials(ctx, a.ID)
		if err != nil || creds.URL != hookURL || creds.Secret != secret {
			t.Fatalf("credentials: %+v %v", creds, err)
		}

		// Update without a URL keeps it; with one replaces it.
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.UpdateWebhookTarget(ctx, a.ID, store.WebhookTargetUpdate{Name: "Ops 2", Format: store.WebhookDiscord,
				Types: []string{"ssl_expiring"}, Active: false}); err != nil {
				return err
			}
			c, err := tx.WebhookTargetCredentials(ctx, a.ID)
			if err != nil || c.URL != hookURL {
				t.Errorf("URL after an update without one: %q %v", c.URL, err)
			}
			_, err = tx.UpdateWebhookTarget(ctx, a.ID, store.WebhookTargetUpdate{Name: "Ops 2", URL: "https://new.example.test/p/q",
				Format: store.WebhookDiscord, Types: []string{"ssl_expiring"}, Active: true})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.GetWebhookTarget(ctx, a.ID)
		if err != nil || got.Name != "Ops 2" || got.Format != "discord" || got.DisplayURL != "https://new.example.test/…" || !got.Active ||
			strings.Join(got.Types, ",") != "ssl_expiring" {
			t.Fatalf("after update: %+v %v", got, err)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.SetWebhookSecret(ctx, a.ID, "rotated-secret-0001") }); err != nil {
			t.Fatal(err)
		}
		if c, _ := db.WebhookTargetCredentials(ctx, a.ID); c.Secret != "rotated-secret-0001" || c.URL != "https://new.example.test/p/q" {
			t.Fatalf("after rotation: %+v", c)
		}

		// Not found is an error, never (nil, nil).
		missing := store.NewID()
		if _, err := db.GetWebhookTarget(ctx, missing); !apperr.Is(err, apperr.NotFound) {
			t.Errorf("get missing: %v", err)
		}
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.UpdateWebhookTarget(ctx, missing, store.WebhookTargetUpdate{Name: "x", Format: "generic", Types: []string{"*"}}); !apperr.Is(err, apperr.NotFound) {
				t.Errorf("update missing: %v", err)
			}
			if err := tx.SetWebhookSecret(ctx, missing, "whatever-secret"); !apperr.Is(err, apperr.NotFound) {
				t.Errorf("rotate missing: %v", err)
			}
			if _, err := tx.QueueWebhookDelivery(ctx, missing, "webhook.test", []byte(`{}`)); !apperr.Is(err, apperr.NotFound) {
				t.Errorf("queue to missing: %v", err)
			}
			if err := tx.DeleteWebhookTarget(ctx, missing); !apperr.Is(err, apperr.NotFound) {
				t.Errorf("delete missing: %v", err)
			}
			if _, err := tx.UpdateWebhookTarget(ctx, a.ID, store.WebhookTargetUpdate{Name: "x", Format: "generic"}); !apperr.Is(err, apperr.Invalid) {
				t.Errorf("no types: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		// Deleting a target deletes its deliveries.
		var did string
		if err := db.InTx(ctx, func(tx *store.Tx) (err error) {
			did, err = tx.QueueWebhookDelivery(ctx, b.ID, "webhook.test", []byte(`{"type":"webhook.test"}`))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteWebhookTarget(ctx, b.ID) }); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetWebhookDelivery(ctx, did); !apperr.Is(err, apperr.NotFound) {
			t.Errorf("delivery of a deleted target: %v", err)
		}
	})
}

func TestWebhookDeliveryRecords(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		tg := createWebhook(t, db, store.NewWebhookTarget{Name: "T", URL: "https://t.example.test/h", Format: "generic", Secret: "secret-123456",
			Types: []string{"server_offline"}, Active: true})
		other := createWebhook(t, db, store.NewWebhookTarget{Name: "U", URL: "https://u.example.test/h", Format: "generic", Secret: "secret-123456",
			Types: []string{"backup_failed"}, Active: true})
		off := createWebhook(t, db, store.NewWebhookTarget{Name: "V", URL: "https://v.example.test/h", Format: "generic", Secret: "secret-123456",
			Types: []string{"*"}, Active: false})
		_ = off
		var n int
		if err := db.InTx(ctx, func(tx *store.Tx) (err error) {
			n, err = tx.QueueWebhookDeliveries(ctx, "server_offline", []byte(`{"type":"server_offline","title":"down"}`))
			return err
		}); err != nil || n != 1 {
			t.Fatalf("queued %d, %v; want 1 (one subscribed, one not, one off)", n, err)
		}
		ds, err := db.ListWebhookDeliveries(ctx, tg.ID, 20)
		if err != nil || len(ds) != 1 {
			t.Fatalf("deliveries: %v %+v", err, ds)
		}
		d := ds[0]
		if d.Status != store.WebhookQueued || d.Attempts != 0 || d.EventType != "server_offline" || !strings.Contains(string(d.Payload), `"down"`) {
			t.Fatalf("queued delivery %+v", d)
		}
		if ds, _ := db.ListWebhookDeliveries(ctx, other.ID, 20); len(ds) != 0 {
			t.Fatalf("the unsubscribed target got %d deliveries", len(ds))
		}
		job, err := db.GetJob(ctx, d.ID)
		if err != nil || job.Kind != store.WebhookDeliveryJobKind || job.MaxAttempts != 8 || job.ConcurrencyKey != "webhook:"+tg.ID ||
			!strings.Contains(string(job.Payload), d.ID) {
			t.Fatalf("job %+v %v", job, err)
		}

		// A retryable failure: counted, kept, target untouched.
		long := strings.Repeat("é", 2000) + "\x00"
		if ok, err := db.RecordWebhookAttempt(ctx, d.ID, store.WebhookAttempt{Status: store.WebhookQueued, ResponseCode: 503, Error: long}); err != nil || !ok {
			t.Fatalf("record retry: %v %v", ok, err)
		}
		got, _ := db.GetWebhookDelivery(ctx, d.ID)
		if got.Attempts != 1 || got.ResponseCode != 503 || got.Status != store.WebhookQueued || len(got.LastError) > 1010 ||
			!strings.HasSuffix(got.LastError, "…") || strings.Contains(got.LastError, "\x00") {
			t.Fatalf("after retryable failure: %+v", got)
		}
		if x, _ := db.GetWebhookTarget(ctx, tg.ID); x.LastStatus != "" || x.LastDeliveryAt != nil {
			t.Fatalf("a retry set the target's last status: %+v", x)
		}
		// Delivered: final, target updated in the same transaction.
		if ok, err := db.RecordWebhookAttempt(ctx, d.ID, store.WebhookAttempt{Status: store.WebhookDelivered, ResponseCode: 204}); err != nil || !ok {
			t.Fatalf("record delivered: %v %v", ok, err)
		}
		got, _ = db.GetWebhookDelivery(ctx, d.ID)
		if got.Attempts != 2 || got.ResponseCode != 204 || got.Status != store.WebhookDelivered || got.LastError != "" || got.DeliveredAt == nil || !got.Final() {
			t.Fatalf("after delivery: %+v", got)
		}
		x, _ := db.GetWebhookTarget(ctx, tg.ID)
		if x.LastStatus != store.WebhookDelivered || x.LastError != "" || x.LastDeliveryAt == nil {
			t.Fatalf("target after delivery: %+v", x)
		}
		// A final row does not change again.
		if ok, err := db.RecordWebhookAttempt(ctx, d.ID, store.WebhookAttempt{Status: store.WebhookFailed, Error: "late"}); err != nil || ok {
			t.Fatalf("a delivered row changed: %v %v", ok, err)
		}
		if _, err := db.RecordWebhookAttempt(ctx, d.ID, store.WebhookAttempt{Status: "lost"}); err == nil {
			t.Fatal("an unknown status was accepted")
		}

		// A permanent failure sets the target's last status and error.
		var d2 string
		if err := db.InTx(ctx, func(tx *store.Tx) (err error) {
			d2, err = tx.QueueWebhookDelivery(ctx, tg.ID, "webhook.test", []byte(`{}`))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RecordWebhookAttempt(ctx, d2, store.WebhookAttempt{Status: store.WebhookFailed, ResponseCode: 404, Error: "the target answered 404 Not Found"}); err != nil {
			t.Fatal(err)
		}
		x, _ = db.GetWebhookTarget(ctx, tg.ID)
		if x.LastStatus != store.WebhookFailed || x.LastError != "the target answered 404 Not Found" {
			t.Fatalf("target after failure: %+v", x)
		}
		ds, _ = db.ListWebhookDeliveries(ctx, tg.ID, 20)
		if len(ds) != 2 || ds[0].ID != d2 {
			t.Fatalf("newest first: %+v", ds)
		}

		// Upkeep: a queued delivery whose job ended is failed; old finished
		// ones are deleted.
		var d3 string
		if err := db.InTx(ctx, func(tx *store.Tx) (err error) {
			d3, err = tx.QueueWebhookDelivery(ctx, tg.ID, "webhook.test", []byte(`{}`))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n, err := db.FailOrphanedWebhookDeliveries(ctx); err != nil || n != 0 {
			t.Fatalf("orphans with a live job: %d %v", n, err)
		}
		if _, err := db.RequestJobCancel(ctx, d3); err != nil {
			t.Fatal(err)
		}
		if j, _ := db.GetJob(ctx, d3); !j.Terminal() {
			storetest.Exec(t, db, "UPDATE jobs SET status = 'cancelled' WHERE id = ?", d3)
		}
		if n, err := db.FailOrphanedWebhookDeliveries(ctx); err != nil || n != 1 {
			t.Fatalf("orphans: %d %v", n, err)
		}
		if got, _ := db.GetWebhookDelivery(ctx, d3); got.Status != store.WebhookFailed || got.LastError == "" {
			t.Fatalf("orphan: %+v", got)
		}
		if n, err := db.DeleteWebhookDeliveries(ctx, db.Now().Add(time.Hour), 100); err != nil || n != 3 {
			t.Fatalf("deleted %d, %v; want the 3 finished deliveries", n, err)
		}
	})
}

// The canary test covers secret columns; this checks that the store's own
// writes of a target seal its URL and secret.
func TestWebhookSecretsEncryptedAtRest(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			e := storetest.New(t, dialect)
			const path = "/services/T9/B9/at-rest-path-4a7c91"
			const secret = "uwhsec_at-rest-secret-value-b38e1d"
			tg := createWebhook(t, e.DB, store.NewWebhookTarget{Name: "rest", URL: "https://chat.example.test" + path, Format: "slack",
				Secret: secret, Types: []string{"*"}, Active: true})
			if err := e.DB.InTx(context.Background(), func(tx *store.Tx) error {
				_, err := tx.UpdateWebhookTarget(context.Background(), tg.ID, store.WebhookTargetUpdate{Name: "rest", URL: "https://chat.example.test" + path + "-2",
					Format: "slack", Types: []string{"*"}, Active: true})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			storetest.AssertNotStored(t, e.DB, e.URL, "at-rest-path-4a7c91")
			storetest.AssertNotStored(t, e.DB, e.URL, "at-rest-secret-value")
		})
	}
}
