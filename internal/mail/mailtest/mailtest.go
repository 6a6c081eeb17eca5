// Package mailtest runs a real SMTP server for tests: mailpit, built from the
// Go module proxy as a tool dependency of this module (go.mod's tool directive),
// listening on free 127.0.0.1 ports. Tests send to it over SMTP, with STARTTLS,
// implicit TLS and authentication as configured, and read every message back
// through its REST API. A fake in-process server would only test our
// assumptions about SMTP; mailpit is a separate implementation with its own.
//
// Without mailpit (no go command, no module cache and no proxy) tests skip,
// except under CI=true, where they fail.
package mailtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TLS is how the server protects SMTP.
type TLS int

const (
	// NoTLS offers no encryption.
	NoTLS TLS = iota
	// StartTLS offers STARTTLS but accepts plain sessions too.
	StartTLS
	// RequireStartTLS refuses to take mail before STARTTLS.
	RequireStartTLS
	// ImplicitTLS speaks TLS from the first byte, as on port 465.
	ImplicitTLS
)

// Options configure a server. The zero value is a plain SMTP server that takes
// mail from anyone.
type Options struct {
	TLS TLS
	// CA issues the server certificate when TLS is on; nil means a new CA. Tests
	// pin it (Server.CA.File) so that the certificate is verified for real.
	CA *CA
	// Username and Password, when set, are the only credentials the server
	// accepts, and it requires them.
	Username, Password string
	// AllowInsecureAuth lets clients authenticate without TLS.
	AllowInsecureAuth bool
}

// Server is a running mailpit.
type Server struct {
	// SMTPAddr is host:port of SMTP, APIURL the base of the REST API.
	SMTPAddr string
	APIURL   string
	Host     string
	Port     int
	// CA signed the server certificate, when TLS is on.
	CA   *CA
	opts Options
	args []string
	dir  string

	mu   sync.Mutex // guards proc
	proc *process
}

type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	log    *lockedBuffer
}

// Start starts mailpit and waits until it takes SMTP connections and answers
// its API. It is stopped when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := binary()
	if err != nil {
		unavailable(t, err)
	}
	s := &Server{opts: opts, dir: t.TempDir(), Host: "127.0.0.1"}
	if opts.TLS != NoTLS {
		s.CA = opts.CA
		if s.CA == nil {
			s.CA = NewCA(t)
		}
	}
	t.Cleanup(func() { s.stop(t) })
	// A port found free can be taken before mailpit binds it; try fresh ones.
	for try := 1; ; try++ {
		smtpPort, apiPort, err := freePorts()
		if err != nil {
			t.Fatalf("mailtest: %v", err)
		}
		s.Port = smtpPort
		s.SMTPAddr = net.JoinHostPort(s.Host, strconv.Itoa(smtpPort))
		s.APIURL = "http://" + net.JoinHostPort(s.Host, strconv.Itoa(apiPort))
		s.args = s.buildArgs(t, apiPort)
		err = s.launch(bin)
		if err == nil {
			return s
		}
		if try == 3 || !strings.Contains(err.Error(), "address already in use") {
			unavailable(t, err)
		}
	}
}

// unavailable skips the test when mailpit cannot run here, but fails it under
// CI=true: a CI run must not go green by skipping its mail tests.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("mailtest: cannot start mailpit (under CI=true this fails): %v", err)
	}
	t.Skipf("mailtest: cannot start mailpit: %v", err)
}

