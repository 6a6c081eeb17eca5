package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"upanel/internal/apperr"
)

// Outbox states. sent and failed are final.
const (
	MailQueued = "queued"
	MailSent   = "sent"
	MailFailed = "failed"
)

// MailSendJobKind is the job that delivers one outbox row. It lives here because
// EnqueueMail enqueues it; internal/mail registers the handler under this name.
const MailSendJobKind = "mail.send"

// mailSendAttempts is how often delivery is tried. With the runner's backoff
// (5 s doubling, capped at 10 min) eight attempts span about ten minutes, well
// inside the 60-minute life of a reset link; a longer outage is better reported
// as a failure than papered over.
const mailSendAttempts = 8

// mailBodyColumn is the one encrypted column of mail_outbox.
var mailBodyColumn = SecretColumn{"mail_outbox", "body"}

// OutboxMail is an email as its sender composed it: who gets it and what it
// says. From, Date and Message-ID are added when it is sent.
type OutboxMail struct {
	// Kind names the message type (password_reset, invite, ...), for the
	// delivery log; at most 50 characters.
	Kind string
	// To is one recipient, a bare address such as ana@example.com.
	To      string
	Subject string
	Text    string // required: every mail has a plain-text part
	HTML    string // optional: an alternative HTML part
}

// MailBody is the decrypted content of an outbox row.
type MailBody struct {
	Text string `json:"text"`
	HTML string `json:"html,omitempty"`
}

