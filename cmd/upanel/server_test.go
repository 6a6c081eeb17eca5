package main

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"upanel/internal/apperr"
	"upanel/internal/fleet"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

var (
	serverIDRe  = regexp.MustCompile(`id ([0-9A-Z]{26})\n`)
	bootstrapRe = regexp.MustCompile(`curl -fsSL '([^']+)' \| bash`)
	pubKeyRe    = regexp.MustCompile(`(?m)^ssh-ed25519 [A-Za-z0-9+/=]+ \S+$`)
)

// addServer runs "server add" and returns the new id, public key and
// bootstrap URL it printed.
func addServer(t *testing.T, vars map[string]string, args ...string) (id, pubKey, bootstrapURL, stderr string) {
	t.Helper()
	out, errOut, err := runCmd(t, vars, append([]string{"server", "add"}, args...)...)
	if err != nil {
		t.Fatalf("server add %v: %v\n%s%s", args, err, out, errOut)
	}
	m, b, k := serverIDRe.FindStringSubmatch(out), bootstrapRe.FindStringSubmatch(out), pubKeyRe.FindString(out)
	if m == nil || b == nil || k == "" {
		t.Fatalf("server add %v printed no id, bootstrap command or public key:\n%s", args, out)
	}
	for _, want := range []string{"as root", "24 hours", "upanel serve"} {
		if !strings.Contains(out, want) {
			t.Errorf("server add output lacks %q:\n%s", want, out)
		}
	}
	return m[1], k, b[1], errOut
}

func wantErr(t *testing.T, err error, usage bool, text string) {
	t.Helper()
	var u usageError
	switch {
	case err == nil:
		t.Fatalf("no error, want one mentioning %q", text)
	case usage != errors.As(err, &u):
		t.Fatalf("err = %v (usage error: %v), want usage error: %v", err, errors.As(err, &u), usage)
	case !strings.Contains(err.Error(), text):
		t.Fatalf("err = %v, want it to mention %q", err, text)
	}
}

