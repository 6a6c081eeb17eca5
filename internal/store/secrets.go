package store

import (
	"context"
	"errors"
	"fmt"

	"upanel/internal/apperr"
	"upanel/internal/secret"
)

// SecretColumn names a column whose values are always encrypted.
type SecretColumn struct{ Table, Column string }

// secretColumns is every encrypted column: the seed's list, plus additions as
// later features bring them. Rotation, the startup key check and the canary test
// all walk this list, so a new secret column is covered by adding it here.
var secretColumns = []SecretColumn{
	{"users", "two_factor_secret"},
	{"users", "recovery_codes"},
	{"servers", "ssh_private_key"},
	{"git_credentials", "credentials"},
	{"apps", "env_vars"},
	{"apps", "env_production"},
	{"apps", "env_staging"},
	{"backup_destinations", "credentials"},
	// Addition: outgoing mail bodies carry reset and invite links (migration 021).
	{"mail_outbox", "body"},
	// Addition: the private key of the client certificate agents pin (023).
	{"panel_credentials", "private_key"},
	// Addition: outgoing webhook URLs (Slack's and Discord's carry their
	// credential) and the HMAC signing secret (024).
	{"webhook_targets", "url"},
	{"webhook_targets", "secret"},
	// Addition: the push-to-deploy HMAC secret or token of an app (025).
	{"apps", "deploy_hook_secret"},
}

// SecretColumns returns every encrypted column (a copy).
func SecretColumns() []SecretColumn { return append([]SecretColumn(nil), secretColumns...) }

func (c SecretColumn) String() string { return c.Table + "." + c.Column }

func (c SecretColumn) scope(id string) secret.Scope {
	return secret.Scope{Table: c.Table, Column: c.Column, RowID: id}
}

func (c SecretColumn) valid() bool {
	for _, k := range secretColumns {
		if k == c {
			return true
		}
	}
	return false
}

func (db *DB) keyring() (*secret.Keyring, error) {
	kr := db.keys.Load()
	if kr == nil {
		return nil, errors.New("store: no keyring configured")
	}
	return kr, nil
}

// seal encrypts plaintext for a row's secret column. A nil plaintext is NULL.
func (db *DB) seal(c SecretColumn, id string, plaintext []byte) (any, error) {
	if plaintext == nil {
		return nil, nil
	}
	kr, err := db.keyring()
	if err != nil {
		return nil, err
	}
	ct, err := kr.Encrypt(plaintext, c.scope(id))
	if err != nil {
		return nil, fmt.Errorf("store: encrypt %s: %w", c, err)
	}
	return ct, nil
}

// unseal decrypts a row's secret column value.
func (db *DB) unseal(c SecretColumn, id, ciphertext string) ([]byte, error) {
	kr, err := db.keyring()
	if err != nil {
		return nil, err
	}
	p, err := kr.Decrypt(ciphertext, c.scope(id))
	if err != nil {
		return nil, fmt.Errorf("store: decrypt %s of %s: %w", c, id, err)
	}
	return p, nil
}

// Seal encrypts plaintext for a row's secret column, for an INSERT that writes
// the row and its secret at once. nil plaintext is NULL.
func (tx *Tx) Seal(c SecretColumn, id string, plaintext []byte) (any, error) {
	if !c.valid() {
		return nil, fmt.Errorf("store: %s is not a secret column", c)
	}
	return tx.db.seal(c, id, plaintext)
}

// SetSecret encrypts plaintext into a row's secret column; nil clears it.
func (tx *Tx) SetSecret(ctx context.Context, c SecretColumn, id string, plaintext []byte) error {
	if !c.valid() {
		return fmt.Errorf("store: %s is not a secret column", c)
	}
	v, err := tx.db.seal(c, id, plaintext)
	if err != nil {
		return err
	}
	// Table and column names come from SecretColumns, never from input.
	res, err := tx.exec(ctx, "UPDATE "+c.Table+" SET "+c.Column+" = ? WHERE id = ?", v, id)
	if err != nil {
		return fmt.Errorf("store: set %s: %w", c, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "%s not found", c.Table)
	}
	return nil
}

// GetSecret decrypts a row's secret column. ok is false when it is NULL.
func (db *DB) GetSecret(ctx context.Context, c SecretColumn, id string) (plaintext []byte, ok bool, err error) {
	if !c.valid() {
		return nil, false, fmt.Errorf("store: %s is not a secret column", c)
	}
	var ct *string
	if err := db.queryRow(ctx, "SELECT "+c.Column+" FROM "+c.Table+" WHERE id = ?", id).Scan(&ct); err != nil {
		return nil, false, notFound(err, c.Table)
	}
	if ct == nil {
		return nil, false, nil
	}
	p, err := db.unseal(c, id, *ct)
	return p, err == nil, err
}
