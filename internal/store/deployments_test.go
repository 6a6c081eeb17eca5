package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// deployApp creates a server and an app on it.
func deployApp(t *testing.T, db *store.DB) *store.App {
	t.Helper()
	ctx := context.Background()
	var app *store.App
	err := db.InTx(ctx, func(tx *store.Tx) error {
		srv, err := tx.CreateServer(ctx, store.NewServer{Name: "web-1", Host: "192.0.2.1", Port: 22, Username: "upanel", AgentPort: 8443,
			SSHPrivateKey: []byte("key"), SSHPublicKey: "ssh-ed25519 AAAA"})
		if err != nil {
			return err
		}
		app, err = tx.CreateApp(ctx, store.NewApp{ServerID: srv.ID, Name: "Shop", Slug: "shop", GitRepository: "https://git.example.test/acme/shop.git",
			GitBranch: "main", DeployPath: "/srv/upanel/apps/shop", DockerComposeFile: "docker-compose.yml", KeepReleases: 5,
			DeployHookID: strings.Repeat("h", 32), DeployHookSecret: "hook secret"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func queueDeployment(t *testing.T, db *store.DB, n store.NewDeployment) *store.Deployment {
	t.Helper()
	ctx := context.Background()
	var d *store.Deployment
	err := db.InTx(ctx, func(tx *store.Tx) (err error) {
		d, err = tx.InsertDeployment(ctx, n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func finishDeployment(t *testing.T, db *store.DB, id string, e store.DeploymentEnd) (*store.Deployment, bool) {
	t.Helper()
	ctx := context.Background()
	var d *store.Deployment
	var ended bool
	err := db.InTx(ctx, func(tx *store.Tx) (err error) {
		d, ended, err = tx.FinishDeployment(ctx, id, e)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, ended
}

func appStatus(t *testing.T, db *store.DB, id string) (string, string) {
	t.Helper()
	a, err := db.GetApp(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Status, a.CurrentCommit
}

func TestDeploymentLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		app := deployApp(t, db)
		d := queueDeployment(t, db, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: "production", TriggeredBy: "manual"})
		if d.Status != store.DeploymentQueued || d.JobID != d.ID || d.CommitHash != "" || d.LogSeq != 0 || d.StartedAt != nil || d.UserID != "" {
			t.Fatalf("queued: %+v", d)
		}

		run, ok, err := db.MarkDeploymentRunning(ctx, d.ID)
		if err != nil || !ok || run.Status != store.DeploymentRunning || run.StartedAt == nil {
			t.Fatalf("mark running: %+v %v %v", run, ok, err)
		}
		if st, _ := appStatus(t, db, app.ID); st != store.AppDeploying {
			t.Errorf("app status while deploying: %s", st)
		}
		// Marking again (a resumed job) keeps the start.
		again, ok, err := db.MarkDeploymentRunning(ctx, d.ID)
		if err != nil || !ok || !again.StartedAt.Equal(*run.StartedAt) {
			t.Fatalf("mark running again: %+v %v %v", again, ok, err)
		}

		// Appends are conditional on log_seq: a stale writer stores nothing.
		if ok, err := db.AppendDeploymentLog(ctx, d.ID, 0, []string{"one", "two ünïcode"}, 2); err != nil || !ok {
			t.Fatalf("append: %v %v", ok, err)
		}
		if ok, err := db.AppendDeploymentLog(ctx, d.ID, 0, []string{"one", "two ünïcode"}, 2); err != nil || ok {
			t.Fatalf("a second append from 0 was stored: %v %v", ok, err)
		}
		if ok, err := db.AppendDeploymentLog(ctx, d.ID, 2, []string{"three\r\nwith\x00 breaks"}, 3); err != nil || !ok {
			t.Fatalf("append 3: %v %v", ok, err)
		}
		full, err := db.GetDeploymentLog(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if full.Log != "one\ntwo ünïcode\nthree  with breaks\n" || full.LogSeq != 3 {
			t.Fatalf("log %q seq %d", full.Log, full.LogSeq)
		}
		// The tail from a character offset (ü and ï are one character each).
		tail, cur, err := db.DeploymentLogTail(ctx, d.ID, len([]rune("one\ntwo ünïcode\n")))
		if err != nil || tail != "three  with breaks\n" || cur.Status != store.DeploymentRunning {
			t.Fatalf("tail %q %+v %v", tail, cur, err)
		}

		// A cancel request is recorded once, on a running deployment.
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if ok, err := tx.RequestDeploymentCancel(ctx, d.ID, "cancelled by a@example.test"); err != nil || !ok {
				t.Errorf("request cancel: %v %v", ok, err)
			}
			if ok, err := tx.RequestDeploymentCancel(ctx, d.ID, "cancelled by b@example.test"); err != nil || ok {
				t.Errorf("second cancel request: %v %v", ok, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if cur, _ := db.GetDeployment(ctx, d.ID); !cur.CancelRequested() || cur.ErrorMessage != "cancelled by a@example.test" {
			t.Errorf("cancel intent: %+v", cur)
		}

		commit := strings.Repeat("a", 40)
		done, ended := finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentSuccess, Commit: commit, CommitMessage: "Fix things"})
		if !ended || done.Status != store.DeploymentSuccess || done.FinishedAt == nil || done.DurationSeconds == nil ||
			done.CommitHash != commit || done.CommitMessage != "Fix things" || done.ErrorMessage != "" {
			t.Fatalf("finished: %+v", done)
		}
		if st, c := appStatus(t, db, app.ID); st != store.AppRunning || c != commit {
			t.Errorf("app after success: %s %s", st, c)
		}
		// Ended is ended: no second finish, no more lines.
		if _, ended := finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentFailed, Error: "late"}); ended {
			t.Error("a finished deployment finished again")
		}
		if ok, _ := db.AppendDeploymentLog(ctx, d.ID, 3, []string{"late"}, 4); ok {
			t.Error("a line was stored after the end")
		}
		if _, ok, _ := db.MarkDeploymentRunning(ctx, d.ID); ok {
			t.Error("a finished deployment was marked running")
		}
	})
}

// A failed or cancelled production deployment leaves the previous release
// serving: the app is running again if it had one, failed (or pending) if not.
func TestDeploymentEndsAndAppStatus(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		app := deployApp(t, db)
		start := func(env string) *store.Deployment {
			d := queueDeployment(t, db, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: env, TriggeredBy: "api"})
			if _, ok, err := db.MarkDeploymentRunning(ctx, d.ID); err != nil || !ok {
				t.Fatal(ok, err)
			}
			return d
		}
		check := func(what, wantStatus, wantCommit string) {
			t.Helper()
			if st, c := appStatus(t, db, app.ID); st != wantStatus || c != wantCommit {
				t.Errorf("%s: app %s at %q, want %s at %q", what, st, c, wantStatus, wantCommit)
			}
		}
		d := start("production")
		finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentCancelled, Error: "cancelled by x"})
		check("first deployment cancelled", store.AppPending, "")
		d = start("production")
		failed, _ := finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentFailed, Error: "build failed"})
		if failed.ErrorMessage != "build failed" || failed.DurationSeconds == nil {
			t.Errorf("failed: %+v", failed)
		}
		check("first release failed", store.AppFailed, "")
		d = start("production")
		finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentSuccess, Commit: "abc1234"})
		check("success", store.AppRunning, "abc1234")
		d = start("production")
		finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentFailed, Error: "boom"})
		check("failure after a release", store.AppRunning, "abc1234")
		// The agent could not put the previous release back: what runs
		// may be neither, so the app is failed, not running.
		d = start("production")
		finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentFailed, Error: "boom; the previous release could not be restored", RestoreFailed: true})
		check("failure, not restored", store.AppFailed, "abc1234")
		d = start("production")
		finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentSuccess, Commit: "abc1234"})
		d = start("production")
		finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentCancelled, Error: "cancelled by x", RestoreFailed: true})
		check("cancel, not restored", store.AppFailed, "abc1234")
		d = start("production")
		finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentSuccess, Commit: "abc1234"})
		check("success again", store.AppRunning, "abc1234")
		// Staging never touches the app's status.
		d = start("staging")
		check("staging running", store.AppRunning, "abc1234")
		finishDeployment(t, db, d.ID, store.DeploymentEnd{Status: store.DeploymentSuccess, Commit: "def5678"})
		check("staging success", store.AppRunning, "abc1234")
		// Cancelling a queued production deployment leaves the app alone.
		q := queueDeployment(t, db, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: "production", TriggeredBy: "manual"})
		c, ended := finishDeployment(t, db, q.ID, store.DeploymentEnd{Status: store.DeploymentCancelled, Error: "cancelled by y"})
		if !ended || c.StartedAt != nil || c.DurationSeconds != nil || c.ErrorMessage != "cancelled by y" {
			t.Errorf("cancelled queued: %+v", c)
		}
		check("queued cancelled", store.AppRunning, "abc1234")
		if last, err := db.LastSuccessfulDeployment(ctx, app.ID, "staging"); err != nil || last.CommitHash != "def5678" {
			t.Errorf("last staging success: %+v %v", last, err)
		}
	})
}

