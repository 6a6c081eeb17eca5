package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"upanel/internal/apperr"
	"upanel/internal/store/storetest"
)

var (
	credIDRe     = regexp.MustCompile(`added git credential .* id ([0-9A-Z]{26})\n`)
	appIDRe      = regexp.MustCompile(`added app .* id ([0-9A-Z]{26})\n`)
	hookSecretRe = regexp.MustCompile(`push-to-deploy secret: (udh_\S+)\n`)
)

// runCmdIn runs the command line with stdin.
func runCmdIn(t *testing.T, vars map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb syncBuffer
	err = run(context.Background(), args, envFunc(vars), strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

// TestAppAndCredentialCommands manages credentials and apps from the shell:
// secrets come from stdin or files, never from arguments, and no output but
// the one that makes it shows a secret.
func TestAppAndCredentialCommands(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			vars, dataDir, dbURL := panelEnv(t, d)
			vars["UPANEL_URL"] = "https://panel.example.test"
			serverID, _, _, _ := addServer(t, vars, "--name", "web-1", "--host", "web-1.example.test")
			db := openWithKeyFile(t, dataDir, dbURL)
			const token, password, envVal, envVal2 = "ghp_CANARYcliToken000111", "CANARY-cli-password", "CANARY-cli-env-value", "CANARY-cli-staging"
			var outputs []string
			must := func(stdin string, args ...string) string {
				t.Helper()
				out, errOut, err := runCmdIn(t, vars, stdin, args...)
				if err != nil {
					t.Fatalf("%v: %v\n%s%s", args, err, out, errOut)
				}
				outputs = append(outputs, out+errOut)
				return out
			}
			fails := func(usage bool, text, stdin string, args ...string) {
				t.Helper()
				out, errOut, err := runCmdIn(t, vars, stdin, args...)
				outputs = append(outputs, out+errOut)
				wantErr(t, err, usage, text)
			}

			// Credentials: secrets from stdin or a file.
			out := must(token+"\n", "credential", "create", "--name", "GitHub", "--type", "token", "--username", "bot", "--host", "Git.Example.TEST")
			m := credIDRe.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("credential create printed:\n%s", out)
			}
			tokID := m[1]
			if !strings.Contains(out, "sent to git.example.test and to no other host") {
				t.Fatalf("credential create does not say where the token goes:\n%s", out)
			}
			if sec, err := db.GitCredentialSecret(ctx, tokID); err != nil || sec.Secret != token || sec.Username != "bot" {
				t.Fatalf("stored token: %v %q", err, sec.Username)
			}
			pwFile := filepath.Join(t.TempDir(), "password")
			if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out = must("", "credential", "create", "--name", "Basic", "--type", "basic", "--username", "deploy", "--secret-file", pwFile,
				"--host", "https://git.example.test:8443/org/shop.git")
			basicID := credIDRe.FindStringSubmatch(out)[1]
			if sec, _ := db.GitCredentialSecret(ctx, basicID); sec.Secret != password {
				t.Fatal("the password from the file was not stored")
			}
			out = must("", "credential", "create", "--name", "Deploy key", "--type", "ssh_key", "--generate")
			if !regexp.MustCompile(`(?m)^ssh-ed25519 \S+ upanel-deploy-key$`).MatchString(out) || !strings.Contains(out, "deploy key") ||
				!strings.Contains(out, "not pinned") {
				t.Fatalf("generated key: %s", out)
			}
			keyID := credIDRe.FindStringSubmatch(out)[1]
			fails(true, "no secret given", "", "credential", "create", "--name", "x", "--type", "token")
			fails(true, "--name and --type", "t", "credential", "create", "--type", "token")
			fails(false, "printable ASCII", "a token with spaces\n", "credential", "create", "--name", "x", "--type", "token")
			fails(false, "credential type", "x", "credential", "create", "--name", "x", "--type", "password")
			fails(true, "provided but not defined", "", "credential", "create", "--name", "x", "--type", "token", "--token", token)
			fails(false, "needs the host", "t0ken\n", "credential", "create", "--name", "x", "--type", "token")
			fails(false, "without a path", "t0ken\n", "credential", "create", "--name", "x", "--type", "token", "--host", "evil.example/x")
			fails(false, "known_hosts", "", "credential", "create", "--name", "x", "--type", "ssh_key", "--generate", "--host", "git.example.test")
			out = must("", "credential", "list")
			for _, want := range []string{"GitHub", "Basic", "Deploy key", "ssh-ed25519 ", "git.example.test:8443"} {
				if !strings.Contains(out, want) {
					t.Errorf("credential list lacks %q:\n%s", want, out)
				}
			}

			// Apps.
			out = must("API_KEY="+envVal+"\n# a comment\n\nDEBUG=1\n", "app", "create", "--server", serverID, "--name", "Shop",
				"--repo", "https://git.example.test/org/shop.git", "--credential", tokID, "--domain", "shop.example.test", "--env-file", "-")
			m, hm := appIDRe.FindStringSubmatch(out), hookSecretRe.FindStringSubmatch(out)
			if m == nil || hm == nil || !strings.Contains(out, "https://panel.example.test/hooks/deploy/") {
				t.Fatalf("app create printed:\n%s", out)
			}
			appID, hookSecret := m[1], hm[1]
			outputs = outputs[:len(outputs)-1] // the one output that shows the hook secret
			if s, err := db.AppHookSecret(ctx, appID); err != nil || s != hookSecret {
				t.Fatalf("hook secret: %v", err)
			}
			if env, _ := db.AppEnv(ctx, appID, "base"); env["API_KEY"] != envVal || env["DEBUG"] != "1" || len(env) != 2 {
				t.Fatalf("base env: %d keys", len(env))
			}
			for _, bad := range []struct {
				usage bool
				text  string
				stdin string
				args  []string
			}{
				{false, "", "", []string{"--repo", "ext::sh -c id"}},
				{false, "", "", []string{"--repo", "https://git.example.test/org/x.git", "--branch", "--upload-pack=id"}},
				{false, "", "", []string{"--repo", "https://git.example.test/org/x.git", "--deploy-path", "/srv/upanel/apps/$(id)"}},
				{false, "", "", []string{"--repo", "https://git.example.test/org/x.git", "--compose-file", "../x.yml"}},
				{false, "", "", []string{"--repo", "file:///etc/passwd"}},
				{false, "", "", []string{"--repo", "https://git.example.test/org/x.git", "--slug", "a;b"}},
				{true, "line 1 is not KEY=value", "NOT A LINE", []string{"--repo", "https://git.example.test/org/x.git", "--env-file", "-"}},
				{true, "COMPOSE_", "COMPOSE_FILE=x", []string{"--repo", "https://git.example.test/org/x.git", "--env-file", "-"}},
			} {
				args := append([]string{"app", "create", "--server", serverID, "--name", "Other"}, bad.args...)
				out, errOut, err := runCmdIn(t, vars, bad.stdin, args...)
				outputs = append(outputs, out+errOut)
				if err == nil {
					t.Errorf("%v: accepted:\n%s", bad.args, out)
					continue
				}
				if bad.usage {
					wantErr(t, err, true, bad.text)
				} else if apperr.CodeOf(err) != apperr.Invalid {
					t.Errorf("%v: %v", bad.args, err)
				}
			}
			fails(true, "--server, --name and --repo are required", "", "app", "create", "--name", "x")

			out = must("", "app", "list")
			if !strings.Contains(out, appID) || !strings.Contains(out, "shop") || strings.Count(out, "\n") != 2 {
				t.Fatalf("app list:\n%s", out)
			}
			if out = must("", "app", "list", "--server", "01AAAAAAAAAAAAAAAAAAAAAAAA"); strings.Contains(out, appID) {
				t.Fatalf("app list of another server:\n%s", out)
			}

			must("API_KEY="+envVal2+"\r\nEXTRA=x\r\n", "app", "env", "set", appID, "--scope", "staging")
			if env, _ := db.AppEnv(ctx, appID, "staging"); env["API_KEY"] != envVal2 || env["EXTRA"] != "x" {
				t.Fatalf("staging env: %d keys", len(env))
			}
			envFile := filepath.Join(t.TempDir(), "prod.env")
			if err := os.WriteFile(envFile, []byte("WORKERS=4\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			must("", "app", "env", "set", "--scope", "production", "--file", envFile, appID)
			fails(true, "no variables given", "", "app", "env", "set", appID)
			fails(true, "--scope must be", "A=1", "app", "env", "set", "--scope", "dev", appID)
			fails(true, "line 2", "A=1\n1BAD=2\n", "app", "env", "set", appID)
			fails(true, "contains $", "A=$(id)\n", "app", "env", "set", appID)
			fails(false, "not found", "A=1", "app", "env", "set", "01AAAAAAAAAAAAAAAAAAAAAAAA")
			fails(true, "missing argument", "", "app", "env", "unset", appID)
			fails(false, "not a valid variable name", "", "app", "env", "unset", appID, "$(id)")
			out = must("", "app", "env", "unset", "--scope", "staging", appID, "EXTRA")
			if !strings.Contains(out, "keys are now: API_KEY") {
				t.Fatalf("env unset: %s", out)
			}

			out = must("", "app", "show", appID)
			for _, want := range []string{"Shop", "https://git.example.test/org/shop.git", "GitHub (token", "shop.example.test",
				"env base:", "API_KEY DEBUG", "env production:", "WORKERS", "env staging:", "/hooks/deploy/", "never shown"} {
				if !strings.Contains(out, want) {
					t.Errorf("app show lacks %q:\n%s", want, out)
				}
			}

			// Deleting.
			fails(false, "used by Shop", "", "credential", "delete", tokID)
			fails(true, "--yes", "", "app", "delete", appID)
			must("", "app", "delete", appID, "--yes")
			if _, err := db.GetApp(ctx, appID); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("deleted app: %v", err)
			}
			for _, id := range []string{tokID, basicID, keyID} {
				must("", "credential", "delete", id)
			}
			if list, _ := db.ListGitCredentials(ctx); len(list) != 0 {
				t.Fatalf("%d credentials left", len(list))
			}

			for _, o := range outputs {
				for _, s := range []string{token, password, envVal, envVal2, hookSecret} {
					if strings.Contains(o, s) {
						t.Errorf("an output shows the secret %q:\n%s", s, o)
					}
				}
			}
		})
	}
}
