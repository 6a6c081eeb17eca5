package deploy

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/fleet"
	"upanel/internal/jobs"
	"upanel/internal/notify"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
	"upanel/internal/wire"
)

// Canaries: secrets that must reach the agent and nowhere else.
const (
	canaryEnv   = "canary-env-5f2c9e71b3d8"
	canaryToken = "ghp_canaryTok3n0123456789abcdefXYZ"
	canaryHook  = "canary-hook-secret-77aa90"
)

// syncBuffer is the panel's log, as one string.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// deployEnv is a panel's deployment side against a scripted agent.
type deployEnv struct {
	t      *testing.T
	db     *store.DB
	svc    *Service
	fleet  *fleet.Service
	agent  *scriptAgent
	app    *store.App
	users  map[string]*auth.Principal // by role
	logBuf *syncBuffer
	log    *slog.Logger
	wake   func()
}

func newDeployEnv(t *testing.T, db *store.DB) *deployEnv {
	t.Helper()
	ctx := context.Background()
	e := &deployEnv{t: t, db: db, logBuf: &syncBuffer{}, users: map[string]*auth.Principal{}}
	e.log = slog.New(slog.NewTextHandler(e.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	base, _ := url.Parse("https://panel.example.test")
	rec := audit.New(db)
	e.fleet = fleet.New(fleet.Options{DB: db, Log: e.log, Recorder: rec, BaseURL: base})
	_, panelPin, err := e.fleet.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.agent = startScriptAgent(t, panelPin)
	srv, _, err := e.fleet.Create(ctx, nil, fleet.ServerInput{Name: "web-1", Host: "127.0.0.1", AgentPort: e.agent.port}, auth.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	e.agent.serverID = srv.ID
	_, tokenHash := auth.NewAgentToken()
	accounts := auth.New(auth.Options{DB: db, Audit: rec, BaseURL: base, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour,
		Hasher: auth.NewHasher(4), QueueMail: func(context.Context, *store.Tx, auth.Mail) error { return nil }})
	for _, role := range []auth.Role{auth.Admin, auth.Operator, auth.Viewer} {
		u, err := accounts.CreateUser(ctx, string(role)+"@example.test", "violet stapler orbit 42", role)
		if err != nil {
			t.Fatal(err)
		}
		e.users[string(role)] = &auth.Principal{User: u, Role: role}
	}
	err = db.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetAgentCredentials(ctx, srv.ID, e.agent.pin, tokenHash); err != nil {
			return err
		}
		cred, err := tx.CreateGitCredential(ctx, store.NewGitCredential{Name: "deploy token", Type: store.GitToken,
			Secret: store.GitSecret{Username: "deployer", Secret: canaryToken}, Host: "git.example.test"})
		if err != nil {
			return err
		}
		e.app, err = tx.CreateApp(ctx, store.NewApp{ServerID: srv.ID, Name: "Shop", Slug: "shop",
			GitRepository: "https://git.example.test/acme/shop.git", GitBranch: "main", GitCredentialsID: cred.ID,
			DeployPath: "/srv/upanel/apps/shop", DockerComposeFile: "docker-compose.yml", KeepReleases: 3,
			DeployHookID: strings.Repeat("a1", 16), DeployHookSecret: canaryHook,
			EnvBase:       map[string]string{"DATABASE_PASSWORD": canaryEnv, "PORT": "3000", "DEBUG": "1"},
			EnvProduction: map[string]string{"APP_ENV": "production"},
			EnvStaging:    map[string]string{"APP_ENV": "staging", "PORT": "3001"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.wake = func() {}
	e.svc = New(Options{DB: db, Log: e.log, Recorder: rec, Fleet: e.fleet, BaseURL: base,
		Notify: notify.New(notify.Options{DB: db, Log: e.log, BaseURL: base}), Wake: func() { e.wake() }})
	e.svc.timing = runTiming{pollWait: 300 * time.Millisecond, retryFirst: 10 * time.Millisecond, retryMax: 100 * time.Millisecond, grace: time.Minute}
	t.Cleanup(e.checkNoCanary)
	return e
}

// startRunner runs jobs as the panel does, until the test ends or stop.
func (e *deployEnv) startRunner(owner string) (stop func()) {
	r := jobs.NewRunner(e.db, jobs.Options{Logger: e.log, Owner: owner, Workers: 2, Lease: 3 * time.Second,
		Poll: 20 * time.Millisecond, ShutdownGrace: 5 * time.Second})
	r.Handle(RunKind, e.svc.RunHandler())
	e.wake = r.Wake
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

func (e *deployEnv) deploy(role string, in DeployInput) string {
	e.t.Helper()
	if in.AppID == "" {
		in.AppID = e.app.ID
	}
	id, err := e.svc.Deploy(context.Background(), e.users[role], in, auth.Meta{IP: "192.0.2.7"})
	if err != nil {
		e.t.Fatalf("deploy: %v", err)
	}
	return id
}

// waitStatus waits until a deployment reaches status.
func (e *deployEnv) waitStatus(id, status string) *store.Deployment {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := e.db.GetDeploymentLog(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if d.Status == status {
			return d
		}
		if time.Now().After(deadline) || (d.Terminal() && store.DeploymentTerminal(status)) {
			e.t.Fatalf("deployment %s is %s (%s), want %s", id, d.Status, d.ErrorMessage, status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSeq waits until the deployment stored line seq.
func (e *deployEnv) waitSeq(id string, seq int) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := e.db.GetDeployment(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if d.LogSeq >= seq {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("deployment %s stored %d lines, want %d", id, d.LogSeq, seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkNoCanary: no secret in any stored log, error, notification,
// activity entry, or the panel's own log.
func (e *deployEnv) checkNoCanary() {
	ctx := context.Background()
	var texts []string
	rows, err := e.db.ListDeployments(ctx, e.app.ID, store.DeploymentFilter{Limit: 500})
	if err != nil {
		e.t.Error(err)
		return
	}
	for _, d := range rows {
		full, err := e.db.GetDeploymentLog(ctx, d.ID)
		if err != nil {
			e.t.Error(err)
			return
		}
		texts = append(texts, full.Log, full.ErrorMessage, full.CommitMessage)
	}
	for _, p := range e.users {
		ns, _ := e.db.ListNotifications(ctx, p.User.ID, store.NotificationFilter{})
		for _, n := range ns {
			texts = append(texts, n.Title, n.Message)
		}
	}
	acts, _ := e.db.ListActivity(ctx, store.ActivityFilter{Limit: 500})
	for _, a := range acts {
		texts = append(texts, a.Description)
		for _, c := range a.Changes {
			texts = append(texts, strings.Join([]string{anyText(c.Old), anyText(c.New)}, " "))
		}
	}
	texts = append(texts, e.logBuf.String())
	for _, c := range []string{canaryEnv, canaryToken, canaryHook} {
		for _, x := range texts {
			if strings.Contains(x, c) {
				e.t.Errorf("a secret leaked: %q in %.300q", c, x)
				return
			}
		}
	}
}

func anyText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

func TestDeploySucceedsWithMaskedLog(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.startRunner("panel-1")
		id := e.deploy("operator", DeployInput{})
		req := e.agent.posted(id)

		// The agent gets everything it needs, secrets included: they travel
		// only inside the mutually authenticated link.
		if req.Dir != "/srv/upanel/apps/shop/production" || req.Project != "upanel-shop-production" || req.Branch != "main" ||
			req.Commit != "" || req.ComposeFile != "docker-compose.yml" || req.KeepReleases != 3 || req.TimeoutSeconds != 1800 {
			t.Errorf("request: %+v", req)
		}
		if req.Env["DATABASE_PASSWORD"] != canaryEnv || req.Env["APP_ENV"] != "production" || req.Env["PORT"] != "3000" || len(req.Env) != 4 {
			t.Errorf("env: %v", req.Env)
		}
		if req.Git.URL != "https://git.example.test/acme/shop.git" || req.Git.CredentialType != store.GitToken || req.Git.Secret != canaryToken || req.Git.Username != "deployer" {
			t.Errorf("git: %+v", req.Git)
		}
		d := e.waitStatus(id, store.DeploymentRunning)
		if d.StartedAt == nil || d.UserID != e.users["operator"].User.ID || d.TriggeredBy != TriggerManual {
			t.Errorf("running: %+v", d)
		}
		if a, _ := db.GetApp(ctx, e.app.ID); a.Status != store.AppDeploying {
			t.Errorf("app while deploying: %s", a.Status)
		}

		// The agent masks, but the panel masks again: the lines below carry
		// the secrets raw, colours and a progress line too.
		e.agent.say(id, "Cloning https://deployer:"+canaryToken+"@git.example.test/acme/shop.git",
			"\x1b[32mStep 1/3\x1b[0m : FROM scratch",
			"downloading 10%\rdownloading 100%",
			"env DATABASE_PASSWORD="+canaryEnv+" PORT=3000 url-escaped="+url.QueryEscape(canaryToken))
		e.waitSeq(id, 4)
		e.agent.say(id, "Creating upanel-shop-production_web_1 ... done")
		commit := strings.Repeat("1f", 20)
		e.agent.end(id, wire.DeploySuccess, "", commit, "Ship it ("+canaryEnv+")")
		d = e.waitStatus(id, store.DeploymentSuccess)

		want := []string{
			"Cloning https://deployer:••••@git.example.test/acme/shop.git",
			"Step 1/3 : FROM scratch",
			"downloading 100%",
			"env DATABASE_PASSWORD=•••• PORT=•••• url-escaped=••••",
			"Creating upanel-shop-production_web_1 ... done",
		}
		if got := splitLog(d.Log); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("stored log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if d.LogSeq != 5 || d.CommitHash != commit || d.CommitMessage != "Ship it (••••)" || d.ErrorMessage != "" ||
			d.FinishedAt == nil || d.DurationSeconds == nil {
			t.Errorf("finished: %+v", d)
		}
		if a, _ := db.GetApp(ctx, e.app.ID); a.Status != store.AppRunning || a.CurrentCommit != commit {
			t.Errorf("app after success: %s %s", a.Status, a.CurrentCommit)
		}
		j, err := db.GetJob(ctx, id)
		if err != nil || j.Status != store.JobSucceeded || j.ConcurrencyKey != "app:"+e.app.ID {
			t.Errorf("job: %+v %v", j, err)
		}
		acts, _ := db.ListActivity(ctx, store.ActivityFilter{SubjectType: "App", SubjectID: e.app.ID})
		if len(acts) == 0 || acts[0].Action != "deploy" || acts[0].UserID != e.users["operator"].User.ID || acts[0].IPAddress != "192.0.2.7" {
			t.Errorf("activity: %+v", acts)
		}
		// A success raises nothing.
		if n, _ := db.UnreadNotifications(ctx, e.users["admin"].User.ID); n != 0 {
			t.Errorf("%d notifications after a success", n)
		}
	})
}

// Deployments of an app run one at a time, in the order asked, both
// environments included; another app's do not wait.
func TestOneDeploymentPerAppAtATime(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.startRunner("panel-1")
		first := e.deploy("operator", DeployInput{})
		second := e.deploy("admin", DeployInput{Environment: Staging})
		req := e.agent.posted(first)
		if req.Project != "upanel-shop-production" {
			t.Fatalf("first request: %+v", req)
		}
		e.agent.say(first, "building")
		e.waitSeq(first, 1)
		if d, _ := db.GetDeployment(ctx, second); d.Status != store.DeploymentQueued {
			t.Fatalf("the second deployment is %s while the first runs", d.Status)
		}
		if ids := e.agent.postedIDs(); len(ids) != 1 {
			t.Fatalf("the agent got %v while the first runs", ids)
		}
		e.agent.end(first, wire.DeploySuccess, "", "abcdef1", "")
		a := e.waitStatus(first, store.DeploymentSuccess)
		req = e.agent.posted(second)
		if req.Project != "upanel-shop-staging" || req.Env["APP_ENV"] != "staging" || req.Env["PORT"] != "3001" || req.Dir != "/srv/upanel/apps/shop/staging" {
			t.Errorf("staging request: %+v", req)
		}
		e.agent.end(second, wire.DeploySuccess, "", "abcdef2", "")
		b := e.waitStatus(second, store.DeploymentSuccess)
		if b.StartedAt.Before(*a.FinishedAt) {
			t.Errorf("the second started at %s, before the first ended at %s", b.StartedAt, a.FinishedAt)
		}
		if ids := e.agent.postedIDs(); strings.Join(ids, ",") != first+","+second {
			t.Errorf("order on the agent: %v", ids)
		}
		// Staging does not move the app's production state.
		if app, _ := db.GetApp(ctx, e.app.ID); app.CurrentCommit != "abcdef1" || app.Status != store.AppRunning {
			t.Errorf("app: %s %s", app.Status, app.CurrentCommit)
		}
	})
}

// A burst of pushes collapses into one queued deployment, which deploys the
// branch head (never a commit a delivery names: deliveries come out of order
// and can be replayed); a manual request does not join it, and neither does
// a push once that deployment started.
func TestWebhookBurstCollapses(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		c1, c2, c3 := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)
		push := func() string {
			id, err := e.svc.Deploy(ctx, nil, DeployInput{AppID: e.app.ID, Trigger: TriggerWebhook}, auth.Meta{IP: "192.0.2.9"})
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		a := push()
		manual := e.deploy("operator", DeployInput{})
		if b := push(); b != a {
			t.Errorf("the second push queued %s, not joining %s", b, a)
		}
		if b := push(); b != a {
			t.Errorf("the third push queued %s", b)
		}
		if manual == a {
			t.Error("a manual deployment joined the pushes")
		}
		staging, err := e.svc.Deploy(ctx, nil, DeployInput{AppID: e.app.ID, Environment: Staging, Trigger: TriggerWebhook}, auth.Meta{})
		if err != nil || staging == a {
			t.Errorf("a staging push joined production: %v", err)
		}
		d, _ := db.GetDeployment(ctx, a)
		if d.RequestedCommit != "" || d.UserID != "" || d.TriggeredBy != TriggerWebhook {
			t.Errorf("collapsed deployment: %+v", d)
		}
		all, _ := db.ListDeployments(ctx, e.app.ID, store.DeploymentFilter{})
		if len(all) != 3 {
			t.Errorf("%d deployments queued, want 3", len(all))
		}
		var jobs int
		if err := db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM jobs WHERE kind = ?", RunKind).Scan(&jobs); err != nil || jobs != 3 {
			t.Errorf("%d jobs, want 3 (%v)", jobs, err)
		}

		// Once it runs, a push queues a new one; both deploy the head.
		e.startRunner("panel-1")
		req := e.agent.posted(a)
		if req.Commit != "" {
			t.Errorf("the collapsed deployment deploys %q, not the branch head", req.Commit)
		}
		e.waitStatus(a, store.DeploymentRunning)
		next := push()
		if next == a {
			t.Error("a push joined a running deployment")
		}
		e.agent.end(a, wire.DeploySuccess, "", c1, "")
		e.agent.end(e.agent.posted(manual).ID, wire.DeploySuccess, "", c2, "")
		e.agent.end(e.agent.posted(staging).ID, wire.DeploySuccess, "", c3, "")
		if req := e.agent.posted(next); req.Commit != "" {
			t.Errorf("the next push deploys %q", req.Commit)
		}
		e.agent.end(next, wire.DeploySuccess, "", c2, "")
		e.waitStatus(next, store.DeploymentSuccess)
	})
}

// A failure after which the agent could not put the previous release back
// leaves a production app failed, not running its previous release; one
// that was restored leaves it running.
func TestFailureNotRestoredFailsTheApp(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.startRunner("panel-1")
		c1 := strings.Repeat("a", 40)
		first := e.deploy("operator", DeployInput{})
		e.agent.posted(first)
		e.agent.end(first, wire.DeploySuccess, "", c1, "one")
		e.waitStatus(first, store.DeploymentSuccess)

		restored := e.deploy("operator", DeployInput{})
		e.agent.posted(restored)
		e.agent.end(restored, wire.DeployFailed, "web exited with code 1", c1, "")
		e.waitStatus(restored, store.DeploymentFailed)
		if a, _ := db.GetApp(ctx, e.app.ID); a.Status != store.AppRunning || a.CurrentCommit != c1 {
			t.Errorf("after a restored failure: %s %s", a.Status, a.CurrentCommit)
		}

		lost := e.deploy("operator", DeployInput{})
		e.agent.posted(lost)
		e.agent.mu.Lock()
		e.agent.deps[lost].state.RestoreFailed = true
		e.agent.mu.Unlock()
		e.agent.end(lost, wire.DeployFailed, "web exited with code 1; the previous release could not be restored", c1, "")
		d := e.waitStatus(lost, store.DeploymentFailed)
		if !strings.Contains(d.ErrorMessage, "could not be restored") {
			t.Errorf("error: %q", d.ErrorMessage)
		}
		if a, _ := db.GetApp(ctx, e.app.ID); a.Status != store.AppFailed {
			t.Errorf("after a failure that was not restored: %s", a.Status)
		}
	})
}

// Commit ids are whole: the agent fetches the exact commit.
func TestDeployNeedsAWholeCommitID(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newDeployEnv(t, db)
		for _, c := range []string{"abc1234", strings.Repeat("a", 64), strings.Repeat("g", 40)} {
			_, err := e.svc.Deploy(context.Background(), nil, DeployInput{AppID: e.app.ID, Commit: c}, auth.Meta{})
			if !apperr.Is(err, apperr.Invalid) || !strings.Contains(err.Error(), "40 hexadecimal digits") {
				t.Errorf("commit %q: %v", c, err)
			}
		}
		if _, err := e.svc.Deploy(context.Background(), nil, DeployInput{AppID: e.app.ID, Commit: strings.Repeat("AB", 20)}, auth.Meta{}); err != nil {
			t.Errorf("a whole id in capitals: %v", err)
		}
	})
}

func TestCancelQueuedDeployment(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		id := e.deploy("operator", DeployInput{})
		d, err := e.svc.Cancel(ctx, e.users["admin"], id, auth.Meta{IP: "192.0.2.8"})
		if err != nil || d.Status != store.DeploymentCancelled || d.ErrorMessage != "cancelled by admin@example.test" || d.StartedAt != nil {
			t.Fatalf("cancel: %+v %v", d, err)
		}
		if j, _ := db.GetJob(ctx, id); j.Status != store.JobCancelled {
			t.Errorf("job: %s", j.Status)
		}
		if _, err := e.svc.Cancel(ctx, e.users["admin"], id, auth.Meta{}); !apperr.Is(err, apperr.Conflict) {
			t.Errorf("cancel again: %v", err)
		}
		// The job, had it been claimed already, finds nothing to do.
		if err := e.svc.RunHandler()(ctx, &jobs.Job{Job: &store.Job{ID: id, Payload: []byte(`{"deployment_id":"` + id + `"}`), Attempts: 1, MaxAttempts: 5}}); err != nil {
			t.Errorf("handler on a cancelled deployment: %v", err)
		}
		if posts, _ := e.agent.counts(); posts != 0 {
			t.Errorf("the agent got %d deploy requests", posts)
		}
		if app, _ := db.GetApp(ctx, e.app.ID); app.Status != store.AppPending {
			t.Errorf("app: %s", app.Status)
		}
	})
}

// Cancelling a running deployment stops it on the agent; the previous
// release keeps serving, so the app stays running at its commit.
func TestCancelRunningDeployment(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.startRunner("panel-1")
		first := e.deploy("operator", DeployInput{})
		e.agent.posted(first)
		e.agent.end(first, wire.DeploySuccess, "", "0123abc", "")
		e.waitStatus(first, store.DeploymentSuccess)

		id := e.deploy("operator", DeployInput{})
		e.agent.posted(id)
		e.agent.say(id, "building a long time")
		e.waitSeq(id, 1)
		d, err := e.svc.Cancel(ctx, e.users["operator"], id, auth.Meta{})
		if err != nil || d.Status != store.DeploymentRunning || !d.CancelRequested() {
			t.Fatalf("cancel: %+v %v", d, err)
		}
		d = e.waitStatus(id, store.DeploymentCancelled)
		if d.ErrorMessage != "cancelled by operator@example.test" || d.FinishedAt == nil || d.DurationSeconds == nil {
			t.Errorf("cancelled: %+v", d)
		}
		if got := splitLog(d.Log); len(got) != 2 || got[1] != "step stopped: cancelled" {
			t.Errorf("log: %q", got)
		}
		e.agent.waitFor("the cancel", func() bool { return e.agent.hasCancel(id) })
		if app, _ := db.GetApp(ctx, e.app.ID); app.Status != store.AppRunning || app.CurrentCommit != "0123abc" {
			t.Errorf("app after the cancel: %s %s", app.Status, app.CurrentCommit)
		}
		if n, _ := db.UnreadNotifications(ctx, e.users["admin"].User.ID); n != 0 {
			t.Errorf("a cancel raised %d notifications", n)
		}
	})
}