func TestDeploymentListsAndQueues(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		app := deployApp(t, db)
		var ids []string
		for i := 0; i < 5; i++ {
			env := "production"
			if i%2 == 1 {
				env = "staging"
			}
			d := queueDeployment(t, db, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: env, TriggeredBy: "webhook", RequestedCommit: strings.Repeat("b", 40)})
			ids = append(ids, d.ID)
			time.Sleep(2 * time.Millisecond) // distinct ULID times
		}
		page, err := db.ListDeployments(ctx, app.ID, store.DeploymentFilter{Limit: 2})
		if err != nil || len(page) != 2 || page[0].ID != ids[4] || page[1].ID != ids[3] {
			t.Fatalf("page 1: %v %v", page, err)
		}
		page, _ = db.ListDeployments(ctx, app.ID, store.DeploymentFilter{Limit: 2, Before: page[1].ID})
		if len(page) != 2 || page[0].ID != ids[2] || page[1].ID != ids[1] {
			t.Fatalf("page 2: %v", page)
		}
		staging, _ := db.ListDeployments(ctx, app.ID, store.DeploymentFilter{Environment: "staging"})
		if len(staging) != 2 {
			t.Fatalf("staging: %d", len(staging))
		}
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.LockAppForDeployment(ctx, app.ID); err != nil {
				return err
			}
			q, ok, err := tx.QueuedWebhookDeployment(ctx, app.ID, "production")
			if err != nil || !ok || q.ID != ids[0] {
				t.Errorf("queued webhook deployment: %+v %v %v", q, ok, err)
			}
			if ok, err := tx.SetQueuedDeploymentCommit(ctx, q.ID, strings.Repeat("c", 40)); err != nil || !ok {
				t.Errorf("move queued commit: %v %v", ok, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := db.GetDeployment(ctx, ids[0]); d.RequestedCommit != strings.Repeat("c", 40) || d.CommitHash != d.RequestedCommit {
			t.Errorf("moved commit: %+v", d)
		}
		if _, ok, err := db.MarkDeploymentRunning(ctx, ids[1]); err != nil || !ok {
			t.Fatal(err)
		}
		if other, busy, err := db.OtherRunningDeployment(ctx, app.ID, ids[2]); err != nil || !busy || other != ids[1] {
			t.Errorf("other running: %s %v %v", other, busy, err)
		}
		if _, busy, _ := db.OtherRunningDeployment(ctx, app.ID, ids[1]); busy {
			t.Error("a deployment counts as another running one of itself")
		}
	})
}

