package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Notification is a message for a user, as the seed's notifications table
// holds it, with how its email went.
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
	// EmailWanted: the user wanted this one by email.
	EmailWanted bool
	// MailStatus and MailError are those of the mail that carries it
	// (queued, sent, failed), empty while none was composed yet.
	MailStatus string
	MailError  string
}

// Notification channels a user picks per type.
const (
	ChannelInApp = "in_app" // in the panel only
	ChannelEmail = "email"  // in the panel and by email
	ChannelOff   = "off"
)

// Recipient is a user who gets a notification, and how.
type Recipient struct {
	UserID  string
	Email   string
	Role    string
	Channel string
}

// NotificationRecipients returns the users who get notifications of typ, with
// their channel: their own choice, or else defaults[role]. Users whose channel
// is off are left out.
func (tx *Tx) NotificationRecipients(ctx context.Context, typ string, defaults map[string]string) ([]Recipient, error) {
	rows, err := tx.query(ctx, `SELECT u.id, u.email, u.role, p.channel FROM users u
		LEFT JOIN notification_preferences p ON p.user_id = u.id AND p.type = ? ORDER BY u.id`, typ)
	if err != nil {
		return nil, fmt.Errorf("store: notification recipients: %w", err)
	}
	defer rows.Close()
	var out []Recipient
	for rows.Next() {
		var r Recipient
		var ch sql.NullString
		if err := rows.Scan(&r.UserID, &r.Email, &r.Role, &ch); err != nil {
			return nil, err
		}
		r.Channel = ch.String
		if !ch.Valid {
			r.Channel = defaults[r.Role]
		}
		if r.Channel == ChannelInApp || r.Channel == ChannelEmail {
			out = append(out, r)
		}
	}
	return out, rows.Err()
}

