package fleet

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/agent"
	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/pin"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// The panel's client of its agents, against real agents listening with mutual
// TLS on loopback: it talks only to the agent whose certificate it pinned at
// install, and only after a pin is recorded.

// listenLog is an agent's log; it hands over the address the agent bound.
type listenLog struct {
	addr  chan string
	mu    sync.Mutex
	lines []string
}

func (l *listenLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *listenLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *listenLog) WithGroup(string) slog.Handler            { return l }
func (l *listenLog) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.Key + "=" + a.Value.String()
		if r.Message == "agent listening" && a.Key == "addr" {
			l.addr <- a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	return nil
}

// has reports whether a line containing sub is logged within a few seconds:
// the agent logs a failed handshake after the panel has given up on it.
func (l *listenLog) has(sub string) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		for _, x := range l.lines {
			if strings.Contains(x, sub) {
				l.mu.Unlock()
				return true
			}
		}
		l.mu.Unlock()
	}
	return false
}

// testAgent is a real upanel-agent, started with Run.
type testAgent struct {
	port int
	pin  string // its certificate's fingerprint
	log  *listenLog
}

// startAgent runs an agent for serverID that pins panelPin. certDir holds its
// certificate: two agents given the same dir present the same certificate.
func startAgent(t *testing.T, serverID, panelPin, certDir string) *testAgent {
	t.Helper()
	cfg := &agent.Config{ServerID: serverID, PanelURL: "http://127.0.0.1:1", Token: "uat_" + strings.Repeat("t", 43),
		PanelCertSHA256: panelPin, Listen: "127.0.0.1:0", CertFile: filepath.Join(certDir, "agent.crt"),
		KeyFile: filepath.Join(certDir, "agent.key"), StateDir: t.TempDir(), IntervalSeconds: 3600}
	cert, err := agent.EnsureCertificate(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	log := &listenLog{addr: make(chan string, 1)}
	a, err := agent.New(cfg, slog.New(log), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	ta := &testAgent{pin: pin.Fingerprint(cert.Certificate[0]), log: log}
	select {
	case addr := <-log.addr:
		_, port, _ := net.SplitHostPort(addr)
		ta.port, _ = strconv.Atoi(port)
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not start listening")
	}
	return ta
}

func TestAgentClientTrustsOnlyThePinnedAgent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		base, _ := url.Parse("https://panel.example.test")
		svc := New(Options{DB: db, Recorder: audit.New(db), BaseURL: base})
		_, panelPin, err := svc.Identity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		srv, _, err := svc.Create(ctx, nil, ServerInput{Name: "web-1", Host: "127.0.0.1", AgentPort: 8443}, auth.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		otherPanelPin := pin.Fingerprint([]byte("another panel"))
		realDir := t.TempDir()
		real := startAgent(t, srv.ID, panelPin, realDir)
		impostor := startAgent(t, srv.ID, panelPin, t.TempDir())     // right server, another certificate
		strict := startAgent(t, srv.ID, otherPanelPin, t.TempDir())  // pins another panel
		elsewhere := startAgent(t, store.NewID(), panelPin, realDir) // the real certificate, another server's agent
		if real.pin == impostor.pin || elsewhere.pin != real.pin {
			t.Fatal("test agents' certificates are not as intended")
		}
		_, tokenHash := auth.NewAgentToken()

		// point records the agent port and the pin, as an install does, and
		// reads the server back from the database.
		point := func(port int, certPin string) *store.Server {
			t.Helper()
			if _, err := svc.Update(ctx, nil, srv.ID, ServerInput{Name: "web-1", Host: "127.0.0.1", AgentPort: port}, auth.Meta{}); err != nil {
				t.Fatal(err)
			}
			err := db.InTx(ctx, func(tx *store.Tx) error { return tx.SetAgentCredentials(ctx, srv.ID, certPin, tokenHash) })
			if err != nil {
				t.Fatal(err)
			}
			s, err := db.GetServer(ctx, srv.ID)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}

		// The pinned agent answers.
		st, err := svc.AgentStatus(ctx, point(real.port, real.pin))
		if err != nil {
			t.Fatalf("the pinned agent: %v", err)
		}
		if st.ServerID != srv.ID || st.Host.AgentVersion != "test" {
			t.Fatalf("status: %+v", st)
		}

		cases := []struct {
			name  string
			port  int
			pin   string
			check func(error) bool
			want  string
		}{
			{"an agent with another certificate", impostor.port, real.pin,
				func(err error) bool { return strings.Contains(err.Error(), "is not the pinned one") }, "certificate ... is not the pinned one"},
			{"no pin recorded", real.port, "",
				func(err error) bool {
					return strings.Contains(err.Error(), "is not installed yet")
				}, "conflict: not installed yet"},
			{"an agent that does not pin this panel", strict.port, strict.pin,
				func(err error) bool {
					var op *net.OpError
					return errors.As(err, &op) && op.Op == "remote error" && op.Err.Error() == "tls: bad certificate"
				}, "the agent's alert: tls: bad certificate"},
			{"the pinned certificate at another server's agent", elsewhere.port, elsewhere.pin,
				func(err error) bool { return strings.Contains(err.Error(), "belongs to server") }, "belongs to another server"},
		}
		for _, tc := range cases {
			s := point(tc.port, tc.pin)
			if s.AgentCertSHA256 != tc.pin {
				t.Fatalf("%s: the pin read back is %q", tc.name, s.AgentCertSHA256)
			}
			_, err := svc.AgentStatus(ctx, s)
			if err == nil || !tc.check(err) {
				t.Errorf("%s: AgentStatus = %v, want %s", tc.name, err, tc.want)
			}
			if tc.pin == "" && apperr.CodeOf(err) != apperr.Conflict {
				t.Errorf("%s: AgentStatus = %v, want a conflict", tc.name, err)
			}
			// The audit call goes through the same client. (Not to the
			// agent that shares the real certificate: the pin holds there,
			// and it would audit this machine.)
			if tc.port != elsewhere.port {
				if err := svc.RequestAudit(ctx, srv.ID); apperr.CodeOf(err) != apperr.Unavailable || !tc.check(err) {
					t.Errorf("%s: RequestAudit = %v, want unavailable: %s", tc.name, err, tc.want)
				}
			}
		}
		// The impostor saw the panel walk away in the handshake; the agent
		// pinning another panel refused it there.
		if !impostor.log.has("remote error: tls: bad certificate") {
			t.Error("the impostor agent did not log the panel's refusal")
		}
		if !strict.log.has("is not the pinned one") {
			t.Error("the strict agent did not log its refusal of the panel")
		}
		// Nothing was pinned on the way: the real agent still answers, and
		// only it.
		if _, err := svc.AgentStatus(ctx, point(real.port, real.pin)); err != nil {
			t.Fatalf("the pinned agent again: %v", err)
		}
	})
}

