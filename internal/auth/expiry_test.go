package auth_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"upanel/internal/auth"
	"upanel/internal/jobs"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestExpiryDeletesStaleSessionsAndDeadTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		userID := storetest.SecretRows(t, db, "x")["users"]
		now := db.Now()
		const idle = 2 * time.Hour
		session := func(name string, lastActivity, expires time.Time) {
			storetest.Exec(t, db, `INSERT INTO sessions (id, user_id, token_hash, last_activity_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
				store.NewID(), userID, name+"-hash", lastActivity, expires)
		}
		session("live", now.Add(-time.Minute), now.Add(time.Hour))
		session("idle", now.Add(-idle-time.Minute), now.Add(time.Hour))
		session("over", now.Add(-time.Minute), now.Add(-time.Second))

		reset := func(name string, expires time.Time, used *time.Time) {
			storetest.Exec(t, db, `INSERT INTO password_reset_tokens (id, user_id, token_hash, expires_at, used_at) VALUES (?, ?, ?, ?, ?)`,
				store.NewID(), userID, name, expires, used)
		}
		usedAt := now.Add(-time.Minute)
		reset("valid", now.Add(time.Hour), nil)
		reset("expired", now.Add(-time.Second), nil)
		reset("used", now.Add(time.Hour), &usedAt)

		invite := func(name string, expires time.Time, accepted *time.Time) {
			storetest.Exec(t, db, `INSERT INTO user_invites (id, email, role, token_hash, expires_at, accepted_at) VALUES (?, ?, 'viewer', ?, ?, ?)`,
				store.NewID(), name+"@example.test", name, expires, accepted)
		}
		longAgo := now.Add(-40 * 24 * time.Hour)
		invite("pending", now.Add(24*time.Hour), nil)
		invite("recently-expired", now.Add(-time.Hour), nil) // kept a while for the admin's list
		invite("long-expired", longAgo, nil)
		invite("long-accepted", now.Add(24*time.Hour), &longAgo)

		attempt := func(age time.Duration) {
			storetest.Exec(t, db, `INSERT INTO login_attempts (id, email, ip_address, created_at) VALUES (?, 'a@example.test', '192.0.2.9', ?)`,
				store.NewID(), now.Add(-age))
		}
		attempt(time.Hour)
		attempt(8 * 24 * time.Hour)

		h := auth.Expiry(db, slog.New(slog.DiscardHandler), idle)
		if err := h(ctx, &jobs.Job{Job: &store.Job{ID: store.NewID()}}); err != nil {
			t.Fatal(err)
		}
		// left lists which of the probe hashes remain in table. CHAR(64) pads
		// these short test values on PostgreSQL, hence the trim.
		left := func(table string) []string {
			var out []string
			for _, probe := range []string{"live-hash", "idle-hash", "over-hash", "valid", "expired", "used", "pending", "recently-expired", "long-expired", "long-accepted"} {
				var s string
				if db.QueryRowRaw(ctx, "SELECT token_hash FROM "+table+" WHERE TRIM(token_hash) = ?", probe).Scan(&s) == nil {
					out = append(out, strings.TrimSpace(s))
				}
			}
			return out
		}
		if got := left("sessions"); len(got) != 1 || got[0] != "live-hash" {
			t.Errorf("sessions left: %v, want only live-hash", got)
		}
		if got := left("password_reset_tokens"); len(got) != 1 || got[0] != "valid" {
			t.Errorf("reset tokens left: %v, want only valid", got)
		}
		if got := left("user_invites"); len(got) != 2 || got[0] != "pending" || got[1] != "recently-expired" {
			t.Errorf("invites left: %v, want pending and recently-expired", got)
		}
		var attempts int
		db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM login_attempts").Scan(&attempts)
		if attempts != 1 {
			t.Errorf("%d login attempts left, want 1", attempts)
		}
	})
}