// A deployment whose job ended without ending it is found for the
// reconciler; one whose job still runs is not.
func TestStrandedDeployments(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		app := deployApp(t, db)
		withJob := func() *store.Deployment {
			var d *store.Deployment
			err := db.InTx(ctx, func(tx *store.Tx) (err error) {
				if d, err = tx.InsertDeployment(ctx, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: "production", TriggeredBy: "manual"}); err != nil {
					return err
				}
				_, _, err = tx.EnqueueJob(ctx, store.NewJob{ID: d.ID, Kind: "deploy.run", ConcurrencyKey: "app:" + app.ID})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		alive := withJob()
		dead := withJob()
		j, ok, err := db.ClaimJob(ctx, "w", []string{"deploy.run"}, time.Minute)
		if err != nil || !ok || j.ID != alive.ID {
			t.Fatalf("claim: %+v %v %v", j, ok, err)
		}
		storetest.Exec(t, db, "UPDATE jobs SET status = 'failed', last_error = 'handler panicked' WHERE id = ?", dead.ID)
		orphan := queueDeployment(t, db, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: "staging", TriggeredBy: "manual"})
		storetest.Exec(t, db, "UPDATE deployments SET job_id = NULL WHERE id = ?", orphan.ID)

		list, err := db.StrandedDeployments(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]store.StrandedDeployment{}
		for _, s := range list {
			got[s.ID] = s
		}
		if len(got) != 2 || got[dead.ID].JobStatus != "failed" || got[dead.ID].JobError != "handler panicked" || got[orphan.ID].JobStatus != "" {
			t.Errorf("stranded: %+v", list)
		}
	})
}

