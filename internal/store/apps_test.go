package store_test

import (
	"context"
	"strings"
	"testing"

	"upanel/internal/apperr"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func newTestServer(t *testing.T, db *store.DB, name string) string {
	t.Helper()
	var id string
	err := db.InTx(context.Background(), func(tx *store.Tx) error {
		s, err := tx.CreateServer(context.Background(), store.NewServer{Name: name, Host: name + ".example.test", Port: 22, Username: "upanel",
			AgentPort: 8443, SSHPrivateKey: []byte("k"), SSHPublicKey: "ssh-ed25519 AAAA"})
		if err == nil {
			id = s.ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestAppsStore(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			env := storetest.New(t, d)
			db := env.DB
			srv := newTestServer(t, db, "web1")
			const hookSecret = "udh_canary-hook-secret-0123456789"
			const envCanary = "env-canary-value-9f8e7d"
			var credID string
			var app *store.App
			err := db.InTx(ctx, func(tx *store.Tx) error {
				c, err := tx.CreateGitCredential(ctx, store.NewGitCredential{Name: "gh", Type: store.GitToken,
					Secret: store.GitSecret{Username: "bot", Secret: "ghp_tokencanary123456"}, Host: "github.com"})
				if err != nil {
					return err
				}
				credID = c.ID
				app, err = tx.CreateApp(ctx, store.NewApp{ServerID: srv, Name: "Shop", Slug: "shop", GitRepository: "https://github.com/o/shop.git",
					GitBranch: "main", GitCredentialsID: c.ID, DeployPath: "/srv/upanel/apps/shop", DockerComposeFile: "docker-compose.yml",
					PrimaryDomain: "shop.example.com", KeepReleases: 7, DeployHookID: strings.Repeat("h", 32), DeployHookSecret: hookSecret,
					EnvBase: map[string]string{"DB_PASSWORD": envCanary, "MODE": "x"}, EnvProduction: map[string]string{"MODE": "prod"}})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if app.Slug != "shop" || app.Status != store.AppPending || app.KeepReleases != 7 || app.GitCredentialsID != credID ||
				app.ServerID != srv || !app.HasHookSecret || app.DeployHookID != strings.Repeat("h", 32) || app.StagingDomain != "" ||
				app.CreatedAt.IsZero() || app.CurrentCommit != "" {
				t.Fatalf("created app %+v", app)
			}
			got, err := db.GetApp(ctx, app.ID)
			if err != nil || *got != *app {
				t.Fatalf("GetApp = %+v, %v; want %+v", got, err, app)
			}
			if byHook, err := db.AppByHookID(ctx, app.DeployHookID); err != nil || byHook.ID != app.ID {
				t.Fatalf("AppByHookID: %v %v", byHook, err)
			}
			if _, err := db.AppByHookID(ctx, strings.Repeat("x", 32)); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("AppByHookID of nothing: %v", err)
			}
			if c, err := db.GetGitCredential(ctx, credID); err != nil || c.Apps != 1 {
				t.Fatalf("credential apps: %+v %v", c, err)
			}

			// Env sets are sealed, opened only by AppEnv.
			base, err := db.AppEnv(ctx, app.ID, store.EnvBase)
			if err != nil || base["DB_PASSWORD"] != envCanary || len(base) != 2 {
				t.Fatalf("AppEnv base: %v %v", base, err)
			}
			if st, err := db.AppEnv(ctx, app.ID, store.EnvStaging); err != nil || len(st) != 0 {
				t.Fatalf("AppEnv staging: %v %v", st, err)
			}
			if _, err := db.AppEnv(ctx, app.ID, "env_vars"); !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("bad scope: %v", err)
			}
			if keys, err := db.AppEnvKeys(ctx, app.ID, store.EnvBase); err != nil || strings.Join(keys, ",") != "DB_PASSWORD,MODE" {
				t.Fatalf("keys: %v %v", keys, err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error {
				return tx.SetAppEnv(ctx, app.ID, store.EnvStaging, map[string]string{"MODE": "staging"})
			}); err != nil {
				t.Fatal(err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.SetAppEnv(ctx, app.ID, store.EnvProduction, nil) }); err != nil {
				t.Fatal(err)
			}
			if p, err := db.AppEnv(ctx, app.ID, store.EnvProduction); err != nil || len(p) != 0 {
				t.Fatalf("cleared production: %v %v", p, err)
			}
			if s, err := db.AppHookSecret(ctx, app.ID); err != nil || s != hookSecret {
				t.Fatalf("hook secret: %q %v", s, err)
			}
			mat, err := db.AppSecretMaterial(ctx, app.ID)
			if err != nil || mat.Git == nil || mat.Git.Secret != "ghp_tokencanary123456" || mat.EnvStaging["MODE"] != "staging" || mat.HookSecret != hookSecret {
				t.Fatalf("secret material: %+v %v", mat, err)
			}
			storetest.AssertNotStored(t, db, env.URL, envCanary)
			storetest.AssertNotStored(t, db, env.URL, hookSecret)
			storetest.AssertNotStored(t, db, env.URL, "ghp_tokencanary123456")

			// The slug is unique per server, not across servers.
			mk := func(server, slug, hook string) error {
				return db.InTx(ctx, func(tx *store.Tx) error {
					_, err := tx.CreateApp(ctx, store.NewApp{ServerID: server, Name: slug, Slug: slug, GitRepository: "https://h.example/r",
						GitBranch: "main", DeployPath: "/srv/upanel/apps/" + slug + hook[:1], DockerComposeFile: "compose.yml", KeepReleases: 5,
						DeployHookID: hook, DeployHookSecret: "s"})
					return err
				})
			}
			if err := mk(srv, "shop", strings.Repeat("a", 32)); !apperr.Is(err, apperr.Conflict) || !strings.Contains(apperr.MessageOf(err), "shop") {
				t.Fatalf("duplicate slug: %v", err)
			}
			srv2 := newTestServer(t, db, "web2")
			if err := mk(srv2, "shop", strings.Repeat("b", 32)); err != nil {
				t.Fatalf("same slug on another server: %v", err)
			}
			if list, err := db.ListApps(ctx, srv2); err != nil || len(list) != 1 || list[0].ServerID != srv2 {
				t.Fatalf("ListApps(srv2): %v %v", list, err)
			}
			if list, err := db.ListApps(ctx, ""); err != nil || len(list) != 2 {
				t.Fatalf("ListApps: %v %v", list, err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error {
				paths, err := tx.ServerAppPaths(ctx, srv)
				if err == nil && (len(paths) != 1 || paths[app.ID] != "/srv/upanel/apps/shop") {
					t.Errorf("paths %v", paths)
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}

			// Update changes the settings and keeps the rest.
			var up *store.App
			err = db.InTx(ctx, func(tx *store.Tx) error {
				var err error
				up, err = tx.UpdateApp(ctx, app.ID, store.AppUpdate{Name: "Shop 2", GitRepository: "git@github.com:o/shop.git", GitBranch: "prod",
					DeployPath: "/srv/upanel/apps/shop2", DockerComposeFile: "compose.yaml", StagingDomain: "staging.example.com", KeepReleases: 3})
				return err
			})
			if err != nil || up.Name != "Shop 2" || up.GitCredentialsID != "" || up.PrimaryDomain != "" || up.StagingDomain != "staging.example.com" ||
				up.Slug != "shop" || up.DeployHookID != app.DeployHookID || up.KeepReleases != 3 || up.GitBranch != "prod" {
				t.Fatalf("update: %+v %v", up, err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.SetAppHookSecret(ctx, app.ID, "udh_new") }); err != nil {
				t.Fatal(err)
			}
			if s, _ := db.AppHookSecret(ctx, app.ID); s != "udh_new" {
				t.Fatalf("rotated secret: %q", s)
			}
			// Deleting the credential leaves the app without one (the service
			// refuses while apps use it); deleting the server removes its apps.
			if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteApp(ctx, app.ID) }); err != nil {
				t.Fatal(err)
			}
			if _, err := db.GetApp(ctx, app.ID); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("deleted app: %v", err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteApp(ctx, app.ID) }); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("delete twice: %v", err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteServer(ctx, srv2) }); err != nil {
				t.Fatal(err)
			}
			if list, _ := db.ListApps(ctx, ""); len(list) != 0 {
				t.Fatalf("apps after server delete: %v", list)
			}
		})
	}
}
