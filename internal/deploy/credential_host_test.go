package deploy

import (
	"context"
	"strings"
	"testing"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
	"upanel/internal/wire"
)

func TestValidCredentialHost(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		text     string // for a refusal: part of the message
	}{
		{"", "", ""},
		{"github.com", "github.com", ""},
		{"  GitHub.COM ", "github.com", ""},
		{"git.example.com:8443", "git.example.com:8443", ""},
		{"git.example.com:443", "git.example.com", ""},
		{"192.0.2.10", "192.0.2.10", ""},
		{"192.0.2.10:3000", "192.0.2.10:3000", ""},
		{"[2001:DB8:0::1]", "[2001:db8::1]", ""},
		{"[2001:db8::1]:8443", "[2001:db8::1]:8443", ""},
		{"[2001:db8::1]:443", "[2001:db8::1]", ""},
		{"2001:db8::1", "[2001:db8::1]", ""},
		{"localhost", "localhost", ""},
		// A repository's https URL: the host is taken from it.
		{"https://GitHub.com/org/repo.git", "github.com", ""},
		{"https://git.example.com:8443/org/repo.git", "git.example.com:8443", ""},
		{"https://git.example.com:443/org/repo", "git.example.com", ""},
		{"https://[2001:db8::1]:8443/o/r.git", "[2001:db8::1]:8443", ""},
		{"https://git.example.com", "git.example.com", ""},
		{"https://git.example.com/", "git.example.com", ""},
		{"HTTPS://git.example.com:3000", "git.example.com:3000", ""},
		// Refused.
		{"git.example.com/org/repo", "", "without a path"},
		{"git.example.com?x=1", "", "without a path"},
		{"git.example.com#x", "", "without a path"},
		{`git.example.com\x`, "", "without a path"},
		{"user@git.example.com", "", "user name"},
		{"user:pw@git.example.com", "", "user name"},
		{"https://user:pw@git.example.com/org/repo.git", "", "must be the https:// URL of a repository"},
		{"https://user@git.example.com", "", "must be the https:// URL of a repository"},
		{"https://git.example.com/../x", "", "must be the https:// URL of a repository"},
		{"https://git.example.com/o/r?x=1", "", "must be the https:// URL of a repository"},
		{"https://", "", "must be the https:// URL of a repository"},
		{"http://git.example.com/org/repo.git", "", "a http:// URL is not accepted"},
		{"ssh://git@git.example.com/org/repo.git", "", "a ssh:// URL is not accepted"},
		{"git@github.com:org/repo.git", "", "user name"},
		{"git.example.com:", "", "is not a host name"},
		{"git.example.com:0", "", "invalid port"},
		{"git.example.com:65536", "", "invalid port"},
		{"git.example.com:080", "", "invalid port"},
		{"git.example.com:+80", "", "invalid port"},
		{"git.example.com:http", "", "invalid port"},
		{"git example.com", "", "spaces"},
		{"git.example.com\n", "", "spaces"},
		{"gït.example.com", "", "non-ASCII"},
		{"-git.example.com", "", "is not a host name"},
		{"git_x.example.com", "", "is not a host name"},
		{"git.example.com.", "", "is not a host name"},
		{"999.1.1.1", "", "is not a host name"},
		{"0.0.0.0", "", "is not a host name"},
		{"[::]", "", "is not a host name"},
		{"[fe80::1%eth0]", "", "is not a host name"},
		{"[2001:db8::1", "", "is not a host name"},
		{"[2001:db8::1]8443", "", "is not a host name"},
		{"[2001:db8::1]:", "", "is not a host name"},
		{"a:b:c", "", "is not a host name"},
		{"*.example.com", "", "is not a host name"},
		{strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + ".example:65535", "", "at most 255"},
		{"https://" + strings.Repeat("a", 600) + "/x", "", "at most 500"},
	} {
		got, err := ValidCredentialHost(tc.in)
		switch {
		case tc.text == "" && (err != nil || got != tc.want):
			t.Errorf("ValidCredentialHost(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.text != "" && (!apperr.Is(err, apperr.Invalid) || !strings.Contains(apperr.MessageOf(err), tc.text)):
			t.Errorf("ValidCredentialHost(%q) = %q, %v; want an invalid-input error mentioning %q", tc.in, got, err, tc.text)
		}
	}
}

