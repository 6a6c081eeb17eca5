package storetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"upanel/internal/store"
)

// SecretRows creates one row in every table that has a secret column and puts
// canary into every secret column, through the store's own encryption. It
// returns the row id per table.
func SecretRows(t testing.TB, db *store.DB, canary string) map[string]string {
	t.Helper()
	ctx := context.Background()
	ids := map[string]string{}
	for _, table := range []string{"users", "servers", "git_credentials", "apps", "backup_destinations", "mail_outbox", "panel_credentials", "webhook_targets"} {
		ids[table] = store.NewID()
	}
	Exec(t, db, "INSERT INTO users (id, email, password) VALUES (?, ?, ?)", ids["users"], "canary-"+ids["users"]+"@example.test", "x")
	Exec(t, db, "INSERT INTO servers (id, name, host, ssh_private_key, ssh_public_key) VALUES (?, 'canary', '192.0.2.1', '', 'ssh-ed25519 AAAA')", ids["servers"])
	Exec(t, db, "INSERT INTO git_credentials (id, name, type, credentials) VALUES (?, 'canary', 'token', '')", ids["git_credentials"])
	Exec(t, db, "INSERT INTO apps (id, server_id, name, git_repository, deploy_path) VALUES (?, ?, 'canary', 'https://git.example.test/a.git', '/srv/a')", ids["apps"], ids["servers"])
	Exec(t, db, "INSERT INTO backup_destinations (id, name, type, credentials) VALUES (?, 'canary', 'local', '')", ids["backup_destinations"])
	Exec(t, db, "INSERT INTO mail_outbox (id, kind, to_address, subject) VALUES (?, 'canary', 'canary@example.test', 'canary')", ids["mail_outbox"])
	Exec(t, db, "INSERT INTO panel_credentials (id, cert_pem, private_key) VALUES (?, 'canary', '')", ids["panel_credentials"])
	Exec(t, db, "INSERT INTO webhook_targets (id, name, url, format, secret, types) VALUES (?, 'canary', '', 'generic', '', '*')", ids["webhook_targets"])
	err := db.InTx(ctx, func(tx *store.Tx) error {
		for _, c := range store.SecretColumns() {
			id, ok := ids[c.Table]
			if !ok {
				t.Fatalf("SecretRows has no row for table %s: add one", c.Table)
			}
			if err := tx.SetSecret(ctx, c, id, []byte(canary)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("set secrets: %v", err)
	}
	return ids
}

// CheckSecrets asserts that every secret column of the rows decrypts to canary.
func CheckSecrets(t testing.TB, db *store.DB, ids map[string]string, canary string) {
	t.Helper()
	for _, c := range store.SecretColumns() {
		got, ok, err := db.GetSecret(context.Background(), c, ids[c.Table])
		if err != nil || !ok || string(got) != canary {
			t.Errorf("%s: got %q, %v, %v; want the canary back", c, got, ok, err)
		}
	}
}

// AssertNotStored fails if needle appears in the stored bytes of the database:
// the SQLite file with its WAL, or a pg_dump of the PostgreSQL database.
func AssertNotStored(t testing.TB, db *store.DB, rawURL, needle string) {
	t.Helper()
	for name, data := range StoredBytes(t, db, rawURL) {
		if bytes.Contains(data, []byte(needle)) {
			t.Errorf("%q appears in plain text in %s", needle, name)
		}
	}
}

// StoredBytes returns what the database keeps on disk, by file name.
func StoredBytes(t testing.TB, db *store.DB, rawURL string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if db.Dialect() == "postgres" {
		pgDump, err := exec.LookPath("pg_dump")
		if err != nil {
			t.Fatalf("pg_dump is needed to inspect the stored data: %v", err)
		}
		cmd := exec.Command(pgDump, "--no-owner", "--dbname", rawURL)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		dump, err := cmd.Output()
		if err != nil {
			t.Fatalf("pg_dump: %v: %s", err, stderr.String())
		}
		if !bytes.Contains(dump, []byte("CREATE TABLE public.users")) {
			t.Fatalf("pg_dump output does not look like a dump:\n%s", dump[:min(len(dump), 500)])
		}
		out["pg_dump"] = dump
		return out
	}
	path := store.SQLitePath(rawURL)
	matches, _ := filepath.Glob(path + "*")
	for _, p := range matches {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = data
	}
	if len(out[filepath.Base(path)]) == 0 {
		t.Fatalf("no SQLite file at %s", path)
	}
	return out
}
