package web

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"upanel/internal/auth"
	"upanel/internal/notify"
	"upanel/internal/store"
)

// typeChoice is one event-type checkbox.
type typeChoice struct {
	Type, Label string
	Checked     bool
}

type webhooksData struct {
	Targets []*store.WebhookTarget
	Formats []string
	Choices []typeChoice
	All     bool // the "all events" box is ticked
	Format  string
	Active  bool
}

type webhookData struct {
	Target     *store.WebhookTarget
	Deliveries []*store.WebhookDelivery
	Formats    []string
	Choices    []typeChoice
	All        bool
	Format     string
	Active     bool
	// NewSecret is shown once, right after the target was made or its
	// secret replaced.
	NewSecret string
}

// choices are the type checkboxes, ticked as types says; all is "*".
func choices(types []string) (out []typeChoice, all bool) {
	for _, t := range notify.Types() {
		out = append(out, typeChoice{Type: t.Type, Label: t.Label, Checked: slices.Contains(types, t.Type)})
	}
	return out, slices.Contains(types, store.WebhookAllTypes)
}

// formTypes are the ticked types of a submitted form, never nil (so that an
// empty choice is an error, not "keep").
func formTypes(r *http.Request) []string {
	if t := r.PostForm["types"]; t != nil {
		return t
	}
	return []string{}
}

func (s *Server) webhooksPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.renderWebhooks(w, r, nil)
}

func (s *Server) renderWebhooks(w http.ResponseWriter, r *http.Request, err error) {
	pg := s.newPage(w, r, "Outgoing webhooks")
	pg.Nav = "settings"
	list, lerr := s.DB.ListWebhookTargets(r.Context())
	if lerr != nil {
		s.fail(w, r, false, lerr)
		return
	}
	d := &webhooksData{Targets: list, Formats: notify.Formats(), Format: store.WebhookGeneric, Active: true}
	if err != nil {
		d.Choices, d.All = choices(formTypes(r))
		d.Format, d.Active = r.PostFormValue("format"), r.PostFormValue("active") == "on"
		pg.Data = d
		pg.Form = url.Values{"name": {r.PostFormValue("name")}} // the URL is a secret: not echoed
		s.renderForm(w, r, "webhooks", pg, err)
		return
	}
	d.Choices, d.All = choices([]string{store.WebhookAllTypes})
	pg.Data = d
	s.render(w, r, "webhooks", pg)
}

func (s *Server) webhookCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	hooks, err := s.webhooks()
	var t *store.WebhookTarget
	var secret string
	if err == nil {
		active := r.PostFormValue("active") == "on"
		t, secret, err = hooks.Create(r.Context(), p, notify.WebhookInput{Name: r.PostFormValue("name"), URL: r.PostFormValue("url"),
			Format: r.PostFormValue("format"), Types: formTypes(r), Active: &active}, s.meta(r))
	}
	if err != nil {
		s.renderWebhooks(w, r, err)
		return
	}
	pg := s.newPage(w, r, t.Name)
	pg.Flash = "Webhook added. Copy its signing secret now: it is not shown again."
	s.renderWebhook(w, r, pg, t.ID, secret, nil)
}

func (s *Server) webhookPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.renderWebhook(w, r, nil, r.PathValue("id"), "", nil)
}

