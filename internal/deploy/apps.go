package deploy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"strings"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/store"
)

// AppInput is what a user gives to add an app. Empty optional fields take
// their defaults: branch main, deploy path AppsRoot/<slug>, compose file
// docker-compose.yml, slug from the name, 5 kept releases.
type AppInput struct {
	ServerID          string `json:"server_id"`
	Name              string `json:"name"`
	Slug              string `json:"slug,omitempty"`
	GitRepository     string `json:"git_repository"`
	GitBranch         string `json:"git_branch,omitempty"`
	GitCredentialsID  string `json:"git_credentials_id,omitempty"`
	DeployPath        string `json:"deploy_path,omitempty"`
	DockerComposeFile string `json:"docker_compose_file,omitempty"`
	PrimaryDomain     string `json:"primary_domain,omitempty"`
	StagingDomain     string `json:"staging_domain,omitempty"`
	KeepReleases      int    `json:"keep_releases,omitempty"`
	// The env sets, write-only.
	EnvVars       map[string]string `json:"env_vars,omitempty"`
	EnvProduction map[string]string `json:"env_production,omitempty"`
	EnvStaging    map[string]string `json:"env_staging,omitempty"`
}

// AppPatch changes an app's settings; a nil field keeps its value. The
// server and the slug cannot change: they name what runs on the server. Env
// sets change through SetEnv.
type AppPatch struct {
	Name              *string `json:"name,omitempty"`
	GitRepository     *string `json:"git_repository,omitempty"`
	GitBranch         *string `json:"git_branch,omitempty"`
	GitCredentialsID  *string `json:"git_credentials_id,omitempty"` // "" removes it
	DeployPath        *string `json:"deploy_path,omitempty"`
	DockerComposeFile *string `json:"docker_compose_file,omitempty"`
	PrimaryDomain     *string `json:"primary_domain,omitempty"` // "" removes it
	StagingDomain     *string `json:"staging_domain,omitempty"` // "" removes it
	KeepReleases      *int    `json:"keep_releases,omitempty"`
}

// appSettings are the checked settings of an app.
type appSettings struct {
	Name, Repo, Branch, CredID, Path, Compose, Primary, Staging string
	Keep                                                        int
}

func (a appSettings) diffMap() map[string]any {
	return map[string]any{"name": a.Name, "git_repository": a.Repo, "git_branch": a.Branch, "git_credentials_id": a.CredID,
		"deploy_path": a.Path, "docker_compose_file": a.Compose, "primary_domain": a.Primary, "staging_domain": a.Staging,
		"keep_releases": a.Keep}
}

func settingsOf(a *store.App) appSettings {
	return appSettings{Name: a.Name, Repo: a.GitRepository, Branch: a.GitBranch, CredID: a.GitCredentialsID, Path: a.DeployPath,
		Compose: a.DockerComposeFile, Primary: a.PrimaryDomain, Staging: a.StagingDomain, Keep: a.KeepReleases}
}

// check validates settings that do not need the database, filling defaults.
func (a *appSettings) check(slug string) error {
	var err error
	if a.Name, err = ValidAppName(a.Name); err != nil {
		return err
	}
	repo, err := ValidRepoURL(a.Repo)
	if err != nil {
		return err
	}
	a.Repo = repo.URL
	if a.Branch == "" {
		a.Branch = defaultBranch
	}
	if err := ValidBranch(a.Branch); err != nil {
		return err
	}
	if a.Path == "" {
		a.Path = AppsRoot + "/" + slug
	}
	if err := ValidDeployPath(a.Path, AppsRoot); err != nil {
		return err
	}
	if a.Compose == "" {
		a.Compose = defaultCompose
	}
	if err := ValidComposeFile(a.Compose); err != nil {
		return err
	}
	if a.Primary, err = ValidDomain("primary domain", a.Primary); err != nil {
		return err
	}
	if a.Staging, err = ValidDomain("staging domain", a.Staging); err != nil {
		return err
	}
	if a.Primary != "" && a.Primary == a.Staging {
		return invalid("the staging domain must differ from the primary domain")
	}
	if a.Keep, err = ValidKeepReleases(a.Keep); err != nil {
		return err
	}
	if a.CredID != "" && !validID(a.CredID) {
		return invalid("the git credential does not exist")
	}
	return nil
}