// OutboxRow is a row of mail_outbox without its body, which only the sender
// decrypts.
type OutboxRow struct {
	ID        string
	Kind      string
	To        string
	Subject   string
	Status    string
	Attempts  int
	LastError string
	// HasBody is false once the body was purged (see PurgeMailBodies).
	HasBody   bool
	SentAt    *time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// sendMailPayload is the mail.send job's payload: the row id and nothing else,
// because job payloads are stored in plain text and the body is a secret.
type sendMailPayload struct {
	OutboxID string `json:"outbox_id"`
}

// validate checks m and returns it with To normalised to a bare address.
func (m OutboxMail) validate() (OutboxMail, error) {
	if m.Kind == "" || len(m.Kind) > 50 {
		return m, apperr.New(apperr.Invalid, "mail kind must be 1-50 characters")
	}
	addr, err := mail.ParseAddress(m.To)
	if err != nil || addr.Name != "" || strings.ContainsAny(m.To, "\r\n") {
		return m, apperr.New(apperr.Invalid, "mail recipient %q is not a bare email address", m.To)
	}
	m.To = addr.Address
	if utf8.RuneCountInString(m.To) > 255 {
		return m, apperr.New(apperr.Invalid, "mail recipient is longer than 255 characters")
	}
	if m.Subject == "" || utf8.RuneCountInString(m.Subject) > 255 || strings.ContainsAny(m.Subject, "\r\n") {
		return m, apperr.New(apperr.Invalid, "mail subject must be one line of 1-255 characters")
	}
	if strings.TrimSpace(m.Text) == "" {
		return m, apperr.New(apperr.Invalid, "mail needs a plain-text body")
	}
	return m, nil
}

// EnqueueMail writes an email to the outbox and enqueues the job that sends it,
// both in the caller's transaction: the mail exists if and only if the change
// it reports (a reset token, an invite) commits, and it is sent after the
// request that asked for it has answered. The body is encrypted with the
// keyring; the job's payload carries only the row id. It returns the row id.
func (tx *Tx) EnqueueMail(ctx context.Context, m OutboxMail) (string, error) {
	m, err := m.validate()
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(MailBody{Text: m.Text, HTML: m.HTML})
	if err != nil {
		return "", fmt.Errorf("store: mail body: %w", err)
	}
	id := NewID()
	sealed, err := tx.db.seal(mailBodyColumn, id, body)
	if err != nil {
		return "", err
	}
	now := tx.Now()
	if _, err := tx.exec(ctx, `INSERT INTO mail_outbox (id, kind, to_address, subject, body, status, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)`, id, m.Kind, m.To, m.Subject, sealed, now, now); err != nil {
		return "", fmt.Errorf("store: enqueue mail: %w", err)
	}
	if _, _, err := tx.EnqueueJob(ctx, NewJob{
		Kind:        MailSendJobKind,
		Payload:     sendMailPayload{OutboxID: id},
		SubjectType: "mail_outbox",
		SubjectID:   id,
		MaxAttempts: mailSendAttempts,
	}); err != nil {
		return "", err
	}
	return id, nil
}

// DecodeMailJob returns the outbox id a mail.send job's payload names.
func DecodeMailJob(payload json.RawMessage) (string, error) {
	var p sendMailPayload
	if err := json.Unmarshal(payload, &p); err != nil || p.OutboxID == "" {
		return "", fmt.Errorf("store: mail job payload %s does not name an outbox row", payload)
	}
	return p.OutboxID, nil
}

const outboxColumns = `id, kind, to_address, subject, body IS NOT NULL, status, attempts, last_error, sent_at, created_at, updated_at`

func scanOutbox(s interface{ Scan(...any) error }) (*OutboxRow, error) {
	var r OutboxRow
	var lastErr sql.NullString
	var sent, created, updated nullTime
	if err := s.Scan(&r.ID, &r.Kind, &r.To, &r.Subject, &r.HasBody, &r.Status, &r.Attempts, &lastErr, &sent, &created, &updated); err != nil {
		return nil, err
	}
	r.LastError = lastErr.String
	r.SentAt, r.CreatedAt, r.UpdatedAt = sent.ptr(), created.Time, updated.Time
	return &r, nil
}

// GetMail returns one outbox row, without its body.
func (db *DB) GetMail(ctx context.Context, id string) (*OutboxRow, error) {
	r, err := scanOutbox(db.queryRow(ctx, "SELECT "+outboxColumns+" FROM mail_outbox WHERE id = ?", id))
	if err != nil {
		return nil, notFound(err, "mail")
	}
	return r, nil
}

// ListMail returns up to limit outbox rows, newest first; status "" means all.
func (db *DB) ListMail(ctx context.Context, status string, limit int) ([]OutboxRow, error) {
	q := "SELECT " + outboxColumns + " FROM mail_outbox"
	var args []any
	if status != "" {
		q += " WHERE status = ?"
		args = append(args, status)
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list mail: %w", err)
	}
	defer rows.Close()
	var out []OutboxRow
	for rows.Next() {
		r, err := scanOutbox(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// MailBody decrypts an outbox row's body. A purged body is a not-found error.
func (db *DB) MailBody(ctx context.Context, id string) (MailBody, error) {
	p, ok, err := db.GetSecret(ctx, mailBodyColumn, id)
	if err != nil {
		return MailBody{}, err
	}
	if !ok {
		return MailBody{}, apperr.New(apperr.NotFound, "the body of mail %s was purged", id)
	}
	var b MailBody
	if err := json.Unmarshal(p, &b); err != nil {
		return MailBody{}, fmt.Errorf("store: mail %s: body is not valid: %w", id, err)
	}
	return b, nil
}

// MarkMailSent records that the SMTP server accepted the message: status sent,
// sent_at now, the attempt counted and the last error cleared. Call it only
// after the server's positive reply to the end of DATA. It changes only a
// queued row and reports whether it did, so a repeated call is harmless.
// The notifications the mail carries get their email_sent_at in the same
// transaction.
func (db *DB) MarkMailSent(ctx context.Context, id string) (bool, error) {
	var n int64
	err := db.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		res, err := tx.exec(ctx, `UPDATE mail_outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL, updated_at = ?
			WHERE id = ? AND status = 'queued'`, now, now, id)
		if err != nil {
			return err
		}
		if n, _ = res.RowsAffected(); n != 1 {
			return nil
		}
		_, err = tx.exec(ctx, "UPDATE notifications SET email_sent_at = ? WHERE mail_outbox_id = ? AND email_sent_at IS NULL", now, id)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: mark mail %s sent: %w", id, err)
	}
	return n == 1, nil
}

// maxMailError bounds last_error; SMTP replies can be long, and the first part
// says what went wrong.
const maxMailError = 1000

// RecordMailFailure counts a failed delivery attempt of a queued row and keeps
// its error, so that the failure shows while retries go on. final marks the
// row failed: the server refused it for good, or the attempts ran out.
func (db *DB) RecordMailFailure(ctx context.Context, id, lastError string, final bool) error {
	status := MailQueued
	if final {
		status = MailFailed
	}
	if len(lastError) > maxMailError {
		lastError = strings.ToValidUTF8(lastError[:maxMailError], "") + "…"
	}
	if lastError == "" {
		lastError = "unknown error"
	}
	_, err := db.exec(ctx, `UPDATE mail_outbox SET status = ?, attempts = attempts + 1, last_error = ?, updated_at = ?
		WHERE id = ? AND status = 'queued'`, status, lastError, db.Now(), id)
	if err != nil {
		return fmt.Errorf("store: record mail %s failure: %w", id, err)
	}
	return nil
}

// FailOrphanedMail marks failed every queued row whose delivery job has ended
// without sending it: the job was cancelled, or its worker died on the last
// attempt, so no handler was left to record the outcome. EnqueueMail writes the
// row and its job in one transaction, so a queued row with no active job is
// never one whose job is still to come.
func (db *DB) FailOrphanedMail(ctx context.Context) (int, error) {
	now := db.Now()
	res, err := db.exec(ctx, `UPDATE mail_outbox SET status = 'failed', updated_at = ?,
			last_error = COALESCE(last_error, 'the delivery job ended without sending the mail')
		WHERE status = 'queued' AND NOT EXISTS (
			SELECT 1 FROM jobs WHERE jobs.subject_type = 'mail_outbox' AND jobs.subject_id = mail_outbox.id
			AND jobs.status IN ('queued', 'running'))`, now)
	if err != nil {
		return 0, fmt.Errorf("store: fail orphaned mail: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// PurgeMailBodies clears the body of up to limit sent or failed rows that
// finished before cutoff. The row stays as the delivery log (recipient,
// subject, status, times); the body goes because its links are dead by then and
// a secret kept for nothing is a liability.
func (db *DB) PurgeMailBodies(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	res, err := db.exec(ctx, `UPDATE mail_outbox SET body = NULL WHERE id IN (
			SELECT id FROM mail_outbox WHERE body IS NOT NULL AND status IN ('sent', 'failed')
			AND COALESCE(sent_at, updated_at) < ? LIMIT ?)`, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("store: purge mail bodies: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
