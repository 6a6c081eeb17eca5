package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"upanel/internal/apperr"
)

// App statuses, as the seed lists them. They follow the production
// environment.
const (
	AppPending   = "pending"
	AppDeploying = "deploying"
	AppRunning   = "running"
	AppStopped   = "stopped"
	AppFailed    = "failed"
)

// Env scopes: the base set and the per-environment overrides, each a column.
const (
	EnvBase       = "base"
	EnvProduction = "production"
	EnvStaging    = "staging"
)

var (
	colAppEnvBase       = SecretColumn{"apps", "env_vars"}
	colAppEnvProduction = SecretColumn{"apps", "env_production"}
	colAppEnvStaging    = SecretColumn{"apps", "env_staging"}
	colAppHookSecret    = SecretColumn{"apps", "deploy_hook_secret"}
)

// envColumn returns the secret column of an env scope.
func envColumn(scope string) (SecretColumn, error) {
	switch scope {
	case EnvBase:
		return colAppEnvBase, nil
	case EnvProduction:
		return colAppEnvProduction, nil
	case EnvStaging:
		return colAppEnvStaging, nil
	}
	return SecretColumn{}, apperr.New(apperr.Invalid, "the env scope must be base, production or staging")
}

// App is a row of apps with every seed column and the 025 additions, except
// the encrypted ones: the env sets (AppEnv) and the push-to-deploy secret
// (AppHookSecret).
type App struct {
	ID       string
	ServerID string
	Name     string
	// Slug names the app on its server: the compose project is
	// upanel-<slug>-<environment>. Unique per server.
	Slug          string
	GitRepository string
	GitBranch     string
	// GitCredentialsID is "" for a public repository.
	GitCredentialsID  string
	DeployPath        string
	DockerComposeFile string
	PrimaryDomain     string
	StagingDomain     string
	Status            string
	CurrentCommit     string
	// DeployHookID is the unguessable part of the push-to-deploy URL.
	DeployHookID string
	// HasHookSecret is true when a push-to-deploy secret is set.
	HasHookSecret bool
	KeepReleases  int
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

const appColumns = `id, server_id, name, COALESCE(slug, ''), git_repository, git_branch, COALESCE(git_credentials_id, ''),
	deploy_path, docker_compose_file, COALESCE(primary_domain, ''), COALESCE(staging_domain, ''), status,
	COALESCE(current_commit, ''), COALESCE(deploy_hook_id, ''), deploy_hook_secret IS NOT NULL, keep_releases, created_at, updated_at`

func scanApp(s interface{ Scan(...any) error }) (*App, error) {
	var a App
	var created, updated nullTime
	err := s.Scan(&a.ID, &a.ServerID, &a.Name, &a.Slug, &a.GitRepository, &a.GitBranch, &a.GitCredentialsID,
		&a.DeployPath, &a.DockerComposeFile, &a.PrimaryDomain, &a.StagingDomain, &a.Status,
		&a.CurrentCommit, &a.DeployHookID, &a.HasHookSecret, &a.KeepReleases, &created, &updated)
	if err != nil {
		return nil, err
	}
	a.ServerID, a.GitCredentialsID = strings.TrimSpace(a.ServerID), strings.TrimSpace(a.GitCredentialsID)
	a.DeployHookID = strings.TrimSpace(a.DeployHookID)
	a.CreatedAt, a.UpdatedAt = created.Time, updated.Time
	return &a, nil
}

// NewApp is what creating an app takes. The caller validates every field and
// makes the hook id and secret; the env sets and the secret are sealed here.
type NewApp struct {
	ServerID, Name, Slug               string
	GitRepository, GitBranch           string
	GitCredentialsID                   string
	DeployPath, DockerComposeFile      string
	PrimaryDomain, StagingDomain       string
	KeepReleases                       int
	DeployHookID, DeployHookSecret     string
	EnvBase, EnvProduction, EnvStaging map[string]string
}

// AppUpdate is what editing an app changes: every setting but the server and
// the slug, which name what runs on the server.
type AppUpdate struct {
	Name                          string
	GitRepository, GitBranch      string
	GitCredentialsID              string
	DeployPath, DockerComposeFile string
	PrimaryDomain, StagingDomain  string
	KeepReleases                  int
}

// slugTaken turns the unique index on (server_id, slug) into a message.
func slugTaken(err error, slug string) error {
	if isUniqueViolation(err) {
		return apperr.Wrap(err, apperr.Conflict, "an app with the slug %q already exists on this server: choose another name or slug", slug)
	}
	return err
}

// CreateApp inserts an app, its secrets sealed in the same statement.
func (tx *Tx) CreateApp(ctx context.Context, n NewApp) (*App, error) {
	id, now := NewID(), tx.Now()
	hook, err := tx.Seal(colAppHookSecret, id, []byte(n.DeployHookSecret))
	if err != nil {
		return nil, err
	}
	env := make([]any, 3)
	for i, x := range []struct {
		c SecretColumn
		m map[string]string
	}{{colAppEnvBase, n.EnvBase}, {colAppEnvProduction, n.EnvProduction}, {colAppEnvStaging, n.EnvStaging}} {
		if env[i], err = tx.sealEnv(x.c, id, x.m); err != nil {
			return nil, err
		}
	}
	_, err = tx.exec(ctx, `INSERT INTO apps (id, server_id, name, slug, git_repository, git_branch, git_credentials_id, deploy_path,
		docker_compose_file, env_vars, env_production, env_staging, primary_domain, staging_domain, status, keep_releases,
		deploy_hook_id, deploy_hook_secret, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)`,
		id, n.ServerID, n.Name, n.Slug, n.GitRepository, n.GitBranch, nullString(n.GitCredentialsID), n.DeployPath,
		n.DockerComposeFile, env[0], env[1], env[2], nullString(n.PrimaryDomain), nullString(n.StagingDomain), n.KeepReleases,
		n.DeployHookID, hook, now, now)
	if err != nil {
		return nil, slugTaken(fmt.Errorf("store: create app: %w", err), n.Slug)
	}
	return tx.GetApp(ctx, id)
}

// GetApp returns an app, without its secrets.
func (tx *Tx) GetApp(ctx context.Context, id string) (*App, error) {
	a, err := scanApp(tx.queryRow(ctx, "SELECT "+appColumns+" FROM apps WHERE id = ?", id))
	return a, notFound(err, "app")
}

// GetApp returns an app, without its secrets.
func (db *DB) GetApp(ctx context.Context, id string) (*App, error) {
	a, err := scanApp(db.queryRow(ctx, "SELECT "+appColumns+" FROM apps WHERE id = ?", id))
	return a, notFound(err, "app")
}

// AppByHookID finds the app a push-to-deploy URL names.
func (db *DB) AppByHookID(ctx context.Context, hookID string) (*App, error) {
	if hookID == "" {
		return nil, apperr.New(apperr.NotFound, "app not found")
	}
	a, err := scanApp(db.queryRow(ctx, "SELECT "+appColumns+" FROM apps WHERE deploy_hook_id = ?", hookID))
	return a, notFound(err, "app")
}

// ListApps returns the apps, by name; serverID, when set, keeps one server's.
func (db *DB) ListApps(ctx context.Context, serverID string) ([]*App, error) {
	q, args := "SELECT "+appColumns+" FROM apps", []any{}
	if serverID != "" {
		q, args = q+" WHERE server_id = ?", append(args, serverID)
	}
	rows, err := db.query(ctx, q+" ORDER BY name, id", args...)
	if err != nil {
		return nil, fmt.Errorf("store: list apps: %w", err)
	}
	defer rows.Close()
	out := []*App{}
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ServerAppPaths returns the deploy paths of a server's apps by app id, so
// that two apps never share a directory.
func (tx *Tx) ServerAppPaths(ctx context.Context, serverID string) (map[string]string, error) {
	rows, err := tx.query(ctx, "SELECT id, deploy_path FROM apps WHERE server_id = ?", serverID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, p string
		if err := rows.Scan(&id, &p); err != nil {
			return nil, err
		}
		out[id] = p
	}
	return out, rows.Err()
}

// UpdateApp changes an app's settings.
func (tx *Tx) UpdateApp(ctx context.Context, id string, u AppUpdate) (*App, error) {
	res, err := tx.exec(ctx, `UPDATE apps SET name = ?, git_repository = ?, git_branch = ?, git_credentials_id = ?, deploy_path = ?,
		docker_compose_file = ?, primary_domain = ?, staging_domain = ?, keep_releases = ?, updated_at = ? WHERE id = ?`,
		u.Name, u.GitRepository, u.GitBranch, nullString(u.GitCredentialsID), u.DeployPath, u.DockerComposeFile,
		nullString(u.PrimaryDomain), nullString(u.StagingDomain), u.KeepReleases, tx.Now(), id)
	if err != nil {
		return nil, fmt.Errorf("store: update app: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, apperr.New(apperr.NotFound, "app not found")
	}
	return tx.GetApp(ctx, id)
}

// DeleteApp deletes an app and, by cascade, its deployments and hook
// deliveries (and its domains' rows). Nothing on the server is touched.
func (tx *Tx) DeleteApp(ctx context.Context, id string) error {
	res, err := tx.exec(ctx, "DELETE FROM apps WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("store: delete app: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "app not found")
	}
	return nil
}

// sealEnv encrypts an env set as a JSON object; an empty set is NULL.
func (tx *Tx) sealEnv(c SecretColumn, id string, m map[string]string) (any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m) // keys sorted
	if err != nil {
		return nil, err
	}
	return tx.Seal(c, id, b)
}

// SetAppEnv replaces an env set of an app (scope base, production or
// staging); an empty set clears the column.
func (tx *Tx) SetAppEnv(ctx context.Context, id, scope string, m map[string]string) error {
	c, err := envColumn(scope)
	if err != nil {
		return err
	}
	var plain []byte
	if len(m) > 0 {
		if plain, err = json.Marshal(m); err != nil {
			return err
		}
	}
	if err := tx.SetSecret(ctx, c, id, plain); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return apperr.New(apperr.NotFound, "app not found")
		}
		return err
	}
	_, err = tx.exec(ctx, "UPDATE apps SET updated_at = ? WHERE id = ?", tx.Now(), id)
	return err
}