func (s *Server) buildArgs(t testing.TB, apiPort int) []string {
	t.Helper()
	args := []string{
		"--smtp", s.SMTPAddr,
		"--listen", net.JoinHostPort(s.Host, strconv.Itoa(apiPort)),
		"--database", filepath.Join(s.dir, "mailpit.db"),
		"--disable-version-check", // no traffic beyond 127.0.0.1
		"--smtp-disable-rdns",
		"--enable-chaos", // lets SetChaos script SMTP errors; without triggers it does nothing
		"--max", "0",
	}
	if s.opts.TLS != NoTLS {
		cert, key := s.CA.Issue(t, s.dir, s.Host, "localhost")
		args = append(args, "--smtp-tls-cert", cert, "--smtp-tls-key", key)
		switch s.opts.TLS {
		case RequireStartTLS:
			args = append(args, "--smtp-require-starttls")
		case ImplicitTLS:
			args = append(args, "--smtp-require-tls")
		}
	}
	if s.opts.Username != "" {
		if strings.ContainsAny(s.opts.Username+s.opts.Password, " \t\r\n:") {
			t.Fatal("mailtest: credentials must not contain spaces or colons")
		}
		file := filepath.Join(s.dir, "smtp-auth")
		if err := os.WriteFile(file, []byte(s.opts.Username+":"+s.opts.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--smtp-auth-file", file)
	}
	if s.opts.AllowInsecureAuth {
		args = append(args, "--smtp-auth-allow-insecure")
	}
	return args
}

// launch starts the process and waits for it to be ready, or for it to die.
func (s *Server) launch(bin string) error {
	p := &process{cmd: exec.Command(bin, s.args...), exited: make(chan struct{}), log: &lockedBuffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	if err := s.waitReady(p); err != nil {
		s.kill(p)
		return fmt.Errorf("%w\nmailpit output:\n%s", err, p.log.String())
	}
	return nil
}

// waitReady polls until SMTP accepts a connection and the API says ready. The
// one-minute bound is a startup limit, not a measurement.
func (s *Server) waitReady(p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-p.exited:
			return errors.New("mailpit exited during startup")
		case <-ctx.Done():
			return errors.New("mailpit did not become ready within a minute")
		case <-time.After(20 * time.Millisecond):
		}
		conn, err := net.DialTimeout("tcp", s.SMTPAddr, time.Second)
		if err != nil {
			continue
		}
		conn.Close()
		resp, err := client.Get(s.APIURL + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
}

// Stop stops the server, keeping its ports and stored messages, so that a test
// can see what its code does while the SMTP server is down.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.stop(t)
}

func (s *Server) stop(t testing.TB) {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Logf("mailtest: mailpit ignored SIGINT; killing it")
		s.kill(p)
	}
	if t.Failed() {
		t.Logf("mailtest: mailpit output:\n%s", p.log.String())
	}
}

func (s *Server) kill(p *process) {
	p.cmd.Process.Kill()
	<-p.exited
}

// Restart starts a stopped server again on the same ports, with the messages
// it had.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop(t)
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.launch(bin); err != nil {
		t.Fatalf("mailtest: restart: %v", err)
	}
}

// URL is the server's address in UPANEL_SMTP_URL form, with the server's
// credentials and the TLS mode that matches it.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.SMTPAddr}
	if s.opts.Username != "" {
		u.User = url.UserPassword(s.opts.Username, s.opts.Password)
	}
	switch s.opts.TLS {
	case ImplicitTLS:
		u.Scheme = "smtps"
	case StartTLS, RequireStartTLS:
		u.RawQuery = "starttls=required"
	default:
		u.RawQuery = "starttls=off"
	}
	return u.String()
}

// Chaos scripts SMTP errors: each non-zero code is returned, every time, at
// that stage of the session. Codes are 400-599.
type Chaos struct {
	Sender         int // reply to MAIL FROM
	Recipient      int // reply to RCPT TO
	Authentication int // reply to AUTH
}

// SetChaos makes the server fail as c says, until the next SetChaos; the zero
// Chaos turns it off.
func (s *Server) SetChaos(t testing.TB, c Chaos) {
	t.Helper()
	trigger := func(code int) map[string]int {
		if code == 0 {
			return map[string]int{"ErrorCode": 451, "Probability": 0}
		}
		return map[string]int{"ErrorCode": code, "Probability": 100}
	}
	body, _ := json.Marshal(map[string]any{
		"Sender": trigger(c.Sender), "Recipient": trigger(c.Recipient), "Authentication": trigger(c.Authentication),
	})
	s.api(t, http.MethodPut, "/api/v1/chaos", body, nil)
}

// DeleteAll removes every stored message.
func (s *Server) DeleteAll(t testing.TB) {
	t.Helper()
	s.api(t, http.MethodDelete, "/api/v1/messages", []byte("{}"), nil)
}

