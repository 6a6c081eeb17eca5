package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"upanel/internal/apperr"
)

// Git credential types, as the seed names them.
const (
	GitSSHKey = "ssh_key"
	GitToken  = "token"
	GitBasic  = "basic"
)

var colGitCredentials = SecretColumn{"git_credentials", "credentials"}

// GitCredential is a row of git_credentials without its secret material: the
// private key, token or password stay in the encrypted credentials column,
// which GitCredentialSecret opens for a deployment.
type GitCredential struct {
	ID   string
	Name string
	Type string // ssh_key, token or basic
	// PublicKey is the authorized_keys line of an ssh_key credential, to add
	// as a deploy key; empty for the other types.
	PublicKey string
	// KnownHosts are the pinned host keys of the git server (known_hosts
	// lines); ssh remotes are refused without them.
	KnownHosts string
	// Host is the one https host a token or basic credential may be sent
	// to: lower-cased, with :port when not 443, an IPv6 address in
	// brackets. Empty for ssh_key credentials, which known_hosts binds, and
	// for token and basic credentials written before migration 026, which
	// https repositories refuse until an admin sets it.
	Host string
	// Apps is how many apps use the credential.
	Apps      int
	CreatedAt time.Time
	UpdatedAt time.Time
}

// GitSecret is the decrypted material of a credential: the JSON sealed in
// git_credentials.credentials.
type GitSecret struct {
	// PrivateKey is the OpenSSH PEM of an ssh_key credential.
	PrivateKey string `json:"private_key,omitempty"`
	// Username goes with a token (optional) or a password (basic).
	Username string `json:"username,omitempty"`
	// Secret is the token or the password.
	Secret string `json:"secret,omitempty"`
}

// NewGitCredential is what creating a credential takes; the caller validates
// it, and the secret is sealed here.
type NewGitCredential struct {
	Name, Type            string
	Secret                GitSecret
	PublicKey, KnownHosts string
	Host                  string // token and basic: the https host it is for
}

const gitCredentialColumns = `id, name, type, COALESCE(public_key, ''), COALESCE(known_hosts, ''), COALESCE(host, ''), created_at, updated_at,
	(SELECT COUNT(*) FROM apps WHERE apps.git_credentials_id = git_credentials.id)`

func scanGitCredential(s interface{ Scan(...any) error }) (*GitCredential, error) {
	var c GitCredential
	var created, updated nullTime
	if err := s.Scan(&c.ID, &c.Name, &c.Type, &c.PublicKey, &c.KnownHosts, &c.Host, &created, &updated, &c.Apps); err != nil {
		return nil, err
	}
	c.CreatedAt, c.UpdatedAt = created.Time, updated.Time
	return &c, nil
}

func (tx *Tx) sealGitSecret(id string, s GitSecret) (any, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return tx.Seal(colGitCredentials, id, b)
}