// InsertNotification adds a notification for one user and returns its id.
func (tx *Tx) InsertNotification(ctx context.Context, n Notification) (string, error) {
	id := NewID()
	if _, err := tx.exec(ctx, `INSERT INTO notifications (id, user_id, type, title, message, notifiable_type, notifiable_id, email_wanted, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, n.UserID, truncate(n.Type, 50), truncate(n.Title, 255), n.Message,
		nullString(n.NotifiableType), nullString(n.NotifiableID), n.EmailWanted, tx.Now()); err != nil {
		return "", fmt.Errorf("store: notify: %w", err)
	}
	return id, nil
}

// notifiableLock is the class of the PostgreSQL advisory locks (two-key form,
// keyed by a hash of the object id) that LastNotificationAt takes.
const notifiableLock = 74110250

// LastNotificationAt returns when the newest notification of a type about an
// object was created (zero if none), to fold a flapping server's outages and
// to tell a recovery once. Callers check it and then raise, so it first locks
// the object until tx ends: on PostgreSQL two panels (two heartbeats racing,
// say) would otherwise both see nothing told yet and both tell. SQLite
// transactions are serial already.
func (tx *Tx) LastNotificationAt(ctx context.Context, typ, notifiableID string) (time.Time, error) {
	if tx.db.d.name == "postgres" {
		if _, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(CAST(? AS INTEGER), hashtext(CAST(? AS TEXT)))", notifiableLock, notifiableID); err != nil {
			return time.Time{}, fmt.Errorf("store: lock notifications of %s: %w", notifiableID, err)
		}
	}
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

const notificationColumns = `n.id, n.user_id, n.type, n.title, n.message, n.notifiable_type, n.notifiable_id, n.read_at,
	n.email_sent_at, n.created_at, n.email_wanted, m.status, m.last_error`

func scanNotification(s interface{ Scan(...any) error }) (*Notification, error) {
	var n Notification
	var ntype, nid, mstatus, merr sql.NullString
	var read, sent nullTime
	var created nullTime
	if err := s.Scan(&n.ID, &n.UserID, &n.Type, &n.Title, &n.Message, &ntype, &nid, &read, &sent, &created, &n.EmailWanted, &mstatus, &merr); err != nil {
		return nil, err
	}
	n.NotifiableType, n.NotifiableID, n.MailStatus, n.MailError = ntype.String, nid.String, mstatus.String, merr.String
	n.ReadAt, n.EmailSentAt, n.CreatedAt = read.ptr(), sent.ptr(), created.Time
	return &n, nil
}

// NotificationFilter narrows a user's notification list.
type NotificationFilter struct {
	Unread bool
	Type   string
	// Before pages: only notifications with a smaller id (older).
	Before string
	Limit  int
}

// ListNotifications returns a user's notifications, newest first.
func (db *DB) ListNotifications(ctx context.Context, userID string, f NotificationFilter) ([]*Notification, error) {
	q := "SELECT " + notificationColumns + " FROM notifications n LEFT JOIN mail_outbox m ON m.id = n.mail_outbox_id WHERE n.user_id = ?"
	args := []any{userID}
	if f.Unread {
		q += " AND n.read_at IS NULL"
	}
	if f.Type != "" {
		q += " AND n.type = ?"
		args = append(args, f.Type)
	}
	if f.Before != "" {
		q += " AND n.id < ?"
		args = append(args, f.Before)
	}
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 50
	}
	q += fmt.Sprintf(" ORDER BY n.id DESC LIMIT %d", f.Limit)
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list notifications: %w", err)
	}
	defer rows.Close()
	var out []*Notification
	for rows.Next() {
		n, err := scanNotification(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// UnreadNotifications counts a user's unread notifications.
func (db *DB) UnreadNotifications(ctx context.Context, userID string) (int, error) {
	var n int
	err := db.queryRow(ctx, "SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read_at IS NULL", userID).Scan(&n)
	return n, err
}

// MarkNotificationRead marks one of a user's notifications read. Another
// user's notification is not found, like a missing one.
func (db *DB) MarkNotificationRead(ctx context.Context, userID, id string) error {
	res, err := db.exec(ctx, "UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL", db.Now(), id, userID)
	if err != nil {
		return fmt.Errorf("store: mark notification read: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var exists int
	err = db.queryRow(ctx, "SELECT COUNT(*) FROM notifications WHERE id = ? AND user_id = ?", id, userID).Scan(&exists)
	if err == nil && exists == 0 {
		err = notFound(sql.ErrNoRows, "notification")
	}
	return err // already read: nothing to do
}

// MarkAllNotificationsRead marks every unread notification of a user read
// and returns how many it marked.
func (db *DB) MarkAllNotificationsRead(ctx context.Context, userID string) (int, error) {
	res, err := db.exec(ctx, "UPDATE notifications SET read_at = ? WHERE user_id = ? AND read_at IS NULL", db.Now(), userID)
	if err != nil {
		return 0, fmt.Errorf("store: mark notifications read: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// NotificationPreferences returns the channels a user chose, by type. Types
// without a row follow the role's default.
func (db *DB) NotificationPreferences(ctx context.Context, userID string) (map[string]string, error) {
	rows, err := db.query(ctx, "SELECT type, channel FROM notification_preferences WHERE user_id = ?", userID)
	if err != nil {
		return nil, fmt.Errorf("store: notification preferences: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			return nil, err
		}
		out[t] = c
	}
	return out, rows.Err()
}

// SetNotificationPreference records a user's channel for a type.
func (tx *Tx) SetNotificationPreference(ctx context.Context, userID, typ, channel string) error {
	if _, err := tx.exec(ctx, "DELETE FROM notification_preferences WHERE user_id = ? AND type = ?", userID, typ); err != nil {
		return err
	}
	_, err := tx.exec(ctx, "INSERT INTO notification_preferences (id, user_id, type, channel) VALUES (?, ?, ?, ?)", NewID(), userID, typ, channel)
	return err
}

// DueMail is a user's notifications waiting to be emailed, oldest first.
type DueMail struct {
	UserID        string
	Email         string
	Notifications []*Notification
}

// DueNotificationMail returns, per user, the notifications that want email
// and have no mail yet, for the users whose newest such notification is older
// than settled (a burst has ended) or whose oldest is older than overdue (a
// burst that never ends still gets mailed). At most limit per user.
func (tx *Tx) DueNotificationMail(ctx context.Context, settled, overdue time.Time, limit int) ([]DueMail, error) {
	rows, err := tx.query(ctx, `SELECT user_id FROM notifications WHERE email_wanted = ? AND mail_outbox_id IS NULL AND email_sent_at IS NULL
		GROUP BY user_id HAVING MAX(created_at) < ? OR MIN(created_at) < ? ORDER BY user_id`, true, settled, overdue)
	if err != nil {
		return nil, fmt.Errorf("store: due mail: %w", err)
	}
	var users []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return nil, err
		}
		users = append(users, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []DueMail
	for _, u := range users {
		d := DueMail{UserID: u}
		if err := tx.queryRow(ctx, "SELECT email FROM users WHERE id = ?", u).Scan(&d.Email); err != nil {
			return nil, fmt.Errorf("store: due mail: user %s: %w", u, err)
		}
		rows, err := tx.query(ctx, "SELECT "+notificationColumns+` FROM notifications n LEFT JOIN mail_outbox m ON m.id = n.mail_outbox_id
			WHERE n.user_id = ? AND n.email_wanted = ? AND n.mail_outbox_id IS NULL AND n.email_sent_at IS NULL ORDER BY n.id LIMIT `+fmt.Sprint(limit), u, true)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			n, err := scanNotification(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			d.Notifications = append(d.Notifications, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		// Another panel may have mailed them since the first query (PostgreSQL
		// reads each statement's own snapshot): nothing is due then.
		if len(d.Notifications) > 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

// AttachMail records that mailID carries the notifications ids. It reports
// false, changing nothing it could not change, if another process attached
// any of them first; the caller then rolls back.
func (tx *Tx) AttachMail(ctx context.Context, mailID string, ids []string) (bool, error) {
	args := []any{mailID}
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := tx.exec(ctx, "UPDATE notifications SET mail_outbox_id = ? WHERE mail_outbox_id IS NULL AND id IN ("+placeholders(len(ids))+")", args...)
	if err != nil {
		return false, fmt.Errorf("store: attach mail: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n) == len(ids), nil
}

// MailFailures counts outgoing mails (notifications, resets, invites) that
// failed for good since a time: the panel's health shows it.
func (db *DB) MailFailures(ctx context.Context, since time.Time) (int, error) {
	var n int
	err := db.queryRow(ctx, "SELECT COUNT(*) FROM mail_outbox WHERE status = 'failed' AND updated_at >= ?", since).Scan(&n)
	return n, err
}

// MailPending counts outgoing mails not yet accepted by the SMTP server: new
// ones, and ones whose attempts failed and will be retried.
func (db *DB) MailPending(ctx context.Context) (int, error) {
	var n int
	err := db.queryRow(ctx, "SELECT COUNT(*) FROM mail_outbox WHERE status = 'queued'").Scan(&n)
	return n, err
}