// TestCredentialBoundToHost: a token or basic credential goes to its host and
// no other, whoever asks and whichever way (a check, an app's creation or
// edit); only an admin moves it to another host, and that is recorded.
func TestCredentialBoundToHost(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			f := newFixture(t, d)
			ctx := context.Background()
			const secret = "ghp_hostboundCANARY0099"
			var admin *auth.Principal
			err := f.db.InTx(ctx, func(tx *store.Tx) error {
				u, err := tx.CreateUser(ctx, store.NewUser{Email: "admin@example.test", PasswordHash: "x", Role: "admin"})
				admin = &auth.Principal{User: u, Role: auth.Admin}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			operator := f.p

			// Creation: token and basic credentials need a host; an ssh_key
			// credential takes none.
			for _, tc := range []struct {
				in   CredentialInput
				text string
			}{
				{CredentialInput{Name: "x", Type: store.GitToken, Token: secret}, "needs the host"},
				{CredentialInput{Name: "x", Type: store.GitBasic, Username: "u", Password: secret}, "needs the host"},
				{CredentialInput{Name: "x", Type: store.GitToken, Token: secret, Host: "evil.example/x"}, "without a path"},
				{CredentialInput{Name: "x", Type: store.GitToken, Token: secret, Host: "ssh://git@h.example/o/r"}, "not accepted"},
				{CredentialInput{Name: "x", Type: store.GitSSHKey, Generate: true, Host: "git.example.com"}, "known_hosts"},
			} {
				if _, err := f.svc.CreateCredential(ctx, operator, tc.in, f.m); !apperr.Is(err, apperr.Invalid) || !strings.Contains(apperr.MessageOf(err), tc.text) {
					t.Errorf("create %+v: %v, want %q", tc.in.Host, err, tc.text)
				}
			}
			tok, err := f.svc.CreateCredential(ctx, admin, CredentialInput{Name: "org token", Type: store.GitToken, Token: secret,
				Host: "https://Git.Example.com/org/shop.git"}, f.m)
			if err != nil || tok.Host != "git.example.com" {
				t.Fatalf("token: %+v %v", tok, err)
			}
			if acts := f.activity("GitCredential", tok.ID); len(acts) != 1 || acts[0].Changes["host"].New != "git.example.com" ||
				!strings.Contains(acts[0].Description, "for git.example.com") {
				t.Fatalf("creation activity %+v", acts)
			}

			// The operator did not add it and cannot read it; it goes to
			// git.example.com (port 443) and nowhere else.
			other := []string{"https://evil.example/org/shop.git", "https://git.example.com:8443/org/shop.git",
				"https://git.example.com.evil.example/org/shop.git", "https://192.0.2.66/org/shop.git"}
			for _, repo := range other {
				_, err := f.svc.Test(ctx, operator, tok.ID, f.serverID, repo, "main", f.m)
				if !apperr.Is(err, apperr.Invalid) || !strings.Contains(apperr.MessageOf(err), "may only be sent to git.example.com") {
					t.Errorf("Test with %s: %v", repo, err)
				}
				if host := mustRepo(t, repo).HTTPSHost(); err != nil && !strings.Contains(apperr.MessageOf(err), "this repository is on "+host) {
					t.Errorf("Test with %s does not name the repository's host: %v", repo, err)
				}
				_, _, err = f.svc.CreateApp(ctx, operator, AppInput{ServerID: f.serverID, Name: "evil", GitRepository: repo, GitCredentialsID: tok.ID}, f.m)
				if !apperr.Is(err, apperr.Invalid) || !strings.Contains(apperr.MessageOf(err), "may only be sent to git.example.com") {
					t.Errorf("CreateApp with %s: %v", repo, err)
				}
			}
			// Its own host passes the check (and then finds no agent here).
			for _, repo := range []string{"https://git.example.com/org/shop.git", "https://GIT.example.com:443/org/other.git"} {
				if _, err := f.svc.Test(ctx, operator, tok.ID, f.serverID, repo, "main", f.m); !apperr.Is(err, apperr.Unavailable) {
					t.Errorf("Test with %s: %v, want it to pass the host check", repo, err)
				}
			}
			app, _, err := f.svc.CreateApp(ctx, operator, AppInput{ServerID: f.serverID, Name: "shop", GitRepository: "https://git.example.com/org/shop.git",
				GitCredentialsID: tok.ID}, f.m)
			if err != nil {
				t.Fatal(err)
			}
			evil := "https://evil.example/org/shop.git"
			if _, err := f.svc.UpdateApp(ctx, operator, app.ID, AppPatch{GitRepository: &evil}, f.m); !apperr.Is(err, apperr.Invalid) ||
				!strings.Contains(apperr.MessageOf(err), "may only be sent to git.example.com, and this repository is on evil.example") {
				t.Fatalf("UpdateApp to another host: %v", err)
			}
			if a, _ := f.db.GetApp(ctx, app.ID); a.GitRepository != "https://git.example.com/org/shop.git" {
				t.Fatalf("a refused update changed the repository to %s", a.GitRepository)
			}
			// Moving an app off the credential's host while dropping the
			// credential is fine: nothing is sent.
			none := ""
			pub, _, err := f.svc.CreateApp(ctx, operator, AppInput{ServerID: f.serverID, Name: "public", GitRepository: "https://git.example.com/org/pub.git",
				GitCredentialsID: tok.ID}, f.m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.UpdateApp(ctx, operator, pub.ID, AppPatch{GitRepository: &evil, GitCredentialsID: &none}, f.m); err != nil {
				t.Fatalf("a public repository elsewhere: %v", err)
			}

			// Only an admin moves the credential: an operator gets 403, even
			// through the same patch as an allowed change.
			name, moved := "renamed", "evil.example"
			_, err = f.svc.UpdateCredential(ctx, operator, tok.ID, CredentialPatch{Name: &name, Host: &moved}, f.m)
			if !apperr.Is(err, apperr.Forbidden) || !strings.Contains(apperr.MessageOf(err), "only an admin") {
				t.Fatalf("operator changes the host: %v", err)
			}
			if c, _ := f.db.GetGitCredential(ctx, tok.ID); c.Host != "git.example.com" || c.Name != "org token" {
				t.Fatalf("a refused host change left %+v", c)
			}
			// The same host, however written, is no change: operators may
			// send it back with the rest of a form.
			for _, same := range []string{"GIT.EXAMPLE.COM", "git.example.com:443", "https://git.example.com/x/y.git"} {
				same := same
				if _, err := f.svc.UpdateCredential(ctx, operator, tok.ID, CredentialPatch{Name: &name, Host: &same}, f.m); err != nil {
					t.Fatalf("operator resends the host as %q: %v", same, err)
				}
			}
			// An admin's move is refused while an app uses the old host…
			_, err = f.svc.UpdateCredential(ctx, admin, tok.ID, CredentialPatch{Host: &moved}, f.m)
			if !apperr.Is(err, apperr.Conflict) || !strings.Contains(apperr.MessageOf(err), "shop") {
				t.Fatalf("moving a credential an app uses: %v", err)
			}
			for _, bad := range []string{"", "evil.example/x"} {
				bad := bad
				if _, err := f.svc.UpdateCredential(ctx, admin, tok.ID, CredentialPatch{Host: &bad}, f.m); !apperr.Is(err, apperr.Invalid) {
					t.Errorf("admin sets the host to %q: %v", bad, err)
				}
			}
			if err := f.svc.DeleteApp(ctx, operator, app.ID, f.m); err != nil {
				t.Fatal(err)
			}
			// …and goes through, recorded with both hosts, once none does.
			c, err := f.svc.UpdateCredential(ctx, admin, tok.ID, CredentialPatch{Host: &moved}, f.m)
			if err != nil || c.Host != "evil.example" {
				t.Fatalf("admin moves the credential: %+v %v", c, err)
			}
			acts := f.activity("GitCredential", tok.ID)
			last := acts[len(acts)-1]
			if last.Action != "updated" || last.UserID != admin.User.ID || last.Changes["host"].Old != "git.example.com" ||
				last.Changes["host"].New != "evil.example" || !strings.Contains(last.Description, "from git.example.com to evil.example") {
				t.Fatalf("host change activity %+v", last)
			}
			if _, err := f.svc.Test(ctx, operator, tok.ID, f.serverID, evil, "", f.m); !apperr.Is(err, apperr.Unavailable) {
				t.Fatalf("Test on the new host: %v", err)
			}

			// ssh_key credentials ignore the host: known_hosts binds them.
			key, err := f.svc.CreateCredential(ctx, operator, CredentialInput{Name: "key", Type: store.GitSSHKey, Generate: true,
				KnownHosts: knownHostsFor(t, "git.example.com")}, f.m)
			if err != nil || key.Host != "" {
				t.Fatalf("key: %+v %v", key, err)
			}
			if _, err := f.svc.UpdateCredential(ctx, operator, key.ID, CredentialPatch{Name: &name, Host: &none}, f.m); err != nil {
				t.Fatalf("an empty host on an ssh_key credential: %v", err)
			}
			if _, err := f.svc.UpdateCredential(ctx, admin, key.ID, CredentialPatch{Host: &moved}, f.m); !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("a host on an ssh_key credential: %v", err)
			}

			// The command line (no principal) runs with the database itself.
			back := "git.example.com"
			if c, err := f.svc.UpdateCredential(ctx, nil, tok.ID, CredentialPatch{Host: &back}, f.m); err != nil || c.Host != back {
				t.Fatalf("the command line moves the credential: %+v %v", c, err)
			}

			// The secret is nowhere but in its encrypted column.
			if strings.Contains(f.allActivityText(), secret) {
				t.Error("the secret is in the activity log")
			}
			storetest.AssertNotStored(t, f.db, f.url, secret)
		})
	}
}

