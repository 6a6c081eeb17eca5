package notify_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/jobs"
	"upanel/internal/logging"
	"upanel/internal/notify"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// whWait bounds every wait in these tests; it is a limit, not a measurement.
const whWait = 30 * time.Second

// whRequest is a request the receiver got.
type whRequest struct {
	Path   string
	Header http.Header
	Body   []byte
}

// whReceiver is a real HTTP server on 127.0.0.1 that records what it gets and
// answers as respond says (n counts requests from 0).
type whReceiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []whRequest
}

func whStartReceiver(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, n int)) *whReceiver {
	t.Helper()
	rc := &whReceiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.reqs)
		rc.reqs = append(rc.reqs, whRequest{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		rc.mu.Unlock()
		if respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		respond(w, r, n)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *whReceiver) requests() []whRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]whRequest(nil), rc.reqs...)
}

// whEnv is the notification service with webhooks over a real database.
type whEnv struct {
	t     *testing.T
	db    *store.DB
	svc   *notify.Service
	hooks *notify.Webhooks
	red   *logging.Redactor
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func whNew(t *testing.T, db *store.DB, allowPrivate bool, timeout time.Duration) *whEnv {
	t.Helper()
	base, _ := url.Parse("https://panel.example.test")
	e := &whEnv{t: t, db: db, red: logging.NewRedactor(), logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.svc = notify.New(notify.Options{DB: db, Log: log, BaseURL: base})
	e.hooks = e.svc.Webhooks(notify.WebhookOptions{AllowPrivate: allowPrivate, Redactor: e.red, Timeout: timeout})
	return e
}

func (e *whEnv) create(in notify.WebhookInput) (*store.WebhookTarget, string) {
	e.t.Helper()
	tg, secret, err := e.hooks.Create(context.Background(), nil, in, whMeta)
	if err != nil {
		e.t.Fatalf("create webhook %q: %v", in.Name, err)
	}
	return tg, secret
}

var whMeta = auth.Meta{}

// raise raises ev in a transaction of its own.
func (e *whEnv) raise(ev notify.Event) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.db.InTx(ctx, func(tx *store.Tx) error {
		_, err := e.svc.Raise(ctx, tx, ev)
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *whEnv) deliveries(targetID string) []*store.WebhookDelivery {
	e.t.Helper()
	ds, err := e.db.ListWebhookDeliveries(context.Background(), targetID, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	return ds
}

func (e *whEnv) delivery(id string) *store.WebhookDelivery {
	e.t.Helper()
	d, err := e.db.GetWebhookDelivery(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *whEnv) target(id string) *store.WebhookTarget {
	e.t.Helper()
	tg, err := e.db.GetWebhookTarget(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return tg
}

// run runs the delivery handler for a delivery's job as the runner would at
// the given attempt.
func (e *whEnv) run(h jobs.Handler, deliveryID string, attempt int) error {
	e.t.Helper()
	j, err := e.db.GetJob(context.Background(), deliveryID)
	if err != nil {
		e.t.Fatal(err)
	}
	j.Attempts = attempt
	return h(context.Background(), &jobs.Job{Job: j})
}

// only returns the one delivery of a target.
func (e *whEnv) only(targetID string) *store.WebhookDelivery {
	e.t.Helper()
	ds := e.deliveries(targetID)
	if len(ds) != 1 {
		e.t.Fatalf("%d deliveries, want 1: %+v", len(ds), ds)
	}
	return ds[0]
}

func whVerify(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(body)))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

var whOffline = notify.Event{Type: notify.ServerOffline, Title: "web-1 is offline", Message: "No heartbeat for 30 s.",
	SubjectType: "Server", SubjectID: "01JAAAAAAAAAAAAAAAAAAAAAAA"}

func TestWebhookURLValidation(t *testing.T) {
	refused := []string{
		"http://127.0.0.1/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]/hook", "http://10.1.2.3/hook",
		"https://127.0.0.1/hook", "https://127.1.2.3:8443/x", "https://169.254.169.254/", "https://[::1]/", "https://10.1.2.3/",
		"https://172.16.0.1/", "https://172.31.255.255/", "https://192.168.1.1/", "https://100.64.0.1/", "https://0.0.0.0/",
		"https://[::]/", "https://224.0.0.1/", "https://[ff02::1]/", "https://[fe80::1]/", "https://[fd00::1]/", "https://[fc00::1]/",
		"https://[::ffff:127.0.0.1]/", "https://[::ffff:10.0.0.1]/", "https://[64:ff9b::a9fe:a9fe]/", "https://255.255.255.255/",
		"https://localhost/hook", "https://api.localhost/", "https://LOCALHOST:9/",
		"http://hooks.example.com/x", // http needs the flag
		"ftp://hooks.example.com/x", "hooks.example.com/x", "/relative", "", "https://", "https:///path",
		"https://user:pw@hooks.example.com/x", "https://user@hooks.example.com/x", "https://hooks.example.com/x#frag",
		"https://hooks.example.com:0/x", "https://hooks.example.com:99999/x", "https://hooks.example.com:/x",
		"https://hooks example.com/x", "https://hooks.example.com/a b", "https://hooks.example.com/\x01",
		"https://hök.example.com/", "https://-bad-.example.com/", "https://2130706433/", "https://1.2.3/",
		"https://[fe80::1%25eth0]/", "https://" + strings.Repeat("a", 2000) + ".example.com/",
		"https://hooks.example.com/" + strings.Repeat("p", 2000),
	}
	for _, u := range refused {
		if _, err := notify.ValidWebhookURL(u, false); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("ValidWebhookURL(%q) = %v, want refused", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1/hook", "http://169.254.169.254/", "http://[::1]/", "http://10.1.2.3/", "http://localhost:8080/x"} {
		_, err := notify.ValidWebhookURL(u, false)
		if err == nil {
			continue
		}
		if _, err := notify.ValidWebhookURL(u, true); err != nil {
			t.Errorf("with UPANEL_WEBHOOK_ALLOW_PRIVATE, %q: %v", u, err)
		}
	}
	// The address refusals say why, and how to allow it.
	_, err := notify.ValidWebhookURL("https://169.254.169.254/latest", false)
	if msg := apperr.MessageOf(err); !strings.Contains(msg, "link-local") || !strings.Contains(msg, "UPANEL_WEBHOOK_ALLOW_PRIVATE") {
		t.Errorf("metadata address refused with %q", msg)
	}
	for _, u := range []string{
		"https://hooks.slack.com/services/T000/B000/XXXX", "https://discord.com/api/webhooks/1/abc?wait=true",
		"https://hooks.example.com:8443/x", "https://93.184.216.34/hook", "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
		"  https://hooks.example.com/trimmed  ", "https://xn--hk-fka.example.com/",
	} {
		if _, err := notify.ValidWebhookURL(u, false); err != nil {
			t.Errorf("ValidWebhookURL(%q): %v", u, err)
		}
	}
	for _, n := range []string{"", "   ", strings.Repeat("x", 101), "tab\there", "zero\u200bwidth", "bad\xffutf8"} {
		if _, err := notify.ValidWebhookName(n); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
	if n, err := notify.ValidWebhookName("  Ops – Slack 🚀  "); err != nil || n != "Ops – Slack 🚀" {
		t.Errorf("name: %q %v", n, err)
	}
}

func TestWebhookInputValidation(t *testing.T) {
	e := whNew(t, storetest.Open(t, "sqlite"), false, 0)
	for _, in := range []notify.WebhookInput{
		{Name: "x", URL: "https://hooks.example.com/x", Types: nil},
		{Name: "x", URL: "https://hooks.example.com/x", Types: []string{}},
		{Name: "x", URL: "https://hooks.example.com/x", Types: []string{"server_offline", "nope"}},
		{Name: "x", URL: "https://hooks.example.com/x", Types: []string{"webhook.test"}},
		{Name: "x", URL: "https://hooks.example.com/x", Types: []string{"*"}, Format: "teams"},
		{Name: "", URL: "https://hooks.example.com/x", Types: []string{"*"}},
		{Name: "x", URL: "http://127.0.0.1:9/x", Types: []string{"*"}},
	} {
		if _, _, err := e.hooks.Create(context.Background(), nil, in, whMeta); !apperr.Is(err, apperr.Invalid) {
			t.Errorf("create %+v: %v, want invalid", in, err)
		}
	}
	tg, secret := e.create(notify.WebhookInput{Name: "x", URL: "https://hooks.example.com/x", Types: []string{"backup_failed", "server_offline", "server_offline"}})
	if strings.Join(tg.Types, ",") != "server_offline,backup_failed" || tg.Format != "generic" || !tg.Active {
		t.Errorf("normalised %+v", tg)
	}
	if !strings.HasPrefix(secret, "uwhsec_") || len(secret) < 7+43 {
		t.Errorf("secret %q: want 32 random bytes, encoded", secret)
	}
	_, other := e.create(notify.WebhookInput{Name: "y", URL: "https://hooks.example.com/y", Types: []string{"*", "server_offline"}})
	if other == secret {
		t.Error("two targets got the same secret")
	}
}

func TestWebhookSignedDelivery(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := whNew(t, db, true, 0)
		rc := whStartReceiver(t, nil)
		sub, secret := e.create(notify.WebhookInput{Name: "subscribed", URL: rc.srv.URL + "/hooks/secret-path-7d1e", Types: []string{notify.ServerOffline}})
		other, _ := e.create(notify.WebhookInput{Name: "not subscribed", URL: rc.srv.URL + "/other", Types: []string{notify.BackupFailed}})

		e.raise(whOffline)
		if n := len(e.deliveries(other.ID)); n != 0 {
			t.Fatalf("the unsubscribed target got %d deliveries", n)
		}
		var total int
		if err := db.QueryRowRaw(context.Background(), "SELECT COUNT(*) FROM webhook_deliveries").Scan(&total); err != nil || total != 1 {
			t.Fatalf("%d deliveries queued, want exactly 1 (%v)", total, err)
		}
		d := e.only(sub.ID)
		if len(rc.requests()) != 0 {
			t.Fatal("delivered before the job ran")
		}
		if err := e.run(e.hooks.Handler(), d.ID, 1); err != nil {
			t.Fatalf("delivery: %v", err)
		}
		reqs := rc.requests()
		if len(reqs) != 1 || reqs[0].Path != "/hooks/secret-path-7d1e" {
			t.Fatalf("receiver got %+v", reqs)
		}
		r := reqs[0]
		h := r.Header
		if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != "UPanel-Webhook/1" || h.Get("X-UPanel-Event") != notify.ServerOffline ||
			h.Get("X-UPanel-Delivery") != d.ID {
			t.Fatalf("headers %v", h)
		}
		ts, err := strconv.ParseInt(h.Get("X-UPanel-Timestamp"), 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Fatalf("timestamp %q", h.Get("X-UPanel-Timestamp"))
		}
		// Verified with the secret shown at creation, computed here apart
		// from notify.Sign.
		if got, want := h.Get("X-UPanel-Signature"), whVerify(secret, h.Get("X-UPanel-Timestamp"), r.Body); !hmac.Equal([]byte(got), []byte(want)) {
			t.Fatalf("signature %q, want %q", got, want)
		}
		if notify.Sign(secret, h.Get("X-UPanel-Timestamp"), append(r.Body, ' ')) == h.Get("X-UPanel-Signature") {
			t.Fatal("a changed body has the same signature")
		}
		var body struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Message    string `json:"message"`
			OccurredAt string `json:"occurred_at"`
			DeliveryID string `json:"delivery_id"`
			Subject    struct {
				Type string `json:"type"`
				ID   string `json:"id"`
				URL  string `json:"url"`
			} `json:"subject"`
		}
		dec := json.NewDecoder(bytes.NewReader(r.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			t.Fatalf("generic body %s: %v", r.Body, err)
		}
		if body.Type != notify.ServerOffline || body.Title != whOffline.Title || body.Message != whOffline.Message || body.DeliveryID != d.ID ||
			body.Subject.Type != "Server" || body.Subject.ID != whOffline.SubjectID || body.Subject.URL != "https://panel.example.test/servers/"+whOffline.SubjectID {
			t.Fatalf("generic body %s", r.Body)
		}
		if _, err := time.Parse(time.RFC3339, body.OccurredAt); err != nil {
			t.Fatalf("occurred_at %q", body.OccurredAt)
		}

		got := e.delivery(d.ID)
		if got.Status != store.WebhookDelivered || got.Attempts != 1 || got.ResponseCode != 204 || got.DeliveredAt == nil || got.LastError != "" {
			t.Fatalf("delivery after 204: %+v", got)
		}
		if tg := e.target(sub.ID); tg.LastStatus != store.WebhookDelivered || tg.LastDeliveryAt == nil {
			t.Fatalf("target after delivery: %+v", tg)
		}
		// Running the job again (a retry after the mark) sends nothing.
		if err := e.run(e.hooks.Handler(), d.ID, 2); err != nil || len(rc.requests()) != 1 {
			t.Fatalf("second run: %v, %d requests", err, len(rc.requests()))
		}
		if strings.Contains(e.logs.String(), "secret-path-7d1e") {
			t.Fatalf("the log has the URL:\n%s", e.logs)
		}
	})
}

func TestWebhookChatFormats(t *testing.T) {
	e := whNew(t, storetest.Open(t, "sqlite"), true, 0)
	rc := whStartReceiver(t, nil)
	slack, _ := e.create(notify.WebhookInput{Name: "slack", URL: rc.srv.URL + "/slack", Format: "slack", Types: []string{"*"}})
	discord, _ := e.create(notify.WebhookInput{Name: "discord", URL: rc.srv.URL + "/discord", Format: "discord", Types: []string{notify.DeploymentFailed}})
	long := "Build log: " + strings.Repeat("é", 5000)
	e.raise(notify.Event{Type: notify.DeploymentFailed, Title: "Deploy of <shop> & co failed", Message: "@everyone @here <@123> look: a<b & c>d\n" + long,
		SubjectType: "App", SubjectID: "01JBBBBBBBBBBBBBBBBBBBBBBB"})
	for _, tg := range []*store.WebhookTarget{slack, discord} {
		if err := e.run(e.hooks.Handler(), e.only(tg.ID).ID, 1); err != nil {
			t.Fatalf("%s: %v", tg.Name, err)
		}
	}
	bodies := map[string][]byte{}
	for _, r := range rc.requests() {
		bodies[r.Path] = r.Body
	}
	link := "https://panel.example.test/apps/01JBBBBBBBBBBBBBBBBBBBBBBB"

	var s map[string]any
	if err := json.Unmarshal(bodies["/slack"], &s); err != nil || len(s) != 1 {
		t.Fatalf("slack body %s: %v", bodies["/slack"], err)
	}
	text, _ := s["text"].(string)
	wantStart := "*Deploy of &lt;shop&gt; &amp; co failed*\n@everyone @here &lt;@123&gt; look: a&lt;b &amp; c&gt;d\nBuild log: "
	if !strings.HasPrefix(text, wantStart) || !strings.HasSuffix(text, "…\n<"+link+"|Open in UPanel>") {
		t.Fatalf("slack text starts %.200q ends %q", text, text[max(0, len(text)-120):])
	}
	if strings.ContainsAny(strings.TrimSuffix(text, "<"+link+"|Open in UPanel>"), "<>") {
		t.Fatalf("slack text has unescaped < or >: %.300q", text)
	}

	var d struct {
		Content         string `json:"content"`
		AllowedMentions *struct {
			Parse []string `json:"parse"`
		} `json:"allowed_mentions"`
	}
	if err := json.Unmarshal(bodies["/discord"], &d); err != nil {
		t.Fatalf("discord body %s: %v", bodies["/discord"], err)
	}
	if !bytes.Contains(bodies["/discord"], []byte(`"allowed_mentions":{"parse":[]}`)) || d.AllowedMentions == nil || len(d.AllowedMentions.Parse) != 0 {
		t.Fatalf("discord mentions are not disabled: %s", bodies["/discord"][:100])
	}
	if n := utf8.RuneCountInString(d.Content); n > 2000 || n < 1900 {
		t.Fatalf("discord content is %d characters", n)
	}
	if !strings.HasPrefix(d.Content, "**Deploy of <shop> & co failed**\n@everyone @here <@123>") || !strings.HasSuffix(d.Content, "…\n"+link) {
		t.Fatalf("discord content starts %.120q ends %q", d.Content, d.Content[max(0, len(d.Content)-100):])
	}
}

func TestWebhookRetryThenDelivered(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := whNew(t, db, true, 0)
		rc := whStartReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 0 {
				http.Error(w, "upstream is sad", http.StatusInternalServerError)
				return
			}
			w.Write([]byte("ok"))
		})
		tg, _ := e.create(notify.WebhookInput{Name: "flaky", URL: rc.srv.URL + "/hook", Types: []string{"*"}})
		e.raise(whOffline)
		d := e.only(tg.ID)

		// A real runner; failed attempts back off for an hour, so the test
		// says when the retry runs.
		r := jobs.NewRunner(db, jobs.Options{Workers: 1, Lease: 10 * time.Second, Poll: 25 * time.Millisecond, ShutdownGrace: 5 * time.Second,
			Backoff: func(int) time.Duration { return time.Hour }})
		r.Handle(store.WebhookDeliveryJobKind, e.hooks.Handler())
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { r.Run(ctx) })
		t.Cleanup(func() { cancel(); wg.Wait() })

		whWaitFor(t, db, d.ID, "failed once", func(j *store.Job) bool { return j.Status == store.JobQueued && j.Attempts == 1 })
		got := e.delivery(d.ID)
		if got.Status != store.WebhookQueued || got.Attempts != 1 || got.ResponseCode != 500 ||
			!strings.Contains(got.LastError, "500") || !strings.Contains(got.LastError, "upstream is sad") {
			t.Fatalf("after the 500: %+v", got)
		}
		if x := e.target(tg.ID); x.LastStatus != "" {
			t.Fatalf("a retry set the last status: %+v", x)
		}
		storetest.Exec(t, db, "UPDATE jobs SET run_at = ? WHERE id = ? AND status = 'queued'", db.Now(), d.ID)
		r.Wake()
		whWaitFor(t, db, d.ID, "succeeded", func(j *store.Job) bool { return j.Status == store.JobSucceeded })
		got = e.delivery(d.ID)
		if got.Status != store.WebhookDelivered || got.Attempts != 2 || got.ResponseCode != 200 || got.LastError != "" {
			t.Fatalf("after the 200: %+v", got)
		}
		reqs := rc.requests()
		if len(reqs) != 2 || reqs[0].Header.Get("X-UPanel-Delivery") != d.ID || reqs[1].Header.Get("X-UPanel-Delivery") != d.ID {
			t.Fatalf("requests %+v", reqs)
		}
		if x := e.target(tg.ID); x.LastStatus != store.WebhookDelivered || x.LastError != "" {
			t.Fatalf("target: %+v", x)
		}
	})
}

