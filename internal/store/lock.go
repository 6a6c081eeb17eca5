package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"upanel/internal/apperr"
)

// instanceLockKey is the PostgreSQL advisory lock that serve holds shared and
// maintenance commands (key rotation) take exclusively.
const instanceLockKey = 7_411_025_002

// ErrInstanceBusy means another upanel process holds the database in a way that
// excludes this one.
var ErrInstanceBusy = apperr.New(apperr.Conflict, "another upanel process is using this database (is serve running?); stop it first")

// LockInstance takes the instance lock: shared for serve, of which several may
// run against one PostgreSQL, or exclusive for commands that must run alone,
// such as key rotation. It never waits. The lock lives as long as the process
// or until release is called.
func (db *DB) LockInstance(ctx context.Context, exclusive bool) (release func(), err error) {
	if db.d.name == "postgres" {
		return db.lockPostgres(ctx, exclusive)
	}
	return db.lockFile(exclusive)
}

func (db *DB) lockFile(exclusive bool) (func(), error) {
	f, err := os.OpenFile(db.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: instance lock: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrInstanceBusy
		}
		return nil, fmt.Errorf("store: instance lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func (db *DB) lockPostgres(ctx context.Context, exclusive bool) (func(), error) {
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: instance lock: %w", err)
	}
	fn := "pg_try_advisory_lock_shared"
	if exclusive {
		fn = "pg_try_advisory_lock"
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT "+fn+"($1)", instanceLockKey).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: instance lock: %w", err)
	}
	if !ok {
		conn.Close()
		return nil, ErrInstanceBusy
	}
	// Unlock explicitly: a closed connection's locks are only released when
	// the server notices, which may be after the next lock attempt. Then drop
	// the connection rather than pool it, in case the unlock failed.
	unlock := "pg_advisory_unlock_shared"
	if exclusive {
		unlock = "pg_advisory_unlock"
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.ExecContext(ctx, "SELECT "+unlock+"($1)", instanceLockKey)
		conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
	}, nil
}