// The one InsecureSkipVerify in the code is where pin.Peer replaces chain
// verification: every tls.Config literal that sets it also sets
// VerifyPeerCertificate to pin.Peer(...).
func TestInsecureSkipVerifyOnlyWithAPin(t *testing.T) {
	root := filepath.Join("..", "..")
	uses := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				var skip, pinned bool
				for _, e := range n.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					switch key, _ := kv.Key.(*ast.Ident); {
					case key == nil:
					case key.Name == "InsecureSkipVerify":
						skip = true
					case key.Name == "VerifyPeerCertificate":
						pinned = isPinPeer(kv.Value)
					}
				}
				if skip {
					uses++
					if !pinned {
						t.Errorf("%s: InsecureSkipVerify without VerifyPeerCertificate: pin.Peer(...)", path)
					}
				}
			case *ast.SelectorExpr:
				// cfg.InsecureSkipVerify = ... outside a literal escapes the check.
				if n.Sel.Name == "InsecureSkipVerify" {
					t.Errorf("%s: InsecureSkipVerify set outside a tls.Config literal", path)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if uses == 0 {
		t.Fatal("found no InsecureSkipVerify at all: is the walk looking at the code?")
	}
}

func isPinPeer(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "pin" && sel.Sel.Name == "Peer"
}
