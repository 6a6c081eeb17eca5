package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"upanel/internal/pin"
	"upanel/internal/wire"
)

// The agent's side of the link, over real TLS on loopback: its listener lets
// in only the panel certificate it pins, refuses oversized requests, and its
// pushes carry the token and a sequence number that survives restarts, to a
// panel whose certificate it verifies.

const (
	testServerID = "01HZY5J3V0N7W4Q8R2T6M9K1PB"
	testToken    = "uat_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
)

// logSink is the agent's log: it hands over the address the listener bound
// and keeps every line, the http.Server's TLS handshake errors included.
type logSink struct {
	addr  chan string
	mu    sync.Mutex
	lines []string
}

func newLogSink() *logSink { return &logSink{addr: make(chan string, 1)} }

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *logSink) WithGroup(string) slog.Handler            { return s }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.Key + "=" + a.Value.String()
		if r.Message == "agent listening" && a.Key == "addr" {
			s.addr <- a.Value.String()
		}
		return true
	})
	s.mu.Lock()
	s.lines = append(s.lines, line)
	s.mu.Unlock()
	return nil
}

// waitFor returns the first line containing all of subs, waiting a while for
// it: the server logs a handshake error after the client has seen the alert.
func (s *logSink) waitFor(t *testing.T, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		for _, l := range s.lines {
			all := true
			for _, sub := range subs {
				all = all && strings.Contains(l, sub)
			}
			if all {
				s.mu.Unlock()
				return l
			}
		}
		lines := strings.Join(s.lines, "\n")
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", subs, lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// identity is a self-signed certificate such as the panel presents.
func identity(t *testing.T, name string) (tls.Certificate, string) {
	t.Helper()
	certPEM, keyPEM, err := pin.SelfSigned(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := pin.FingerprintPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c, fp
}

func testConfig(t *testing.T, panelURL, panelPin string) *Config {
	dir := t.TempDir()
	return &Config{ServerID: testServerID, PanelURL: panelURL, Token: testToken, PanelCertSHA256: panelPin,
		Listen: "127.0.0.1:0", CertFile: filepath.Join(dir, "agent.crt"), KeyFile: filepath.Join(dir, "agent.key"),
		StateDir: filepath.Join(dir, "state"), DeployRoot: "/srv/upanel/apps", IntervalSeconds: 3600}
}

// runningAgent is an agent started with Run, reading a fake host and running
// no commands.
type runningAgent struct {
	a     *Agent
	addr  string
	roots *x509.CertPool // trusts the agent's certificate
	logs  *logSink
}

func startAgent(t *testing.T, cfg *Config) *runningAgent {
	t.Helper()
	// Made here, as Run would, so the test can trust it.
	cert, err := EnsureCertificate(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogSink()
	a, err := New(cfg, slog.New(logs), "test")
	if err != nil {
		t.Fatal(err)
	}
	host := filepath.Join("testdata", "host")
	a.root, a.sampler = host, NewSampler(host, nil)
	a.auditor = &Auditor{Root: host, DeployRoot: cfg.DeployRoot,
		Run: func(context.Context, string, ...string) ([]byte, error) {
			return nil, fmt.Errorf("not installed: %w", os.ErrNotExist)
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	r := &runningAgent{a: a, roots: x509.NewCertPool(), logs: logs}
	r.roots.AddCert(leaf)
	select {
	case r.addr = <-logs.addr:
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not start listening")
	}
	return r
}

// client calls the agent the way the panel does, showing cert (none if nil)
// and trusting the agent's certificate by its name.
func (r *runningAgent) client(cert *tls.Certificate, tweak func(*tls.Config)) *http.Client {
	cfg := &tls.Config{RootCAs: r.roots, ServerName: "upanel-agent", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	if tweak != nil {
		tweak(cfg)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

func (r *runningAgent) url(path string) string { return "https://" + r.addr + path }

// fakePanel is the panel's agent endpoints: it records what agents send.
type fakePanel struct {
	mu  sync.Mutex
	got []pushed
}

type pushed struct {
	path, auth, contentType string
	msg                     wire.Message
	checks                  int
}

func (p *fakePanel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m struct {
		wire.Message
		Checks []wire.Check `json:"checks"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, wire.MaxBody)).Decode(&m); err != nil {
		http.Error(w, "bad message", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.got = append(p.got, pushed{path: r.URL.Path, auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type"), msg: m.Message, checks: len(m.Checks)})
	p.mu.Unlock()
	if r.URL.Path == wire.PathHeartbeat {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(wire.HeartbeatReply{IntervalSeconds: 5})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *fakePanel) pushes() []pushed {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pushed(nil), p.got...)
}

// remoteAlert returns the TLS alert the peer sent, if err is one.
func remoteAlert(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return op.Err.Error()
	}
	return ""
}

// The agent answers only the panel whose certificate it pins. Anything else
// fails the TLS handshake, with the alert the server sends for that case, so
// no request reaches a handler.
func TestAgentListenerLetsInOnlyThePinnedPanel(t *testing.T) {
	panelSrv := httptest.NewServer(&fakePanel{})
	t.Cleanup(panelSrv.Close)
	panelCert, panelPin := identity(t, "upanel-panel")
	ra := startAgent(t, testConfig(t, panelSrv.URL, panelPin))

	res, err := ra.client(&panelCert, nil).Get(ra.url(wire.AgentPathStatus))
	if err != nil {
		t.Fatalf("the pinned panel: %v", err)
	}
	defer res.Body.Close()
	var st wire.Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("status: %d %v", res.StatusCode, err)
	}
	if st.Protocol != wire.ProtocolVersion || st.ServerID != testServerID || st.Started.IsZero() || st.Host.AgentVersion != "test" {
		t.Fatalf("status: %+v", st)
	}
	if res.TLS == nil || res.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("the link is not TLS 1.3: %+v", res.TLS)
	}

	strangerCert, _ := identity(t, "upanel-panel") // same name, another key
	agentCert, err := tls.LoadX509KeyPair(ra.a.cfg.CertFile, ra.a.cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		cert   *tls.Certificate
		tweak  func(*tls.Config)
		alert  string // what the client is told
		logged string // what the agent logs
	}{
		{"no client certificate", nil, nil, "tls: certificate required", "client didn't provide a certificate"},
		{"an unpinned self-signed certificate", &strangerCert, nil, "tls: bad certificate", "is not the pinned one"},
		{"the agent's own certificate", &agentCert, nil, "tls: bad certificate", "is not the pinned one"},
		{"the pinned certificate over TLS 1.2", &panelCert, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
			"tls: protocol version not supported", "client offered only unsupported versions"},
	}
	for _, tc := range cases {
		for _, req := range []struct{ method, path string }{{"GET", wire.AgentPathStatus}, {"POST", wire.AgentPathAudit}} {
			r, _ := http.NewRequest(req.method, ra.url(req.path), nil)
			res, err := ra.client(tc.cert, tc.tweak).Do(r)
			if err == nil {
				res.Body.Close()
				t.Errorf("%s: %s %s answered %d", tc.name, req.method, req.path, res.StatusCode)
				continue
			}
			if got := remoteAlert(err); got != tc.alert {
				t.Errorf("%s: %s %s failed with %v, want the alert %q", tc.name, req.method, req.path, err, tc.alert)
			}
		}
		ra.logs.waitFor(t, "TLS handshake error", tc.logged)
	}

	// At the TLS layer alone: the client finishes its side of a TLS 1.3
	// handshake before the agent checks its certificate, and the first read
	// gets the alert, before a byte of HTTP is sent.
	conn, err := tls.Dial("tcp", ra.addr, &tls.Config{RootCAs: ra.roots, ServerName: "upanel-agent", Certificates: []tls.Certificate{strangerCert}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); remoteAlert(err) != "tls: bad certificate" {
		t.Fatalf("read on an unpinned connection: %v", err)
	}
}

// The agent's one call with a method that could carry a body refuses an
// oversized one, declared or streamed, and reads no further than the limit.
func TestAgentRefusesOversizedRequests(t *testing.T) {
	panelCert, panelPin := identity(t, "upanel-panel")
	fp := &fakePanel{}
	panelSrv := httptest.NewServer(fp)
	t.Cleanup(panelSrv.Close)
	ra := startAgent(t, testConfig(t, panelSrv.URL, panelPin))
	c := ra.client(&panelCert, nil)
	// The client waits for "100 Continue" before it sends a body, as curl
	// does for large ones. A body declared too large is refused at once,
	// before the client sends a byte of it; without the wait the refusal
	// would race the upload and could show as a reset connection instead.
	c.Transport.(*http.Transport).ExpectContinueTimeout = 10 * time.Second

	for _, tc := range []struct {
		name   string
		body   io.Reader
		length int64
	}{
		{"a declared body of MaxBody+1 bytes", &counting{r: io.LimitReader(repeat(0), wire.MaxBody+1)}, wire.MaxBody + 1},
		{"a declared body of 1 GiB", &counting{r: io.LimitReader(repeat(0), 1<<30)}, 1 << 30},
		{"a streamed body of 4 MiB", io.LimitReader(repeat(0), 4<<20), -1},
	} {
		req, _ := http.NewRequest("POST", ra.url(wire.AgentPathAudit), tc.body)
		req.ContentLength = tc.length
		req.Header.Set("Expect", "100-continue")
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var e wire.Error
		json.NewDecoder(res.Body).Decode(&e)
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(e.Error, "over") {
			t.Errorf("%s: %d %q, want 413", tc.name, res.StatusCode, e.Error)
		}
		if cr, ok := tc.body.(*counting); ok && cr.n.Load() != 0 {
			t.Errorf("%s: the client sent %d bytes of a body refused by its length", tc.name, cr.n.Load())
		}
	}

	// The handler itself, with a body that counts what is read of it: an
	// oversized call asks for no audit; a call within the limit does.
	a := &Agent{cfg: ra.a.cfg, audit: make(chan struct{}, 1)}
	h := a.routes()
	for _, tc := range []struct {
		name   string
		size   int64
		length bool
		want   int
		audit  bool
	}{
		{"no body", 0, true, http.StatusAccepted, true},
		{"a body of MaxBody bytes", wire.MaxBody, true, http.StatusAccepted, true},
		{"a declared body of MaxBody+1 bytes", wire.MaxBody + 1, true, http.StatusRequestEntityTooLarge, false},
		{"a streamed body of MaxBody+1 bytes", wire.MaxBody + 1, false, http.StatusRequestEntityTooLarge, false},
		{"a streamed body of 64 MiB", 64 << 20, false, http.StatusRequestEntityTooLarge, false},
	} {
		body := &counting{r: io.LimitReader(repeat(0), tc.size)}
		req := httptest.NewRequest("POST", wire.AgentPathAudit, body)
		req.ContentLength = -1
		if tc.length {
			req.ContentLength = tc.size
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.want)
		}
		if n := body.n.Load(); n > wire.MaxBody+1 {
			t.Errorf("%s: read %d bytes, over the limit", tc.name, n)
		}
		select {
		case <-a.audit:
			if !tc.audit {
				t.Errorf("%s asked for an audit", tc.name)
			}
		default:
			if tc.audit {
				t.Errorf("%s did not ask for an audit", tc.name)
			}
		}
	}
}

// repeat is an endless stream of one byte.
type repeat byte

func (b repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

type counting struct {
	r io.Reader
	n atomic.Int64
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func newTestPanel(t *testing.T, cfg *Config) *panel {
	t.Helper()
	st, err := loadState(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPanel(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Every push carries the agent token as a bearer and a sequence number one
// above the last, across restarts and failed pushes.
func TestPushesCarryTheTokenAndAGrowingSeq(t *testing.T) {
	fp := &fakePanel{}
	panelSrv := httptest.NewServer(fp)
	t.Cleanup(panelSrv.Close)
	cfg := testConfig(t, panelSrv.URL+"/", strings.Repeat("ab", 32)) // a trailing slash is trimmed
	ctx := context.Background()

	p := newTestPanel(t, cfg)
	reply, err := p.heartbeat(ctx, wire.Host{Hostname: "web-1"})
	if err != nil || reply.IntervalSeconds != 5 {
		t.Fatalf("heartbeat: %+v %v", reply, err)
	}
	if err := p.metrics(ctx, []wire.Sample{{At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if err := p.audit(ctx, []wire.Check{{ID: "x"}}); err != nil {
		t.Fatal(err)
	}
	// A restart: the state is read back from disk.
	p = newTestPanel(t, cfg)
	if _, err := p.heartbeat(ctx, wire.Host{}); err != nil {
		t.Fatal(err)
	}
	// A push that fails still uses its number: a number may be skipped,
	// never reused.
	down := *cfg
	down.PanelURL = "http://127.0.0.1:1"
	if err := newTestPanel(t, &down).metrics(ctx, nil); err == nil {
		t.Fatal("a push to a closed port succeeded")
	}
	p = newTestPanel(t, cfg)
	if err := p.metrics(ctx, nil); err != nil {
		t.Fatal(err)
	}

	got := fp.pushes()
	wantPaths := []string{wire.PathHeartbeat, wire.PathMetrics, wire.PathAudit, wire.PathHeartbeat, wire.PathMetrics}
	wantSeqs := []uint64{1, 2, 3, 4, 6}
	if len(got) != len(wantPaths) {
		t.Fatalf("%d pushes: %+v", len(got), got)
	}
	for i, g := range got {
		if g.path != wantPaths[i] || g.msg.Seq != wantSeqs[i] || g.auth != "Bearer "+testToken || g.contentType != "application/json" ||
			g.msg.Protocol != wire.ProtocolVersion || time.Since(g.msg.SentAt) > time.Minute {
			t.Errorf("push %d: %+v, want %s seq %d with the token", i, g, wantPaths[i], wantSeqs[i])
		}
	}
	info, err := os.Stat(filepath.Join(cfg.StateDir, "state.json"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", info, err)
	}
}

// The agent, run as it runs in production, pushes to the panel by itself.
func TestRunningAgentPushesWithItsToken(t *testing.T) {
	fp := &fakePanel{}
	panelSrv := httptest.NewServer(fp)
	t.Cleanup(panelSrv.Close)
	panelCert, panelPin := identity(t, "upanel-panel")
	cfg := testConfig(t, panelSrv.URL, panelPin)
	cfg.IntervalSeconds = 1
	ra := startAgent(t, cfg)
	res, err := ra.client(&panelCert, nil).Post(ra.url(wire.AgentPathAudit), "", nil)
	if err != nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("audit call: %v %v", res, err)
	}
	res.Body.Close()

	deadline := time.Now().Add(15 * time.Second)
	for {
		got := fp.pushes()
		var heartbeat, audit bool
		for _, g := range got {
			if g.auth != "Bearer "+testToken {
				t.Fatalf("a push without the token: %+v", g)
			}
			heartbeat = heartbeat || g.path == wire.PathHeartbeat
			audit = audit || (g.path == wire.PathAudit && g.checks > 0)
		}
		if heartbeat && audit {
			for i := 1; i < len(got); i++ {
				if got[i].msg.Seq <= got[i-1].msg.Seq {
					t.Fatalf("seq did not grow: %+v", got)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s the panel has %+v; want a heartbeat and an audit", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An https panel must present a certificate the agent trusts: the system
// roots, or the CA file of the config. Nothing turns verification off.
func TestPushVerifiesThePanelCertificate(t *testing.T) {
	var hits atomic.Int64
	panelSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte(`{"interval_seconds":5}`))
	}))
	panelSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	panelSrv.StartTLS()
	t.Cleanup(panelSrv.Close)
	ctx := context.Background()

	cfg := testConfig(t, panelSrv.URL, strings.Repeat("ab", 32))
	p := newTestPanel(t, cfg)
	tr := p.http.Transport.(*http.Transport)
	if tc := tr.TLSClientConfig; tc == nil || tc.InsecureSkipVerify || tc.VerifyPeerCertificate != nil || tc.MinVersion < tls.VersionTLS12 {
		t.Fatalf("the push client's TLS config: %+v", tc)
	}
	_, err := p.heartbeat(ctx, wire.Host{})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("a panel with an untrusted certificate: %v", err)
	}

	// Trusted through the CA file, the same panel is reached...
	caFile := filepath.Join(t.TempDir(), "panel-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: panelSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.PanelCAFile = caFile
	if _, err := newTestPanel(t, cfg).heartbeat(ctx, wire.Host{}); err != nil {
		t.Fatalf("a panel trusted through panel_ca_file: %v", err)
	}
	// ...but not under a name its certificate does not carry.
	u, _ := url.Parse(panelSrv.URL)
	wrongName := *cfg
	wrongName.PanelURL = "https://localhost:" + u.Port()
	_, err = newTestPanel(t, &wrongName).heartbeat(ctx, wire.Host{})
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Fatalf("a panel certificate for another name: %v", err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the panel was reached %d times, want once (the trusted call)", n)
	}
	// A CA file that holds no certificate is an error, not "trust nothing
	// special".
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, _ := loadState(cfg.StateDir)
	if _, err := newPanel(cfg, st); err == nil {
		t.Fatal("a CA file without certificates was accepted")
	}
}

// Nothing in the agent binary's own code turns off certificate verification:
// the agent pins the panel with VerifyPeerCertificate on its listener, and
// verifies the panel's https certificate normally when it pushes.
func TestAgentCodeNeverSkipsVerification(t *testing.T) {
	for _, dir := range []string{".", "../wire", "../pin", "../../cmd/upanel-agent"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: %v %v", dir, files, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if id, ok := n.(*ast.Ident); ok && id.Name == "InsecureSkipVerify" {
					t.Errorf("%s uses InsecureSkipVerify", f)
				}
				return true
			})
		}
	}
}

// A panel's reply is read up to the limit and no further; a longer one is an
// error, not a truncated message.
func TestPushReadsABoundedReply(t *testing.T) {
	panelSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, io.MultiReader(strings.NewReader(`{"interval_seconds":7}`), repeat(' ')))
	}))
	t.Cleanup(panelSrv.Close)
	p := newTestPanel(t, testConfig(t, panelSrv.URL, strings.Repeat("ab", 32)))
	read := &countingTransport{base: p.http.Transport}
	p.http.Transport = read
	_, err := p.heartbeat(context.Background(), wire.Host{})
	if err == nil || !strings.Contains(err.Error(), "over the") {
		t.Fatalf("an endless reply: %v", err)
	}
	if n := read.read.n.Load(); n > wire.MaxBody+1 {
		t.Fatalf("read %d bytes of the reply, over the %d-byte limit", n, wire.MaxBody)
	}
}

// countingTransport counts the reply bytes read through it.
type countingTransport struct {
	base http.RoundTripper
	read counting
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := c.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	c.read.r = res.Body
	res.Body = struct {
		io.Reader
		io.Closer
	}{&c.read, res.Body}
	return res, nil
}
