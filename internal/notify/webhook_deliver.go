package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"upanel/internal/apperr"
	"upanel/internal/jobs"
	"upanel/internal/store"
)

// Delivery headers.
const (
	HeaderEvent     = "X-UPanel-Event"
	HeaderDelivery  = "X-UPanel-Delivery"
	HeaderTimestamp = "X-UPanel-Timestamp"
	HeaderSignature = "X-UPanel-Signature"
	webhookAgent    = "UPanel-Webhook/1"
)

// maxWebhookResponse is how much of a response is read.
const maxWebhookResponse = 64 << 10

// Sign returns the X-UPanel-Signature of a body sent at timestamp (Unix
// seconds, as in X-UPanel-Timestamp): "sha256=" and the hex HMAC-SHA256,
// keyed with the target's secret, of the timestamp, a dot and the body.
// Receivers compute the same and compare in constant time, and should
// refuse old timestamps so that a captured request cannot be replayed.
func Sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

var extraBlocked = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a \u201cthis network\u201d address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (carrier-grade NAT) address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved or broadcast address"},
	{netip.MustParsePrefix("::/96"), "an IPv4-compatible address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// blockedReason says why webhooks may not reach a, or "" when they may: a
// loopback, unspecified, link-local (cloud metadata at 169.254.169.254
// included), multicast, private (RFC 1918, fc00::/7) or other non-public
// address. IPv4-mapped and NAT64 addresses are judged by their IPv4 address.
func blockedReason(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "a link-local address"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast address"
	case a.IsPrivate():
		return "a private address"
	}
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		return blockedReason(netip.AddrFrom4([4]byte(b[12:])))
	}
	for _, x := range extraBlocked {
		if x.prefix.Contains(a) {
			return x.reason
		}
	}
	return ""
}

// blockedError is a connection refused by the SSRF rules.
type blockedError struct {
	addr   netip.Addr
	reason string
}

func (e *blockedError) Error() string {
	return fmt.Sprintf("refused to connect to %s: it is %s, which webhooks may not reach (UPANEL_WEBHOOK_ALLOW_PRIVATE=true allows it)", e.addr, e.reason)
}

// dialControl checks every address a delivery connects to, after DNS
// resolution: a name that resolves (or is rebound) to an internal address is
// refused as if it had been written as one.
func dialControl(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if network != "tcp4" && network != "tcp6" {
			return fmt.Errorf("refused to connect over %s", network)
		}
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("refused to connect to %q: not an IP address", host)
		}
		if allowPrivate {
			return nil
		}
		if reason := blockedReason(a); reason != "" {
			return &blockedError{addr: a.Unmap(), reason: reason}
		}
		return nil
	}
}

// newWebhookClient returns the HTTP client deliveries use: no proxy (the
// address checks must see the real peer), every connection checked against
// the SSRF rules, no redirects followed, and timeout for the whole exchange.
func newWebhookClient(allowPrivate bool, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: dialControl(allowPrivate)}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           20,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Body limits of the chat formats.
const (
	maxTitleRunes   = 200
	maxSlackMessage = 3000
	maxDiscord      = 2000
)

// webhookBody makes the request body of a delivery in the target's format.
func webhookBody(format, deliveryID string, payload []byte) ([]byte, error) {
	var p EventPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("the stored event is not valid JSON: %w", err)
	}
	link := ""
	if p.Subject != nil {
		link = p.Subject.URL
	}
	title := truncateRunes(oneLine(p.Title), maxTitleRunes)
	switch format {
	case store.WebhookSlack:
		text := "*" + slackEscape(title) + "*"
		if m := strings.TrimSpace(p.Message); m != "" {
			text += "\n" + slackEscape(truncateRunes(m, maxSlackMessage))
		}
		if link != "" {
			text += "\n<" + slackEscape(link) + "|Open in UPanel>"
		}
		return marshalBody(map[string]string{"text": text})
	case store.WebhookDiscord:
		type mentions struct {
			Parse []string `json:"parse"`
		}
		return marshalBody(struct {
			Content string `json:"content"`
			// An empty parse list: no @everyone, @here, role or user ping.
			AllowedMentions mentions `json:"allowed_mentions"`
		}{discordContent(title, strings.TrimSpace(p.Message), link), mentions{Parse: []string{}}})
	case store.WebhookGeneric:
		// The stored payload as it is, whatever fields it has, plus the
		// delivery id receivers can deduplicate by.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(payload, &m); err != nil {
			return nil, fmt.Errorf("the stored event is not a JSON object: %w", err)
		}
		id, _ := json.Marshal(deliveryID)
		m["delivery_id"] = id
		return marshalBody(m)
	}
	return nil, fmt.Errorf("unknown webhook format %q", format)
}

