package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"upanel/internal/secret"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

const canary = "CANARY-cmd-5b2e77-secret"

// panelEnv is the environment of a panel under test on one dialect.
func panelEnv(t *testing.T, dialect string) (vars map[string]string, dataDir, dbURL string) {
	dataDir = t.TempDir()
	vars = map[string]string{"UPANEL_DATA_DIR": dataDir, "UPANEL_LOG_FORMAT": "json", "UPANEL_SHUTDOWN_TIMEOUT": "5s"}
	if dialect == "postgres" {
		dbURL = storetest.NewPostgresDatabase(t)
		vars["UPANEL_DATABASE_URL"] = dbURL
	} else {
		dbURL = "sqlite:" + filepath.Join(dataDir, "upanel.db")
	}
	return vars, dataDir, dbURL
}

// openWithKeyFile opens the panel's database as the panel would, with the keys
// in its key file.
func openWithKeyFile(t *testing.T, dataDir, dbURL string) *store.DB {
	t.Helper()
	keys, err := secret.ReadKeyFile(filepath.Join(dataDir, "app.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	return storetest.OpenURL(t, dbURL, storetest.Keyring(t, keys...))
}

func TestServeHealthAndReadiness(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			vars, dataDir, dbURL := panelEnv(t, d)
			p := startServe(t, vars)
			if code, body := get(t, p.base+"/healthz"); code != 200 || body != "ok\n" {
				t.Fatalf("/healthz = %d %q", code, body)
			}
			if code, _ := get(t, p.base+"/readyz"); code != 200 {
				t.Fatalf("/readyz = %d", code)
			}
			if d == "sqlite" {
				info, err := os.Stat(filepath.Join(dataDir, "upanel.db"))
				if err != nil || info.Mode().Perm() != 0o600 {
					t.Fatalf("database file mode: %v %v", info.Mode(), err)
				}
			}
			// A database that is not at this binary's version is not ready.
			db := openWithKeyFile(t, dataDir, dbURL)
			storetest.Exec(t, db, "DELETE FROM schema_migrations WHERE version = ?", store.LatestVersion())
			if code, body := get(t, p.base+"/readyz"); code != 503 || !strings.Contains(body, "migrations") {
				t.Fatalf("/readyz with a pending migration = %d %q", code, body)
			}
			if code, _ := get(t, p.base+"/healthz"); code != 200 {
				t.Fatalf("/healthz must stay 200 while not ready, got %d", code)
			}
			storetest.Exec(t, db, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'x', ?)", store.LatestVersion(), db.Now())
			if code, _ := get(t, p.base+"/readyz"); code != 200 {
				t.Fatalf("/readyz after restoring = %d", code)
			}
			p.stop(t)
			if !strings.Contains(p.logs.String(), `"msg":"stopped"`) {
				t.Fatalf("no clean stop in the log:\n%s", p.logs)
			}
		})
	}
}

// snapshot is what a refused start must leave untouched: every ciphertext,
// the registered keys and the applied migrations.
func snapshot(t *testing.T, db *store.DB) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, c := range store.SecretColumns() {
		var v string
		if err := db.QueryRowRaw(ctx, "SELECT COALESCE(MAX("+c.Column+"), '') FROM "+c.Table).Scan(&v); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%s\n", c, v)
	}
	var keys, migrations int
	var checks string
	db.QueryRowRaw(ctx, "SELECT COUNT(*), COALESCE(MAX(check_value), '') FROM encryption_keys").Scan(&keys, &checks)
	db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&migrations)
	fmt.Fprintf(&b, "keys=%d %s migrations=%d", keys, checks, migrations)
	return b.String()
}

func TestServeRefusesAWrongKeyAndChangesNothing(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			vars, dataDir, dbURL := panelEnv(t, d)
			startServe(t, vars).stop(t)
			db := openWithKeyFile(t, dataDir, dbURL)
			ids := storetest.SecretRows(t, db, canary)
			before := snapshot(t, db)

			wrong, _ := secret.GenerateKey()
			bad := map[string]string{}
			for k, v := range vars {
				bad[k] = v
			}
			bad["UPANEL_APP_KEY"] = wrong.Encode()
			_, _, err := runCmd(t, bad, "serve", "--addr", "127.0.0.1:0")
			if err == nil || !strings.Contains(err.Error(), "not configured") || !strings.Contains(err.Error(), "nothing was changed") {
				t.Fatalf("serve with a wrong key: %v", err)
			}
			// The key file of the data dir is ignored when a key is given, and
			// a different key file is refused the same way.
			os.WriteFile(filepath.Join(dataDir, "other.key"), []byte(wrong.Encode()+"\n"), 0o600)
			delete(bad, "UPANEL_APP_KEY")
			bad["UPANEL_APP_KEY_FILE"] = filepath.Join(dataDir, "other.key")
			if _, _, err := runCmd(t, bad, "serve", "--addr", "127.0.0.1:0"); err == nil {
				t.Fatal("serve with a wrong key file started")
			}
			if after := snapshot(t, db); after != before {
				t.Fatalf("a refused start changed the database:\nbefore %s\nafter  %s", before, after)
			}
			// The right key still works.
			startServe(t, vars).stop(t)
			storetest.CheckSecrets(t, db, ids, canary)
		})
	}
}

