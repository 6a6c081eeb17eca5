package store_test

// Minimal valid rows for the behavioural updated_at check in schema_test.go:
// one per table that has an updated_at column, parents first.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"upanel/internal/store"
)

type schemaRowFixture struct {
	// parents are inserted first; their ids are passed to args.
	parents []string
	insert  string // placeholders ?, the first is the row's id
	args    func(ids map[string]string) []any
	// update changes some column other than updated_at; its last
	// placeholder is the row's id.
	update     string
	updateArgs []any
}

var schemaRowFixtures = map[string]schemaRowFixture{
	"users": {
		insert:     "INSERT INTO users (id, email, password) VALUES (?, ?, ?)",
		args:       func(map[string]string) []any { return []any{"schema-fixture@example.test", "not-a-real-hash"} },
		update:     "UPDATE users SET email = ? WHERE id = ?",
		updateArgs: []any{"schema-fixture-changed@example.test"},
	},
	"servers": {
		insert: "INSERT INTO servers (id, name, host, ssh_private_key, ssh_public_key) VALUES (?, ?, ?, ?, ?)",
		args: func(map[string]string) []any {
			return []any{"web-1", "203.0.113.10", "not-really-ciphertext", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA test"}
		},
		update:     "UPDATE servers SET name = ? WHERE id = ?",
		updateArgs: []any{"web-2"},
	},
	"git_credentials": {
		insert:     "INSERT INTO git_credentials (id, name, type, credentials) VALUES (?, ?, ?, ?)",
		args:       func(map[string]string) []any { return []any{"github", "token", "not-really-ciphertext"} },
		update:     "UPDATE git_credentials SET name = ? WHERE id = ?",
		updateArgs: []any{"gitlab"},
	},
	"apps": {
		parents: []string{"servers"},
		insert:  "INSERT INTO apps (id, server_id, name, git_repository, deploy_path) VALUES (?, ?, ?, ?, ?)",
		args: func(ids map[string]string) []any {
			return []any{ids["servers"], "shop", "https://example.test/shop.git", "/var/www/shop"}
		},
		update:     "UPDATE apps SET name = ? WHERE id = ?",
		updateArgs: []any{"shop-2"},
	},
	"domains": {
		parents: []string{"apps", "servers"},
		insert:  "INSERT INTO domains (id, app_id, server_id, domain, upstream_port) VALUES (?, ?, ?, ?, ?)",
		args: func(ids map[string]string) []any {
			return []any{ids["apps"], ids["servers"], "shop.example.test", 8080}
		},
		update:     "UPDATE domains SET upstream_port = ? WHERE id = ?",
		updateArgs: []any{8081},
	},
	"backup_destinations": {
		insert:     "INSERT INTO backup_destinations (id, name, type, credentials) VALUES (?, ?, ?, ?)",
		args:       func(map[string]string) []any { return []any{"local disk", "local", "not-really-ciphertext"} },
		update:     "UPDATE backup_destinations SET name = ? WHERE id = ?",
		updateArgs: []any{"other disk"},
	},
	"backup_schedules": {
		parents: []string{"apps", "backup_destinations"},
		insert:  "INSERT INTO backup_schedules (id, app_id, backup_destination_id, type, cron_expression) VALUES (?, ?, ?, ?, ?)",
		args: func(ids map[string]string) []any {
			return []any{ids["apps"], ids["backup_destinations"], "full", "0 2 * * *"}
		},
		update:     "UPDATE backup_schedules SET cron_expression = ? WHERE id = ?",
		updateArgs: []any{"0 3 * * *"},
	},
	"user_invites": {
		insert: "INSERT INTO user_invites (id, email, role, token_hash, expires_at) VALUES (?, ?, ?, ?, ?)",
		args: func(map[string]string) []any {
			return []any{"invitee@example.test", "viewer", strings.Repeat("ab", 32), time.Now().Add(time.Hour)}
		},
		update:     "UPDATE user_invites SET email = ? WHERE id = ?",
		updateArgs: []any{"invitee-2@example.test"},
	},
	"mail_outbox": {
		insert: "INSERT INTO mail_outbox (id, kind, to_address, subject) VALUES (?, ?, ?, ?)",
		args: func(map[string]string) []any {
			return []any{"invite", "schema-fixture@example.test", "You are invited to UPanel"}
		},
		update:     "UPDATE mail_outbox SET attempts = ? WHERE id = ?",
		updateArgs: []any{1},
	},
	"api_tokens": {
		parents: []string{"users"},
		insert:  "INSERT INTO api_tokens (id, user_id, name, role, token_hash, token_prefix) VALUES (?, ?, ?, ?, ?, ?)",
		args: func(ids map[string]string) []any {
			return []any{ids["users"], "ci", "viewer", strings.Repeat("cd", 32), "upt_abcdefgh"}
		},
		update:     "UPDATE api_tokens SET name = ? WHERE id = ?",
		updateArgs: []any{"ci-2"},
	},
	"settings": {
		insert:     "INSERT INTO settings (id, value) VALUES (?, ?)",
		args:       func(map[string]string) []any { return []any{"false"} },
		update:     "UPDATE settings SET value = ? WHERE id = ?",
		updateArgs: []any{"true"},
	},
	"panel_credentials": {
		insert:     "INSERT INTO panel_credentials (id, cert_pem, private_key) VALUES (?, ?, ?)",
		args:       func(map[string]string) []any { return []any{"cert", "not-really-ciphertext"} },
		update:     "UPDATE panel_credentials SET cert_pem = ? WHERE id = ?",
		updateArgs: []any{"cert-2"},
	},
	"notification_preferences": {
		parents:    []string{"users"},
		insert:     "INSERT INTO notification_preferences (id, user_id, type, channel) VALUES (?, ?, ?, ?)",
		args:       func(ids map[string]string) []any { return []any{ids["users"], "server_offline", "email"} },
		update:     "UPDATE notification_preferences SET channel = ? WHERE id = ?",
		updateArgs: []any{"off"},
	},
	"webhook_targets": {
		insert: "INSERT INTO webhook_targets (id, name, url, format, secret, types) VALUES (?, ?, ?, ?, ?, ?)",
		args: func(map[string]string) []any {
			return []any{"chat", "not-really-ciphertext", "slack", "not-really-ciphertext", "*"}
		},
		update:     "UPDATE webhook_targets SET name = ? WHERE id = ?",
		updateArgs: []any{"chat-2"},
	},
	"webhook_deliveries": {
		parents: []string{"webhook_targets"},
		insert:  "INSERT INTO webhook_deliveries (id, target_id, event_type, payload) VALUES (?, ?, ?, ?)",
		args: func(ids map[string]string) []any {
			return []any{ids["webhook_targets"], "server_offline", `{"type":"server_offline"}`}
		},
		update:     "UPDATE webhook_deliveries SET attempts = ? WHERE id = ?",
		updateArgs: []any{1},
	},
	"jobs": {
		insert:     "INSERT INTO jobs (id, kind) VALUES (?, ?)",
		args:       func(map[string]string) []any { return []any{"schema.fixture"} },
		update:     "UPDATE jobs SET attempts = ? WHERE id = ?",
		updateArgs: []any{1},
	},
}

// schemaInsertFixture inserts table's fixture row (and its parents', once each) and
// returns its id.
func schemaInsertFixture(ctx context.Context, db *store.DB, table string, ids map[string]string) (string, error) {
	if id, ok := ids[table]; ok {
		return id, nil
	}
	f, ok := schemaRowFixtures[table]
	if !ok {
		return "", fmt.Errorf("no row fixture for table %s: add one to schemaRowFixtures", table)
	}
	for _, parent := range f.parents {
		if _, err := schemaInsertFixture(ctx, db, parent, ids); err != nil {
			return "", err
		}
	}
	id := store.NewID()
	if err := db.ExecRaw(ctx, f.insert, append([]any{id}, f.args(ids)...)...); err != nil {
		return "", fmt.Errorf("insert %s fixture: %w", table, err)
	}
	ids[table] = id
	return id, nil
}

// schemaScanTime reads a timestamp the way either driver returns it.
func schemaScanTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x.UTC(), nil
	case []byte:
		return schemaScanTime(string(x))
	case string:
		for _, layout := range []string{"2006-01-02 15:04:05.000", "2006-01-02 15:04:05", time.RFC3339Nano} {
			if t, err := time.ParseInLocation(layout, x, time.UTC); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("unparseable timestamp %q", x)
	case nil:
		return time.Time{}, fmt.Errorf("timestamp is NULL")
	}
	return time.Time{}, fmt.Errorf("cannot read %T as a timestamp", v)
}