// marshalBody encodes a body as compact JSON, leaving <, > and & as they are
// (they need no escaping outside HTML).
func marshalBody(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// discordContent fits a message in Discord's 2000 characters: the title and
// link stay, the message is shortened. Mentions are not parsed (the body
// sets allowed_mentions), so "@everyone" in a message pings nobody.
func discordContent(title, message, link string) string {
	head := "**" + title + "**"
	tail := ""
	if link != "" {
		tail = "\n" + link
	}
	if message == "" {
		return truncateRunes(head+tail, maxDiscord)
	}
	room := maxDiscord - utf8.RuneCountInString(head) - utf8.RuneCountInString(tail) - 1
	if room < 1 {
		return truncateRunes(head+tail, maxDiscord)
	}
	return head + "\n" + truncateRunes(message, room) + tail
}

// truncateRunes shortens s to at most n runes, ending with "…" when cut.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// attemptError is a failed attempt: what to record, and whether to retry.
type attemptError struct {
	msg       string
	code      int
	permanent bool
}

func (e *attemptError) Error() string { return e.msg }

// send posts one delivery and classifies the answer: nil only for a 2xx.
func (w *Webhooks) send(ctx context.Context, creds store.WebhookCredentials, display string, d *store.WebhookDelivery, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, creds.URL, bytes.NewReader(body))
	if err != nil {
		return 0, &attemptError{msg: "the webhook URL cannot be used: " + cleanError(err, creds.URL, display), permanent: true}
	}
	ts := strconv.FormatInt(w.svc.DB.Now().Unix(), 10)
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", webhookAgent)
	h.Set(HeaderEvent, d.EventType)
	h.Set(HeaderDelivery, d.ID)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign(creds.Secret, ts, body))
	res, err := w.client.Do(req)
	if err != nil {
		var blocked *blockedError
		if errors.As(err, &blocked) {
			return 0, &attemptError{msg: blocked.Error(), permanent: true}
		}
		msg := cleanError(err, creds.URL, display)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			msg = fmt.Sprintf("no answer within %s: %s", w.opts.Timeout, msg)
		}
		return 0, &attemptError{msg: msg}
	}
	defer res.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(res.Body, maxWebhookResponse))
	code := res.StatusCode
	status := strconv.Itoa(code) + " " + http.StatusText(code)
	switch {
	case code >= 200 && code < 300:
		return code, nil
	case code >= 300 && code < 400:
		msg := "the target answered " + status + " and redirects are not followed"
		if loc := res.Header.Get("Location"); loc != "" {
			msg += " (to " + store.WebhookDisplayURL(loc) + ")"
		}
		return code, &attemptError{msg: msg + ": use the final URL", code: code, permanent: true}
	}
	msg := "the target answered " + status
	if s := replySnippet(snippet, creds.URL, display); s != "" {
		msg += ": " + s
	}
	retry := code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
	return code, &attemptError{msg: msg, code: code, permanent: !retry}
}

// cleanError says what went wrong without the URL, which Go's HTTP errors
// quote in full: the display form stands in for it.
func cleanError(err error, rawURL, display string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if rawURL != "" {
		msg = strings.ReplaceAll(msg, rawURL, display)
	}
	return msg
}

// replySnippet is the start of a response body, as one printable line.
func replySnippet(b []byte, rawURL, display string) string {
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if rawURL != "" {
		s = strings.ReplaceAll(s, rawURL, display)
	}
	return truncateRunes(s, 300)
}

// WebhookHandler returns the job handler of webhook deliveries
// (store.WebhookDeliveryJobKind). It is Webhooks(o).Handler().
func (s *Service) WebhookHandler(o WebhookOptions) jobs.Handler { return s.Webhooks(o).Handler() }