func TestServerCommands(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			vars, dataDir, dbURL := panelEnv(t, d)
			vars["UPANEL_URL"] = "https://panel.example.test"
			ctx := context.Background()

			// Defaults: port 22, user upanel, agent port 8443.
			id, pub, link, errOut := addServer(t, vars, "--name", "web-1", "--host", "Web-1.Example.TEST")
			if !strings.HasPrefix(link, "https://panel.example.test/bootstrap/ubt_") {
				t.Fatalf("bootstrap URL %q does not use UPANEL_URL", link)
			}
			if strings.Contains(errOut, "warning") {
				t.Errorf("warned with a public UPANEL_URL: %s", errOut)
			}
			db := openWithKeyFile(t, dataDir, dbURL)
			srv, err := db.GetServer(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if srv.Name != "web-1" || srv.Host != "web-1.example.test" || srv.Port != 22 || srv.Username != "upanel" ||
				srv.AgentPort != 8443 || srv.Status != store.ServerPending || srv.SSHPublicKey != pub || !srv.BootstrapOpen {
				t.Fatalf("stored server %+v", srv)
			}

			id2, _, _, _ := addServer(t, vars, "--name", "db 2", "--host", "192.0.2.7", "--port", "2222", "--user", "deploy", "--agent-port", "9443")
			if srv, err := db.GetServer(ctx, id2); err != nil || srv.Port != 2222 || srv.Username != "deploy" || srv.AgentPort != 9443 {
				t.Fatalf("stored server %+v %v", srv, err)
			}

			// Bad input is refused before anything is written.
			for _, tc := range []struct {
				name string
				args []string
				text string
			}{
				{"shell in host", []string{"--name", "x", "--host", "a;rm -rf /"}, "the host must be"},
				{"substitution in host", []string{"--name", "x", "--host", "$(id)"}, "the host must be"},
				{"dash host", []string{"--name", "x", "--host", "-oProxyCommand=id"}, "the host must be"},
				{"port 0", []string{"--name", "x", "--host", "h.example.test", "--port", "0"}, "--port"},
				{"port 70000", []string{"--name", "x", "--host", "h.example.test", "--port", "70000"}, "SSH port must be 1-65535"},
				{"agent port 0", []string{"--name", "x", "--host", "h.example.test", "--agent-port", "0"}, "--agent-port"},
				{"agent port = ssh port", []string{"--name", "x", "--host", "h.example.test", "--agent-port", "22"}, "agent port"},
				{"port not a number", []string{"--name", "x", "--host", "h.example.test", "--port", "ssh"}, "-port"},
				{"root", []string{"--name", "x", "--host", "h.example.test", "--user", "root"}, "other than root"},
				{"user with a space", []string{"--name", "x", "--host", "h.example.test", "--user", "Bad User"}, "username must be"},
				{"user injection", []string{"--name", "x", "--host", "h.example.test", "--user", "u;id"}, "username must be"},
				{"empty name", []string{"--name", "", "--host", "h.example.test"}, "--name and --host are required"},
				{"blank name", []string{"--name", "   ", "--host", "h.example.test"}, "the name must be"},
				{"control characters in name", []string{"--name", "a\x1b[2Jb", "--host", "h.example.test"}, "the name must be"},
				{"no host", []string{"--name", "x"}, "--name and --host are required"},
				{"unknown flag", []string{"--name", "x", "--host", "h.example.test", "--bogus"}, "bogus"},
				{"stray argument", []string{"--name", "x", "--host", "h.example.test", "extra"}, `unexpected argument "extra"`},
			} {
				t.Run(tc.name, func(t *testing.T) {
					out, _, err := runCmd(t, vars, append([]string{"server", "add"}, tc.args...)...)
					wantErr(t, err, true, tc.text)
					if strings.Contains(out, "curl") {
						t.Fatalf("printed a bootstrap command:\n%s", out)
					}
				})
			}
			if list, err := db.ListServers(ctx); err != nil || len(list) != 2 {
				t.Fatalf("after bad input: %d servers, %v", len(list), err)
			}

			out, _, err := runCmd(t, vars, "server", "list")
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || !regexp.MustCompile(`^ID\s+NAME\s+HOST\s+PORT\s+STATUS\s+SCORE\s+LAST SEEN$`).MatchString(lines[0]) ||
				!regexp.MustCompile(`^`+id2+`\s+db 2\s+192\.0\.2\.7\s+2222\s+pending\s+-\s+never$`).MatchString(lines[1]) ||
				!regexp.MustCompile(`^`+id+`\s+web-1\s+web-1\.example\.test\s+22\s+pending\s+-\s+never$`).MatchString(lines[2]) {
				t.Fatalf("server list:\n%s", out)
			}

			// The command works against a running panel: its script sets up
			// the user with the server's key.
			p := startServe(t, vars)
			u, _ := url.Parse(link)
			code, script := get(t, p.base+u.Path)
			if code != 200 || !strings.Contains(script, "USERNAME='upanel'") || !strings.Contains(script, pub) {
				t.Fatalf("bootstrap script: %d\n%s", code, script)
			}

			// A new command replaces the old one.
			out, _, err = runCmd(t, vars, "server", "bootstrap", id)
			m := bootstrapRe.FindStringSubmatch(out)
			if err != nil || m == nil || m[1] == link || !strings.Contains(out, pub) || !strings.Contains(out, "as root") {
				t.Fatalf("server bootstrap: %v\n%s", err, out)
			}
			if code, _ := get(t, p.base+u.Path); code != 404 {
				t.Fatalf("the replaced bootstrap command still works: %d", code)
			}
			p.stop(t)

			// Jobs need a pinned host key.
			for _, cmd := range []string{"provision", "harden"} {
				_, _, err := runCmd(t, vars, "server", cmd, id)
				wantErr(t, err, false, "SSH host key is not pinned yet")
				if !apperr.Is(err, apperr.Conflict) {
					t.Fatalf("server %s without a host key: %v, want a conflict", cmd, err)
				}
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.PinHostKeys(ctx, id, []string{pub}) }); err != nil {
				t.Fatal(err)
			}
			for cmd, kind := range map[string]string{"provision": fleet.ProvisionKind, "harden": fleet.HardenKind} {
				out, _, err := runCmd(t, vars, "server", cmd, id)
				m := regexp.MustCompile(`as job ([0-9A-Z]{26})\n`).FindStringSubmatch(out)
				if err != nil || m == nil || !strings.Contains(out, "upanel serve") {
					t.Fatalf("server %s: %v\n%s", cmd, err, out)
				}
				if j, err := db.GetJob(ctx, m[1]); err != nil || j.Kind != kind || j.SubjectID != id {
					t.Fatalf("job of server %s: %+v %v", cmd, j, err)
				}
			}

			// Unknown ids.
			for _, cmd := range [][]string{{"bootstrap"}, {"provision"}, {"harden"}, {"delete", "--yes"}} {
				_, _, err := runCmd(t, vars, append(append([]string{"server"}, cmd...), "01ARZ3NDEKTSV4RRFFQ69G5FAV")...)
				wantErr(t, err, false, "server not found")
			}

			// Delete needs --yes, before or after the id.
			_, _, err = runCmd(t, vars, "server", "delete", id)
			wantErr(t, err, true, "--yes")
			if _, err := db.GetServer(ctx, id); err != nil {
				t.Fatalf("delete without --yes removed the server: %v", err)
			}
			if out, _, err := runCmd(t, vars, "server", "delete", id, "--yes"); err != nil || !strings.Contains(out, "removed server "+id) {
				t.Fatalf("server delete: %v\n%s", err, out)
			}
			if _, err := db.GetServer(ctx, id); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("deleted server: %v", err)
			}
			if _, _, err := runCmd(t, vars, "server", "delete", "--yes", id2); err != nil {
				t.Fatal(err)
			}
			out, _, err = runCmd(t, vars, "server", "list")
			if err != nil || strings.TrimSpace(out) != "ID  NAME  HOST  PORT  STATUS  SCORE  LAST SEEN" {
				t.Fatalf("list after deleting everything: %v\n%q", err, out)
			}

			// Every change is in the activity log, as the system's.
			acts, err := db.ListActivity(ctx, store.ActivityFilter{SubjectType: "Server", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, a := range acts {
				if a.UserID != "" {
					t.Errorf("activity %s %s has user %q, want none (the command line)", a.Action, a.SubjectID, a.UserID)
				}
				got[a.Action]++
			}
			if got["created"] != 2 || got["updated"] != 1 || got["provisioned"] != 1 || got["hardened"] != 1 || got["deleted"] != 2 {
				t.Fatalf("server activity: %v", got)
			}
		})
	}
}