func TestRollback(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.startRunner("panel-1")
		good := e.deploy("operator", DeployInput{})
		e.agent.posted(good)
		old := strings.Repeat("9", 40)
		e.agent.end(good, wire.DeploySuccess, "", old, "the good one")
		e.waitStatus(good, store.DeploymentSuccess)
		bad := e.deploy("operator", DeployInput{})
		e.agent.posted(bad)
		e.agent.end(bad, wire.DeployFailed, "health check failed", strings.Repeat("8", 40), "")
		e.waitStatus(bad, store.DeploymentFailed)

		if _, err := e.svc.Rollback(ctx, e.users["operator"], bad, auth.Meta{}); !apperr.Is(err, apperr.Conflict) {
			t.Errorf("rollback to a failed deployment: %v", err)
		}
		id, err := e.svc.Rollback(ctx, e.users["admin"], good, auth.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := db.GetDeployment(ctx, id)
		if !d.IsRollback || d.RollbackFromID != good || d.RequestedCommit != old || d.TriggeredBy != TriggerRollback || d.Environment != Production {
			t.Errorf("rollback row: %+v", d)
		}
		if req := e.agent.posted(id); req.Commit != old {
			t.Errorf("the agent was asked for %q", req.Commit)
		}
		e.agent.end(id, wire.DeploySuccess, "", old, "the good one")
		e.waitStatus(id, store.DeploymentSuccess)
		if app, _ := db.GetApp(ctx, e.app.ID); app.CurrentCommit != old || app.Status != store.AppRunning {
			t.Errorf("app after the rollback: %s %s", app.Status, app.CurrentCommit)
		}

		// Refusals: another app's deployment, a mismatched commit.
		other := queueOtherApp(t, e)
		if _, err := e.svc.Deploy(ctx, e.users["admin"], DeployInput{AppID: other, RollbackFrom: good}, auth.Meta{}); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("rollback across apps: %v", err)
		}
		if _, err := e.svc.Deploy(ctx, e.users["admin"], DeployInput{AppID: e.app.ID, RollbackFrom: good, Commit: "abcdef0"}, auth.Meta{}); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("rollback with another commit: %v", err)
		}
		acts, _ := db.ListActivity(ctx, store.ActivityFilter{SubjectType: "App", SubjectID: e.app.ID})
		if len(acts) == 0 || acts[0].Action != "rollback" || acts[0].UserID != e.users["admin"].User.ID {
			t.Errorf("activity: %+v", acts[0])
		}
	})
}

