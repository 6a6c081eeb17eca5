package main

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/pin"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

var deploymentIDRe = regexp.MustCompile(`queued the (production|staging) (?:deployment|rollback) ([0-9A-Z]{26}) `)

// TestDeploymentCommands queues deployments from the shell with no serve
// process running, so they stay queued until the test moves them on with the
// store functions the deploy job uses.
func TestDeploymentCommands(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			vars, dataDir, dbURL := panelEnv(t, d)
			vars["UPANEL_URL"] = "https://panel.example.test"
			serverID, _, _, _ := addServer(t, vars, "--name", "web-1", "--host", "web-1.example.test")
			db := openWithKeyFile(t, dataDir, dbURL)
			if err := db.InTx(ctx, func(tx *store.Tx) error {
				_, hash := auth.NewAgentToken()
				return tx.SetAgentCredentials(ctx, serverID, pin.Fingerprint([]byte("agent")), hash)
			}); err != nil {
				t.Fatal(err)
			}
			svc := deploy.New(deploy.Options{DB: db, Recorder: audit.New(db)})
			app, _, err := svc.CreateApp(ctx, nil, deploy.AppInput{ServerID: serverID, Name: "Shop",
				GitRepository: "https://git.example.test/org/shop.git"}, auth.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			deployApp := func(args ...string) (string, string) {
				t.Helper()
				out, errOut, err := runCmd(t, vars, append([]string{"app", "deploy"}, args...)...)
				if err != nil {
					t.Fatalf("app deploy %v: %v\n%s%s", args, err, out, errOut)
				}
				m := deploymentIDRe.FindStringSubmatch(out)
				if m == nil || !strings.Contains(out, "upanel deployment log --follow "+m[2]) {
					t.Fatalf("app deploy %v printed:\n%s", args, out)
				}
				return m[2], out
			}
			prod, out := deployApp(app.ID)
			if !strings.Contains(out, "production deployment "+prod+" of the head of main") {
				t.Fatalf("app deploy: %s", out)
			}
			staging, out := deployApp(app.ID, "--environment", "staging", "--commit", "ABCDEF1000000000000000000000000000000000")
			if !strings.Contains(out, "staging deployment "+staging+" of commit abcdef1000000000000000000000000000000000") {
				t.Fatalf("app deploy staging: %s", out)
			}
			dep, err := db.GetDeployment(ctx, staging)
			if err != nil || dep.TriggeredBy != deploy.TriggerManual || dep.Status != store.DeploymentQueued || dep.UserID != "" {
				t.Fatalf("deployment: %+v %v", dep, err)
			}

			// Mistakes.
			for _, tc := range []struct {
				args  []string
				usage bool
				text  string
			}{
				{[]string{"app", "deploy", app.ID, "--environment", "qa"}, true, "production or staging"},
				{[]string{"app", "deploy", app.ID, "--commit", "main"}, false, "commit id"},
				{[]string{"app", "deploy", app.ID, "--commit", "abcdef1"}, false, "whole commit id"},
				{[]string{"app", "deploy"}, true, "missing argument"},
				{[]string{"app", "deploy", store.NewID()}, false, "not found"},
				{[]string{"deployment", "show", store.NewID()}, false, "not found"},
				{[]string{"deployment", "list", app.ID, "--limit", "0"}, true, "--limit"},
				{[]string{"deployment", "list", app.ID, "--environment", "dev"}, true, "production or staging"},
				{[]string{"deployment", "log", prod, "--after", "-1"}, true, "--after"},
			} {
				_, _, err := runCmd(t, vars, tc.args...)
				wantErr(t, err, tc.usage, tc.text)
			}

			// List, newest first, and one environment.
			out, _, err = runCmd(t, vars, "deployment", "list", app.ID)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || !regexp.MustCompile(`^ID\s+ENVIRONMENT\s+STATUS\s+COMMIT\s+TRIGGER\s+QUEUED\s+DURATION$`).MatchString(lines[0]) ||
				!regexp.MustCompile(`^`+staging+`\s+staging\s+queued\s+abcdef100000\s+manual\s+\S+ \S+\s+-$`).MatchString(lines[1]) ||
				!regexp.MustCompile(`^`+prod+`\s+production\s+queued\s+-\s+manual\s`).MatchString(lines[2]) {
				t.Fatalf("deployment list:\n%s", out)
			}
			out, _, _ = runCmd(t, vars, "deployment", "list", "--environment", "production", app.ID)
			if strings.Count(strings.TrimSpace(out), "\n") != 1 || !strings.Contains(out, prod) {
				t.Fatalf("production list:\n%s", out)
			}

			// Show and cancel the queued one.
			out, _, err = runCmd(t, vars, "deployment", "show", prod)
			if err != nil || !regexp.MustCompile(`(?m)^status\s+queued$`).MatchString(out) || !regexp.MustCompile(`(?m)^app\s+Shop \(`+app.ID+`\)$`).MatchString(out) {
				t.Fatalf("show: %v\n%s", err, out)
			}
			out, _, err = runCmd(t, vars, "deployment", "cancel", prod)
			if err != nil || out != "cancelled deployment "+prod+"\n" {
				t.Fatalf("cancel: %v %q", err, out)
			}
			out, _, _ = runCmd(t, vars, "deployment", "show", prod)
			if !regexp.MustCompile(`(?m)^status\s+cancelled$`).MatchString(out) {
				t.Fatalf("show after cancel:\n%s", out)
			}
			_, _, err = runCmd(t, vars, "deployment", "cancel", prod)
			wantErr(t, err, false, "already ended")
			_, _, err = runCmd(t, vars, "deployment", "rollback", prod)
			wantErr(t, err, false, "only a successful deployment")

			// The log: what is stored, after a line, and followed to the end.
			if _, ok, err := db.MarkDeploymentRunning(ctx, staging); err != nil || !ok {
				t.Fatalf("start: %v %v", ok, err)
			}
			if ok, err := db.AppendDeploymentLog(ctx, staging, 0, []string{"fetching", "building"}, 2); err != nil || !ok {
				t.Fatalf("append: %v %v", ok, err)
			}
			if out, _, err = runCmd(t, vars, "deployment", "log", staging); err != nil || out != "fetching\nbuilding\n" {
				t.Fatalf("log: %v %q", err, out)
			}
			if out, _, _ = runCmd(t, vars, "deployment", "log", "--after", "1", staging); out != "building\n" {
				t.Fatalf("log --after 1: %q", out)
			}
			var stdout, stderr syncBuffer
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"deployment", "log", "--follow", staging}, envFunc(vars), strings.NewReader(""), &stdout, &stderr)
			}()
			if ok, err := db.AppendDeploymentLog(ctx, staging, 2, []string{"healthy"}, 3); err != nil || !ok {
				t.Fatalf("append: %v %v", ok, err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error {
				_, _, err := tx.FinishDeployment(ctx, staging, store.DeploymentEnd{Status: store.DeploymentSuccess, Commit: strings.Repeat("a", 40)})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil || stdout.String() != "fetching\nbuilding\nhealthy\n" || !strings.Contains(stderr.String(), "success") {
					t.Fatalf("log --follow: %v %q %q", err, stdout.String(), stderr.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatal("log --follow did not end with the deployment")
			}
			// Following a failed deployment exits with an error.
			if _, _, err := runCmd(t, vars, "deployment", "log", "--follow", prod); !errors.Is(err, errDeploymentEnded) {
				t.Fatalf("follow of a cancelled deployment: %v", err)
			}

			// Roll back to the successful one.
			out, _, err = runCmd(t, vars, "deployment", "rollback", staging)
			m := deploymentIDRe.FindStringSubmatch(out)
			if err != nil || m == nil || m[1] != "staging" || !strings.Contains(out, "to commit aaaaaaaaaaaa") {
				t.Fatalf("rollback: %v\n%s", err, out)
			}
			rb, err := db.GetDeployment(ctx, m[2])
			if err != nil || !rb.IsRollback || rb.RollbackFromID != staging || rb.TriggeredBy != deploy.TriggerRollback {
				t.Fatalf("rollback deployment: %+v %v", rb, err)
			}
		})
	}
}
