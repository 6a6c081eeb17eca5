package deploy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// fixture is a deploy service over a real database, with a server and an
// operator.
type fixture struct {
	t        *testing.T
	db       *store.DB
	url      string
	svc      *Service
	p        *auth.Principal
	serverID string
	m        auth.Meta
}

func newFixture(t *testing.T, dialect string) *fixture {
	t.Helper()
	env := storetest.New(t, dialect)
	db := env.DB
	ctx := context.Background()
	f := &fixture{t: t, db: db, url: env.URL, m: auth.Meta{IP: "192.0.2.50", UserAgent: "test"}}
	err := db.InTx(ctx, func(tx *store.Tx) error {
		u, err := tx.CreateUser(ctx, store.NewUser{Email: "op@example.test", PasswordHash: "x", Role: "operator"})
		if err != nil {
			return err
		}
		f.p = &auth.Principal{User: u, Role: auth.Operator}
		srv, err := tx.CreateServer(ctx, store.NewServer{Name: "web-1", Host: "web-1.example.test", Port: 22, Username: "upanel",
			AgentPort: 8443, SSHPrivateKey: []byte("k"), SSHPublicKey: "ssh-ed25519 AAAA"})
		if err == nil {
			f.serverID = srv.ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = New(Options{DB: db, Recorder: audit.New(db)})
	return f
}

// activity returns the activity log entries about a subject, oldest first.
func (f *fixture) activity(subjectType, id string) []store.Activity {
	f.t.Helper()
	list, err := f.db.ListActivity(context.Background(), store.ActivityFilter{SubjectType: subjectType, SubjectID: id, Limit: 500})
	if err != nil {
		f.t.Fatal(err)
	}
	for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
		list[i], list[j] = list[j], list[i]
	}
	return list
}

// allActivityText is every activity entry as JSON, for canary searches.
func (f *fixture) allActivityText() string {
	f.t.Helper()
	list, err := f.db.ListActivity(context.Background(), store.ActivityFilter{Limit: 500})
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := json.Marshal(list)
	return string(b)
}

// knownHostsFor returns a known_hosts line pinning a fresh key for host.
func knownHostsFor(t *testing.T, host string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return knownhosts.Line([]string{host}, k)
}

func TestCreateAppDefaultsAndActivity(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			f := newFixture(t, d)
			ctx := context.Background()
			const canary = "s3cret-env-canary-7d1f"
			app, secret, err := f.svc.CreateApp(ctx, f.p, AppInput{ServerID: f.serverID, Name: "  My Shop ", GitRepository: "https://github.com/o/shop.git",
				PrimaryDomain: "Shop.Example.com", EnvVars: map[string]string{"DB_PASSWORD": canary}, EnvProduction: map[string]string{"MODE": "prod"}}, f.m)
			if err != nil {
				t.Fatal(err)
			}
			if app.Name != "My Shop" || app.Slug != "my-shop" || app.GitBranch != "main" || app.DeployPath != AppsRoot+"/my-shop" ||
				app.DockerComposeFile != "docker-compose.yml" || app.KeepReleases != 5 || app.PrimaryDomain != "shop.example.com" ||
				app.Status != store.AppPending || len(app.DeployHookID) != 32 || !app.HasHookSecret {
				t.Fatalf("app %+v", app)
			}
			if !strings.HasPrefix(secret, "udh_") || len(secret) < 40 {
				t.Fatalf("hook secret %q", secret)
			}
			if s, err := f.db.AppHookSecret(ctx, app.ID); err != nil || s != secret {
				t.Fatalf("stored hook secret %q %v", s, err)
			}
			if u := f.svc.HookURL(app); u != "/hooks/deploy/"+app.DeployHookID {
				t.Fatalf("hook URL %q", u)
			}
			acts := f.activity("App", app.ID)
			if len(acts) != 1 || acts[0].Action != "created" || acts[0].UserID != f.p.User.ID || acts[0].IPAddress != "192.0.2.50" {
				t.Fatalf("activity %+v", acts)
			}
			ch := acts[0].Changes
			if !ch["deploy_hook_secret"].Secret || !ch["env.base.DB_PASSWORD"].Secret || !ch["env.production.MODE"].Secret || ch["slug"].New != "my-shop" {
				t.Fatalf("changes %+v", ch)
			}
			text := f.allActivityText()
			for _, leak := range []string{canary, secret, "prod\""} {
				if strings.Contains(text, leak) {
					t.Errorf("the activity log holds %q: %s", leak, text)
				}
			}
			storetest.AssertNotStored(t, f.db, f.url, canary)
			storetest.AssertNotStored(t, f.db, f.url, secret)

			// A second app may not take the slug, nor the directory.
			_, _, err = f.svc.CreateApp(ctx, f.p, AppInput{ServerID: f.serverID, Name: "my shop", GitRepository: "https://github.com/o/x.git",
				DeployPath: AppsRoot + "/other"}, f.m)
			if !apperr.Is(err, apperr.Conflict) || !strings.Contains(apperr.MessageOf(err), "my-shop") {
				t.Fatalf("duplicate slug: %v", err)
			}
			for _, p := range []string{AppsRoot + "/my-shop", AppsRoot + "/my-shop/sub"} {
				_, _, err = f.svc.CreateApp(ctx, f.p, AppInput{ServerID: f.serverID, Name: "other", GitRepository: "https://github.com/o/x.git", DeployPath: p}, f.m)
				if !apperr.Is(err, apperr.Conflict) || !strings.Contains(apperr.MessageOf(err), "My Shop") {
					t.Fatalf("overlapping path %s: %v", p, err)
				}
			}
			other, _, err := f.svc.CreateApp(ctx, f.p, AppInput{ServerID: f.serverID, Name: "Other", Slug: "other-1", GitRepository: "https://github.com/o/x.git",
				GitBranch: "release/2", DockerComposeFile: "compose.prod.yaml", StagingDomain: "staging.example.com", KeepReleases: 12}, f.m)
			if err != nil || other.Slug != "other-1" || other.DeployPath != AppsRoot+"/other-1" || other.KeepReleases != 12 {
				t.Fatalf("other: %+v %v", other, err)
			}
			if _, _, err := f.svc.CreateApp(ctx, f.p, AppInput{ServerID: f.serverID, Name: "日本", GitRepository: "https://github.com/o/x.git"}, f.m); !apperr.Is(err, apperr.Invalid) ||
				!strings.Contains(apperr.MessageOf(err), "slug") {
				t.Fatalf("name without a slug: %v", err)
			}

			// Update: changes recorded, the slug and server stay.
			name, branch, keep, empty := "Shop", "prod", 9, ""
			up, err := f.svc.UpdateApp(ctx, f.p, app.ID, AppPatch{Name: &name, GitBranch: &branch, KeepReleases: &keep, PrimaryDomain: &empty}, f.m)
			if err != nil || up.Name != "Shop" || up.GitBranch != "prod" || up.KeepReleases != 9 || up.PrimaryDomain != "" || up.Slug != "my-shop" {
				t.Fatalf("update: %+v %v", up, err)
			}
			acts = f.activity("App", app.ID)
			if last := acts[len(acts)-1]; last.Action != "updated" || last.Changes["git_branch"].New != "prod" || last.Changes["name"].Old != "My Shop" ||
				last.UserID != f.p.User.ID {
				t.Fatalf("update activity %+v", last)
			}
			if _, err := f.svc.UpdateApp(ctx, f.p, app.ID, AppPatch{GitBranch: &empty}, f.m); !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("empty branch: %v", err)
			}
			zero := 0
			if _, err := f.svc.UpdateApp(ctx, f.p, app.ID, AppPatch{KeepReleases: &zero}, f.m); !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("keep 0: %v", err)
			}
			dup := AppsRoot + "/other-1"
			if _, err := f.svc.UpdateApp(ctx, f.p, app.ID, AppPatch{DeployPath: &dup}, f.m); !apperr.Is(err, apperr.Conflict) {
				t.Fatalf("path of another app: %v", err)
			}
			// No change, no entry.
			n := len(f.activity("App", app.ID))
			if _, err := f.svc.UpdateApp(ctx, f.p, app.ID, AppPatch{Name: &name}, f.m); err != nil {
				t.Fatal(err)
			}
			if len(f.activity("App", app.ID)) != n {
				t.Fatal("an update that changed nothing was logged")
			}

			// Rotating the hook secret: a new one, shown once; logged without it.
			s2, err := f.svc.RotateHookSecret(ctx, f.p, app.ID, f.m)
			if err != nil || s2 == secret || !strings.HasPrefix(s2, "udh_") {
				t.Fatalf("rotate: %q %v", s2, err)
			}
			if s, _ := f.db.AppHookSecret(ctx, app.ID); s != s2 {
				t.Fatal("the rotated secret was not stored")
			}
			if strings.Contains(f.allActivityText(), s2) {
				t.Fatal("the new hook secret is in the activity log")
			}

			// Delete cascades and is logged.
			if err := f.svc.DeleteApp(ctx, f.p, app.ID, f.m); err != nil {
				t.Fatal(err)
			}
			if _, err := f.db.GetApp(ctx, app.ID); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("deleted: %v", err)
			}
			acts = f.activity("App", app.ID)
			if last := acts[len(acts)-1]; last.Action != "deleted" || last.UserID != f.p.User.ID {
				t.Fatalf("delete activity %+v", last)
			}
			if err := f.svc.DeleteApp(ctx, f.p, app.ID, f.m); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("delete twice: %v", err)
			}
		})
	}
}