// queueOtherApp makes a second app on the same server.
func queueOtherApp(t *testing.T, e *deployEnv) string {
	t.Helper()
	ctx := context.Background()
	var id string
	err := e.db.InTx(ctx, func(tx *store.Tx) error {
		a, err := tx.CreateApp(ctx, store.NewApp{ServerID: e.app.ServerID, Name: "Blog", Slug: "blog", GitRepository: "https://git.example.test/acme/blog.git",
			GitBranch: "main", DeployPath: "/srv/upanel/apps/blog", DockerComposeFile: "docker-compose.yml", KeepReleases: 5,
			DeployHookID: strings.Repeat("b2", 16), DeployHookSecret: "another hook secret"})
		if a != nil {
			id = a.ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDeployRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		for _, tc := range []struct {
			in   DeployInput
			code apperr.Code
		}{
			{DeployInput{AppID: e.app.ID, Environment: "qa"}, apperr.Invalid},
			{DeployInput{AppID: e.app.ID, Commit: "main"}, apperr.Invalid},
			{DeployInput{AppID: e.app.ID, Commit: "--upload-pack=x"}, apperr.Invalid},
			{DeployInput{AppID: e.app.ID, Trigger: "cron"}, apperr.Invalid},
			{DeployInput{AppID: e.app.ID, Trigger: TriggerRollback}, apperr.Invalid},
			{DeployInput{AppID: store.NewID()}, apperr.NotFound},
			{DeployInput{AppID: e.app.ID, RollbackFrom: store.NewID()}, apperr.NotFound},
		} {
			if _, err := e.svc.Deploy(ctx, e.users["operator"], tc.in, auth.Meta{}); apperr.CodeOf(err) != tc.code {
				t.Errorf("%+v: %v, want %s", tc.in, err, tc.code)
			}
		}
		// A server without an installed agent cannot deploy.
		storetest.Exec(t, db, "UPDATE servers SET agent_cert_sha256 = NULL WHERE id = ?", e.app.ServerID)
		if _, err := e.svc.Deploy(ctx, e.users["operator"], DeployInput{AppID: e.app.ID}, auth.Meta{}); !apperr.Is(err, apperr.Conflict) {
			t.Errorf("deploy without an agent: %v", err)
		}
	})
}

// A panel that dies mid-deploy leaves its job running; the next start
// rescues the job, which resumes from the last stored line: every line is
// stored once, in order, and the deployment ends as the agent says.
func TestCrashRecoveryResumesFromLogSeq(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		id := e.deploy("operator", DeployInput{})

		// The first panel claims the job and runs the handler.
		j, ok, err := db.ClaimJob(ctx, "crashed-panel", []string{RunKind}, time.Hour)
		if err != nil || !ok || j.ID != id {
			t.Fatalf("claim: %v %v", ok, err)
		}
		hctx, crash := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.svc.RunHandler()(hctx, &jobs.Job{Job: j}) }()
		e.agent.posted(id)
		e.agent.say(id, "line 1", "line 2", "line 3")
		e.waitSeq(id, 3)
		crash() // the process dies: nothing more is recorded
		if err := <-done; err == nil {
			t.Fatal("the interrupted handler reported success")
		}
		if d, _ := db.GetDeployment(ctx, id); d.Status != store.DeploymentRunning || d.LogSeq != 3 {
			t.Fatalf("after the crash: %+v", d)
		}
		// The agent carries on meanwhile.
		e.agent.say(id, "line 4", "line 5")
		e.agent.end(id, wire.DeploySuccess, "", "c0ffee1", "")

		// The next panel start finds the job orphaned and runs it again.
		if n, err := db.RescueOrphanedJobs(ctx); err != nil || n != 1 {
			t.Fatalf("rescue: %d %v", n, err)
		}
		e.startRunner("panel-2")
		d := e.waitStatus(id, store.DeploymentSuccess)
		if got := strings.Join(splitLog(d.Log), ","); got != "line 1,line 2,line 3,line 4,line 5" || d.LogSeq != 5 {
			t.Errorf("log after the resume: %q (seq %d)", got, d.LogSeq)
		}
		if posts, _ := e.agent.counts(); posts != 1 {
			t.Errorf("the agent was asked to deploy %d times", posts)
		}
		if j, _ := db.GetJob(ctx, id); j.Status != store.JobSucceeded || j.Attempts != 2 {
			t.Errorf("job: %s after %d attempts", j.Status, j.Attempts)
		}
	})
}