// Without UPANEL_URL, the bootstrap command points at the listen address,
// which only this machine can reach; the command says so.
func TestServerAddWarnsAboutLoopbackURL(t *testing.T) {
	vars, _, _ := panelEnv(t, "sqlite")
	id, _, link, errOut := addServer(t, vars, "--name", "web-1", "--host", "192.0.2.1")
	if !strings.HasPrefix(link, "http://127.0.0.1:8080/bootstrap/") {
		t.Fatalf("bootstrap URL %q", link)
	}
	if !strings.Contains(errOut, "warning:") || !strings.Contains(errOut, "UPANEL_URL") || !strings.Contains(errOut, "upanel server bootstrap "+id) {
		t.Fatalf("no warning about the URL:\n%s", errOut)
	}
}

func TestServerCommandLineHelp(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args  []string
		usage bool
		out   string // in stdout
		text  string // in the error
	}{
		{args: []string{"help"}, out: "server"},
		{args: []string{"server"}, usage: true, text: "a command is required"},
		{args: []string{"server", "--help"}, out: "provision"},
		{args: []string{"server", "help"}, out: "harden"},
		{args: []string{"server", "reboot"}, usage: true, text: `unknown command "reboot"`},
		{args: []string{"server", "add", "--help"}, out: "-agent-port"},
		{args: []string{"server", "add", "-h"}, out: "Usage: upanel server add"},
		{args: []string{"server", "list", "--help"}, out: "Usage: upanel server list"},
		{args: []string{"server", "bootstrap", "--help"}, out: "Usage: upanel server bootstrap"},
		{args: []string{"server", "provision", "--help"}, out: "Usage: upanel server provision"},
		{args: []string{"server", "harden", "--help"}, out: "Usage: upanel server harden"},
		{args: []string{"server", "delete", "--help"}, out: "-yes"},
		{args: []string{"server", "list", "--bogus"}, usage: true, text: "bogus"},
		{args: []string{"server", "list", "extra"}, usage: true, text: "extra"},
		{args: []string{"server", "bootstrap", "--data-dir", dir}, usage: true, text: "missing argument"},
		{args: []string{"server", "provision", "--data-dir", dir}, usage: true, text: "missing argument"},
		{args: []string{"server", "harden", "a", "b"}, usage: true, text: `unexpected argument "b"`},
		{args: []string{"server", "delete", "--yes"}, usage: true, text: "missing argument"},
		{args: []string{"server", "delete", "--data-dir", dir, "x"}, usage: true, text: "--yes"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, _, err := runCmd(t, nil, tc.args...)
			if tc.usage || tc.text != "" {
				wantErr(t, err, tc.usage, tc.text)
			} else if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(out, tc.out) {
				t.Fatalf("stdout %q lacks %q", out, tc.out)
			}
		})
	}
}
