package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"upanel/internal/config"
	"upanel/internal/logging"
	"upanel/internal/mail/mailtest"
	"upanel/internal/store"
	"upanel/internal/testhost"
)

// The deployment tests run the panel as its own process, `upanel serve`, so
// that it can be killed (SIGKILL) in the middle of a deployment and started
// again on the same data directory and database, as a crashed panel would
// be restarted by systemd.

// buildPanel builds the panel's binary once per test binary.
var buildPanel = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "upanel-e2e-panel-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "upanel")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "upanel/cmd/upanel")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the panel: %v\n%s", err, b)
	}
	return out, nil
})

// panelProcess is a panel running as `upanel serve`: its API as a
// panelUnderTest (p.log is the process's standard output and error, across
// restarts), and the means to kill and restart it.
type panelProcess struct {
	*panelUnderTest
	bin string
	env []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan error
}

// startPanelProcess runs `upanel serve` on the network's gateway with a fresh
// SQLite database, an admin and an operator, logging at debug level.
func startPanelProcess(t testing.TB, network *testhost.Network) *panelProcess {
	t.Helper()
	agents, err := buildAgent()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := buildPanel()
	if err != nil {
		t.Fatal(err)
	}
	// A port of the gateway that stays the panel's across restarts: agents
	// report to UPANEL_URL.
	ln, err := net.Listen("tcp", net.JoinHostPort(network.Gateway, "0"))
	if err != nil {
		t.Fatalf("listen on the gateway: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr
	dataDir := t.TempDir()
	smtp := mailtest.Start(t, mailtest.Options{})
	vars := map[string]string{
		"UPANEL_DATA_DIR": dataDir, "UPANEL_URL": base, "UPANEL_AGENT_DIR": agents,
		"UPANEL_AGENT_INTERVAL": agentInterval.String(), "UPANEL_ADDR": addr,
		"UPANEL_SMTP_URL": smtp.URL(), "UPANEL_MAIL_FROM": "UPanel <upanel@example.com>",
		"UPANEL_NOTIFY_SETTLE": "2s", "UPANEL_LOG_LEVEL": "debug", "UPANEL_LOG_FORMAT": "text",
		"UPANEL_SHUTDOWN_TIMEOUT": "10s",
	}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	p := &panelUnderTest{t: t, url: base, dataDir: dataDir, log: &syncBuffer{}, smtp: smtp}

	red := logging.NewRedactor()
	p.createAccounts(cfg, logging.New(p.log, "text", slog.LevelInfo, red), red)

	pp := &panelProcess{panelUnderTest: p, bin: bin}
	pp.env = os.Environ()
	for k, v := range vars {
		pp.env = append(pp.env, k+"="+v)
	}
	pp.start(t)
	t.Cleanup(func() {
		pp.stop(t)
		if t.Failed() {
			t.Logf("panel log:\n%s", tailLines(p.log.String(), 200))
		}
	})

	db, err := store.Open(context.Background(), cfg.DatabaseURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p.db = db
	return pp
}

// start runs the panel and waits until it is ready.
func (pp *panelProcess) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(pp.bin, "serve")
	cmd.Env = pp.env
	cmd.Stdout, cmd.Stderr = pp.log, pp.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exit := make(chan error, 1)
	go func() { exit <- cmd.Wait() }()
	pp.mu.Lock()
	pp.cmd, pp.exit = cmd, exit
	pp.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exit:
			exit <- err
			t.Fatalf("the panel exited at start: %v\n%s", err, tailLines(pp.log.String(), 50))
		default:
		}
		resp, err := http.Get(pp.url + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the panel did not become ready:\n%s", tailLines(pp.log.String(), 50))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill ends the panel with SIGKILL, as a crash would, and waits for it.
func (pp *panelProcess) kill(t testing.TB) {
	t.Helper()
	pp.mu.Lock()
	cmd, exit := pp.cmd, pp.exit
	pp.cmd = nil
	pp.mu.Unlock()
	if cmd == nil {
		t.Fatal("the panel is not running")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exit
	fmt.Fprintf(pp.log, "=== e2e: the panel was killed with SIGKILL ===\n")
}

// stop ends the panel with SIGTERM, as systemd would; after its shutdown
// grace it is killed.
func (pp *panelProcess) stop(t testing.TB) {
	pp.mu.Lock()
	cmd, exit := pp.cmd, pp.exit
	pp.cmd = nil
	pp.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exit:
		if err != nil {
			t.Errorf("the panel exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exit
		t.Errorf("the panel did not stop within 30 s of SIGTERM")
	}
}

// recordingTransport keeps every response body that passes through it,
// as it is read (streamed ones too), so that a test can look for what
// must never be in one.
type recordingTransport struct {
	mu   sync.Mutex
	seen bytes.Buffer
	n    int // responses
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	rt.n++
	fmt.Fprintf(&rt.seen, "\n--- %s %s: %d\n", req.Method, req.URL.Path, resp.StatusCode)
	for k, vs := range resp.Header {
		for _, v := range vs {
			fmt.Fprintf(&rt.seen, "%s: %s\n", k, v)
		}
	}
	rt.mu.Unlock()
	resp.Body = &recordingBody{ReadCloser: resp.Body, rt: rt}
	return resp, nil
}

type recordingBody struct {
	io.ReadCloser
	rt *recordingTransport
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.rt.mu.Lock()
		b.rt.seen.Write(p[:n])
		b.rt.mu.Unlock()
	}
	return n, err
}

// all returns everything received so far, and how many responses.
func (rt *recordingTransport) all() (string, int) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.seen.String(), rt.n
}
