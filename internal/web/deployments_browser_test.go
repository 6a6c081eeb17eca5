package web

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/browsertest"
	"upanel/internal/deploy"
	"upanel/internal/fleet"
	"upanel/internal/pin"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// TestDeploymentPageInBrowser opens a running deployment's page in chromium,
// stores log lines as the deploy job does, and sees them appear in the page
// without a reload (as text: markup in a line stays text), then sees the
// status change when the deployment ends, and the cancel button go.
// Screenshots are named deployment-NN-step.png; no page may break the
// Content Security Policy.
func TestDeploymentPageInBrowser(t *testing.T) {
	chromium := browsertest.Chromium(t)
	db := storetest.Open(t, "sqlite")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	ts := httptest.NewUnstartedServer(nil)
	base, _ := url.Parse("http://" + ts.Listener.Addr().String())
	rec := audit.New(db)
	accounts := auth.New(auth.Options{DB: db, Audit: rec, BaseURL: base, IdleTimeout: time.Hour, AbsoluteTimeout: 24 * time.Hour,
		Hasher: auth.NewHasher(4), QueueMail: func(context.Context, *store.Tx, auth.Mail) error { return nil }})
	servers := fleet.New(fleet.Options{DB: db, Recorder: rec, BaseURL: base})
	apps := deploy.New(deploy.Options{DB: db, Recorder: rec, Fleet: servers, BaseURL: base})
	srv, err := newServer(Deps{DB: db, Log: slog.New(slog.DiscardHandler), Auth: accounts, Audit: rec, Fleet: servers, Deploy: apps, BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv.handler()
	ts.Start()
	t.Cleanup(ts.Close)

	// A server whose agent "is installed" where nothing listens: the
	// deployment is queued and moved on by the test.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var server *store.Server
	err = db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if server, err = tx.CreateServer(ctx, store.NewServer{Name: "web-1", Host: "127.0.0.1", Username: "upanel", Port: 22, AgentPort: port,
			SSHPrivateKey: []byte("key"), SSHPublicKey: "ssh-ed25519 AAAA"}); err != nil {
			return err
		}
		_, hash := auth.NewAgentToken()
		return tx.SetAgentCredentials(ctx, server.ID, pin.Fingerprint([]byte("agent")), hash)
	})
	if err != nil {
		t.Fatal(err)
	}
	app, _, err := apps.CreateApp(ctx, nil, deploy.AppInput{ServerID: server.ID, Name: "Shop", GitRepository: "https://git.example.test/org/shop.git"}, auth.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.CreateUser(ctx, "operator@example.test", testPassword, auth.Operator); err != nil {
		t.Fatal(err)
	}

	s := browsertest.NewSession(t, chromium, base.String(), "deployment-")
	b := s.Open(ctx, "operator")
	b.Navigate("/login")
	b.Login("operator@example.test", testPassword)
	b.Navigate("/apps/" + app.ID + "/deployments")
	b.ExpectText("#deployments", "No deployments yet")
	b.Fill("#deploy-environment", "staging")
	b.Shot("deploy-form")
	b.Submit(`form[action="/apps/` + app.ID + `/deployments"] button`)
	b.ExpectText(".flash", "Deployment queued")
	b.ExpectText("#deploy-status", "queued")
	id := strings.TrimPrefix(b.Location().Path, "/deployments/")
	if len(id) != 26 {
		b.Fatalf("at %s", b.Location())
	}
	b.ExpectVisible("#deploy-cancel")
	b.Shot("queued")

	// The job starts it and stores lines: they appear without a reload.
	startDeployment(t, db, id)
	b.WaitJS("the running status", `document.getElementById("deploy-status").textContent === "running"`)
	appendLog(t, db, id, "Fetching https://git.example.test/org/shop.git", "Building web")
	b.WaitJS("two lines", `document.querySelectorAll("#deploy-log .line").length === 2`)
	appendLog(t, db, id, `<img src=x onerror="document.title='pwned'"> step 3`)
	b.WaitJS("three lines", `document.querySelectorAll("#deploy-log .line").length === 3`)
	b.ExpectText("#deploy-log", `<img src=x onerror="document.title='pwned'"> step 3`)
	if n := b.Count("#deploy-log img"); n != 0 {
		b.Fatalf("a log line became markup")
	}
	b.ExpectText("#deploy-log", "Building web")
	b.Shot("running-with-log")

	// It ends: the status changes, the cancel button goes.
	appendLog(t, db, id, "Deployed")
	finishDeployment(t, db, id, store.DeploymentFailed, "")
	b.WaitJS("the failed status", `document.getElementById("deploy-status").textContent === "failed"`)
	b.ExpectText("#deploy-log", "Deployed")
	b.ExpectText("#deploy-error", "test end")
	if n := b.Count("#deploy-cancel"); n != 0 {
		b.Fatalf("the cancel button is still there")
	}
	if n := b.EvalInt(`document.querySelectorAll("#deploy-log .line").length`); n != 4 {
		b.Fatalf("%d lines shown, want 4", n)
	}
	b.Shot("ended")

	// Reloaded, the page shows the whole log as it was stored.
	b.Navigate("/deployments/" + id)
	if n := b.EvalInt(`document.querySelectorAll("#deploy-log .line").length`); n != 4 {
		b.Fatalf("%d lines after a reload, want 4", n)
	}
	b.Navigate("/apps/" + app.ID + "/deployments")
	b.ExpectText("#deployments", "failed")
	b.Shot("list")
	s.CheckConsoles()
}