func TestKeyRotateWithKeyFile(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			vars, dataDir, dbURL := panelEnv(t, d)
			keyFile := filepath.Join(dataDir, "app.key")
			startServe(t, vars).stop(t)
			db := openWithKeyFile(t, dataDir, dbURL)
			ids := storetest.SecretRows(t, db, canary)
			oldKeys, _ := secret.ReadKeyFile(keyFile, true)

			// Not while serve runs: it would keep writing with the old key.
			p := startServe(t, vars)
			if _, _, err := runCmd(t, vars, "key", "rotate"); !errors.Is(err, store.ErrInstanceBusy) {
				t.Fatalf("rotate beside a running serve: %v", err)
			}
			p.stop(t)

			out, _, err := runCmd(t, vars, "key", "rotate", "--batch", "2")
			if err != nil {
				t.Fatalf("rotate: %v\n%s", err, out)
			}
			newKeys, _ := secret.ReadKeyFile(keyFile, true)
			if len(newKeys) != 1 || newKeys[0].ID() == oldKeys[0].ID() {
				t.Fatalf("key file after rotation holds %d keys (old %s): %s", len(newKeys), oldKeys[0].ID(), out)
			}
			for _, want := range []string{fmt.Sprintf("re-encrypted %d secrets", secretsAfterServe()), "removed unused keys " + oldKeys[0].ID()} {
				if !strings.Contains(out, want) {
					t.Errorf("rotate output lacks %q:\n%s", want, out)
				}
			}
			rotated := storetest.OpenURL(t, dbURL, storetest.Keyring(t, newKeys[0]))
			storetest.CheckSecrets(t, rotated, ids, canary)
			usage, _ := rotated.KeyUsage(context.Background())
			if len(usage) != 1 || usage[newKeys[0].ID()] != secretsAfterServe() {
				t.Fatalf("key usage after rotation: %v", usage)
			}
			storetest.AssertNotStored(t, rotated, dbURL, canary)
			startServe(t, vars).stop(t) // the panel starts on the rotated key

			// The old key is kept apart for restoring old backups...
			kept, err := secret.ReadKeyFile(keyFile+".retired", true)
			if err != nil || len(kept) != 1 || kept[0].ID() != oldKeys[0].ID() {
				t.Fatalf("retired keys file: %v, %v", kept, err)
			}
			// ...but a panel started from an old copy of the key file refuses.
			stale := map[string]string{}
			for k, v := range vars {
				stale[k] = v
			}
			stale["UPANEL_APP_KEY"] = oldKeys[0].Encode()
			if _, _, err := runCmd(t, stale, "serve", "--addr", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), newKeys[0].ID()) {
				t.Fatalf("serve with the retired key: %v", err)
			}
			stale["UPANEL_APP_PREVIOUS_KEYS"] = newKeys[0].Encode() // knows the data's key, but would write with the retired one
			if _, _, err := runCmd(t, stale, "serve", "--addr", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "retired") {
				t.Fatalf("serve writing with a retired key: %v", err)
			}
		})
	}
}

// A rotation that re-encrypted everything but died before retiring the old
// key is finished by running key rotate again, without adding another key.
func TestKeyRotateFinishesAfterReencryption(t *testing.T) {
	vars, dataDir, dbURL := panelEnv(t, "sqlite")
	keyFile := filepath.Join(dataDir, "app.key")
	startServe(t, vars).stop(t)
	db := openWithKeyFile(t, dataDir, dbURL)
	ids := storetest.SecretRows(t, db, canary)
	old, _ := secret.ReadKeyFile(keyFile, true)
	fresh := storetest.Key(t)
	secret.WriteKeyFile(keyFile, append([]secret.Key{fresh}, old...))
	half := storetest.OpenURL(t, dbURL, storetest.Keyring(t, fresh, old[0]))
	half.RegisterActiveKey(context.Background())
	if _, err := half.ReencryptAll(context.Background(), 100, nil); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, vars, "key", "rotate")
	if err != nil || !strings.Contains(out, "finishing an earlier rotation") || strings.Contains(out, "added key") {
		t.Fatalf("finish: %v\n%s", err, out)
	}
	keys, _ := secret.ReadKeyFile(keyFile, true)
	if len(keys) != 1 || keys[0].ID() != fresh.ID() {
		t.Fatalf("key file after finishing: %v", keys)
	}
	storetest.CheckSecrets(t, storetest.OpenURL(t, dbURL, storetest.Keyring(t, fresh)), ids, canary)
}

