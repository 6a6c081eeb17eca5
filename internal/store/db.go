// Package store is UPanel's only door to the database. All SQL is written here by
// hand, a file per table group, with the few differences between SQLite and
// PostgreSQL kept in dialect.go. Public methods own their transactions; private
// helpers take a *Tx.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/oklog/ulid/v2"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"upanel/internal/apperr"
	"upanel/internal/secret"
)

// Options configures Open.
type Options struct {
	Logger *slog.Logger
	// Keyring encrypts and decrypts the secret columns. Commands that touch no
	// secret (migrate status) may leave it nil.
	Keyring *secret.Keyring
	// Now is the clock; tests replace it. Times are stored in UTC.
	Now func() time.Time
}

// DB is an open database.
type DB struct {
	d     *dialect
	write *sql.DB // SQLite: the one writer connection. PostgreSQL: the pool.
	read  *sql.DB // SQLite: reader pool. PostgreSQL: same as write.
	path  string  // SQLite file, for the instance lock
	log   *slog.Logger
	keys  atomic.Pointer[secret.Keyring]
	now   func() time.Time
}

// Open connects to url: "sqlite:PATH" (or a bare path) or "postgres://...".
func Open(ctx context.Context, rawURL string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db := &DB{log: opts.Logger, now: opts.Now}
	if opts.Keyring != nil {
		db.keys.Store(opts.Keyring)
	}
	var err error
	switch {
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		db.d = postgresDialect
		err = db.openPostgres(rawURL)
	case strings.HasPrefix(rawURL, "mysql:"), strings.HasPrefix(rawURL, "mariadb:"):
		return nil, apperr.New(apperr.Invalid, "database: MySQL/MariaDB is not supported yet; use SQLite or PostgreSQL")
	default:
		db.d = sqliteDialect
		err = db.openSQLite(rawURL)
	}
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.write.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("database: connect: %w", err)
	}
	return db, nil
}

// SQLitePath turns a database URL into a file path, or "" if it is not SQLite.
func SQLitePath(rawURL string) string {
	if strings.Contains(rawURL, "://") && !strings.HasPrefix(rawURL, "sqlite://") {
		return ""
	}
	p := strings.TrimPrefix(rawURL, "sqlite://")
	p = strings.TrimPrefix(p, "sqlite:")
	return p
}

func (db *DB) openSQLite(rawURL string) error {
	path := SQLitePath(rawURL)
	if path == "" || strings.ContainsAny(path, "?#") {
		return apperr.New(apperr.Invalid, "database: %q is not a SQLite file path (use sqlite:/path/to/upanel.db)", rawURL)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	// The database holds password hashes and ciphertexts: owner-only, and
	// SQLite gives its -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	f.Close()
	db.path = path
	// WAL lets readers run beside the single writer; IMMEDIATE transactions take
	// the write lock up front, so two writers queue on busy_timeout instead of
	// failing with SQLITE_BUSY when a read lock would be upgraded.
	base := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	w, err := sql.Open("sqlite", base+"&_txlock=immediate")
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return fmt.Errorf("database: %w", err)
	}
	// Idle connections are kept up to the maximum: under steady load (agents
	// pushing) closing and reopening them cost 5% of the panel's CPU. The
	// idle timeout still closes them on a quiet panel.
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	r.SetConnMaxIdleTime(5 * time.Minute)
	db.write, db.read = w, r
	return nil
}

func (db *DB) openPostgres(rawURL string) error {
	p, err := sql.Open("pgx", rawURL)
	if err != nil {
		return apperr.Wrap(err, apperr.Invalid, "database: bad PostgreSQL URL")
	}
	// As for SQLite's readers: a PostgreSQL session costs a backend process,
	// so churning them under load cost PostgreSQL 12% of its CPU.
	p.SetMaxOpenConns(16)
	p.SetMaxIdleConns(16)
	p.SetConnMaxIdleTime(5 * time.Minute)
	db.write, db.read = p, p
	return nil
}

// Close closes every connection.
func (db *DB) Close() error {
	var errs []error
	if db.write != nil {
		errs = append(errs, db.write.Close())
	}
	if db.read != nil && db.read != db.write {
		errs = append(errs, db.read.Close())
	}
	return errors.Join(errs...)
}

// Dialect names the database kind: "sqlite" or "postgres".
func (db *DB) Dialect() string { return db.d.name }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.read.PingContext(ctx) }

// Now is the store's clock, in UTC and truncated to what both dialects keep.
func (db *DB) Now() time.Time { return db.now().UTC().Truncate(time.Millisecond) }

// SetKeyring swaps the keyring, after rotation for instance.
func (db *DB) SetKeyring(kr *secret.Keyring) { db.keys.Store(kr) }

// Keyring returns the keyring, or nil.
func (db *DB) Keyring() *secret.Keyring { return db.keys.Load() }

// NewID returns a new ULID.
func NewID() string { return ulid.Make().String() }

// Tx is a write transaction. Methods that act on several rows take a *Tx so that
// callers can group them, and enqueue a job in the same transaction.
type Tx struct {
	tx *sql.Tx
	db *DB
}

// InTx runs fn in a write transaction, committing if it returns nil.
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("database: begin: %w", err)
	}
	tx := &Tx{tx: sqlTx, db: db}
	defer func() {
		if p := recover(); p != nil {
			sqlTx.Rollback()
			panic(p)
		}
		if err != nil {
			sqlTx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = sqlTx.Commit(); err != nil {
		return fmt.Errorf("database: commit: %w", err)
	}
	return nil
}

// Now is the transaction's clock (the store's).
func (tx *Tx) Now() time.Time { return tx.db.Now() }

func (tx *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, tx.db.d.rebind(q), tx.db.d.args(args)...)
}

func (tx *Tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(ctx, tx.db.d.rebind(q), tx.db.d.args(args)...)
}

func (tx *Tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(ctx, tx.db.d.rebind(q), tx.db.d.args(args)...)
}

func (db *DB) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return db.write.ExecContext(ctx, db.d.rebind(q), db.d.args(args)...)
}

func (db *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return db.read.QueryContext(ctx, db.d.rebind(q), db.d.args(args)...)
}

func (db *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return db.read.QueryRowContext(ctx, db.d.rebind(q), db.d.args(args)...)
}

// notFound turns sql.ErrNoRows into the one not-found error, so that callers
// never see (nil, nil).
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return apperr.New(apperr.NotFound, "%s not found", what)
	}
	return err
}

// nullTime scans a timestamp from either dialect: PostgreSQL and SQLite's typed
// columns give time.Time, while SQLite expressions such as MAX() give text.
type nullTime struct {
	Time  time.Time
	Valid bool
}

func (n *nullTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*n = nullTime{}
	case time.Time:
		*n = nullTime{Time: x.UTC(), Valid: true}
	case string:
		return n.parse(x)
	case []byte:
		return n.parse(string(x))
	default:
		return fmt.Errorf("store: cannot scan %T into a time", v)
	}
	return nil
}

func (n *nullTime) parse(s string) error {
	for _, layout := range []string{sqliteTimeLayout, "2006-01-02 15:04:05", time.RFC3339Nano} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			*n = nullTime{Time: t.UTC(), Valid: true}
			return nil
		}
	}
	return fmt.Errorf("store: bad timestamp %q", s)
}

func (n nullTime) ptr() *time.Time {
	if !n.Valid {
		return nil
	}
	t := n.Time
	return &t
}