// A panel shutting down mid-deploy releases the job; the next one resumes.
func TestPanelRestartResumes(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	e := newDeployEnv(t, db)
	stop := e.startRunner("panel-1")
	id := e.deploy("operator", DeployInput{})
	e.agent.posted(id)
	e.agent.say(id, "a", "b")
	e.waitSeq(id, 2)
	stop()
	e.agent.say(id, "c")
	e.agent.end(id, wire.DeployFailed, "compose up failed", "", "")
	e.startRunner("panel-2")
	d := e.waitStatus(id, store.DeploymentFailed)
	if got := strings.Join(splitLog(d.Log), ","); got != "a,b,c" || d.ErrorMessage != "compose up failed" {
		t.Errorf("after the restart: %q, %q", got, d.ErrorMessage)
	}
}

// An agent that restarted mid-deploy reports the deployment failed; the
// panel records that, and admins and operators are told.
func TestAgentRestartFailsTheDeployment(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.startRunner("panel-1")
		id := e.deploy("operator", DeployInput{})
		e.agent.posted(id)
		e.agent.say(id, "building")
		e.waitSeq(id, 1)
		e.agent.setDown(true) // restarting
		e.agent.end(id, wire.DeployFailed, "the agent restarted during the deployment (token "+canaryToken+")", "", "")
		e.agent.setDown(false)
		d := e.waitStatus(id, store.DeploymentFailed)
		if d.ErrorMessage != "the agent restarted during the deployment (token ••••)" {
			t.Errorf("error: %q", d.ErrorMessage)
		}
		if app, _ := db.GetApp(ctx, e.app.ID); app.Status != store.AppFailed {
			t.Errorf("app after a failed first deployment: %s", app.Status)
		}
		for role, want := range map[string]int{"admin": 1, "operator": 1, "viewer": 0} {
			ns, err := db.ListNotifications(ctx, e.users[role].User.ID, store.NotificationFilter{Type: notify.DeploymentFailed})
			if err != nil || len(ns) != want {
				t.Errorf("%s: %d deployment_failed notifications (%v), want %d", role, len(ns), err, want)
				continue
			}
			if want == 1 {
				n := ns[0]
				if n.NotifiableType != "App" || n.NotifiableID != e.app.ID || !strings.Contains(n.Title, "Shop") ||
					!strings.Contains(n.Message, "the agent restarted") || !strings.Contains(n.Message, "/deployments/"+id) {
					t.Errorf("notification: %+v", n)
				}
			}
		}
	})
}

