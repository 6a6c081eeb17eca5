package notify

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/logging"
	"upanel/internal/store"
)

// WebhookTest is the event type of the deliveries the "test" button sends.
// No target subscribes to it; it goes to the one target being tested.
const WebhookTest = "webhook.test"

// WebhookOptions configures outgoing webhooks.
type WebhookOptions struct {
	// Recorder writes the activity log; nil writes it through the Service's DB.
	Recorder *audit.Recorder
	// AllowPrivate (UPANEL_WEBHOOK_ALLOW_PRIVATE) lets targets be http URLs
	// and addresses on loopback, private, link-local and other non-public
	// networks. Off, such addresses are refused when a target is saved and
	// again when a delivery connects (after DNS resolution, so a name that
	// resolves to an internal address is refused too).
	AllowPrivate bool
	// Redactor learns every target URL and secret the panel handles, so a log
	// line never carries them.
	Redactor *logging.Redactor
	// Timeout bounds one delivery attempt, response included (10 s).
	Timeout time.Duration
}

// Webhooks manages the outgoing webhook targets and delivers to them.
type Webhooks struct {
	svc    *Service
	opts   WebhookOptions
	client *http.Client
	known  sync.Map // values given to the redactor already
}

// Webhooks returns the webhook manager. Make one per process: it holds the
// HTTP client whose connections are checked against the SSRF rules.
func (s *Service) Webhooks(o WebhookOptions) *Webhooks {
	if o.Recorder == nil {
		o.Recorder = audit.New(s.DB)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return &Webhooks{svc: s, opts: o, client: newWebhookClient(o.AllowPrivate, o.Timeout)}
}

// WebhookInput is what an admin gives to add a target.
type WebhookInput struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Format is generic (the default), slack or discord.
	Format string `json:"format"`
	// Types are the event types to deliver, or ["*"] for all.
	Types []string `json:"types"`
	// Active defaults to true.
	Active *bool `json:"active"`
}

// WebhookPatch changes a target; a nil (or, for Types, absent) field keeps
// its value.
type WebhookPatch struct {
	Name   *string  `json:"name"`
	URL    *string  `json:"url"`
	Format *string  `json:"format"`
	Types  []string `json:"types"`
	Active *bool    `json:"active"`
}

// Formats lists the target formats.
func Formats() []string {
	return []string{store.WebhookGeneric, store.WebhookSlack, store.WebhookDiscord}
}

// maxWebhookURL bounds a target URL.
const maxWebhookURL = 2000

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidWebhookName checks and trims a target name: 1 to 100 printable
// characters.
func ValidWebhookName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 100 ||
		strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "", apperr.New(apperr.Invalid, "the name must be 1 to 100 printable characters")
	}
	return name, nil
}

// ValidWebhookURL checks a target URL: absolute https (http too when
// allowPrivate), no credentials or fragment, a host that is a DNS name or an
// IP address, at most 2000 characters; and, unless allowPrivate, no literal
// address or name (localhost) of a loopback, private, link-local or other
// non-public network. It returns the URL trimmed.
func ValidWebhookURL(raw string, allowPrivate bool) (string, error) {
	raw = strings.TrimSpace(raw)
	invalid := func(format string, args ...any) (string, error) {
		return "", apperr.New(apperr.Invalid, "the webhook URL "+format, args...)
	}
	if raw == "" {
		return invalid("is required")
	}
	if len(raw) > maxWebhookURL {
		return invalid("must be at most %d characters", maxWebhookURL)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return invalid("must not contain spaces or control characters")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return invalid("must be an absolute URL such as https://hooks.example.com/…")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowPrivate:
	case u.Scheme == "http":
		return invalid("must use https (http is allowed only with UPANEL_WEBHOOK_ALLOW_PRIVATE=true)")
	default:
		return invalid("must use https")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return invalid("must not contain a user name or password")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return invalid("must not have a #fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return invalid("has an invalid port")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return invalid("has an invalid port")
	}
	host := u.Hostname()
	if host == "" {
		return invalid("must name a host")
	}
	if strings.HasPrefix(u.Host, "[") {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return invalid("has an invalid IPv6 address")
		}
		if reason := blockedReason(a); reason != "" && !allowPrivate {
			return invalid("points to %s (%s), which webhooks may not reach; UPANEL_WEBHOOK_ALLOW_PRIVATE=true allows it", a, reason)
		}
		return raw, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.Is4() {
			return invalid("has an invalid IP address")
		}
		if reason := blockedReason(a); reason != "" && !allowPrivate {
			return invalid("points to %s (%s), which webhooks may not reach; UPANEL_WEBHOOK_ALLOW_PRIVATE=true allows it", a, reason)
		}
		return raw, nil
	}
	if !validDNSName(host) {
		return invalid("must name its host by a DNS name (like hooks.example.com, in ASCII/punycode) or an IP address")
	}
	if h := strings.ToLower(host); (h == "localhost" || strings.HasSuffix(h, ".localhost")) && !allowPrivate {
		return invalid("points to localhost, which webhooks may not reach; UPANEL_WEBHOOK_ALLOW_PRIVATE=true allows it")
	}
	return raw, nil
}

