package store

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"upanel/internal/apperr"
	"upanel/internal/secret"
)

var keyCheckColumn = SecretColumn{"encryption_keys", "check_value"}

// keyCheckText is sealed with each key; opening it proves a configured key with
// that id really is the key the data was written with.
const keyCheckText = "upanel key check v1"

// CheckKeys verifies, before anything is written, that the keyring can decrypt
// everything the database holds. It reads only: with a wrong key, serve stops
// here and changes nothing.
func (db *DB) CheckKeys(ctx context.Context) error {
	kr, err := db.keyring()
	if err != nil {
		return err
	}
	exists, err := db.tableExists(ctx, "encryption_keys")
	if err != nil || !exists {
		return err
	}
	rows, err := db.query(ctx, "SELECT id, check_value FROM encryption_keys WHERE retired_at IS NULL ORDER BY id")
	if err != nil {
		return fmt.Errorf("store: check keys: %w", err)
	}
	defer rows.Close()
	var missing, wrong []string
	for rows.Next() {
		var id, check string
		if err := rows.Scan(&id, &check); err != nil {
			return err
		}
		if !kr.Has(id) {
			missing = append(missing, id)
			continue
		}
		p, err := kr.Decrypt(check, keyCheckColumn.scope(id))
		if err != nil || string(p) != keyCheckText {
			wrong = append(wrong, id)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	usage, err := db.KeyUsage(ctx)
	if err != nil {
		return err
	}
	for id := range usage {
		if !kr.Has(id) && !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	switch {
	case len(wrong) > 0:
		return apperr.New(apperr.Conflict, "the configured app key with id %s is not the key this database was encrypted with; nothing was changed. Restore the original UPANEL_APP_KEY or app.key file", strings.Join(wrong, ", "))
	case len(missing) > 0:
		return apperr.New(apperr.Conflict, "this database holds secrets encrypted with app key id %s, which is not configured (configured: %s); nothing was changed. Set UPANEL_APP_KEY / UPANEL_APP_KEY_FILE to the original key, or add it to UPANEL_APP_PREVIOUS_KEYS", strings.Join(missing, ", "), strings.Join(kr.IDs(), ", "))
	}
	return nil
}

// keysLock serialises key registration between panel processes on PostgreSQL.
const keysLock = 7_411_025_004

// RegisterActiveKey records that data may now be written with the active key.
// In one transaction it checks again that every key the data depends on is in
// the keyring, so two panels started at once with different keys cannot both
// register theirs, and it refuses a key that a rotation retired: a panel
// started from an old copy of the key file must not write with it.
func (db *DB) RegisterActiveKey(ctx context.Context) error {
	kr, err := db.keyring()
	if err != nil {
		return err
	}
	id := kr.ActiveID()
	check, err := kr.Encrypt([]byte(keyCheckText), keyCheckColumn.scope(id))
	if err != nil {
		return err
	}
	return db.InTx(ctx, func(tx *Tx) error {
		if db.d.name == "postgres" {
			if _, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(?)", keysLock); err != nil {
				return err
			}
		}
		rows, err := tx.query(ctx, "SELECT id, retired_at IS NOT NULL FROM encryption_keys")
		if err != nil {
			return err
		}
		known, retired := false, false
		var missing []string
		for rows.Next() {
			var kid string
			var isRetired bool
			if err := rows.Scan(&kid, &isRetired); err != nil {
				rows.Close()
				return err
			}
			if kid == id {
				known, retired = true, isRetired
			} else if !isRetired && !kr.Has(kid) {
				missing = append(missing, kid)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if retired {
			return apperr.New(apperr.Conflict, "app key %s was retired by a key rotation and must not encrypt new data: use the current key file", id)
		}
		if len(missing) > 0 {
			return apperr.New(apperr.Conflict, "this database holds secrets encrypted with app key id %s, which is not configured; nothing was changed", strings.Join(missing, ", "))
		}
		if known {
			return nil
		}
		_, err = tx.exec(ctx, "INSERT INTO encryption_keys (id, check_value, created_at) VALUES (?, ?, ?)", id, check, tx.Now())
		return err
	})
}

// KeyUsage counts, per key id, the ciphertexts in every secret column.
func (db *DB) KeyUsage(ctx context.Context) (map[string]int, error) {
	usage := map[string]int{}
	for _, c := range secretColumns {
		// "v1:" is 3 characters; the 8-character key id follows.
		// Only real ciphertexts: a value without the v1: prefix (an empty
		// placeholder) has no key, and its text must not pose as a key id.
		rows, err := db.query(ctx, "SELECT SUBSTR("+c.Column+", 4, 8), COUNT(*) FROM "+c.Table+" WHERE "+c.Column+" LIKE 'v1:%' GROUP BY SUBSTR("+c.Column+", 4, 8)")
		if err != nil {
			return nil, fmt.Errorf("store: key usage of %s: %w", c, err)
		}
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return nil, err
			}
			usage[id] += n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return usage, nil
}

// RetireUnusedKeys marks every key but the active one that no ciphertext uses
// any more, and returns their ids. Only then may they leave the key file.
func (db *DB) RetireUnusedKeys(ctx context.Context) ([]string, error) {
	kr, err := db.keyring()
	if err != nil {
		return nil, err
	}
	usage, err := db.KeyUsage(ctx)
	if err != nil {
		return nil, err
	}
	var retired []string
	for _, id := range kr.IDs() {
		if id == kr.ActiveID() || usage[id] > 0 {
			continue
		}
		if _, err := db.exec(ctx, "UPDATE encryption_keys SET retired_at = ? WHERE id = ? AND retired_at IS NULL", db.Now(), id); err != nil {
			return nil, fmt.Errorf("store: retire key %s: %w", id, err)
		}
		retired = append(retired, id)
	}
	return retired, nil
}

// ReencryptAll rewrites, in batches, every ciphertext not written with the
// active key. Each batch commits on its own and each row is updated only if it
// still holds the value that was read, so an interrupted run loses nothing and a
// second run carries on where the first stopped. progress, if set, is called
// after each batch.
func (db *DB) ReencryptAll(ctx context.Context, batch int, progress func(c SecretColumn, done int)) (int, error) {
	kr, err := db.keyring()
	if err != nil {
		return 0, err
	}
	if batch <= 0 {
		batch = 500
	}
	like := secret.Prefix(kr.ActiveID()) + "%"
	total := 0
	for _, c := range secretColumns {
		done := 0
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			n := 0
			err := db.InTx(ctx, func(tx *Tx) error {
				rows, err := tx.query(ctx, "SELECT id, "+c.Column+" FROM "+c.Table+" WHERE "+c.Column+" LIKE 'v1:%' AND "+c.Column+" NOT LIKE ? ORDER BY id LIMIT ?", like, batch)
				if err != nil {
					return err
				}
				type row struct{ id, ct string }
				var todo []row
				for rows.Next() {
					var r row
					if err := rows.Scan(&r.id, &r.ct); err != nil {
						rows.Close()
						return err
					}
					todo = append(todo, r)
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return err
				}
				for _, r := range todo {
					p, err := db.unseal(c, r.id, r.ct)
					if err != nil {
						return err
					}
					fresh, err := kr.Encrypt(p, c.scope(r.id))
					if err != nil {
						return err
					}
					if _, err := tx.exec(ctx, "UPDATE "+c.Table+" SET "+c.Column+" = ? WHERE id = ? AND "+c.Column+" = ?", fresh, r.id, r.ct); err != nil {
						return err
					}
				}
				n = len(todo)
				return nil
			})
			if err != nil {
				return total, fmt.Errorf("store: re-encrypt %s: %w", c, err)
			}
			if n == 0 {
				break
			}
			done += n
			total += n
			if progress != nil {
				progress(c, done)
			}
		}
	}
	return total, nil
}