// An agent reinstalled mid-deploy no longer knows the deployment.
func TestAgentLostTheDeployment(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	e := newDeployEnv(t, db)
	e.startRunner("panel-1")
	id := e.deploy("operator", DeployInput{})
	e.agent.posted(id)
	e.agent.say(id, "step 1")
	e.waitSeq(id, 1)
	e.agent.forget()
	d := e.waitStatus(id, store.DeploymentFailed)
	if !strings.Contains(d.ErrorMessage, "the agent lost the deployment") {
		t.Errorf("error: %q", d.ErrorMessage)
	}
}

// An agent that stays unreachable fails the deployment once its timeout and
// grace have passed, with the reason; it never stays running.
func TestAgentUnreachablePastTheDeadline(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.svc.DeployTimeout, e.svc.timing.grace = time.Second, 0
		e.agent.setDown(true)
		e.startRunner("panel-1")
		id := e.deploy("operator", DeployInput{})
		d := e.waitStatus(id, store.DeploymentFailed)
		if !strings.Contains(d.ErrorMessage, "no answer from the agent of web-1") || !strings.Contains(d.ErrorMessage, "may not have run") {
			t.Errorf("error: %q", d.ErrorMessage)
		}
		if j, _ := db.GetJob(ctx, id); j.Status != store.JobSucceeded {
			t.Errorf("job: %s", j.Status)
		}
		if n, _ := db.UnreadNotifications(ctx, e.users["operator"].User.ID); n != 1 {
			t.Errorf("%d notifications", n)
		}
	})
}

