package store

import (
	"context"
	"fmt"
	"strings"
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
	now := tx.Now()
	for _, t := range targets {
		id := NewID()
		if _, err := tx.exec(ctx, `INSERT INTO webhook_deliveries (id, target_id, event_type, payload, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, 'queued', ?, ?)`, id, t, eventType, string(payload), now, now); err != nil {
			return 0, fmt.Errorf("store: queue webhook: %w", err)
		}
		if _, _, err := tx.EnqueueJob(ctx, NewJob{ID: id, Kind: WebhookDeliveryJobKind, Payload: WebhookDeliveryPayload{DeliveryID: id},
			SubjectType: "webhook_delivery", SubjectID: id, ConcurrencyKey: "webhook:" + t, MaxAttempts: webhookAttempts}); err != nil {
			return 0, err
		}
	}
	return len(targets), nil
}

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
