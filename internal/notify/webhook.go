package notify

import (
	"context"
	"encoding/json"

	"upanel/internal/store"
)

// EventPayload is the generic JSON body of a webhook delivery. The Slack and
// Discord formats are made from it at delivery time.
type EventPayload struct {
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Message    string         `json:"message"`
	Subject    *PayloadObject `json:"subject,omitempty"`
	OccurredAt string         `json:"occurred_at"` // RFC 3339, UTC
}

// PayloadObject is the object an event is about.
type PayloadObject struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	URL  string `json:"url"`
}

// queueWebhooks queues a delivery of ev to every active target that takes its
// type: one per target, whoever else is notified.
func (s *Service) queueWebhooks(ctx context.Context, tx *store.Tx, ev Event) error {
	p := EventPayload{Type: ev.Type, Title: oneLine(ev.Title), Message: ev.Message,
		OccurredAt: tx.Now().UTC().Format("2006-01-02T15:04:05.000Z")}
	if ev.SubjectID != "" {
		p.Subject = &PayloadObject{Type: ev.SubjectType, ID: ev.SubjectID, URL: s.Link(ev.SubjectType, ev.SubjectID)}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	n, err := tx.QueueWebhookDeliveries(ctx, ev.Type, b)
	if err == nil && n > 0 {
		s.Wake()
	}
	return err
}