// An agent that took the deployment and then went silent past the deadline
// may have left the project half changed: the app that ran a release is
// failed, not reported running it. One that never answered leaves it running.
func TestSilentAgentFailsTheApp(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.svc.DeployTimeout, e.svc.timing.grace = time.Second, 0
		released := func() {
			t.Helper()
			if err := db.ExecRaw(ctx, "UPDATE apps SET status = 'running', current_commit = ? WHERE id = ?", strings.Repeat("a", 40), e.app.ID); err != nil {
				t.Fatal(err)
			}
		}
		status := func() string {
			t.Helper()
			a, err := db.GetApp(ctx, e.app.ID)
			if err != nil {
				t.Fatal(err)
			}
			return a.Status
		}
		released()
		e.startRunner("panel-1")
		id := e.deploy("operator", DeployInput{})
		e.agent.posted(id)
		e.agent.setDown(true)
		if d := e.waitStatus(id, store.DeploymentFailed); !strings.Contains(d.ErrorMessage, "no answer from the agent") {
			t.Errorf("error: %q", d.ErrorMessage)
		}
		if s := status(); s != store.AppFailed {
			t.Errorf("app after a silent agent: %s, want failed", s)
		}

		released()
		id = e.deploy("operator", DeployInput{})
		e.waitStatus(id, store.DeploymentFailed)
		if s := status(); s != store.AppRunning {
			t.Errorf("app after an agent that never answered: %s, want running", s)
		}
	})
}