// renderWebhook shows a target with its latest deliveries; after err it
// keeps what was typed in the edit form.
func (s *Server) renderWebhook(w http.ResponseWriter, r *http.Request, pg *page, id, newSecret string, err error) {
	t, lerr := s.DB.GetWebhookTarget(r.Context(), id)
	var ds []*store.WebhookDelivery
	if lerr == nil {
		ds, lerr = s.DB.ListWebhookDeliveries(r.Context(), id, 20)
	}
	if lerr != nil {
		s.fail(w, r, false, lerr)
		return
	}
	if pg == nil {
		pg = s.newPage(w, r, t.Name)
	}
	pg.Title, pg.Nav = t.Name, "settings"
	d := &webhookData{Target: t, Deliveries: ds, Formats: notify.Formats(), NewSecret: newSecret}
	if err != nil {
		d.Choices, d.All = choices(formTypes(r))
		d.Format, d.Active = r.PostFormValue("format"), r.PostFormValue("active") == "on"
		pg.Data = d
		pg.Form = url.Values{"name": {r.PostFormValue("name")}} // the URL is a secret: not echoed
		s.renderForm(w, r, "webhook", pg, err)
		return
	}
	d.Choices, d.All = choices(t.Types)
	d.Format, d.Active = t.Format, t.Active
	pg.Form = url.Values{"name": {t.Name}}
	pg.Data = d
	s.render(w, r, "webhook", pg)
}

func (s *Server) webhookUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	hooks, err := s.webhooks()
	if err == nil {
		name, format, active := r.PostFormValue("name"), r.PostFormValue("format"), r.PostFormValue("active") == "on"
		in := notify.WebhookPatch{Name: &name, Format: &format, Types: formTypes(r), Active: &active}
		if u := r.PostFormValue("url"); u != "" {
			in.URL = &u
		}
		_, err = hooks.Update(r.Context(), p, id, in, s.meta(r))
	}
	if err != nil {
		s.renderWebhook(w, r, nil, id, "", err)
		return
	}
	s.redirect(w, r, "/settings/webhooks/"+id, "Webhook saved.")
}

func (s *Server) webhookRotate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	hooks, err := s.webhooks()
	var secret string
	if err == nil {
		secret, err = hooks.RotateSecret(r.Context(), p, id, s.meta(r))
	}
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg := s.newPage(w, r, "")
	pg.Flash = "New signing secret made. Copy it now: it is not shown again, and the old one no longer signs."
	s.renderWebhook(w, r, pg, id, secret, nil)
}

func (s *Server) webhookDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	hooks, err := s.webhooks()
	if err == nil {
		err = hooks.Delete(r.Context(), p, r.PathValue("id"), s.meta(r))
	}
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	s.redirect(w, r, "/settings/webhooks", "Webhook deleted.")
}

// webhookTestWait is how long the test button waits for the first attempt's
// outcome before showing the page, so that it usually shows the result.
var webhookTestWait = 5 * time.Second

// webhookTest queues a webhook.test delivery through the same job as every
// event, waits briefly for its first attempt, and shows the target's page
// with the outcome (or "still queued") at the top of its deliveries.
func (s *Server) webhookTest(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	hooks, err := s.webhooks()
	var deliveryID string
	if err == nil {
		deliveryID, err = hooks.Test(r.Context(), id)
	}
	if err != nil {
		s.renderWebhook(w, r, nil, id, "", err)
		return
	}
	d := s.waitAttempt(r.Context(), deliveryID, webhookTestWait)
	msg := "Test event queued. Its result appears in the deliveries below; reload in a moment."
	switch {
	case d == nil:
	case d.Status == store.WebhookDelivered:
		msg = "Test event delivered: the target answered " + strconv.Itoa(d.ResponseCode) + " " + http.StatusText(d.ResponseCode) + "."
	case d.Status == store.WebhookFailed:
		msg = "Test event failed: " + d.LastError
	case d.Attempts > 0:
		msg = "Test event not delivered yet (" + d.LastError + "); it will be retried."
	}
	s.redirect(w, r, "/settings/webhooks/"+id, shortenFlash(msg, 400))
}

// shortenFlash shortens s to at most n runes, for a message that must stay small
// (a flash travels in a cookie).
func shortenFlash(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// waitAttempt polls a delivery until its first attempt is recorded or max
// passes; nil when nothing happened in time.
func (s *Server) waitAttempt(ctx context.Context, id string, max time.Duration) *store.WebhookDelivery {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		d, err := s.DB.GetWebhookDelivery(ctx, id)
		if err == nil && (d.Attempts > 0 || d.Final()) {
			return d
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