// Handler delivers webhook_deliveries rows. It posts the signed body and
// records every attempt on the row. Only a 2xx answer marks a delivery
// delivered, in a write of its own that outlives the job's context; a crash
// between the two can deliver twice (with the same X-UPanel-Delivery), but a
// delivery is never marked delivered without a 2xx. 408, 429, 5xx, network
// errors and timeouts retry with backoff until the job's attempts run out;
// other answers (4xx, a redirect), a refused address and a deleted or
// turned-off target fail at once. The target's last status follows every final
// outcome.
func (w *Webhooks) Handler() jobs.Handler {
	db := w.svc.DB
	return func(ctx context.Context, j *jobs.Job) error {
		var p store.WebhookDeliveryPayload
		if err := j.Decode(&p); err != nil {
			return err
		}
		if p.DeliveryID == "" {
			return jobs.Permanent(fmt.Errorf("webhook job %s names no delivery", j.ID))
		}
		d, err := db.GetWebhookDelivery(ctx, p.DeliveryID)
		if apperr.Is(err, apperr.NotFound) {
			// Its target was deleted, and the delivery with it.
			return jobs.Permanent(fmt.Errorf("webhook delivery %s: %w", p.DeliveryID, err))
		}
		if err != nil {
			return fmt.Errorf("webhook delivery %s: %w", p.DeliveryID, err)
		}
		switch d.Status {
		case store.WebhookDelivered:
			return nil // an earlier attempt delivered it and recorded that
		case store.WebhookFailed:
			return jobs.Permanent(fmt.Errorf("webhook delivery %s already failed: %s", d.ID, d.LastError))
		}
		log := w.svc.Log.With("delivery_id", d.ID, "webhook_id", d.TargetID, "event", d.EventType, "attempt", j.Attempts)

		// record writes the attempt's outcome with a context of its own, so
		// that a cancelled job still leaves its reason behind.
		record := func(a store.WebhookAttempt) error {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			defer cancel()
			_, err := db.RecordWebhookAttempt(wctx, d.ID, a)
			return err
		}
		fail := func(log *slog.Logger, msg string, code int, permanent bool) error {
			// A job stopped from outside (shutdown, cancel, lost lease) is
			// not the target's failure: the row stays queued for the next
			// try, or for the upkeep job if there is none.
			final := (permanent || j.Attempts >= j.MaxAttempts) && ctx.Err() == nil
			status := store.WebhookQueued
			if final {
				status = store.WebhookFailed
			}
			if rerr := record(store.WebhookAttempt{Status: status, ResponseCode: code, Error: msg}); rerr != nil {
				log.Error("record webhook failure", "err", rerr)
			}
			err := errors.New(msg)
			switch {
			case permanent:
				log.Error("webhook refused; not retrying", "err", msg, "response_code", code)
				return jobs.Permanent(err)
			case final:
				log.Error("webhook failed after its last attempt", "err", msg, "response_code", code)
			default:
				log.Warn("webhook attempt failed; will retry", "err", msg, "response_code", code)
			}
			return err
		}

		t, err := db.GetWebhookTarget(ctx, d.TargetID)
		if apperr.Is(err, apperr.NotFound) {
			return fail(log, "the webhook was deleted", 0, true)
		}
		if err != nil {
			return fail(log, "loading the webhook failed", 0, false)
		}
		log = log.With("webhook", t.Name, "url", t.DisplayURL)
		if !t.Active {
			return fail(log, "the webhook is turned off", 0, true)
		}
		creds, err := db.WebhookTargetCredentials(ctx, t.ID)
		if err != nil {
			log.Error("open webhook credentials", "err", err)
			return fail(log, "the webhook's URL or secret could not be decrypted", 0, false)
		}
		w.redact(creds.URL, creds.Secret)
		body, err := webhookBody(t.Format, d.ID, d.Payload)
		if err != nil {
			return fail(log, err.Error(), 0, true)
		}
		code, err := w.send(ctx, creds, t.DisplayURL, d, body)
		if err != nil {
			var ae *attemptError
			if !errors.As(err, &ae) {
				ae = &attemptError{msg: err.Error()}
			}
			return fail(log, ae.msg, ae.code, ae.permanent)
		}

		// A 2xx: record it even if the job was cancelled meanwhile, for the
		// event is out and the row must say so.
		if err := record(store.WebhookAttempt{Status: store.WebhookDelivered, ResponseCode: code}); err != nil {
			// Retrying delivers again; receivers deduplicate by delivery id,
			// and that beats a delivery the panel says did not happen.
			log.Error("webhook delivered, but recording that failed; it may be delivered twice", "err", err)
			return fmt.Errorf("webhook delivery %s was delivered but could not be marked so: %w", d.ID, err)
		}
		log.Info("webhook delivered", "response_code", code)
		return nil
	}
}

// WebhookMaintainKind is the periodic upkeep of webhook deliveries.
const WebhookMaintainKind = "notify.webhook.maintain"

// KeepWebhookDeliveries is how long finished deliveries stay in the log.
const KeepWebhookDeliveries = 30 * 24 * time.Hour

// MaintainHandler fails deliveries whose job ended without recording an
// outcome (cancelled, or its worker died on the last attempt), so that none
// stays queued forever, and deletes finished deliveries older than keep.
func (w *Webhooks) MaintainHandler(keep time.Duration) jobs.Handler {
	db := w.svc.DB
	return func(ctx context.Context, j *jobs.Job) error {
		orphans, err := db.FailOrphanedWebhookDeliveries(ctx)
		if err != nil {
			return err
		}
		if orphans > 0 {
			w.svc.Log.Warn("webhook deliveries whose job ended without an outcome marked failed", "deliveries", orphans)
		}
		cutoff := db.Now().Add(-keep)
		n, err := jobs.DeleteInBatches(ctx, 500, func(ctx context.Context, limit int) (int, error) {
			return db.DeleteWebhookDeliveries(ctx, cutoff, limit)
		})
		if n > 0 {
			w.svc.Log.Info("deleted old webhook deliveries", "deliveries", n)
		}
		return err
	}
}