// A rotation that died midway is resumed by running key rotate again, which
// finishes onto the key it had started with instead of adding another.
func TestKeyRotateResumesAnInterruptedRotation(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			vars, dataDir, dbURL := panelEnv(t, d)
			keyFile := filepath.Join(dataDir, "app.key")
			startServe(t, vars).stop(t)
			db := openWithKeyFile(t, dataDir, dbURL)
			ids := storetest.SecretRows(t, db, canary)
			storetest.SecretRows(t, db, canary)

			// What the first key rotate did before it "crashed": a new key in
			// front of the file, and a few batches re-encrypted.
			old, _ := secret.ReadKeyFile(keyFile, true)
			fresh := storetest.Key(t)
			if err := secret.WriteKeyFile(keyFile, append([]secret.Key{fresh}, old...)); err != nil {
				t.Fatal(err)
			}
			half := storetest.OpenURL(t, dbURL, storetest.Keyring(t, fresh, old[0]))
			half.RegisterActiveKey(context.Background())
			ctx, crash := context.WithCancel(context.Background())
			n := 0
			half.ReencryptAll(ctx, 1, func(store.SecretColumn, int) {
				if n++; n == 3 {
					crash()
				}
			})

			out, _, err := runCmd(t, vars, "key", "rotate", "--batch", "1")
			if want := fmt.Sprintf("re-encrypted %d secrets", secretsAfterServe()+len(store.SecretColumns())-3); err != nil || !strings.Contains(out, "resuming") || !strings.Contains(out, want) {
				t.Fatalf("resume: %v\n%s", err, out)
			}
			keys, _ := secret.ReadKeyFile(keyFile, true)
			if len(keys) != 1 || keys[0].ID() != fresh.ID() {
				t.Fatalf("after resuming the key file holds %v", keys)
			}
			storetest.CheckSecrets(t, storetest.OpenURL(t, dbURL, storetest.Keyring(t, fresh)), ids, canary)
		})
	}
}

func TestKeyRotateWithEnvironmentKeys(t *testing.T) {
	vars, dataDir, dbURL := panelEnv(t, "sqlite")
	k1, k2 := storetest.Key(t), storetest.Key(t)
	vars["UPANEL_APP_KEY"] = k1.Encode()
	startServe(t, vars).stop(t)
	if _, err := os.Stat(filepath.Join(dataDir, "app.key")); err == nil {
		t.Fatal("a key file was created although UPANEL_APP_KEY is set")
	}
	db := storetest.OpenURL(t, dbURL, storetest.Keyring(t, k1))
	ids := storetest.SecretRows(t, db, canary)

	out, _, err := runCmd(t, vars, "key", "rotate")
	if err != nil || !strings.Contains(out, "already uses key "+k1.ID()) {
		t.Fatalf("rotate with nothing to do: %v\n%s", err, out)
	}
	vars["UPANEL_APP_KEY"], vars["UPANEL_APP_PREVIOUS_KEYS"] = k2.Encode(), k1.Encode()
	out, _, err = runCmd(t, vars, "key", "rotate")
	if err != nil || !strings.Contains(out, fmt.Sprintf("re-encrypted %d secrets", secretsAfterServe())) || !strings.Contains(out, "remove them from UPANEL_APP_PREVIOUS_KEYS") {
		t.Fatalf("rotate to the environment's new key: %v\n%s", err, out)
	}
	storetest.CheckSecrets(t, storetest.OpenURL(t, dbURL, storetest.Keyring(t, k2)), ids, canary)
	delete(vars, "UPANEL_APP_PREVIOUS_KEYS")
	startServe(t, vars).stop(t) // the old key is no longer needed
}

// secretsAfterServe is how many secrets a test database holds once serve ran
// and storetest.SecretRows added its canaries: one per secret column, and the
// key of the client certificate the panel presents to agents.
func secretsAfterServe() int { return len(store.SecretColumns()) + 1 }
