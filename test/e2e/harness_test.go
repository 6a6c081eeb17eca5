// Package e2e runs UPanel against real Debian servers: test-host containers
// with systemd, OpenSSH and Docker (internal/testhost). The panel runs in the
// test process on the gateway of the test's Docker network, where the hosts
// reach it; the test drives it through its HTTP API, as a user's script
// would, and looks at the hosts only as their owner could (docker exec as
// root, like a console).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/auth"
	"upanel/internal/config"
	"upanel/internal/logging"
	"upanel/internal/mail/mailtest"
	"upanel/internal/panel"
	"upanel/internal/store"
	"upanel/internal/testhost"
)

// agentInterval is short so that offline detection (three missed intervals)
// happens within seconds.
const agentInterval = 2 * time.Second

// buildAgent cross-builds the agent once per test binary, as "make build"
// does for a release.
var buildAgent = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "upanel-e2e-agent-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "upanel-agent-linux-"+runtime.GOARCH)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "upanel/cmd/upanel-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the agent: %v\n%s", err, b)
	}
	return dir, nil
})

// panelUnderTest is a running panel and an admin's API token for it.
type panelUnderTest struct {
	t        testing.TB
	url      string
	token    string
	operator string // an operator's API token
	db       *store.DB
	dataDir  string
	smtp     *mailtest.Server // the real SMTP server the panel mails through
	hooks    *receiver        // a webhook receiver on 127.0.0.1
	log      *syncBuffer
	client   *http.Client // for API calls; nil is http.DefaultClient
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

// startPanel runs the panel on the network's gateway with a fresh SQLite
// database, an admin and an operator.
func startPanel(t testing.TB, network *testhost.Network) *panelUnderTest {
	t.Helper()
	return startPanelInterval(t, network, agentInterval)
}

// startPanelInterval is startPanel with agents reporting every interval.
func startPanelInterval(t testing.TB, network *testhost.Network, interval time.Duration) *panelUnderTest {
	t.Helper()
	agents, err := buildAgent()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(network.Gateway, "0"))
	if err != nil {
		t.Fatalf("listen on the gateway: %v", err)
	}
	base := "http://" + ln.Addr().String()
	dataDir := t.TempDir()
	smtp := mailtest.Start(t, mailtest.Options{})
	env := map[string]string{
		"UPANEL_DATA_DIR": dataDir, "UPANEL_URL": base, "UPANEL_AGENT_DIR": agents,
		"UPANEL_AGENT_INTERVAL": interval.String(), "UPANEL_ADDR": ln.Addr().String(),
		"UPANEL_SMTP_URL": smtp.URL(), "UPANEL_MAIL_FROM": "UPanel <upanel@example.com>",
		// Bursts settle in 2 s instead of 20, and the webhook receiver
		// listens on 127.0.0.1, which only this flag allows.
		"UPANEL_NOTIFY_SETTLE": "2s", "UPANEL_WEBHOOK_ALLOW_PRIVATE": "true",
	}
	cfg, err := config.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	p := &panelUnderTest{t: t, url: base, dataDir: dataDir, log: &syncBuffer{}, smtp: smtp, hooks: newReceiver(t)}
	red := logging.NewRedactor()
	log := logging.New(p.log, "text", slog.LevelDebug, red)

	ctx := context.Background()
	p.createAccounts(cfg, log, red)

	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- panel.Serve(ctx, cfg, log, red, panel.Options{Listener: ln, JobPoll: 200 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("panel: %v", err)
		}
		if t.Failed() {
			t.Logf("panel log:\n%s", tailLines(p.log.String(), 200))
		}
	})
	p.waitReady()

	// A second connection to the same database, for what the API does not
	// show (notifications, security events, raw rows).
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p.db = db
	return p
}

// with returns p reporting to t, for use inside a subtest: a failure must
// stop the subtest's goroutine, not its parent's.
func (p *panelUnderTest) with(t testing.TB) *panelUnderTest {
	q := *p
	q.t = t
	return &q
}

func (p *panelUnderTest) waitReady() {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("the panel did not become ready:\n%s", tailLines(p.log.String(), 50))
}

// call makes an API request as the admin and decodes a JSON answer into out.
func (p *panelUnderTest) call(method, path string, body, out any) int {
	return p.callAs(p.token, method, path, body, out)
}

func (p *panelUnderTest) callAs(token, method, path string, body, out any) int {
	p.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.url+path, r)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := p.client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			p.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// must is call that fails the test unless the status is want.