func validDNSName(h string) bool {
	h = strings.ToLower(h)
	if len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !dnsLabel.MatchString(l) {
			return false
		}
	}
	// Digits and dots only would be a mangled IP address (or an integer one,
	// which some resolvers turn into an address).
	return strings.Trim(h, "0123456789.") != ""
}

// validFormat checks a target format; "" is generic.
func validFormat(f string) (string, error) {
	f = strings.TrimSpace(strings.ToLower(f))
	if f == "" {
		return store.WebhookGeneric, nil
	}
	if !slices.Contains(Formats(), f) {
		return "", apperr.New(apperr.Invalid, "the format must be one of %s", strings.Join(Formats(), ", "))
	}
	return f, nil
}

// validWebhookTypes checks the event types a target takes: known types, in the
// settings page's order, or just "*" for all.
func validWebhookTypes(in []string) ([]string, error) {
	want := map[string]bool{}
	all := false
	for _, t := range in {
		t = strings.TrimSpace(t)
		switch {
		case t == store.WebhookAllTypes:
			all = true
		case ValidType(t):
			want[t] = true
		default:
			return nil, apperr.New(apperr.Invalid, "%q is not an event type (the types are %s, or * for all)", t, strings.Join(typeNames(), ", "))
		}
	}
	if all {
		return []string{store.WebhookAllTypes}, nil
	}
	var out []string
	for _, ti := range Types() {
		if want[ti.Type] {
			out = append(out, ti.Type)
		}
	}
	if len(out) == 0 {
		return nil, apperr.New(apperr.Invalid, "choose at least one event type, or * for all")
	}
	return out, nil
}

func typeNames() []string {
	var out []string
	for _, t := range Types() {
		out = append(out, t.Type)
	}
	return out
}

// TypesLabel describes a target's types for people.
func TypesLabel(types []string) string {
	if len(types) == 1 && types[0] == store.WebhookAllTypes {
		return "all events"
	}
	return strings.Join(types, ", ")
}

// newWebhookSecret returns a fresh signing secret: 32 random bytes. The HMAC
// key is the secret string exactly as shown, prefix included.
func newWebhookSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "uwhsec_" + base64.RawURLEncoding.EncodeToString(b)
}

// redact gives values to the log redactor, each once.
func (w *Webhooks) redact(values ...string) {
	if w.opts.Redactor == nil {
		return
	}
	for _, v := range values {
		if _, seen := w.known.LoadOrStore(v, true); !seen {
			w.opts.Redactor.Add(v)
		}
	}
}

func (w *Webhooks) activity(ctx context.Context, tx *store.Tx, p *auth.Principal, m auth.Meta, action, id, desc string, changes map[string]store.Change) error {
	a := store.Activity{Action: action, SubjectType: "WebhookTarget", SubjectID: id, Description: desc, Changes: changes, IPAddress: m.IP}
	if p != nil && p.User != nil {
		a.UserID = p.User.ID
	}
	_, err := w.opts.Recorder.Activity(ctx, tx, a)
	return err
}

// Create adds a target with a fresh signing secret, which it returns: this is
// the only time the secret is shown.
func (w *Webhooks) Create(ctx context.Context, p *auth.Principal, in WebhookInput, m auth.Meta) (*store.WebhookTarget, string, error) {
	name, err := ValidWebhookName(in.Name)
	if err != nil {
		return nil, "", err
	}
	u, err := ValidWebhookURL(in.URL, w.opts.AllowPrivate)
	if err != nil {
		return nil, "", err
	}
	format, err := validFormat(in.Format)
	if err != nil {
		return nil, "", err
	}
	types, err := validWebhookTypes(in.Types)
	if err != nil {
		return nil, "", err
	}
	active := in.Active == nil || *in.Active
	secret := newWebhookSecret()
	w.redact(u, secret)
	var t *store.WebhookTarget
	err = w.svc.DB.InTx(ctx, func(tx *store.Tx) error {
		var err error
		t, err = tx.CreateWebhookTarget(ctx, store.NewWebhookTarget{Name: name, URL: u, Format: format, Secret: secret, Types: types, Active: active})
		if err != nil {
			return err
		}
		return w.activity(ctx, tx, p, m, "created", t.ID, "webhook "+name+" added",
			audit.Diff(nil, map[string]any{"name": name, "url": u, "format": format, "types": TypesLabel(types), "active": active, "secret": "new"},
				"url", "secret"))
	})
	if err != nil {
		return nil, "", err
	}
	return t, secret, nil
}