func whWaitFor(t *testing.T, db *store.DB, id, what string, ok func(*store.Job) bool) {
	t.Helper()
	deadline := time.Now().Add(whWait)
	for {
		j, err := db.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(j) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never %s: %+v", id, what, j)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWebhookOutcomes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := whNew(t, db, true, 300*time.Millisecond)
		h := e.hooks.Handler()
		rc := whStartReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
			switch r.URL.Path {
			case "/missing":
				http.Error(w, "no such hook", http.StatusNotFound)
			case "/moved":
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
			case "/slow":
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			case "/busy":
				w.Header().Set("Retry-After", "30")
				w.WriteHeader(http.StatusTooManyRequests)
			case "/elsewhere":
				w.WriteHeader(http.StatusOK)
			}
		})
		mk := func(name, path string) *store.WebhookTarget {
			tg, _ := e.create(notify.WebhookInput{Name: name, URL: rc.srv.URL + path, Types: []string{notify.BackupFailed}})
			return tg
		}
		missing, moved, slow, busy := mk("missing", "/missing"), mk("moved", "/moved"), mk("slow", "/slow"), mk("busy", "/busy")
		e.raise(notify.Event{Type: notify.BackupFailed, Title: "backup failed", Message: "disk full"})

		// 404: failed at once.
		d := e.only(missing.ID)
		err := e.run(h, d.ID, 1)
		if err == nil || !jobs.IsPermanent(err) {
			t.Fatalf("404: %v, want a permanent error", err)
		}
		got := e.delivery(d.ID)
		if got.Status != store.WebhookFailed || got.Attempts != 1 || got.ResponseCode != 404 || !strings.Contains(got.LastError, "404") ||
			!strings.Contains(got.LastError, "no such hook") {
			t.Fatalf("after 404: %+v", got)
		}
		if x := e.target(missing.ID); x.LastStatus != store.WebhookFailed || !strings.Contains(x.LastError, "404") || x.LastDeliveryAt == nil {
			t.Fatalf("target after 404: %+v", x)
		}

		// A redirect: failed, not followed.
		d = e.only(moved.ID)
		if err := e.run(h, d.ID, 1); !jobs.IsPermanent(err) {
			t.Fatalf("302: %v", err)
		}
		got = e.delivery(d.ID)
		if got.Status != store.WebhookFailed || got.ResponseCode != 302 || !strings.Contains(got.LastError, "redirect") {
			t.Fatalf("after 302: %+v", got)
		}
		for _, r := range rc.requests() {
			if r.Path == "/elsewhere" {
				t.Fatal("the redirect was followed")
			}
		}

		// A timeout: retried, until the last attempt fails it.
		d = e.only(slow.ID)
		start := time.Now()
		err = e.run(h, d.ID, 1)
		if err == nil || jobs.IsPermanent(err) || time.Since(start) > 4*time.Second {
			t.Fatalf("timeout: %v after %s, want a retryable error", err, time.Since(start))
		}
		got = e.delivery(d.ID)
		if got.Status != store.WebhookQueued || got.Attempts != 1 || got.ResponseCode != 0 || !strings.Contains(got.LastError, "no answer within") {
			t.Fatalf("after a timeout: %+v", got)
		}
		if err := e.run(h, d.ID, 8); err == nil {
			t.Fatal("the last attempt's timeout succeeded")
		}
		if got = e.delivery(d.ID); got.Status != store.WebhookFailed || got.Attempts != 2 {
			t.Fatalf("after the last attempt: %+v", got)
		}

		// 429: retried.
		d = e.only(busy.ID)
		if err := e.run(h, d.ID, 1); err == nil || jobs.IsPermanent(err) {
			t.Fatalf("429: %v", err)
		}
		if got = e.delivery(d.ID); got.Status != store.WebhookQueued || got.ResponseCode != 429 {
			t.Fatalf("after 429: %+v", got)
		}

		// A network error (nothing listens) is retried, and its message
		// does not quote the URL.
		dead := httptest.NewServer(http.NotFoundHandler())
		deadURL := dead.URL + "/dead/secret-path-33c1"
		dead.Close()
		tg, _ := e.create(notify.WebhookInput{Name: "dead", URL: deadURL, Types: []string{notify.SSLExpiring}})
		e.raise(notify.Event{Type: notify.SSLExpiring, Title: "cert", Message: "soon"})
		d = e.only(tg.ID)
		if err := e.run(h, d.ID, 1); err == nil || jobs.IsPermanent(err) {
			t.Fatalf("connection refused: %v", err)
		}
		got = e.delivery(d.ID)
		if got.Status != store.WebhookQueued || got.LastError == "" || strings.Contains(got.LastError, "secret-path-33c1") {
			t.Fatalf("after a refused connection: %+v", got)
		}
		if strings.Contains(e.logs.String(), "secret-path-33c1") {
			t.Fatalf("the log has the URL:\n%s", e.logs)
		}

		// A turned-off target: failed at once, nothing sent.
		before := len(rc.requests())
		off, _ := e.create(notify.WebhookInput{Name: "off", URL: rc.srv.URL + "/elsewhere", Types: []string{notify.SecurityDrift}})
		e.raise(notify.Event{Type: notify.SecurityDrift, Title: "drift", Message: "score fell"})
		no := false
		if _, err := e.hooks.Update(context.Background(), nil, off.ID, notify.WebhookPatch{Active: &no}, whMeta); err != nil {
			t.Fatal(err)
		}
		d = e.only(off.ID)
		if err := e.run(h, d.ID, 1); !jobs.IsPermanent(err) {
			t.Fatalf("inactive: %v", err)
		}
		if got = e.delivery(d.ID); got.Status != store.WebhookFailed || !strings.Contains(got.LastError, "turned off") || len(rc.requests()) != before {
			t.Fatalf("inactive target: %+v", got)
		}
		if _, err := e.hooks.Test(context.Background(), off.ID); !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("testing an inactive target: %v", err)
		}
	})
}