func TestDeploymentLogIsBounded(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	ctx := context.Background()
	app := deployApp(t, db)
	d := queueDeployment(t, db, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: "production", TriggeredBy: "manual"})
	if _, _, err := db.MarkDeploymentRunning(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 4095)
	lines := make([]string, store.MaxDeploymentLog/4096+10)
	for i := range lines {
		lines[i] = line
	}
	if ok, err := db.AppendDeploymentLog(ctx, d.ID, 0, lines, len(lines)); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if ok, err := db.AppendDeploymentLog(ctx, d.ID, len(lines), []string{"after the cap"}, len(lines)+1); err != nil || !ok {
		t.Fatal(ok, err)
	}
	full, _ := db.GetDeploymentLog(ctx, d.ID)
	if len(full.Log) > store.MaxDeploymentLog+len(store.DeploymentLogTruncated)+1 || full.LogSeq != len(lines)+1 ||
		!strings.HasSuffix(full.Log, store.DeploymentLogTruncated+"\n") || strings.Contains(full.Log, "after the cap") {
		t.Errorf("log of %d bytes, seq %d, ends %q", len(full.Log), full.LogSeq, full.Log[len(full.Log)-100:])
	}
}

// MarkDeploymentRunning takes the app's row before the deployment's, as
// Deploy does (LockAppForDeployment, then SetQueuedDeploymentCommit), so the
// two wait for each other instead of deadlocking on PostgreSQL; a push that
// finds the deployment started meanwhile learns it from the boolean.
func TestMarkRunningLocksTheAppFirst(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		app := deployApp(t, db)
		d := queueDeployment(t, db, store.NewDeployment{AppID: app.ID, Branch: "main", Environment: "production", TriggeredBy: "webhook"})
		c := strings.Repeat("c", 40)
		if db.Dialect() != "postgres" {
			// SQLite serialises writers; only the result is checked.
			if _, ok, err := db.MarkDeploymentRunning(ctx, d.ID); err != nil || !ok {
				t.Fatal(ok, err)
			}
			err := db.InTx(ctx, func(tx *store.Tx) error {
				joined, err := tx.SetQueuedDeploymentCommit(ctx, d.ID, c)
				if joined {
					t.Error("joined a running deployment")
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		// A push holds the app's row; the job runner starts the deployment
		// meanwhile and must wait for it before touching the deployment.
		marked := make(chan error, 1)
		err := db.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.LockAppForDeployment(ctx, app.ID); err != nil {
				return err
			}
			go func() {
				_, ok, err := db.MarkDeploymentRunning(ctx, d.ID)
				if err == nil && !ok {
					err = errors.New("not started")
				}
				marked <- err
			}()
			// Until the runner waits for a lock.
			for {
				var n int
				if err := db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&n); err != nil {
					return err
				}
				if n > 0 {
					break
				}
				select {
				case err := <-marked:
					return fmt.Errorf("MarkDeploymentRunning did not wait for the app's row: %v", err)
				case <-time.After(10 * time.Millisecond):
				}
			}
			joined, err := tx.SetQueuedDeploymentCommit(ctx, d.ID, c)
			if err == nil && !joined {
				err = errors.New("the push could not join the queued deployment")
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := <-marked; err != nil {
			t.Fatal(err)
		}
		got, err := db.GetDeployment(ctx, d.ID)
		if err != nil || got.Status != store.DeploymentRunning || got.RequestedCommit != c {
			t.Fatalf("deployment %+v %v", got, err)
		}
	})
}