// AppEnv decrypts an env set of an app, in a transaction; a missing set is
// empty.
func (tx *Tx) AppEnv(ctx context.Context, id, scope string) (map[string]string, error) {
	c, err := envColumn(scope)
	if err != nil {
		return nil, err
	}
	var ct sql.NullString
	if err := tx.queryRow(ctx, "SELECT "+c.Column+" FROM apps WHERE id = ?", id).Scan(&ct); err != nil {
		return nil, notFound(err, "app")
	}
	return tx.db.openEnv(c, id, ct)
}

// AppEnv decrypts an env set of an app; a missing set is empty. The values
// are for the deployer only.
func (db *DB) AppEnv(ctx context.Context, id, scope string) (map[string]string, error) {
	c, err := envColumn(scope)
	if err != nil {
		return nil, err
	}
	var ct sql.NullString
	if err := db.queryRow(ctx, "SELECT "+c.Column+" FROM apps WHERE id = ?", id).Scan(&ct); err != nil {
		return nil, notFound(err, "app")
	}
	return db.openEnv(c, id, ct)
}

func (db *DB) openEnv(c SecretColumn, id string, ct sql.NullString) (map[string]string, error) {
	m := map[string]string{}
	if !ct.Valid || ct.String == "" {
		return m, nil
	}
	p, err := db.unseal(c, id, ct.String)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, fmt.Errorf("store: %s of %s: the decrypted value is not a JSON object", c, id)
	}
	return m, nil
}

