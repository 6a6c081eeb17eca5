package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"upanel/internal/apperr"
)

// Webhook formats.
const (
	WebhookGeneric = "generic"
	WebhookSlack   = "slack"
	WebhookDiscord = "discord"
)

// WebhookDeliveryJobKind is the job that delivers one webhook_deliveries row.
const WebhookDeliveryJobKind = "notify.webhook"

// webhookAttempts: with the runner's backoff (5 s doubling, capped at 10 min)
// eight attempts span about ten minutes.
const webhookAttempts = 8

// WebhookDeliveryPayload is the delivery job's payload: the row id only.
type WebhookDeliveryPayload struct {
	DeliveryID string `json:"delivery_id"`
}

// QueueWebhookDeliveries adds a delivery of payload, and the job that makes
// it, for every active target that takes eventType. It returns how many.
func (tx *Tx) QueueWebhookDeliveries(ctx context.Context, eventType string, payload []byte) (int, error) {
	rows, err := tx.query(ctx, "SELECT id, types FROM webhook_targets WHERE active = ?", true)
	if err != nil {
		return 0, fmt.Errorf("store: webhook targets: %w", err)
	}
	var targets []string
	for rows.Next() {
		var id, types string
		if err := rows.Scan(&id, &types); err != nil {
			rows.Close()
			return 0, err
		}
		if webhookTakes(types, eventType) {
			targets = append(targets, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, t := range targets {
		if _, err := tx.queueWebhookDelivery(ctx, t, eventType, payload); err != nil {
			return 0, err
		}
	}
	return len(targets), nil
}

// QueueWebhookDelivery adds a delivery of payload to one target, whatever
// types it takes and whether it is active (the delivery job checks that),
// and the job that makes it. It returns the delivery's id, which is also its
// job's id. The "test" button uses it.
func (tx *Tx) QueueWebhookDelivery(ctx context.Context, targetID, eventType string, payload []byte) (string, error) {
	var one int
	if err := tx.queryRow(ctx, "SELECT 1 FROM webhook_targets WHERE id = ?", targetID).Scan(&one); err != nil {
		return "", notFound(err, "webhook")
	}
	return tx.queueWebhookDelivery(ctx, targetID, eventType, payload)
}

func (tx *Tx) queueWebhookDelivery(ctx context.Context, targetID, eventType string, payload []byte) (string, error) {
	id, now := NewID(), tx.Now()
	if _, err := tx.exec(ctx, `INSERT INTO webhook_deliveries (id, target_id, event_type, payload, status, created_at, updated_at)
		VALUES (?, ?, ?, ?, 'queued', ?, ?)`, id, targetID, eventType, string(payload), now, now); err != nil {
		return "", fmt.Errorf("store: queue webhook: %w", err)
	}
	if _, _, err := tx.EnqueueJob(ctx, NewJob{ID: id, Kind: WebhookDeliveryJobKind, Payload: WebhookDeliveryPayload{DeliveryID: id},
		SubjectType: webhookDeliverySubject, SubjectID: id, ConcurrencyKey: "webhook:" + targetID, MaxAttempts: webhookAttempts}); err != nil {
		return "", err
	}
	return id, nil
}

// webhookDeliverySubject is the subject type of delivery jobs.
const webhookDeliverySubject = "webhook_delivery"

// webhookTakes reports whether a target's types (comma-separated, or "*"
// for all) include eventType.
func webhookTakes(types, eventType string) bool {
	for _, t := range strings.Split(types, ",") {
		if t = strings.TrimSpace(t); t == "*" || t == eventType {
			return true
		}
	}
	return false
}

// Webhook delivery states. delivered and failed are final.
const (
	WebhookQueued    = "queued"
	WebhookDelivered = "delivered"
	WebhookFailed    = "failed"
)

// WebhookAllTypes in a target's types means every event type, including types
// added later.
const WebhookAllTypes = "*"

var (
	colWebhookURL    = SecretColumn{"webhook_targets", "url"}
	colWebhookSecret = SecretColumn{"webhook_targets", "secret"}
)

// WebhookTarget is a row of webhook_targets without its secrets: the URL (a
// Slack or Discord URL is itself a credential) appears only in its display
// form, and the signing secret not at all. WebhookTargetCredentials returns
// both, for delivery.
type WebhookTarget struct {
	ID   string
	Name string
	// DisplayURL is scheme://host/… : enough to recognise the target, not
	// enough to post to it.
	DisplayURL string
	Format     string
	// Types are the event types it takes, or just WebhookAllTypes.
	Types          []string
	Active         bool
	LastStatus     string // "", delivered or failed
	LastError      string
	LastDeliveryAt *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// AllTypes reports whether the target takes every event type.
func (t *WebhookTarget) AllTypes() bool { return len(t.Types) == 1 && t.Types[0] == WebhookAllTypes }

// WebhookCredentials are a target's decrypted URL and signing secret.
type WebhookCredentials struct {
	URL    string
	Secret string
}

// WebhookDisplayURL masks a webhook URL for display and logs: the scheme and
// host (with its port) stay, the path and query, where chat services put
// their credentials, become "…".
func WebhookDisplayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "…"
	}
	host := u.Host
	if u.User != nil {
		host = "…@" + host
	}
	if (u.Path == "" || u.Path == "/") && u.RawQuery == "" {
		return u.Scheme + "://" + host + "/"
	}
	return u.Scheme + "://" + host + "/…"
}

// NewWebhookTarget is what creating a target takes. The caller validates it;
// URL and Secret are sealed here.
type NewWebhookTarget struct {
	Name, URL, Format, Secret string
	Types                     []string
	Active                    bool
}

// WebhookTargetUpdate changes a target; URL "" keeps the current one.
type WebhookTargetUpdate struct {
	Name, URL, Format string
	Types             []string
	Active            bool
}

func joinTypes(types []string) (string, error) {
	if len(types) == 0 {
		return "", apperr.New(apperr.Invalid, "a webhook needs at least one event type")
	}
	for _, t := range types {
		if t == "" || strings.ContainsAny(t, ", ") {
			return "", apperr.New(apperr.Invalid, "%q is not an event type", t)
		}
	}
	return strings.Join(types, ","), nil
}

func splitTypes(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// CreateWebhookTarget inserts a target with its URL and secret sealed in the
// same statement.
func (tx *Tx) CreateWebhookTarget(ctx context.Context, n NewWebhookTarget) (*WebhookTarget, error) {
	types, err := joinTypes(n.Types)
	if err != nil {
		return nil, err
	}
	if n.URL == "" || n.Secret == "" {
		return nil, apperr.New(apperr.Invalid, "a webhook needs a URL and a secret")
	}
	id, now := NewID(), tx.Now()
	u, err := tx.Seal(colWebhookURL, id, []byte(n.URL))
	if err != nil {
		return nil, err
	}
	sec, err := tx.Seal(colWebhookSecret, id, []byte(n.Secret))
	if err != nil {
		return nil, err
	}
	if _, err := tx.exec(ctx, `INSERT INTO webhook_targets (id, name, url, format, secret, types, active, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, n.Name, u, n.Format, sec, types, n.Active, now, now); err != nil {
		return nil, fmt.Errorf("store: create webhook: %w", err)
	}
	return tx.GetWebhookTarget(ctx, id)
}

// UpdateWebhookTarget changes a target's settings, and its URL when u.URL is
// set. The delivery state (last status) stays.
func (tx *Tx) UpdateWebhookTarget(ctx context.Context, id string, u WebhookTargetUpdate) (*WebhookTarget, error) {
	types, err := joinTypes(u.Types)
	if err != nil {
		return nil, err
	}
	res, err := tx.exec(ctx, "UPDATE webhook_targets SET name = ?, format = ?, types = ?, active = ?, updated_at = ? WHERE id = ?",
		u.Name, u.Format, types, u.Active, tx.Now(), id)
	if err != nil {
		return nil, fmt.Errorf("store: update webhook: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, apperr.New(apperr.NotFound, "webhook not found")
	}
	if u.URL != "" {
		if err := tx.SetSecret(ctx, colWebhookURL, id, []byte(u.URL)); err != nil {
			return nil, err
		}
	}
	return tx.GetWebhookTarget(ctx, id)
}

// SetWebhookSecret replaces a target's signing secret.
func (tx *Tx) SetWebhookSecret(ctx context.Context, id, secret string) error {
	if secret == "" {
		return apperr.New(apperr.Invalid, "a webhook secret must not be empty")
	}
	if err := tx.SetSecret(ctx, colWebhookSecret, id, []byte(secret)); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return apperr.New(apperr.NotFound, "webhook not found")
		}
		return err
	}
	_, err := tx.exec(ctx, "UPDATE webhook_targets SET updated_at = ? WHERE id = ?", tx.Now(), id)
	return err
}

// DeleteWebhookTarget deletes a target and, by cascade, its deliveries. Their
// jobs, if still queued, find no delivery and end.
func (tx *Tx) DeleteWebhookTarget(ctx context.Context, id string) error {
	res, err := tx.exec(ctx, "DELETE FROM webhook_targets WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("store: delete webhook: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "webhook not found")
	}
	return nil
}

const webhookTargetColumns = `id, name, url, format, types, active, last_status, last_error, last_delivery_at, created_at, updated_at`

// scanWebhookTarget reads a target; the sealed URL is opened only to make its
// display form.
func (db *DB) scanWebhookTarget(s interface{ Scan(...any) error }) (*WebhookTarget, error) {
	var t WebhookTarget
	var sealedURL, types string
	var status, lastErr sql.NullString
	var last, created, updated nullTime
	if err := s.Scan(&t.ID, &t.Name, &sealedURL, &t.Format, &types, &t.Active, &status, &lastErr, &last, &created, &updated); err != nil {
		return nil, err
	}
	t.DisplayURL = "…"
	if sealedURL != "" {
		plain, err := db.unseal(colWebhookURL, t.ID, sealedURL)
		if err != nil {
			return nil, err
		}
		t.DisplayURL = WebhookDisplayURL(string(plain))
	}
	t.Types = splitTypes(types)
	t.LastStatus, t.LastError = status.String, lastErr.String
	t.LastDeliveryAt, t.CreatedAt, t.UpdatedAt = last.ptr(), created.Time, updated.Time
	return &t, nil
}

// GetWebhookTarget returns a target.
func (tx *Tx) GetWebhookTarget(ctx context.Context, id string) (*WebhookTarget, error) {
	t, err := tx.db.scanWebhookTarget(tx.queryRow(ctx, "SELECT "+webhookTargetColumns+" FROM webhook_targets WHERE id = ?", id))
	return t, notFound(err, "webhook")
}

// GetWebhookTarget returns a target.
func (db *DB) GetWebhookTarget(ctx context.Context, id string) (*WebhookTarget, error) {
	t, err := db.scanWebhookTarget(db.queryRow(ctx, "SELECT "+webhookTargetColumns+" FROM webhook_targets WHERE id = ?", id))
	return t, notFound(err, "webhook")
}

// ListWebhookTargets returns every target, by name.
func (db *DB) ListWebhookTargets(ctx context.Context) ([]*WebhookTarget, error) {
	rows, err := db.query(ctx, "SELECT "+webhookTargetColumns+" FROM webhook_targets ORDER BY name, id")
	if err != nil {
		return nil, fmt.Errorf("store: list webhooks: %w", err)
	}
	defer rows.Close()
	var out []*WebhookTarget
	for rows.Next() {
		t, err := db.scanWebhookTarget(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// WebhookTargetCredentials decrypts a target's URL and signing secret, for
// delivering to it (and for telling whether an edit changes the URL).
func (tx *Tx) WebhookTargetCredentials(ctx context.Context, id string) (WebhookCredentials, error) {
	var u, s string
	if err := tx.queryRow(ctx, "SELECT url, secret FROM webhook_targets WHERE id = ?", id).Scan(&u, &s); err != nil {
		return WebhookCredentials{}, notFound(err, "webhook")
	}
	return tx.db.openWebhookCredentials(id, u, s)
}

// WebhookTargetCredentials decrypts a target's URL and signing secret, for
// delivering to it.
func (db *DB) WebhookTargetCredentials(ctx context.Context, id string) (WebhookCredentials, error) {
	var u, s string
	if err := db.queryRow(ctx, "SELECT url, secret FROM webhook_targets WHERE id = ?", id).Scan(&u, &s); err != nil {
		return WebhookCredentials{}, notFound(err, "webhook")
	}
	return db.openWebhookCredentials(id, u, s)
}

func (db *DB) openWebhookCredentials(id, sealedURL, sealedSecret string) (WebhookCredentials, error) {
	if sealedURL == "" || sealedSecret == "" {
		return WebhookCredentials{}, fmt.Errorf("store: webhook %s has no URL or secret", id)
	}
	u, err := db.unseal(colWebhookURL, id, sealedURL)
	if err != nil {
		return WebhookCredentials{}, err
	}
	s, err := db.unseal(colWebhookSecret, id, sealedSecret)
	if err != nil {
		return WebhookCredentials{}, err
	}
	return WebhookCredentials{URL: string(u), Secret: string(s)}, nil
}

// WebhookDelivery is a row of webhook_deliveries.
type WebhookDelivery struct {
	ID        string
	TargetID  string
	EventType string
	// Payload is the generic event JSON (notify.EventPayload); the Slack and
	// Discord bodies are made from it.
	Payload      json.RawMessage
	Status       string
	Attempts     int
	ResponseCode int // 0: no HTTP answer yet
	LastError    string
	DeliveredAt  *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Final reports whether the delivery has ended.
func (d *WebhookDelivery) Final() bool {
	return d.Status == WebhookDelivered || d.Status == WebhookFailed
}

const webhookDeliveryColumns = `id, target_id, event_type, payload, status, attempts, response_code, last_error, delivered_at, created_at, updated_at`

func scanWebhookDelivery(s interface{ Scan(...any) error }) (*WebhookDelivery, error) {
	var d WebhookDelivery
	var payload string
	var code sql.NullInt64
	var lastErr sql.NullString
	var delivered, created, updated nullTime
	if err := s.Scan(&d.ID, &d.TargetID, &d.EventType, &payload, &d.Status, &d.Attempts, &code, &lastErr, &delivered, &created, &updated); err != nil {
		return nil, err
	}
	d.Payload = json.RawMessage(payload)
	d.ResponseCode, d.LastError = int(code.Int64), lastErr.String
	d.DeliveredAt, d.CreatedAt, d.UpdatedAt = delivered.ptr(), created.Time, updated.Time
	return &d, nil
}

// GetWebhookDelivery returns a delivery.
func (db *DB) GetWebhookDelivery(ctx context.Context, id string) (*WebhookDelivery, error) {
	d, err := scanWebhookDelivery(db.queryRow(ctx, "SELECT "+webhookDeliveryColumns+" FROM webhook_deliveries WHERE id = ?", id))
	return d, notFound(err, "webhook delivery")
}

// ListWebhookDeliveries returns a target's latest deliveries, newest first.
func (db *DB) ListWebhookDeliveries(ctx context.Context, targetID string, limit int) ([]*WebhookDelivery, error) {
	if limit <= 0 || limit > 500 {
		limit = 20
	}
	rows, err := db.query(ctx, "SELECT "+webhookDeliveryColumns+" FROM webhook_deliveries WHERE target_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
		targetID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list webhook deliveries: %w", err)
	}
	defer rows.Close()
	out := []*WebhookDelivery{}
	for rows.Next() {
		d, err := scanWebhookDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// maxWebhookError bounds last_error: the first part of a reply says what went
// wrong.
const maxWebhookError = 1000

// truncateWebhookError makes an error storable on both databases (valid
// UTF-8, no NUL) and bounded.
func truncateWebhookError(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
	if len(s) > maxWebhookError {
		cut := maxWebhookError
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// WebhookAttempt is the outcome of one delivery attempt.
type WebhookAttempt struct {
	// Status is WebhookDelivered (the target answered 2xx), WebhookFailed
	// (refused for good, or the last attempt) or WebhookQueued (it will be
	// retried).
	Status string
	// ResponseCode is the HTTP status the target answered, 0 for none.
	ResponseCode int
	// Error says what went wrong; empty for a delivery.
	Error string
}

// RecordWebhookAttempt counts an attempt of a queued delivery and keeps its
// outcome. A final outcome (delivered or failed) is also written to the
// target's last status, in the same transaction. It changes only a queued
// row and reports whether it did, so a repeated call is harmless.
func (db *DB) RecordWebhookAttempt(ctx context.Context, id string, a WebhookAttempt) (bool, error) {
	switch a.Status {
	case WebhookQueued, WebhookDelivered, WebhookFailed:
	default:
		return false, fmt.Errorf("store: %q is not a webhook delivery status", a.Status)
	}
	var lastErr any
	if a.Status != WebhookDelivered {
		if a.Error == "" {
			a.Error = "unknown error"
		}
		lastErr = truncateWebhookError(a.Error)
	}
	var code any
	if a.ResponseCode > 0 {
		code = a.ResponseCode
	}
	changed := false
	err := db.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		var deliveredAt any
		if a.Status == WebhookDelivered {
			deliveredAt = now
		}
		var target string
		err := tx.queryRow(ctx, `UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, response_code = ?, last_error = ?,
				delivered_at = ?, updated_at = ?
			WHERE id = ? AND status = 'queued' RETURNING target_id`, a.Status, code, lastErr, deliveredAt, now, id).Scan(&target)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		changed = true
		if a.Status == WebhookQueued {
			return nil
		}
		_, err = tx.exec(ctx, "UPDATE webhook_targets SET last_status = ?, last_error = ?, last_delivery_at = ? WHERE id = ?",
			a.Status, lastErr, now, target)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: record webhook delivery %s: %w", id, err)
	}
	return changed, nil
}

// FailOrphanedWebhookDeliveries marks failed every queued delivery whose job
// has ended without recording an outcome (cancelled, or its worker died on the
// last attempt), so that none stays queued forever. A delivery and its job
// (same id) are written in one transaction, so a queued delivery without an
// active job is never one whose job is still to come.
func (db *DB) FailOrphanedWebhookDeliveries(ctx context.Context) (int, error) {
	now := db.Now()
	res, err := db.exec(ctx, `UPDATE webhook_deliveries SET status = 'failed', updated_at = ?,
			last_error = COALESCE(last_error, 'the delivery job ended without delivering')
		WHERE status = 'queued' AND NOT EXISTS (
			SELECT 1 FROM jobs WHERE jobs.id = webhook_deliveries.id AND jobs.status IN ('queued', 'running'))`, now)
	if err != nil {
		return 0, fmt.Errorf("store: fail orphaned webhook deliveries: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// DeleteWebhookDeliveries deletes up to limit finished deliveries created
// before cutoff: the log of what was sent is kept for a while, not forever.
func (db *DB) DeleteWebhookDeliveries(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return db.deleteBatch(ctx, "webhook_deliveries", "status IN ('delivered', 'failed') AND created_at < ?", limit, cutoff)
}