// Update changes a target. The URL is compared by its plaintext, and the
// activity log says only whether it changed.
func (w *Webhooks) Update(ctx context.Context, p *auth.Principal, id string, in WebhookPatch, m auth.Meta) (*store.WebhookTarget, error) {
	var t *store.WebhookTarget
	err := w.svc.DB.InTx(ctx, func(tx *store.Tx) error {
		old, err := tx.GetWebhookTarget(ctx, id)
		if err != nil {
			return err
		}
		creds, err := tx.WebhookTargetCredentials(ctx, id)
		if err != nil {
			return err
		}
		up := store.WebhookTargetUpdate{Name: old.Name, Format: old.Format, Types: old.Types, Active: old.Active}
		newURL := creds.URL
		if in.Name != nil {
			if up.Name, err = ValidWebhookName(*in.Name); err != nil {
				return err
			}
		}
		if in.URL != nil {
			u, err := ValidWebhookURL(*in.URL, w.opts.AllowPrivate)
			if err != nil {
				return err
			}
			w.redact(u)
			if u != creds.URL {
				up.URL, newURL = u, u
			}
		}
		if in.Format != nil {
			if up.Format, err = validFormat(*in.Format); err != nil {
				return err
			}
		}
		if in.Types != nil {
			if up.Types, err = validWebhookTypes(in.Types); err != nil {
				return err
			}
		}
		if in.Active != nil {
			up.Active = *in.Active
		}
		if t, err = tx.UpdateWebhookTarget(ctx, id, up); err != nil {
			return err
		}
		changes := audit.Diff(
			map[string]any{"name": old.Name, "url": creds.URL, "format": old.Format, "types": TypesLabel(old.Types), "active": old.Active},
			map[string]any{"name": up.Name, "url": newURL, "format": up.Format, "types": TypesLabel(up.Types), "active": up.Active},
			"url")
		if len(changes) == 0 {
			return nil
		}
		return w.activity(ctx, tx, p, m, "updated", id, "webhook "+up.Name+" updated", changes)
	})
	return t, err
}

// RotateSecret replaces a target's signing secret with a fresh one, which it
// returns: this is the only time it is shown. Deliveries already queued are
// signed with the new secret when they are sent.
func (w *Webhooks) RotateSecret(ctx context.Context, p *auth.Principal, id string, m auth.Meta) (string, error) {
	secret := newWebhookSecret()
	w.redact(secret)
	err := w.svc.DB.InTx(ctx, func(tx *store.Tx) error {
		t, err := tx.GetWebhookTarget(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.SetWebhookSecret(ctx, id, secret); err != nil {
			return err
		}
		return w.activity(ctx, tx, p, m, "updated", id, "webhook "+t.Name+": new signing secret",
			audit.Diff(map[string]any{"secret": "old"}, map[string]any{"secret": "new"}, "secret"))
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// Delete removes a target and its delivery log.
func (w *Webhooks) Delete(ctx context.Context, p *auth.Principal, id string, m auth.Meta) error {
	return w.svc.DB.InTx(ctx, func(tx *store.Tx) error {
		t, err := tx.GetWebhookTarget(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteWebhookTarget(ctx, id); err != nil {
			return err
		}
		return w.activity(ctx, tx, p, m, "deleted", id, "webhook "+t.Name+" removed",
			audit.Diff(map[string]any{"name": t.Name, "format": t.Format, "types": TypesLabel(t.Types), "active": t.Active}, nil))
	})
}

// Test queues a webhook.test delivery to one active target, through the same
// job, signing and retries as every event, and returns the delivery's id.
func (w *Webhooks) Test(ctx context.Context, id string) (string, error) {
	var deliveryID string
	err := w.svc.DB.InTx(ctx, func(tx *store.Tx) error {
		t, err := tx.GetWebhookTarget(ctx, id)
		if err != nil {
			return err
		}
		if !t.Active {
			return apperr.New(apperr.Conflict, "the webhook is turned off: turn it on to test it")
		}
		link := *w.svc.BaseURL
		link.Path = strings.TrimRight(link.Path, "/") + "/settings/webhooks/" + url.PathEscape(id)
		link.RawQuery, link.Fragment = "", ""
		b, err := json.Marshal(EventPayload{Type: WebhookTest, Title: "Test from UPanel",
			Message:    "This is a test delivery to the webhook \u201c" + t.Name + "\u201d. If you can read it, the webhook works.",
			Subject:    &PayloadObject{Type: "WebhookTarget", ID: id, URL: link.String()},
			OccurredAt: tx.Now().UTC().Format("2006-01-02T15:04:05.000Z")})
		if err != nil {
			return err
		}
		deliveryID, err = tx.QueueWebhookDelivery(ctx, id, WebhookTest, b)
		return err
	})
	if err != nil {
		return "", err
	}
	w.svc.Wake()
	return deliveryID, nil
}