func TestOldAgentIsRefused(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	e := newDeployEnv(t, db)
	e.agent.setProtocol(1)
	e.startRunner("panel-1")
	id := e.deploy("operator", DeployInput{})
	d := e.waitStatus(id, store.DeploymentFailed)
	if !strings.Contains(d.ErrorMessage, "upgrade the agent") {
		t.Errorf("error: %q", d.ErrorMessage)
	}
}

// A deployment whose job ended without ending it (its last attempt lost to a
// crash) is failed by the reconciler, which tells the agent to stop.
func TestReconcileEndsStrandedDeployments(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		id := e.deploy("operator", DeployInput{})
		if _, _, err := db.MarkDeploymentRunning(ctx, id); err != nil {
			t.Fatal(err)
		}
		if n, err := e.svc.Reconcile(ctx); err != nil || n != 0 {
			t.Fatalf("reconcile with a live job: %d %v", n, err)
		}
		storetest.Exec(t, db, "UPDATE jobs SET status = 'failed', last_error = 'lease expired' WHERE id = ?", id)
		if n, err := e.svc.Reconcile(ctx); err != nil || n != 1 {
			t.Fatalf("reconcile: %d %v", n, err)
		}
		d, _ := db.GetDeployment(ctx, id)
		if d.Status != store.DeploymentFailed || !strings.Contains(d.ErrorMessage, "lost track") {
			t.Errorf("reconciled: %+v", d)
		}
		if _, cancels := e.agent.counts(); cancels != 1 {
			t.Errorf("the agent was asked to cancel %d times", cancels)
		}
		if n, _ := db.UnreadNotifications(ctx, e.users["admin"].User.ID); n != 1 {
			t.Errorf("%d notifications", n)
		}
		if n, _ := e.svc.Reconcile(ctx); n != 0 {
			t.Errorf("reconciled again: %d", n)
		}
	})
}