// CreateGitCredential inserts a credential, its secret sealed in the same
// statement.
func (tx *Tx) CreateGitCredential(ctx context.Context, n NewGitCredential) (*GitCredential, error) {
	id, now := NewID(), tx.Now()
	sealed, err := tx.sealGitSecret(id, n.Secret)
	if err != nil {
		return nil, err
	}
	if _, err := tx.exec(ctx, `INSERT INTO git_credentials (id, name, type, credentials, public_key, known_hosts, host, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, n.Name, n.Type, sealed, nullString(n.PublicKey), nullString(n.KnownHosts), nullString(n.Host), now, now); err != nil {
		return nil, fmt.Errorf("store: create git credential: %w", err)
	}
	return tx.GetGitCredential(ctx, id)
}

// GetGitCredential returns a credential, without its secret.
func (tx *Tx) GetGitCredential(ctx context.Context, id string) (*GitCredential, error) {
	c, err := scanGitCredential(tx.queryRow(ctx, "SELECT "+gitCredentialColumns+" FROM git_credentials WHERE id = ?", id))
	return c, notFound(err, "git credential")
}

// GetGitCredential returns a credential, without its secret.
func (db *DB) GetGitCredential(ctx context.Context, id string) (*GitCredential, error) {
	c, err := scanGitCredential(db.queryRow(ctx, "SELECT "+gitCredentialColumns+" FROM git_credentials WHERE id = ?", id))
	return c, notFound(err, "git credential")
}

// ListGitCredentials returns every credential, by name, without secrets.
func (db *DB) ListGitCredentials(ctx context.Context) ([]*GitCredential, error) {
	rows, err := db.query(ctx, "SELECT "+gitCredentialColumns+" FROM git_credentials ORDER BY name, id")
	if err != nil {
		return nil, fmt.Errorf("store: list git credentials: %w", err)
	}
	defer rows.Close()
	out := []*GitCredential{}
	for rows.Next() {
		c, err := scanGitCredential(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// UpdateGitCredential changes a credential's name and pinned host keys.
func (tx *Tx) UpdateGitCredential(ctx context.Context, id, name, knownHosts string) error {
	res, err := tx.exec(ctx, "UPDATE git_credentials SET name = ?, known_hosts = ?, updated_at = ? WHERE id = ?",
		name, nullString(knownHosts), tx.Now(), id)
	if err != nil {
		return fmt.Errorf("store: update git credential: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "git credential not found")
	}
	return nil
}

// SetGitCredentialHost changes the https host a token or basic credential
// may be sent to ("" for none).
func (tx *Tx) SetGitCredentialHost(ctx context.Context, id, host string) error {
	res, err := tx.exec(ctx, "UPDATE git_credentials SET host = ?, updated_at = ? WHERE id = ?", nullString(host), tx.Now(), id)
	if err != nil {
		return fmt.Errorf("store: set git credential host: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "git credential not found")
	}
	return nil
}

// SetGitCredentialSecret replaces a credential's secret (rotation is
// replacement) and, for an ssh_key credential, its public key.
func (tx *Tx) SetGitCredentialSecret(ctx context.Context, id string, s GitSecret, publicKey string) error {
	sealed, err := tx.sealGitSecret(id, s)
	if err != nil {
		return err
	}
	res, err := tx.exec(ctx, "UPDATE git_credentials SET credentials = ?, public_key = ?, updated_at = ? WHERE id = ?",
		sealed, nullString(publicKey), tx.Now(), id)
	if err != nil {
		return fmt.Errorf("store: set git credential secret: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "git credential not found")
	}
	return nil
}

// DeleteGitCredential deletes a credential. Apps that used it are left with
// none (ON DELETE SET NULL); the service refuses while apps use it.
func (tx *Tx) DeleteGitCredential(ctx context.Context, id string) error {
	res, err := tx.exec(ctx, "DELETE FROM git_credentials WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("store: delete git credential: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "git credential not found")
	}
	return nil
}

// GitCredentialApps returns the names of the apps that use a credential.
func (tx *Tx) GitCredentialApps(ctx context.Context, id string) ([]string, error) {
	rows, err := tx.query(ctx, "SELECT name FROM apps WHERE git_credentials_id = ? ORDER BY name, id", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// GitCredentialSecret decrypts a credential's secret material, for a
// deployment or a repository check. It never goes to an API answer or a log.
func (db *DB) GitCredentialSecret(ctx context.Context, id string) (GitSecret, error) {
	var ct sql.NullString
	if err := db.queryRow(ctx, "SELECT credentials FROM git_credentials WHERE id = ?", id).Scan(&ct); err != nil {
		return GitSecret{}, notFound(err, "git credential")
	}
	return db.openGitSecret(id, ct)
}

// GitCredentialSecret decrypts a credential's secret material inside a
// transaction.
func (tx *Tx) GitCredentialSecret(ctx context.Context, id string) (GitSecret, error) {
	var ct sql.NullString
	if err := tx.queryRow(ctx, "SELECT credentials FROM git_credentials WHERE id = ?", id).Scan(&ct); err != nil {
		return GitSecret{}, notFound(err, "git credential")
	}
	return tx.db.openGitSecret(id, ct)
}

func (db *DB) openGitSecret(id string, ct sql.NullString) (GitSecret, error) {
	var s GitSecret
	if !ct.Valid || ct.String == "" {
		return s, fmt.Errorf("store: git credential %s has no secret", id)
	}
	p, err := db.unseal(colGitCredentials, id, ct.String)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(p, &s); err != nil {
		return s, fmt.Errorf("store: git credential %s: the decrypted secret is not JSON", id)
	}
	return s, nil
}