// TestCredentialWithoutHost: a token or basic credential written before 026
// has no host, and https repositories refuse it until an admin sets one.
func TestCredentialWithoutHost(t *testing.T) {
	f := newFixture(t, "sqlite")
	ctx := context.Background()
	basic, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: "old", Type: store.GitBasic, Username: "bot", Password: "pw-canary-123",
		Host: "git.example.com"}, f.m)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Exec(t, f.db, "UPDATE git_credentials SET host = NULL WHERE id = ?", basic.ID)
	if c, _ := f.db.GetGitCredential(ctx, basic.ID); c.Host != "" {
		t.Fatalf("host %q", c.Host)
	}
	const repo = "https://git.example.com/org/r.git"
	want := "not bound to a host yet"
	if _, err := f.svc.Test(ctx, f.p, basic.ID, f.serverID, repo, "", f.m); !apperr.Is(err, apperr.Invalid) || !strings.Contains(apperr.MessageOf(err), want) ||
		!strings.Contains(apperr.MessageOf(err), "an admin must set") {
		t.Fatalf("Test: %v", err)
	}
	if _, _, err := f.svc.CreateApp(ctx, f.p, AppInput{ServerID: f.serverID, Name: "a", GitRepository: repo, GitCredentialsID: basic.ID}, f.m); !apperr.Is(err, apperr.Invalid) ||
		!strings.Contains(apperr.MessageOf(err), want) {
		t.Fatalf("CreateApp: %v", err)
	}
	// Renaming it or rotating its secret needs no host…
	name, pw, user := "old basic", "pw-canary-456", "bot"
	if _, err := f.svc.UpdateCredential(ctx, f.p, basic.ID, CredentialPatch{Name: &name, Username: &user, Password: &pw}, f.m); err != nil {
		t.Fatal(err)
	}
	// …setting one needs an admin.
	host := "git.example.com"
	if _, err := f.svc.UpdateCredential(ctx, f.p, basic.ID, CredentialPatch{Host: &host}, f.m); !apperr.Is(err, apperr.Forbidden) {
		t.Fatalf("operator sets the host: %v", err)
	}
	admin := &auth.Principal{User: f.p.User, Role: auth.Admin}
	if _, err := f.svc.UpdateCredential(ctx, admin, basic.ID, CredentialPatch{Host: &host}, f.m); err != nil {
		t.Fatal(err)
	}
	acts := f.activity("GitCredential", basic.ID)
	if last := acts[len(acts)-1]; last.Changes["host"].Old != "" || last.Changes["host"].New != host ||
		!strings.Contains(last.Description, "from no host to git.example.com") {
		t.Fatalf("activity %+v", last)
	}
	if _, _, err := f.svc.CreateApp(ctx, f.p, AppInput{ServerID: f.serverID, Name: "a", GitRepository: repo, GitCredentialsID: basic.ID}, f.m); err != nil {
		t.Fatalf("CreateApp once bound: %v", err)
	}
	for _, leak := range []string{"pw-canary-123", "pw-canary-456"} {
		if strings.Contains(f.allActivityText(), leak) {
			t.Errorf("%s is in the activity log", leak)
		}
	}
}

