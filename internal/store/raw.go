package store

import "context"

// ExecRaw runs one statement as written (placeholders ?). It exists for tests
// that must reach past the store, to tamper with a row or age it, and nothing
// in the product calls it.
func (db *DB) ExecRaw(ctx context.Context, q string, args ...any) error {
	_, err := db.exec(ctx, q, args...)
	return err
}

// QueryRowRaw is ExecRaw's reading twin, for tests.
func (db *DB) QueryRowRaw(ctx context.Context, q string, args ...any) interface{ Scan(...any) error } {
	return db.write.QueryRowContext(ctx, db.d.rebind(q), db.d.args(args)...)
}

// ExecRaw is DB.ExecRaw inside a transaction.
func (tx *Tx) ExecRaw(ctx context.Context, q string, args ...any) error {
	_, err := tx.exec(ctx, q, args...)
	return err
}
