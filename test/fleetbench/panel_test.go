package fleetbench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"upanel/internal/store/storetest"
)

// binDir holds the upanel binary, built once per test binary and removed by
// TestMain.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildPanel builds cmd/upanel as a release would, once: the benchmark runs
// the panel as its own process so that its memory and CPU can be read apart
// from the simulated agents'.
var buildPanel = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "upanel-fleetbench-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "upanel")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "upanel/cmd/upanel")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build upanel: %v\n%s", err, out)
	}
	return bin, nil
})

// panelProc is a running "upanel serve".
type panelProc struct {
	url string
	pid int
	log string // its log file
}

// startPanel runs "upanel serve" on a free loopback port against the test
// database, with the database's key, and waits until /readyz answers. It is
// stopped with SIGTERM when the benchmark ends.
func startPanel(b *testing.B, env storetest.Env) *panelProc {
	b.Helper()
	bin, err := buildPanel()
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := b.TempDir()
	p := &panelProc{url: "http://" + addr, log: filepath.Join(data, "panel.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + data,
		"UPANEL_ADDR=" + addr,
		"UPANEL_URL=" + p.url,
		"UPANEL_DATA_DIR=" + data,
		"UPANEL_DATABASE_URL=" + env.URL,
		"UPANEL_APP_KEY=" + env.Key.Encode(),
		"UPANEL_AGENT_INTERVAL=" + interval.String(),
		"UPANEL_LOG_FORMAT=json", // as under systemd; the level stays the default (info)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		b.Fatal(err)
	}
	p.pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			b.Errorf("upanel serve did not stop within 60 s of SIGTERM; killed")
			cmd.Process.Kill()
			<-exited
		}
	})

	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-exited:
			exited <- err
			b.Fatalf("upanel serve exited before it was ready: %v\n%s", err, tail(p.log))
		default:
		}
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("upanel serve not ready after 2 minutes (last: %v)\n%s", err, tail(p.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail returns the end of a log file, for failure messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// firstErrors returns the first n error lines of a panel log.
func firstErrors(path string, n int) string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"level":"ERROR"`) {
			if out = append(out, l); len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// postgresServer returns the pid of the PostgreSQL server (the postmaster)
// behind the database, or 0 if it is not a local process this one can see.
func postgresServer(env storetest.Env) int {
	var backend int
	if err := env.DB.QueryRowRaw(context.Background(), "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0
	}
	ppid, _, _, err := procStat(backend)
	if err != nil {
		return 0
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/comm"); err != nil || !bytes.HasPrefix(b, []byte("postgres")) {
		return 0
	}
	return ppid
}