// inert reports whether a stored value can do nothing but be itself: no
// control or invisible characters, whitespace or shell metacharacters, no
// leading '-' (an option), no git transport (::) and no .. path segment.
func inert(v string) bool {
	if strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 ||
		strings.ContainsAny(v, "$`;|&<>'\"\\") || strings.HasPrefix(v, "-") || strings.Contains(v, "::") || len(v) > 500 {
		return false
	}
	for _, seg := range strings.Split(v, "/") {
		if seg == ".." {
			return false
		}
	}
	return true
}

// hostileValues are what an attacker types into every field.
var hostileValues = []string{
	";", "; rm -rf /", "$(id)", "$(touch /tmp/pwned)", "`id`", "a\nb", "\n", "x\r\ny", "-x", "--upload-pack=touch /tmp/pwned",
	"--upload-pack=id", "ext::sh -c id", "ext::", "../", "../../etc/passwd", "..", "\x00", "a\x00b", "|id", "&id", "'", "\"",
	"${IFS}", "\u202e", "-oProxyCommand=id", "fd::0", strings.Repeat("a", 5000),
}

// TestHostileAppFields puts every hostile value into every field of an app,
// alone and around a valid value, and checks that the service refuses it
// with an invalid-input error, or (the name, which is only shown) keeps it
// as inert text.
func TestHostileAppFields(t *testing.T) {
	f := newFixture(t, "sqlite")
	ctx := context.Background()
	cred, err := f.svc.CreateCredential(ctx, f.p, CredentialInput{Name: "tok", Type: store.GitToken, Token: "ghp_x123456789", Host: "github.com"}, f.m)
	if err != nil {
		t.Fatal(err)
	}
	base := AppInput{ServerID: f.serverID, Name: "base", GitRepository: "https://github.com/o/r.git", GitBranch: "main",
		GitCredentialsID: cred.ID, DeployPath: AppsRoot + "/base", DockerComposeFile: "docker-compose.yml",
		PrimaryDomain: "base.example.com", StagingDomain: "staging.example.com"}
	fields := map[string]func(*AppInput, string){
		"server_id":           func(in *AppInput, v string) { in.ServerID = v },
		"name":                func(in *AppInput, v string) { in.Name = v },
		"slug":                func(in *AppInput, v string) { in.Slug = v },
		"git_repository":      func(in *AppInput, v string) { in.GitRepository = v },
		"git_branch":          func(in *AppInput, v string) { in.GitBranch = v },
		"git_credentials_id":  func(in *AppInput, v string) { in.GitCredentialsID = v },
		"deploy_path":         func(in *AppInput, v string) { in.DeployPath = v },
		"docker_compose_file": func(in *AppInput, v string) { in.DockerComposeFile = v },
		"primary_domain":      func(in *AppInput, v string) { in.PrimaryDomain = v },
		"staging_domain":      func(in *AppInput, v string) { in.StagingDomain = v },
		"env key":             func(in *AppInput, v string) { in.EnvVars = map[string]string{v: "x"} },
		"env value":           func(in *AppInput, v string) { in.EnvProduction = map[string]string{"K": v} },
	}
	valid := map[string]string{"server_id": f.serverID, "name": "base", "slug": "base", "git_repository": base.GitRepository,
		"git_branch": "main", "git_credentials_id": cred.ID, "deploy_path": base.DeployPath, "docker_compose_file": base.DockerComposeFile,
		"primary_domain": base.PrimaryDomain, "staging_domain": base.StagingDomain, "env key": "KEY", "env value": "value"}
	accepted := 0
	for field, set := range fields {
		for _, h := range hostileValues {
			for _, v := range []string{h, valid[field] + h, h + valid[field]} {
				in := base
				set(&in, v)
				app, _, err := f.svc.CreateApp(ctx, f.p, in, f.m)
				if err != nil {
					if !apperr.Is(err, apperr.Invalid) {
						t.Errorf("%s = %.40q: %v is not an invalid-input error", field, v, err)
					}
					continue
				}
				accepted++
				// Accepted: what was stored must be inert.
				switch field {
				case "name":
					if app.Name != strings.TrimSpace(v) || ValidSlug(app.Slug) != nil || strings.IndexFunc(app.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
						t.Errorf("name %.40q stored as %+v", v, app)
					}
				case "env value":
					env, err := f.svc.EffectiveEnv(ctx, app.ID, Production)
					if err != nil || env["K"] != v || strings.ContainsAny(v, "\x00\r\n") {
						t.Errorf("env value %.40q stored as %q (%v)", v, env["K"], err)
					}
				default:
					stored := map[string]string{"server_id": app.ServerID, "slug": app.Slug, "git_repository": app.GitRepository,
						"git_branch": app.GitBranch, "git_credentials_id": app.GitCredentialsID, "deploy_path": app.DeployPath,
						"docker_compose_file": app.DockerComposeFile, "primary_domain": app.PrimaryDomain, "staging_domain": app.StagingDomain}[field]
					if !inert(stored) || (stored != v && stored != strings.TrimSpace(v)) {
						t.Errorf("%s = %.40q accepted and stored as %q, which is not inert", field, v, stored)
					}
				}
				if err := f.svc.DeleteApp(ctx, f.p, app.ID, f.m); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if accepted == 0 {
		t.Fatal("no hostile name or env value was accepted: the inert path is untested")
	}
	// The same through UpdateApp.
	app, _, err := f.svc.CreateApp(ctx, f.p, base, f.m)
	if err != nil {
		t.Fatal(err)
	}
	patches := map[string]func(*AppPatch, *string){
		"git_repository": func(p *AppPatch, v *string) { p.GitRepository = v }, "git_branch": func(p *AppPatch, v *string) { p.GitBranch = v },
		"git_credentials_id": func(p *AppPatch, v *string) { p.GitCredentialsID = v }, "deploy_path": func(p *AppPatch, v *string) { p.DeployPath = v },
		"docker_compose_file": func(p *AppPatch, v *string) { p.DockerComposeFile = v }, "primary_domain": func(p *AppPatch, v *string) { p.PrimaryDomain = v },
		"staging_domain": func(p *AppPatch, v *string) { p.StagingDomain = v },
	}
	for field, set := range patches {
		for _, h := range hostileValues {
			for _, v := range []string{h, valid[field] + h, h + valid[field]} {
				var p AppPatch
				set(&p, &v)
				up, err := f.svc.UpdateApp(ctx, f.p, app.ID, p, f.m)
				if err != nil {
					if !apperr.Is(err, apperr.Invalid) {
						t.Errorf("update %s = %.40q: %v is not an invalid-input error", field, v, err)
					}
					continue
				}
				stored := map[string]string{"git_repository": up.GitRepository, "git_branch": up.GitBranch, "git_credentials_id": up.GitCredentialsID,
					"deploy_path": up.DeployPath, "docker_compose_file": up.DockerComposeFile, "primary_domain": up.PrimaryDomain,
					"staging_domain": up.StagingDomain}[field]
				if !inert(stored) {
					t.Errorf("update %s = %.40q stored as %q", field, v, stored)
				}
			}
		}
	}
	after, err := f.db.GetApp(ctx, app.ID)
	if err != nil {
		t.Fatal(err)
	}
	for field, v := range map[string]string{"git_repository": after.GitRepository, "git_branch": after.GitBranch, "deploy_path": after.DeployPath,
		"docker_compose_file": after.DockerComposeFile, "primary_domain": after.PrimaryDomain, "staging_domain": after.StagingDomain,
		"git_credentials_id": after.GitCredentialsID} {
		if !inert(v) {
			t.Errorf("after hostile updates %s = %q", field, v)
		}
	}
	// Env keys and values through SetEnv.
	for _, h := range hostileValues {
		if _, err := f.svc.SetEnv(ctx, f.p, app.ID, store.EnvBase, map[string]string{h: "v"}, nil, f.m); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("env key %.40q: %v", h, err)
		}
		if _, err := f.svc.SetEnv(ctx, f.p, app.ID, store.EnvBase, nil, []string{h}, f.m); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("unset env key %.40q: %v", h, err)
		}
		if _, err := f.svc.SetEnv(ctx, f.p, app.ID, h, map[string]string{"K": "v"}, nil, f.m); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("env scope %.40q: %v", h, err)
		}
	}
}
