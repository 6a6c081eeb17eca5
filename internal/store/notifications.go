package store

import (
	"context"
	"fmt"
	"time"
)

// Notification is a message for a user, as the seed's notifications table holds it.
type Notification struct {
	ID             string
	UserID         string
	Type           string
	Title          string
	Message        string
	NotifiableType string
	NotifiableID   string
	ReadAt         *time.Time
	EmailSentAt    *time.Time
	CreatedAt      time.Time
}

// NotifyRoles creates one notification for every user with one of roles.
func (tx *Tx) NotifyRoles(ctx context.Context, roles []string, n Notification) (int, error) {
	args := []any{}
	for _, r := range roles {
		args = append(args, r)
	}
	rows, err := tx.query(ctx, "SELECT id FROM users WHERE role IN ("+placeholders(len(roles))+")", args...)
	if err != nil {
		return 0, err
	}
	var users []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		users = append(users, id)
	}
	rows.Close()
	now := tx.Now()
	for _, u := range users {
		if _, err := tx.exec(ctx, `INSERT INTO notifications (id, user_id, type, title, message, notifiable_type, notifiable_id, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, NewID(), u, n.Type, truncate(n.Title, 255), n.Message,
			nullString(n.NotifiableType), nullString(n.NotifiableID), now); err != nil {
			return 0, fmt.Errorf("store: notify: %w", err)
		}
	}
	return len(users), nil
}

// LastNotificationAt returns when the newest notification of a type about an
// object was created (zero if none), to fold a flapping server's outages.
func (tx *Tx) LastNotificationAt(ctx context.Context, typ, notifiableID string) (time.Time, error) {
	var t nullTime
	err := tx.queryRow(ctx, "SELECT MAX(created_at) FROM notifications WHERE type = ? AND notifiable_id = ?", typ, notifiableID).Scan(&t)
	return t.Time, err
}

// CountNotifications counts the notifications of a type about an object.
func (db *DB) CountNotifications(ctx context.Context, typ, notifiableID string) (int, error) {
	var n int
	err := db.queryRow(ctx, "SELECT COUNT(*) FROM notifications WHERE type = ? AND notifiable_id = ?", typ, notifiableID).Scan(&n)
	return n, err
}