// Message is a message as the server received it.
type Message struct {
	ID        string // mailpit's id
	MessageID string // the Message-ID header, without angle brackets
	From      string // address only
	To        []string
	Subject   string // decoded
	// Username is who authenticated over SMTP to send it, if anyone did.
	Username string
	Text     string // the decoded plain-text part
	HTML     string // the decoded HTML part
	// Headers are the top-level headers as received, by canonical name.
	Headers map[string][]string
	// Raw is the message exactly as it arrived over SMTP.
	Raw []byte
}

type apiAddress struct{ Name, Address string }

type apiSummary struct {
	ID string
	To []apiAddress
}

// Messages returns every stored message, oldest first.
func (s *Server) Messages(t testing.TB) []Message {
	t.Helper()
	sums := s.list(t)
	out := make([]Message, 0, len(sums))
	for i := len(sums) - 1; i >= 0; i-- { // the API lists newest first
		out = append(out, s.message(t, sums[i].ID))
	}
	return out
}

func (s *Server) list(t testing.TB) []apiSummary {
	t.Helper()
	var list struct{ Messages []apiSummary }
	s.api(t, http.MethodGet, "/api/v1/messages?limit=1000", nil, &list)
	return list.Messages
}

// WaitForMessage waits until a message to the address arrives and returns
// the first one, failing the test after timeout. The timeout only bounds the
// wait; nothing asserts how fast the message came.
func (s *Server) WaitForMessage(t testing.TB, to string, timeout time.Duration) Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		sums := s.list(t)
		for i := len(sums) - 1; i >= 0; i-- {
			for _, a := range sums[i].To {
				if strings.EqualFold(a.Address, to) {
					return s.message(t, sums[i].ID)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailtest: no message to %s arrived within %s (%d messages stored)", to, timeout, len(sums))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (s *Server) message(t testing.TB, id string) Message {
	t.Helper()
	var m struct {
		ID, MessageID, Subject, Text, HTML, Username string
		From                                         *apiAddress
		To                                           []apiAddress
	}
	s.api(t, http.MethodGet, "/api/v1/message/"+url.PathEscape(id), nil, &m)
	out := Message{ID: m.ID, MessageID: m.MessageID, Subject: m.Subject, Text: m.Text, HTML: m.HTML, Username: m.Username}
	if m.From != nil {
		out.From = m.From.Address
	}
	for _, a := range m.To {
		out.To = append(out.To, a.Address)
	}
	s.api(t, http.MethodGet, "/api/v1/message/"+url.PathEscape(id)+"/headers", nil, &out.Headers)
	out.Raw = s.api(t, http.MethodGet, "/api/v1/message/"+url.PathEscape(id)+"/raw", nil, nil)
	return out
}

// api calls the REST API, decoding a JSON answer into into when it is not nil,
// and returns the body.
func (s *Server) api(t testing.TB, method, path string, body []byte, into any) []byte {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.APIURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("mailtest: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("mailtest: %s %s: %v", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("mailtest: %s %s: %s: %s", method, path, resp.Status, data)
	}
	if into != nil {
		if err := json.Unmarshal(data, into); err != nil {
			t.Fatalf("mailtest: %s %s: %v in %s", method, path, err, data)
		}
	}
	return data
}

// binary returns the path of the mailpit executable, building it on first use
// in this test process. "go tool -n mailpit" builds the version go.mod pins
// into the Go build cache (reused across processes and runs, and offline once
// the module is downloaded) and prints where it is. The memo is package state,
// but immutable once set: it only saves a few hundred milliseconds per server.
var binary = sync.OnceValues(func() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goBin = filepath.Join(root, "bin", "go")
		} else {
			return "", fmt.Errorf("the go command is needed to build mailpit: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, goBin, "tool", "-n", "mailpit")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n mailpit: %w: %s", err, stderr.String())
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("go tool -n mailpit printed %q: %w", path, err)
	}
	return path, nil
})

// freePorts finds two free TCP ports on 127.0.0.1.
func freePorts() (int, int, error) {
	var ports [2]int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}

// lockedBuffer collects a process's output, written from os/exec's copying
// goroutine and read from the test's.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
