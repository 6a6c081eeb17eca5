// Package storetest gives each test a fresh, migrated database on every dialect
// UPanel supports, so the whole suite runs once per database (as Gitea does).
//
// PostgreSQL comes from UPANEL_TEST_POSTGRES_URL, which "make test" sets after
// starting a private server; each test gets its own database, dropped at the
// end. Without it, PostgreSQL subtests skip, except under CI=true, where a
// missing service fails the test.
package storetest

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"upanel/internal/secret"
	"upanel/internal/store"
)

// Dialects lists the databases every store test runs against.
var Dialects = []string{"sqlite", "postgres"}

// Each runs fn as a subtest for every dialect, with a fresh migrated database.
func Each(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) {
			fn(t, Open(t, d))
		})
	}
}

// Open returns a migrated database of the given dialect with a fresh keyring.
func Open(t testing.TB, dialect string) *store.DB { return New(t, dialect).DB }

// Env is a test database with what tests need besides the handle: its URL, to
// look at the stored bytes or open a second connection, and its key.
type Env struct {
	DB  *store.DB
	URL string
	Key secret.Key
}

// New returns a fresh, migrated database whose active key is registered.
func New(t testing.TB, dialect string) Env {
	t.Helper()
	e := Env{URL: URL(t, dialect), Key: Key(t)}
	kr, err := secret.NewKeyring(e.Key)
	if err != nil {
		t.Fatal(err)
	}
	e.DB = OpenURL(t, e.URL, kr)
	if _, err := e.DB.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := e.DB.RegisterActiveKey(context.Background()); err != nil {
		t.Fatalf("register key: %v", err)
	}
	return e
}

// OpenURL opens (but does not migrate) the database at url.
func OpenURL(t testing.TB, rawURL string, kr *secret.Keyring) *store.DB {
	t.Helper()
	return open(t, rawURL, store.Options{Keyring: kr})
}

// Key returns a new key.
func Key(t testing.TB) secret.Key {
	t.Helper()
	k, err := secret.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Keyring returns a keyring of the given keys, the first active, or of one new
// key when none are given.
func Keyring(t testing.TB, keys ...secret.Key) *secret.Keyring {
	t.Helper()
	if len(keys) == 0 {
		keys = []secret.Key{Key(t)}
	}
	kr, err := secret.NewKeyring(keys[0], keys[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// URL returns the URL of a new, empty database of the dialect.
func URL(t testing.TB, dialect string) string {
	t.Helper()
	switch dialect {
	case "sqlite":
		return "sqlite:" + filepath.Join(t.TempDir(), "upanel.db")
	case "postgres":
		return NewPostgresDatabase(t)
	}
	t.Fatalf("unknown dialect %q", dialect)
	return ""
}

// PostgresAdminURL returns the URL of the test server, skipping or failing the
// test when there is none.
func PostgresAdminURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("UPANEL_TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("UPANEL_TEST_POSTGRES_URL is not set; under CI=true PostgreSQL tests must run (use make test)")
		}
		t.Skip("UPANEL_TEST_POSTGRES_URL not set: run make test for PostgreSQL")
	}
	return u
}

// NewPostgresDatabase creates a database for this test and drops it afterwards.
func NewPostgresDatabase(t testing.TB) string {
	t.Helper()
	admin := PostgresAdminURL(t)
	name := "upanel_test_" + strings.ToLower(store.NewID())
	a, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", admin)
		if err != nil {
			return
		}
		defer a.Close()
		if _, err := a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Redact hides a password in a database URL for messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Exec runs raw SQL for test setup, where a test must reach past the store
// (to tamper with a row, say). Placeholders are ? on both dialects.
func Exec(t testing.TB, db *store.DB, q string, args ...any) {
	t.Helper()
	if err := db.ExecRaw(context.Background(), q, args...); err != nil {
		t.Fatalf("exec %q: %v", q, err)
	}
}