// The dial-time check: a target saved while private addresses were allowed
// (or whose name resolves to one) is refused when the delivery connects.
func TestWebhookDialTimeSSRF(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		rc := whStartReceiver(t, nil)
		_, port, _ := strings.Cut(strings.TrimPrefix(rc.srv.URL, "http://"), ":")
		permissive := whNew(t, db, true, 0)
		strict := whNew(t, db, false, 0)
		// localhost passes validation with the flag; it resolves to loopback.
		for _, host := range []string{"localhost", "127.0.0.1"} {
			tg, _ := permissive.create(notify.WebhookInput{Name: host, URL: "http://" + host + ":" + port + "/hook", Types: []string{notify.ServerRecovered}})
			permissive.raise(notify.Event{Type: notify.ServerRecovered, Title: "back", Message: "online"})
			d := strict.only(tg.ID)
			err := strict.run(strict.hooks.Handler(), d.ID, 1)
			if !jobs.IsPermanent(err) {
				t.Fatalf("%s: %v, want a permanent refusal", host, err)
			}
			got := strict.delivery(d.ID)
			if got.Status != store.WebhookFailed || !strings.Contains(got.LastError, "loopback") || !strings.Contains(got.LastError, "refused to connect") {
				t.Fatalf("%s: %+v", host, got)
			}
			if n := len(rc.requests()); n != 0 {
				t.Fatalf("%s: the receiver got %d requests", host, n)
			}
			// The permissive panel delivers the same kind of event.
			permissive.raise(notify.Event{Type: notify.ServerRecovered, Title: "back", Message: "online"})
			var next *store.WebhookDelivery
			for _, x := range permissive.deliveries(tg.ID) {
				if x.Status == store.WebhookQueued {
					next = x
				}
			}
			if err := permissive.run(permissive.hooks.Handler(), next.ID, 1); err != nil {
				t.Fatalf("%s with the flag: %v", host, err)
			}
			if n := len(rc.requests()); n != 1 {
				t.Fatalf("%s with the flag: %d requests", host, n)
			}
			rc.mu.Lock()
			rc.reqs = nil
			rc.mu.Unlock()
			if err := permissive.hooks.Delete(context.Background(), nil, tg.ID, whMeta); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestWebhookAdminActions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := whNew(t, db, true, 0)
		rc := whStartReceiver(t, nil)
		first := rc.srv.URL + "/first/secret-path-aa11"
		tg, secret := e.create(notify.WebhookInput{Name: "Ops", URL: first, Format: "slack", Types: []string{notify.ServerOffline}})
		// The redactor learned the URL and the secret.
		if e.red.Scrub("x "+first+" "+secret) != "x "+logging.Redacted+" "+logging.Redacted {
			t.Fatalf("redactor: %q", e.red.Scrub(first+" "+secret))
		}

		// Editing without a URL keeps it; a new URL changes it.
		name, second := "Ops alerts", rc.srv.URL+"/second/secret-path-bb22"
		if _, err := e.hooks.Update(ctx, nil, tg.ID, notify.WebhookPatch{Name: &name, Types: []string{"*"}}, whMeta); err != nil {
			t.Fatal(err)
		}
		if c, _ := db.WebhookTargetCredentials(ctx, tg.ID); c.URL != first {
			t.Fatalf("URL after an edit without one: %q", c.URL)
		}
		if _, err := e.hooks.Update(ctx, nil, tg.ID, notify.WebhookPatch{URL: &second}, whMeta); err != nil {
			t.Fatal(err)
		}
		bad := "http://"
		if _, err := e.hooks.Update(ctx, nil, tg.ID, notify.WebhookPatch{URL: &bad}, whMeta); !apperr.Is(err, apperr.Invalid) {
			t.Fatalf("bad URL: %v", err)
		}
		// An edit that changes nothing logs nothing.
		if _, err := e.hooks.Update(ctx, nil, tg.ID, notify.WebhookPatch{URL: &second, Name: &name}, whMeta); err != nil {
			t.Fatal(err)
		}
		newSecret, err := e.hooks.RotateSecret(ctx, nil, tg.ID, whMeta)
		if err != nil || newSecret == secret || !strings.HasPrefix(newSecret, "uwhsec_") {
			t.Fatalf("rotate: %q %v", newSecret, err)
		}

		// The test button: a webhook.test event to this target only, signed
		// with the new secret.
		other, _ := e.create(notify.WebhookInput{Name: "other", URL: rc.srv.URL + "/other", Types: []string{"*"}})
		id, err := e.hooks.Test(ctx, tg.ID)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(e.deliveries(other.ID)); n != 0 {
			t.Fatalf("testing one target queued %d deliveries to another", n)
		}
		if err := e.run(e.hooks.Handler(), id, 1); err != nil {
			t.Fatal(err)
		}
		reqs := rc.requests()
		if len(reqs) != 1 || reqs[0].Path != "/second/secret-path-bb22" || reqs[0].Header.Get("X-UPanel-Event") != notify.WebhookTest {
			t.Fatalf("test delivery: %+v", reqs)
		}
		h := reqs[0].Header
		if h.Get("X-UPanel-Signature") != whVerify(newSecret, h.Get("X-UPanel-Timestamp"), reqs[0].Body) {
			t.Fatal("the test delivery is not signed with the rotated secret")
		}
		if !strings.Contains(string(reqs[0].Body), "<https://panel.example.test/settings/webhooks/"+tg.ID+"|Open in UPanel>") {
			t.Fatalf("test body %s", reqs[0].Body)
		}
		if err := e.hooks.Delete(ctx, nil, tg.ID, whMeta); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetWebhookTarget(ctx, tg.ID); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("after delete: %v", err)
		}
		if _, err := e.hooks.Test(ctx, tg.ID); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("testing a deleted target: %v", err)
		}

		// The activity log: created, updated (name and types; then the URL,
		// shown only as changed), secret replaced, deleted.
		acts, err := db.ListActivity(ctx, store.ActivityFilter{SubjectType: "WebhookTarget", SubjectID: tg.ID})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := len(acts) - 1; i >= 0; i-- {
			a := acts[i]
			b, _ := json.Marshal(a.Changes)
			got = append(got, a.Action+" "+string(b))
			for _, leak := range []string{"secret-path", secret, newSecret, rc.srv.URL} {
				if strings.Contains(string(b)+a.Description, leak) {
					t.Errorf("activity %s %s shows %q", a.Action, b, leak)
				}
			}
		}
		want := []string{
			`created {"active":{"old":null,"new":true},"format":{"old":null,"new":"slack"},"name":{"old":null,"new":"Ops"},"secret":{"changed":true},"types":{"old":null,"new":"server_offline"},"url":{"changed":true}}`,
			`updated {"name":{"old":"Ops","new":"Ops alerts"},"types":{"old":"server_offline","new":"all events"}}`,
			`updated {"url":{"changed":true}}`,
			`updated {"secret":{"changed":true}}`,
			`deleted {"active":{"old":true,"new":null},"format":{"old":"slack","new":null},"name":{"old":"Ops alerts","new":null},"types":{"old":"all events","new":null}}`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("activity:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// The upkeep job fails deliveries whose job ended without an outcome.
func TestWebhookMaintain(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	e := whNew(t, db, true, 0)
	tg, _ := e.create(notify.WebhookInput{Name: "x", URL: "https://hooks.example.com/x", Types: []string{"*"}})
	e.raise(whOffline)
	d := e.only(tg.ID)
	storetest.Exec(t, db, "UPDATE jobs SET status = 'cancelled' WHERE id = ?", d.ID)
	if err := e.hooks.MaintainHandler(notify.KeepWebhookDeliveries)(context.Background(), &jobs.Job{Job: &store.Job{ID: store.NewID()}}); err != nil {
		t.Fatal(err)
	}
	if got := e.delivery(d.ID); got.Status != store.WebhookFailed {
		t.Fatalf("orphan: %+v", got)
	}
}