// Live viewers get lines as they are stored: at once in the process that
// stores them, and by polling the database in another process.
func TestFollowLog(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.startRunner("panel-1")
		id := e.deploy("operator", DeployInput{})
		e.agent.posted(id)
		e.agent.say(id, "one", "two")
		e.waitSeq(id, 2)

		f, lines, d, err := e.svc.FollowLog(ctx, id, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if len(lines) != 1 || lines[0] != (LogLine{Seq: 2, Text: "two"}) || d.Status != store.DeploymentRunning {
			t.Fatalf("initial: %+v %s", lines, d.Status)
		}
		e.agent.say(id, "three ✓")
		select {
		case <-f.Wake():
		case <-time.After(20 * time.Second):
			t.Fatal("no wake-up for a stored line")
		}
		got, _, err := f.Next(ctx)
		if err != nil || len(got) != 1 || got[0] != (LogLine{Seq: 3, Text: "three ✓"}) {
			t.Fatalf("next: %+v %v", got, err)
		}
		e.agent.say(id, "four")
		e.agent.end(id, wire.DeploySuccess, "", "aaaaaaa", "")
		e.waitStatus(id, store.DeploymentSuccess)
		got, d, err = f.Next(ctx)
		if err != nil || len(got) != 1 || got[0] != (LogLine{Seq: 4, Text: "four"}) || d.Status != store.DeploymentSuccess {
			t.Fatalf("last: %+v %v %v", got, d, err)
		}
	})
}