func (p *panelUnderTest) must(want int, method, path string, body, out any) {
	p.t.Helper()
	var raw json.RawMessage
	if got := p.call(method, path, body, &raw); got != want {
		p.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			p.t.Fatal(err)
		}
	}
}

type serverView struct {
	ID               string     `json:"id"`
	Name             string     `json:"name"`
	Status           string     `json:"status"`
	StatusReason     string     `json:"status_reason"`
	LastSeenAt       *time.Time `json:"last_seen_at"`
	OSVersion        string     `json:"os_version"`
	CPUCores         *int       `json:"cpu_cores"`
	RAMMB            *int       `json:"ram_mb"`
	DiskGB           *int       `json:"disk_gb"`
	HardenedAt       *time.Time `json:"hardened_at"`
	SecurityScore    *int       `json:"security_score"`
	AgentVersion     string     `json:"agent_version"`
	Arch             string     `json:"arch"`
	HostKeys         []string   `json:"host_key_fingerprints"`
	AgentPinned      bool       `json:"agent_certificate_pinned"`
	ProvisionedAt    *time.Time `json:"provisioned_at"`
	SSHPublicKey     string     `json:"ssh_public_key"`
	BootstrapCommand string     `json:"bootstrap_command"`
}

func (p *panelUnderTest) server(id string) serverView {
	p.t.Helper()
	var s serverView
	p.must(http.StatusOK, "GET", "/api/v1/servers/"+id, nil, &s)
	return s
}

type jobView struct {
	ID        string   `json:"id"`
	Kind      string   `json:"kind"`
	Status    string   `json:"status"`
	Attempts  int      `json:"attempts"`
	LastError string   `json:"last_error"`
	Log       []string `json:"log"`
}

// waitJob waits for a job to end and returns it.
func (p *panelUnderTest) waitJob(id string, within time.Duration) jobView {
	p.t.Helper()
	var j jobView
	deadline := time.Now().Add(within)
	for {
		p.must(http.StatusOK, "GET", "/api/v1/jobs/"+id, nil, &j)
		switch j.Status {
		case "succeeded", "failed", "dead", "cancelled":
			return j
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("job %s (%s) still %s after %v; log:\n%s", id, j.Kind, j.Status, within, strings.Join(j.Log, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitFor polls cond until it holds.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// countRows runs a COUNT query on the panel's database.
func (p *panelUnderTest) countRows(query string, args ...any) int {
	p.t.Helper()
	var n int
	if err := p.db.QueryRowRaw(context.Background(), query, args...).Scan(&n); err != nil {
		p.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func tailLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// receiver is a webhook endpoint that keeps what it is sent.
type receiver struct {
	url string
	mu  sync.Mutex
	got []delivery
}

type delivery struct {
	header http.Header
	body   []byte
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		r.mu.Lock()
		r.got = append(r.got, delivery{header: req.Header.Clone(), body: b})
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// of returns the deliveries of an event type.
func (r *receiver) of(eventType string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.got {
		if d.header.Get("X-UPanel-Event") == eventType {
			out = append(out, d)
		}
	}
	return out
}

// mailsTo counts the messages to an address whose subject contains text.
func (p *panelUnderTest) mailsTo(addr, text string) int {
	n := 0
	for _, m := range p.smtp.Messages(p.t) {
		if slices.Contains(m.To, addr) && strings.Contains(m.Subject, text) {
			n++
		}
	}
	return n
}

// createAccounts makes the admin and operator users and their API tokens, as
// `upanel user create` and `upanel token` would: the database and its key file
// exist before the panel starts.
func (p *panelUnderTest) createAccounts(cfg config.Config, log *slog.Logger, red *logging.Redactor) {
	t := p.t
	ctx := context.Background()
	accounts, _, closeAccounts, err := panel.Accounts(ctx, cfg, log, red)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAccounts()
	for _, u := range []struct {
		email string
		role  auth.Role
		dst   *string
	}{{"admin@example.com", auth.Admin, &p.token}, {"operator@example.com", auth.Operator, &p.operator}} {
		if _, err := accounts.CreateUser(ctx, u.email, "correct horse battery staple 1", u.role); err != nil {
			t.Fatal(err)
		}
		raw, _, err := accounts.CreateTokenFor(ctx, u.email, auth.NewToken{Name: "e2e", Role: u.role, TTL: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		*u.dst = raw
	}
}
