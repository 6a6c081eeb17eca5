package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Setting returns a panel setting; ok is false when it was never set.
func (db *DB) Setting(ctx context.Context, key string) (value string, ok bool, err error) {
	err = db.queryRow(ctx, "SELECT value FROM settings WHERE id = ?", key).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: setting %s: %w", key, err)
	}
	return value, true, nil
}

// SetSetting stores a panel setting.
func (tx *Tx) SetSetting(ctx context.Context, key, value string) error {
	_, err := tx.exec(ctx, `INSERT INTO settings (id, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, key, value, tx.Now())
	if err != nil {
		return fmt.Errorf("store: set %s: %w", key, err)
	}
	return nil
}