// validID accepts what a ULID looks like, so that junk never reaches a query.
func validID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// checkInTx validates what needs the database: the credential exists and
// suits the repository, and no other app of the server shares the directory.
func (s *Service) checkInTx(ctx context.Context, tx *store.Tx, a appSettings, serverID, appID string) error {
	repo, err := ValidRepoURL(a.Repo)
	if err != nil {
		return err
	}
	var cred *store.GitCredential
	if a.CredID != "" {
		if cred, err = tx.GetGitCredential(ctx, a.CredID); err != nil {
			if apperr.Is(err, apperr.NotFound) {
				return invalid("the git credential does not exist")
			}
			return err
		}
	}
	if err := credentialFit(cred, repo); err != nil {
		return err
	}
	paths, err := tx.ServerAppPaths(ctx, serverID)
	if err != nil {
		return err
	}
	for id, p := range paths {
		if id == appID {
			continue
		}
		if p == a.Path || strings.HasPrefix(p, a.Path+"/") || strings.HasPrefix(a.Path, p+"/") {
			other, err := tx.GetApp(ctx, id)
			name := id
			if err == nil {
				name = other.Name
			}
			return apperr.New(apperr.Conflict, "the deploy path %s overlaps that of the app %s (%s) on this server: choose another", a.Path, name, p)
		}
	}
	return nil
}

// newHookID returns 32 random URL-safe characters: the unguessable part of a
// push-to-deploy URL.
func newHookID() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newHookSecret returns a fresh push-to-deploy secret.
func newHookSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "udh_" + base64.RawURLEncoding.EncodeToString(b)
}

// HookURL is an app's push-to-deploy URL: the panel URL, /hooks/deploy/, and
// the app's hook id.
func (s *Service) HookURL(a *store.App) string {
	if a.DeployHookID == "" {
		return ""
	}
	p := "/hooks/deploy/" + url.PathEscape(a.DeployHookID)
	if s.BaseURL == nil {
		return p
	}
	u := *s.BaseURL
	u.Path = strings.TrimRight(u.Path, "/") + p
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String()
}

// CreateApp adds an app on a server. Its push-to-deploy secret is made here
// and returned: this is the only time it is shown.
func (s *Service) CreateApp(ctx context.Context, p *auth.Principal, in AppInput, m auth.Meta) (*store.App, string, error) {
	set := appSettings{Name: in.Name, Repo: in.GitRepository, Branch: in.GitBranch, CredID: strings.TrimSpace(in.GitCredentialsID),
		Path: in.DeployPath, Compose: in.DockerComposeFile, Primary: in.PrimaryDomain, Staging: in.StagingDomain, Keep: in.KeepReleases}
	name, err := ValidAppName(in.Name)
	if err != nil {
		return nil, "", err
	}
	slug := in.Slug
	if slug == "" {
		if slug = Slugify(name); slug == "" {
			return nil, "", invalid("the name has no letters or digits to make a slug from: give a slug (a-z, 0-9 and -)")
		}
	}
	if err := ValidSlug(slug); err != nil {
		return nil, "", err
	}
	if err := set.check(slug); err != nil {
		return nil, "", err
	}
	for _, env := range []map[string]string{in.EnvVars, in.EnvProduction, in.EnvStaging} {
		if err := validEnvSet(env); err != nil {
			return nil, "", err
		}
	}
	if !validID(in.ServerID) {
		return nil, "", invalid("the server does not exist")
	}
	hookID, secret := newHookID(), newHookSecret()
	var app *store.App
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		srv, err := tx.GetServer(ctx, in.ServerID)
		if err != nil {
			if apperr.Is(err, apperr.NotFound) {
				return invalid("the server does not exist")
			}
			return err
		}
		if err := s.checkInTx(ctx, tx, set, srv.ID, ""); err != nil {
			return err
		}
		app, err = tx.CreateApp(ctx, store.NewApp{ServerID: srv.ID, Name: set.Name, Slug: slug, GitRepository: set.Repo,
			GitBranch: set.Branch, GitCredentialsID: set.CredID, DeployPath: set.Path, DockerComposeFile: set.Compose,
			PrimaryDomain: set.Primary, StagingDomain: set.Staging, KeepReleases: set.Keep,
			DeployHookID: hookID, DeployHookSecret: secret,
			EnvBase: in.EnvVars, EnvProduction: in.EnvProduction, EnvStaging: in.EnvStaging})
		if err != nil {
			return err
		}
		after := set.diffMap()
		after["server_id"], after["slug"], after["deploy_hook_secret"] = srv.ID, slug, "new"
		changes := audit.Diff(nil, after, "deploy_hook_secret")
		for scope, env := range map[string]map[string]string{store.EnvBase: in.EnvVars, store.EnvProduction: in.EnvProduction, store.EnvStaging: in.EnvStaging} {
			for k, v := range envChanges(scope, nil, env) {
				changes[k] = v
			}
		}
		return s.record(ctx, tx, p, m, "created", "App", app.ID, "app "+set.Name+" added on server "+srv.Name, changes)
	})
	if err != nil {
		return nil, "", err
	}
	return app, secret, nil
}

