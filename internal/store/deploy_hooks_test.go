package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// hookApp creates a server and an app with a hook id and secret.
func hookApp(t *testing.T, db *store.DB, hookID string) *store.App {
	t.Helper()
	ctx := context.Background()
	var app *store.App
	err := db.InTx(ctx, func(tx *store.Tx) error {
		srv, err := tx.CreateServer(ctx, store.NewServer{Name: "web-" + hookID[:4], Host: "192.0.2.1", Username: "upanel", Port: 22, AgentPort: 8443,
			SSHPrivateKey: []byte("key"), SSHPublicKey: "ssh-ed25519 AAAA"})
		if err != nil {
			return err
		}
		app, err = tx.CreateApp(ctx, store.NewApp{ServerID: srv.ID, Name: "shop", Slug: "shop", GitRepository: "https://git.example.test/shop.git",
			GitBranch: "main", DeployPath: "/srv/upanel/apps/shop", DockerComposeFile: "docker-compose.yml", KeepReleases: 5,
			DeployHookID: hookID, DeployHookSecret: "hook-secret-" + hookID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func TestDeployHookDeliveries(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		app := hookApp(t, db, "abcdefghijklmnopqrstuvwxyz012345")
		other := hookApp(t, db, "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")

		d := store.DeployHookDelivery{AppID: app.ID, DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Provider: store.HookGitHub,
			Event: "push", Outcome: store.HookReceived}
		id, err := db.ClaimDeployHookDelivery(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		// The same id again is a replay; the same id at another app is not.
		if _, err := db.ClaimDeployHookDelivery(ctx, d); !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("replayed delivery: %v", err)
		}
		// One left received for longer than a request lives (the panel
		// died after claiming it) is taken over by a retry.
		if err := db.ExecRaw(ctx, "UPDATE deploy_hook_deliveries SET created_at = ? WHERE id = ?", db.Now().Add(-6*time.Minute), id); err != nil {
			t.Fatal(err)
		}
		if again, err := db.ClaimDeployHookDelivery(ctx, d); err != nil || again != id {
			t.Fatalf("retry of a stranded delivery: %q %v, want row %s", again, err, id)
		}
		if _, err := db.ClaimDeployHookDelivery(ctx, d); !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("a fresh claim is a replay again: %v", err)
		}
		d2 := d
		d2.AppID = other.ID
		if _, err := db.ClaimDeployHookDelivery(ctx, d2); err != nil {
			t.Fatalf("the same delivery id at another app: %v", err)
		}
		var depID string
		err = db.InTx(ctx, func(tx *store.Tx) error {
			dep, err := tx.InsertDeployment(ctx, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: "production",
				TriggeredBy: "webhook", RequestedCommit: "0123456789abcdef0123456789abcdef01234567"})
			if err == nil {
				depID = dep.ID
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.FinishDeployHookDelivery(ctx, id, store.HookDeployed, depID) }); err != nil {
			t.Fatal(err)
		}
		// A finished delivery stays a replay.
		if _, err := db.ClaimDeployHookDelivery(ctx, d); !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("replay of a deployed delivery: %v", err)
		}

		// A failed one may be retried under its id, once.
		f := store.DeployHookDelivery{AppID: app.ID, DeliveryID: "retry-me", Provider: store.HookGitLab, Event: "push_hook", Outcome: store.HookReceived}
		fid, err := db.ClaimDeployHookDelivery(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.FinishDeployHookDelivery(ctx, fid, store.HookFailed, "") }); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		results := make([]error, 4)
		ids := make([]string, 4)
		for i := range results {
			wg.Go(func() { ids[i], results[i] = db.ClaimDeployHookDelivery(ctx, f) })
		}
		wg.Wait()
		won := 0
		for i, err := range results {
			switch {
			case err == nil:
				won++
				if ids[i] != fid {
					t.Errorf("the retry made a new row %s instead of taking over %s", ids[i], fid)
				}
			case !apperr.Is(err, apperr.Conflict):
				t.Errorf("concurrent retry: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d of 4 concurrent retries of a failed delivery claimed it, want 1", won)
		}

		// Bad input is refused before the database.
		for _, bad := range []store.DeployHookDelivery{
			{AppID: app.ID, DeliveryID: "", Provider: store.HookGitHub, Event: "push", Outcome: store.HookReceived},
			{AppID: app.ID, DeliveryID: "has space", Provider: store.HookGitHub, Event: "push", Outcome: store.HookReceived},
			{AppID: app.ID, DeliveryID: string(make([]byte, 101)), Provider: store.HookGitHub, Event: "push", Outcome: store.HookReceived},
			{AppID: app.ID, DeliveryID: "x", Provider: "bitbucket", Event: "push", Outcome: store.HookReceived},
			{AppID: app.ID, DeliveryID: "x", Provider: store.HookGitHub, Event: "Push Hook", Outcome: store.HookReceived},
			{AppID: app.ID, DeliveryID: "x", Provider: store.HookGitHub, Event: "push", Outcome: ""},
		} {
			if _, err := db.ClaimDeployHookDelivery(ctx, bad); !apperr.Is(err, apperr.Invalid) {
				t.Errorf("claim %+v: %v, want invalid", bad, err)
			}
		}

		list, err := db.DeployHookDeliveries(ctx, app.ID, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 {
			t.Fatalf("deliveries: %+v", list)
		}
		byID := map[string]store.DeployHookDelivery{}
		for _, x := range list {
			byID[x.DeliveryID] = x
		}
		if got := byID[d.DeliveryID]; got.Outcome != store.HookDeployed || got.DeploymentID != depID || got.Provider != store.HookGitHub || got.CreatedAt.IsZero() {
			t.Errorf("deployed delivery read back: %+v", got)
		}
		if got := byID["retry-me"]; got.Outcome != store.HookReceived || got.DeploymentID != "" {
			t.Errorf("retaken delivery read back: %+v", got)
		}

		// Old deliveries are forgotten, and their ids usable again.
		n, err := db.DeleteOldDeployHookDeliveries(ctx, db.Now().Add(time.Hour), 100)
		if err != nil || n != 3 {
			t.Fatalf("deleted %d, %v", n, err)
		}
		if _, err := db.ClaimDeployHookDelivery(ctx, d); err != nil {
			t.Fatalf("a forgotten delivery id: %v", err)
		}
	})
}

func TestAppRunStatus(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		app := hookApp(t, db, "abcdefghijklmnopqrstuvwxyz012345")
		set := func(status string) (string, bool) {
			t.Helper()
			var old string
			var changed bool
			err := db.InTx(ctx, func(tx *store.Tx) (err error) {
				old, changed, err = tx.SetAppRunStatus(ctx, app.ID, status)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return old, changed
		}
		// A pending app (never deployed) and a deploying one keep their status.
		if old, changed := set(store.AppStopped); old != store.AppPending || changed {
			t.Fatalf("pending: %s %v", old, changed)
		}
		storetest.Exec(t, db, "UPDATE apps SET status = 'deploying' WHERE id = ?", app.ID)
		if _, changed := set(store.AppRunning); changed {
			t.Fatal("a deploying app's status changed")
		}
		for _, tc := range []struct{ from, to string }{{"running", "stopped"}, {"stopped", "running"}, {"failed", "running"}, {"failed", "stopped"}} {
			storetest.Exec(t, db, "UPDATE apps SET status = ? WHERE id = ?", tc.from, app.ID)
			if old, changed := set(tc.to); old != tc.from || !changed {
				t.Errorf("%s → %s: %s %v", tc.from, tc.to, old, changed)
			}
			if a, _ := db.GetApp(ctx, app.ID); a.Status != tc.to {
				t.Errorf("%s → %s: status is %s", tc.from, tc.to, a.Status)
			}
		}
		storetest.Exec(t, db, "UPDATE apps SET status = 'running' WHERE id = ?", app.ID)
		if old, changed := set(store.AppRunning); old != store.AppRunning || changed {
			t.Errorf("running → running: %s %v", old, changed)
		}
		err := db.InTx(ctx, func(tx *store.Tx) error { _, _, err := tx.SetAppRunStatus(ctx, app.ID, "deploying"); return err })
		if !apperr.Is(err, apperr.Invalid) {
			t.Errorf("set deploying: %v", err)
		}
		err = db.InTx(ctx, func(tx *store.Tx) error { _, _, err := tx.SetAppRunStatus(ctx, store.NewID(), "running"); return err })
		if !apperr.Is(err, apperr.NotFound) {
			t.Errorf("unknown app: %v", err)
		}

		// DeploymentRunning sees only a running deployment of that environment.
		running := func(env string) bool {
			t.Helper()
			ok, err := db.DeploymentRunning(ctx, app.ID, env)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		var depID string
		err = db.InTx(ctx, func(tx *store.Tx) error {
			d, err := tx.InsertDeployment(ctx, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: "staging", TriggeredBy: "manual"})
			if d != nil {
				depID = d.ID
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if running("staging") {
			t.Fatal("a queued deployment counts as running")
		}
		storetest.Exec(t, db, "UPDATE deployments SET status = 'running' WHERE id = ?", depID)
		if !running("staging") || running("production") {
			t.Fatalf("running: staging %v production %v", running("staging"), running("production"))
		}
	})
}

func TestRecentSecurityEvent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		app := hookApp(t, db, "abcdefghijklmnopqrstuvwxyz012345")
		since := db.Now().Add(-time.Minute)
		if ok, err := db.RecentSecurityEvent(ctx, "deploy_hook_refused", app.ServerID, since); err != nil || ok {
			t.Fatalf("before: %v %v", ok, err)
		}
		if _, err := db.InsertSecurityEvent(ctx, store.SecurityEvent{EventType: "deploy_hook_refused", ServerID: app.ServerID, Severity: store.SeverityWarning}); err != nil {
			t.Fatal(err)
		}
		if ok, err := db.RecentSecurityEvent(ctx, "deploy_hook_refused", app.ServerID, since); err != nil || !ok {
			t.Fatalf("after: %v %v", ok, err)
		}
		if ok, _ := db.RecentSecurityEvent(ctx, "deploy_hook_refused", app.ServerID, db.Now().Add(time.Minute)); ok {
			t.Fatal("an event before since counted")
		}
		if ok, _ := db.RecentSecurityEvent(ctx, "login_failed", app.ServerID, since); ok {
			t.Fatal("another type counted")
		}
	})
}
