package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"upanel/internal/jobs"
	"upanel/internal/panel"
	"upanel/internal/store"
)

// TestMain doubles as a "serve" process for crash tests: re-executed with
// UPANEL_TEST_CHILD=serve, the test binary runs the real serve command with the
// test job handlers below, so a test can kill -9 a real panel process.
func TestMain(m *testing.M) {
	if os.Getenv("UPANEL_TEST_CHILD") == "serve" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		e := newEnv(os.Getenv, os.Stdin, os.Stdout, os.Stderr)
		e.panel = panel.Options{Handlers: testHandlers, JobPoll: 100 * time.Millisecond}
		err := e.run(ctx, []string{"serve"})
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "child serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testJobRuns is where test handlers record what they did; tests create it.
const createTestJobRuns = `CREATE TABLE test_job_runs (job_id CHAR(26) NOT NULL, owner VARCHAR(64) NOT NULL, attempt INT NOT NULL, event VARCHAR(10) NOT NULL)`

// testHandlers: "test.block" blocks forever on its first attempt (the test
// kills the process then) and finishes on later ones; "test.record" just runs
// once. Each records its start, and its finish in the finishing transaction.
func testHandlers(db *store.DB) map[string]jobs.Handler {
	owner := fmt.Sprintf("pid-%d", os.Getpid())
	record := func(ctx context.Context, j *jobs.Job) error {
		return db.ExecRaw(ctx, "INSERT INTO test_job_runs (job_id, owner, attempt, event) VALUES (?, ?, ?, 'start')", j.ID, owner, j.Attempts)
	}
	finish := func(j *jobs.Job) {
		j.Finally(func(ctx context.Context, tx *store.Tx) error {
			return tx.ExecRaw(ctx, "INSERT INTO test_job_runs (job_id, owner, attempt, event) VALUES (?, ?, ?, 'finish')", j.ID, owner, j.Attempts)
		})
	}
	return map[string]jobs.Handler{
		"test.block": func(ctx context.Context, j *jobs.Job) error {
			if err := record(ctx, j); err != nil {
				return err
			}
			if j.Attempts == 1 {
				<-ctx.Done()
				return ctx.Err()
			}
			finish(j)
			return nil
		},
		"test.record": func(ctx context.Context, j *jobs.Job) error {
			if err := record(ctx, j); err != nil {
				return err
			}
			time.Sleep(time.Duration(j.ID[25]%4) * time.Millisecond)
			finish(j)
			return nil
		},
	}
}

// syncBuffer collects log output written from several goroutines.
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

func envFunc(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// runCmd runs the upanel command line in-process.
func runCmd(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb syncBuffer
	err = run(context.Background(), args, envFunc(vars), strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

// inProcess is a serve command running in the test process.
type inProcess struct {
	base    string
	logs    *syncBuffer
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
}

func startServe(t *testing.T, vars map[string]string, args ...string) *inProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	e := newEnv(envFunc(vars), strings.NewReader(""), io.Discard, p.logs)
	addr := make(chan net.Addr, 1)
	e.panel.Listening = func(a net.Addr) { addr <- a }
	go func() { p.done <- e.run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)) }()
	select {
	case a := <-addr:
		p.base = "http://" + a.String()
	case err := <-p.done:
		cancel()
		t.Fatalf("serve exited: %v\n%s", err, p.logs)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("serve did not start\n%s", p.logs)
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop cancels serve's context, as SIGTERM does, and waits for it to return.
func (p *inProcess) stop(t *testing.T) {
	t.Helper()
	p.stopped.Do(func() {
		p.cancel()
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("serve returned %v\n%s", err, p.logs)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("serve did not stop\n%s", p.logs)
		}
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// child is a serve process: the test binary re-executed (see TestMain).
type child struct {
	cmd  *exec.Cmd
	base string
	logs *syncBuffer
	exit chan error
}

func startChild(t *testing.T, vars map[string]string) *child {
	t.Helper()
	c := &child{logs: &syncBuffer{}, exit: make(chan error, 1)}
	c.cmd = exec.Command(os.Args[0])
	c.cmd.Env = append(os.Environ(), "UPANEL_TEST_CHILD=serve", "UPANEL_ADDR=127.0.0.1:0", "UPANEL_LOG_FORMAT=json")
	for k, v := range vars {
		c.cmd.Env = append(c.cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	c.cmd.Stderr = pw
	c.cmd.Stdout = c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			c.logs.Write([]byte(line + "\n"))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "panel listening" {
				addr <- rec.Addr
			}
		}
	}()
	go func() { c.exit <- c.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { c.cmd.Process.Kill() })
	select {
	case a := <-addr:
		c.base = "http://" + a
	case err := <-c.exit:
		t.Fatalf("child exited: %v\n%s", err, c.logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("child did not start\n%s", c.logs)
	}
	waitFor(t, 30*time.Second, "child ready", func() bool {
		resp, err := http.Get(c.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return c
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
