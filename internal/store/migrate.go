package store

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"upanel/internal/apperr"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered, forward-only schema change.
type Migration struct {
	Version int
	Name    string
	body    string
}

// MigrationState is a migration and when it was applied, if it was.
type MigrationState struct {
	Migration
	AppliedAt *time.Time
}

// migrationLock is the PostgreSQL advisory lock key that serialises migrations
// run by several panel processes starting at once.
const migrationLock = 7_411_025_001

func loadMigrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("store: migration file %q is not named NNN_name.sql", e.Name())
		}
		body, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, body: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("store: migrations are not numbered 1..n without gaps at %s", m.Name)
		}
	}
	return ms, nil
}

// embeddedMigrations parses the embedded files once; they cannot change.
var embeddedMigrations = sync.OnceValues(loadMigrations)

// Migrations lists every migration this binary knows, in order.
func Migrations() []Migration {
	ms, err := embeddedMigrations()
	if err != nil {
		panic(err) // the embedded files are part of the binary; a test covers them
	}
	return append([]Migration(nil), ms...)
}

// LatestVersion is the schema version this binary expects.
func LatestVersion() int { return len(Migrations()) }

func (d *dialect) render(m Migration) (string, error) {
	t, err := template.New(m.Name).Funcs(d.tmpl).Option("missingkey=error").Parse(m.body)
	if err != nil {
		return "", fmt.Errorf("store: migration %s: %w", m.Name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, nil); err != nil {
		return "", fmt.Errorf("store: migration %s: %w", m.Name, err)
	}
	return b.String(), nil
}

// RenderMigration returns the SQL a migration runs on this database.
func (db *DB) RenderMigration(m Migration) (string, error) { return db.d.render(m) }

const createSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version INT NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    applied_at %s NOT NULL
)`

func (db *DB) lockMigrations(ctx context.Context, tx *Tx) error {
	if db.d.name != "postgres" {
		return nil // SQLite: the IMMEDIATE transaction already holds the write lock
	}
	_, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(?)", migrationLock)
	return err
}

func (db *DB) ensureMigrationsTable(ctx context.Context) error {
	return db.InTx(ctx, func(tx *Tx) error {
		if err := db.lockMigrations(ctx, tx); err != nil {
			return err
		}
		_, err := tx.exec(ctx, fmt.Sprintf(createSchemaMigrations, db.d.timestampType))
		return err
	})
}

// Migrate applies every pending migration, each in its own transaction, and
// returns the names of those it applied. It refuses a database that is newer than
// this binary.
func (db *DB) Migrate(ctx context.Context) ([]string, error) {
	if err := db.ensureMigrationsTable(ctx); err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	ms := Migrations()
	var applied []string
	for _, m := range ms {
		sqlText, err := db.d.render(m)
		if err != nil {
			return applied, err
		}
		did := false
		err = db.InTx(ctx, func(tx *Tx) error {
			if err := db.lockMigrations(ctx, tx); err != nil {
				return err
			}
			var n int
			if err := tx.queryRow(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			// Run as written: migration text is not a query with
			// placeholders, and rebinding could misread a ? or a quote.
			if _, err := tx.tx.ExecContext(ctx, sqlText); err != nil {
				return err
			}
			if _, err := tx.exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", m.Version, m.Name, tx.Now()); err != nil {
				return err
			}
			did = true
			return nil
		})
		if err != nil {
			return applied, fmt.Errorf("store: migration %s: %w", m.Name, err)
		}
		if did {
			applied = append(applied, m.Name)
			db.log.Info("migration applied", "migration", m.Name)
		}
	}
	if v, err := db.appliedVersion(ctx); err != nil {
		return applied, err
	} else if v > ms[len(ms)-1].Version {
		return applied, db.tooNew(v)
	}
	return applied, nil
}

func (db *DB) tooNew(v int) error {
	return apperr.New(apperr.Conflict, "the database schema is at version %d, newer than this upanel knows (%d): run a newer upanel", v, LatestVersion())
}

// appliedVersion returns the highest applied migration, or 0 for a new database.
func (db *DB) appliedVersion(ctx context.Context) (int, error) {
	exists, err := db.tableExists(ctx, "schema_migrations")
	if err != nil || !exists {
		return 0, err
	}
	var v *int
	if err := db.queryRow(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// SchemaCurrent reports whether the database is migrated to exactly this
// binary's version; /readyz answers 503 until it is.
func (db *DB) SchemaCurrent(ctx context.Context) (bool, error) {
	v, err := db.appliedVersion(ctx)
	if err != nil {
		return false, err
	}
	return v == LatestVersion(), nil
}

// MigrationStatus lists every known migration with its applied time.
func (db *DB) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	ms := Migrations()
	out := make([]MigrationState, len(ms))
	for i, m := range ms {
		out[i].Migration = m
	}
	exists, err := db.tableExists(ctx, "schema_migrations")
	if err != nil || !exists {
		return out, err
	}
	rows, err := db.query(ctx, "SELECT version, applied_at FROM schema_migrations ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("store: migration status: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		var at nullTime
		if err := rows.Scan(&v, &at); err != nil {
			return nil, err
		}
		if v >= 1 && v <= len(out) {
			out[v-1].AppliedAt = at.ptr()
		} else {
			return out, db.tooNew(v)
		}
	}
	return out, rows.Err()
}

func (db *DB) tableExists(ctx context.Context, name string) (bool, error) {
	var q string
	if db.d.name == "postgres" {
		q = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
	} else {
		q = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	}
	var n int
	if err := db.queryRow(ctx, q, name).Scan(&n); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	return n > 0, nil
}
