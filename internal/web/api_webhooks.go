package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/notify"
	"upanel/internal/store"
)

// webhookJSON is a webhook target as the API shows it. The URL and the
// signing secret are write-only: display_url masks the path, and the secret
// appears only in the answers that make it (create, rotate-secret).
type webhookJSON struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	DisplayURL     string     `json:"display_url"`
	Format         string     `json:"format"`
	Types          []string   `json:"types"`
	Active         bool       `json:"active"`
	LastStatus     *string    `json:"last_status"`
	LastError      string     `json:"last_error,omitempty"`
	LastDeliveryAt *time.Time `json:"last_delivery_at"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	// Secret is present only in the answer that creates it.
	Secret string `json:"secret,omitempty"`
}

func toWebhookJSON(t *store.WebhookTarget) webhookJSON {
	j := webhookJSON{ID: t.ID, Name: t.Name, DisplayURL: t.DisplayURL, Format: t.Format, Types: t.Types, Active: t.Active,
		LastError: t.LastError, LastDeliveryAt: t.LastDeliveryAt, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
	if t.LastStatus != "" {
		j.LastStatus = &t.LastStatus
	}
	if j.Types == nil {
		j.Types = []string{}
	}
	return j
}

type webhookDeliveryJSON struct {
	ID           string          `json:"id"`
	WebhookID    string          `json:"webhook_id"`
	EventType    string          `json:"event_type"`
	Status       string          `json:"status"`
	Attempts     int             `json:"attempts"`
	ResponseCode *int            `json:"response_code"`
	LastError    string          `json:"last_error,omitempty"`
	Payload      json.RawMessage `json:"payload"`
	DeliveredAt  *time.Time      `json:"delivered_at"`
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
}

func toWebhookDeliveryJSON(d *store.WebhookDelivery) webhookDeliveryJSON {
	j := webhookDeliveryJSON{ID: d.ID, WebhookID: d.TargetID, EventType: d.EventType, Status: d.Status, Attempts: d.Attempts,
		LastError: d.LastError, Payload: d.Payload, DeliveredAt: d.DeliveredAt, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if d.ResponseCode > 0 {
		code := d.ResponseCode
		j.ResponseCode = &code
	}
	if !json.Valid(j.Payload) {
		j.Payload = json.RawMessage("{}")
	}
	return j
}

// webhooks returns the webhook manager, or an error when the panel was made
// without one.
func (s *Server) webhooks() (*notify.Webhooks, error) {
	if s.Webhooks == nil {
		return nil, apperr.New(apperr.Unavailable, "outgoing webhooks are not available on this panel")
	}
	return s.Webhooks, nil
}

func (s *Server) apiWebhooks(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	list, err := s.DB.ListWebhookTargets(r.Context())
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := listJSON[webhookJSON]{Items: []webhookJSON{}}
	for _, t := range list {
		out.Items = append(out.Items, toWebhookJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiWebhookCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	hooks, err := s.webhooks()
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var in notify.WebhookInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	t, secret, err := hooks.Create(r.Context(), p, in, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := toWebhookJSON(t)
	out.Secret = secret
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) apiWebhook(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	t, err := s.DB.GetWebhookTarget(r.Context(), r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toWebhookJSON(t))
}

func (s *Server) apiWebhookUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	hooks, err := s.webhooks()
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var in notify.WebhookPatch
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	t, err := hooks.Update(r.Context(), p, r.PathValue("id"), in, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toWebhookJSON(t))
}

func (s *Server) apiWebhookDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	hooks, err := s.webhooks()
	if err == nil {
		err = hooks.Delete(r.Context(), p, r.PathValue("id"), s.meta(r))
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiWebhookTest queues a webhook.test delivery and answers at once with it;
// GET .../deliveries shows its outcome.
func (s *Server) apiWebhookTest(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	hooks, err := s.webhooks()
	var id string
	if err == nil {
		id, err = hooks.Test(r.Context(), r.PathValue("id"))
	}
	var d *store.WebhookDelivery
	if err == nil {
		d, err = s.DB.GetWebhookDelivery(r.Context(), id)
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, toWebhookDeliveryJSON(d))
}

func (s *Server) apiWebhookRotate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	hooks, err := s.webhooks()
	var secret string
	if err == nil {
		secret, err = hooks.RotateSecret(r.Context(), p, r.PathValue("id"), s.meta(r))
	}
	var t *store.WebhookTarget
	if err == nil {
		t, err = s.DB.GetWebhookTarget(r.Context(), r.PathValue("id"))
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := toWebhookJSON(t)
	out.Secret = secret
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiWebhookDeliveries(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	if _, err := s.DB.GetWebhookTarget(r.Context(), id); err != nil {
		s.apiError(w, r, err)
		return
	}
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			s.apiError(w, r, apperr.New(apperr.Invalid, "limit must be 1 to 200"))
			return
		}
		limit = n
	}
	list, err := s.DB.ListWebhookDeliveries(r.Context(), id, limit)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := listJSON[webhookDeliveryJSON]{Items: []webhookDeliveryJSON{}}
	for _, d := range list {
		out.Items = append(out.Items, toWebhookDeliveryJSON(d))
	}
	writeJSON(w, http.StatusOK, out)
}