// AppEnvKeys returns the keys of an env set, sorted, without their values.
func (db *DB) AppEnvKeys(ctx context.Context, id, scope string) ([]string, error) {
	m, err := db.AppEnv(ctx, id, scope)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

// SetAppHookSecret replaces an app's push-to-deploy secret.
func (tx *Tx) SetAppHookSecret(ctx context.Context, id, secret string) error {
	if secret == "" {
		return apperr.New(apperr.Invalid, "a push-to-deploy secret must not be empty")
	}
	if err := tx.SetSecret(ctx, colAppHookSecret, id, []byte(secret)); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return apperr.New(apperr.NotFound, "app not found")
		}
		return err
	}
	_, err := tx.exec(ctx, "UPDATE apps SET updated_at = ? WHERE id = ?", tx.Now(), id)
	return err
}

// AppHookSecret decrypts an app's push-to-deploy secret, for checking a
// delivery's signature or token.
func (db *DB) AppHookSecret(ctx context.Context, id string) (string, error) {
	p, ok, err := db.GetSecret(ctx, colAppHookSecret, id)
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return "", apperr.New(apperr.NotFound, "app not found")
		}
		return "", err
	}
	if !ok {
		return "", apperr.New(apperr.NotFound, "the app has no push-to-deploy secret")
	}
	return string(p), nil
}

// AppSecrets is every secret an app's deployment handles, decrypted: its env
// sets, its hook secret, and its git credential's material. The deployer
// masks each of these values in what it stores.
type AppSecrets struct {
	EnvBase, EnvProduction, EnvStaging map[string]string
	HookSecret                         string
	Git                                *GitSecret // nil without a credential
}

// AppSecretMaterial decrypts every secret of an app, for a deployment.
func (db *DB) AppSecretMaterial(ctx context.Context, id string) (*AppSecrets, error) {
	a, err := db.GetApp(ctx, id)
	if err != nil {
		return nil, err
	}
	out := &AppSecrets{}
	if out.EnvBase, err = db.AppEnv(ctx, id, EnvBase); err != nil {
		return nil, err
	}
	if out.EnvProduction, err = db.AppEnv(ctx, id, EnvProduction); err != nil {
		return nil, err
	}
	if out.EnvStaging, err = db.AppEnv(ctx, id, EnvStaging); err != nil {
		return nil, err
	}
	if a.HasHookSecret {
		if out.HookSecret, err = db.AppHookSecret(ctx, id); err != nil {
			return nil, err
		}
	}
	if a.GitCredentialsID != "" {
		g, err := db.GitCredentialSecret(ctx, a.GitCredentialsID)
		if err != nil {
			return nil, err
		}
		out.Git = &g
	}
	return out, nil
}
