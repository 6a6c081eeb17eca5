package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// TestPrometheusMailHealth: the scrape shows mail that failed for good in the
// last day and mail still waiting for the SMTP server, so that an alert can
// fire when notifications stop reaching people.
func TestPrometheusMailHealth(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.user("admin@example.test", auth.Admin)
		c := e.withToken("admin@example.test", auth.Admin)
		ctx := context.Background()
		enqueue := func(to string) string {
			t.Helper()
			var id string
			err := db.InTx(ctx, func(tx *store.Tx) (err error) {
				id, err = tx.EnqueueMail(ctx, store.OutboxMail{Kind: "notification", To: to, Subject: "[UPanel] Server web-1 is offline", Text: "web-1 stopped reporting."})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		scrape := func() string {
			t.Helper()
			res := c.get("/metrics")
			if res.Code != http.StatusOK {
				t.Fatalf("GET /metrics: %d %s", res.Code, res.Body)
			}
			return res.Body.String()
		}
		for _, want := range []string{"# TYPE upanel_mail_failed gauge\nupanel_mail_failed 0\n", "# TYPE upanel_mail_queued gauge\nupanel_mail_queued 0\n"} {
			if body := scrape(); !strings.Contains(body, want) {
				t.Fatalf("scrape lacks %q:\n%s", want, body)
			}
		}

		failed, old, retrying, sent := enqueue("a@example.test"), enqueue("b@example.test"), enqueue("c@example.test"), enqueue("d@example.test")
		enqueue("e@example.test") // not tried yet
		for _, f := range []struct {
			id    string
			final bool
		}{{failed, true}, {old, true}, {retrying, false}} {
			if err := db.RecordMailFailure(ctx, f.id, "550 5.1.1 no such user", f.final); err != nil {
				t.Fatal(err)
			}
		}
		storetest.Exec(t, db, "UPDATE mail_outbox SET updated_at = ? WHERE id = ?", db.Now().Add(-48*time.Hour), old)
		if ok, err := db.MarkMailSent(ctx, sent); err != nil || !ok {
			t.Fatal(ok, err)
		}
		body := scrape()
		for _, want := range []string{"\nupanel_mail_failed 1\n", "\nupanel_mail_queued 2\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("scrape lacks %q:\n%s", strings.TrimSpace(want), body)
			}
		}
	})
}

func TestDashboardShowsFleetAndMailHealth(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("admin@example.com", auth.Admin)
	e.user("viewer@example.com", auth.Viewer)
	storetest.Exec(t, e.db, "INSERT INTO mail_outbox (id, kind, to_address, subject, status, updated_at) VALUES (?, 'notification', 'a@example.com', 's', 'failed', ?)", store.NewID(), e.db.Now())
	admin := e.loggedIn("admin@example.com").get("/dashboard")
	for _, want := range []string{"No servers yet", "0 unread notifications", "1 email failed in the last 24 hours"} {
		if !strings.Contains(admin.Body.String(), want) {
			t.Errorf("admin dashboard lacks %q", want)
		}
	}
	if viewer := e.loggedIn("viewer@example.com").get("/dashboard"); strings.Contains(viewer.Body.String(), "Panel health") {
		t.Error("a viewer sees the panel's health")
	}
}