// TestDeployRechecksCredentialHost: the app's repository changed in the
// database behind the service's back (or the credential was moved since):
// the deployment fails before anything reaches the agent, and the token
// stays home.
func TestDeployRechecksCredentialHost(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newDeployEnv(t, db)
		e.startRunner("panel-1")
		if err := db.ExecRaw(ctx, "UPDATE apps SET git_repository = ? WHERE id = ?", "https://attacker.example:8443/acme/shop.git", e.app.ID); err != nil {
			t.Fatal(err)
		}
		id := e.deploy("operator", DeployInput{})
		d := e.waitStatus(id, store.DeploymentFailed)
		if !strings.Contains(d.ErrorMessage, "may only be sent to git.example.test, and this repository is on attacker.example:8443") {
			t.Fatalf("deployment error: %q", d.ErrorMessage)
		}
		if _, err := e.svc.TestApp(ctx, e.users["operator"], e.app.ID, auth.Meta{}); !apperr.Is(err, apperr.Invalid) {
			t.Fatalf("TestApp: %v", err)
		}

		// The repository is right again, but the credential row now names
		// another host: refused too.
		if err := db.ExecRaw(ctx, "UPDATE apps SET git_repository = ? WHERE id = ?", "https://git.example.test/acme/shop.git", e.app.ID); err != nil {
			t.Fatal(err)
		}
		if err := db.ExecRaw(ctx, "UPDATE git_credentials SET host = ? WHERE id = ?", "elsewhere.example", e.app.GitCredentialsID); err != nil {
			t.Fatal(err)
		}
		id2 := e.deploy("operator", DeployInput{})
		d = e.waitStatus(id2, store.DeploymentFailed)
		if !strings.Contains(d.ErrorMessage, "may only be sent to elsewhere.example, and this repository is on git.example.test") {
			t.Fatalf("deployment error: %q", d.ErrorMessage)
		}
		e.agent.mu.Lock()
		posts := len(e.agent.posts)
		e.agent.mu.Unlock()
		if posts != 0 {
			t.Fatalf("the agent was asked %d times to deploy", posts)
		}

		// Bound to its host again, the app deploys, token and all.
		if err := db.ExecRaw(ctx, "UPDATE git_credentials SET host = ? WHERE id = ?", "git.example.test", e.app.GitCredentialsID); err != nil {
			t.Fatal(err)
		}
		id3 := e.deploy("operator", DeployInput{})
		if req := e.agent.posted(id3); req.Git.Secret != canaryToken || req.Git.URL != "https://git.example.test/acme/shop.git" {
			t.Fatalf("git source: %+v", req.Git.URL)
		}
		e.agent.end(id3, wire.DeploySuccess, "", strings.Repeat("ab", 20), "ok")
		e.waitStatus(id3, store.DeploymentSuccess)
	})
}

func mustRepo(t *testing.T, raw string) RepoURL {
	t.Helper()
	r, err := ValidRepoURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