// UpdateApp changes an app's settings.
func (s *Service) UpdateApp(ctx context.Context, p *auth.Principal, id string, in AppPatch, m auth.Meta) (*store.App, error) {
	var app *store.App
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		old, err := tx.GetApp(ctx, id)
		if err != nil {
			return err
		}
		set := settingsOf(old)
		for _, f := range []struct {
			dst *string
			src *string
		}{{&set.Name, in.Name}, {&set.Repo, in.GitRepository}, {&set.Branch, in.GitBranch}, {&set.CredID, in.GitCredentialsID},
			{&set.Path, in.DeployPath}, {&set.Compose, in.DockerComposeFile}, {&set.Primary, in.PrimaryDomain}, {&set.Staging, in.StagingDomain}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
		set.CredID = strings.TrimSpace(set.CredID)
		if in.KeepReleases != nil {
			if *in.KeepReleases == 0 {
				return invalid("keep_releases must be 1 to %d", maxKeep)
			}
			set.Keep = *in.KeepReleases
		}
		// Empty means "the default" when adding an app; here it would be a
		// silent change, so the required fields must be given.
		if (in.GitBranch != nil && *in.GitBranch == "") || (in.DeployPath != nil && *in.DeployPath == "") ||
			(in.DockerComposeFile != nil && *in.DockerComposeFile == "") {
			return invalid("the branch, deploy path and compose file cannot be empty")
		}
		if err := set.check(old.Slug); err != nil {
			return err
		}
		if err := s.checkInTx(ctx, tx, set, old.ServerID, id); err != nil {
			return err
		}
		if app, err = tx.UpdateApp(ctx, id, store.AppUpdate{Name: set.Name, GitRepository: set.Repo, GitBranch: set.Branch,
			GitCredentialsID: set.CredID, DeployPath: set.Path, DockerComposeFile: set.Compose, PrimaryDomain: set.Primary,
			StagingDomain: set.Staging, KeepReleases: set.Keep}); err != nil {
			return err
		}
		changes := audit.Diff(settingsOf(old).diffMap(), set.diffMap())
		if len(changes) == 0 {
			return nil
		}
		return s.record(ctx, tx, p, m, "updated", "App", id, "app "+set.Name+" updated", changes)
	})
	return app, err
}

// DeleteApp removes an app from the panel, with its deployments (by
// cascade), whatever state they are in: a deployment still running on the
// server finishes there, unrecorded. Nothing on the server is removed: the
// containers keep running until stopped there.
func (s *Service) DeleteApp(ctx context.Context, p *auth.Principal, id string, m auth.Meta) error {
	return s.DB.InTx(ctx, func(tx *store.Tx) error {
		a, err := tx.GetApp(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteApp(ctx, id); err != nil {
			return err
		}
		return s.record(ctx, tx, p, m, "deleted", "App", id, "app "+a.Name+" removed from the panel (nothing on the server was changed)",
			audit.Diff(map[string]any{"name": a.Name, "server_id": a.ServerID, "slug": a.Slug, "deploy_path": a.DeployPath}, nil))
	})
}

// RotateHookSecret replaces an app's push-to-deploy secret with a fresh one,
// which it returns: this is the only time it is shown. Deliveries signed
// with the old secret are refused from now on.
func (s *Service) RotateHookSecret(ctx context.Context, p *auth.Principal, id string, m auth.Meta) (string, error) {
	secret := newHookSecret()
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		a, err := tx.GetApp(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.SetAppHookSecret(ctx, id, secret); err != nil {
			return err
		}
		return s.record(ctx, tx, p, m, "updated", "App", id, "app "+a.Name+": new push-to-deploy secret",
			audit.Diff(map[string]any{"deploy_hook_secret": "old"}, map[string]any{"deploy_hook_secret": "new"}, "deploy_hook_secret"))
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}
