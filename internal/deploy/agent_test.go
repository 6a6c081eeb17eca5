package deploy

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"upanel/internal/pin"
	"upanel/internal/wire"
)

// scriptAgent is the far end of the agent link for these tests: an HTTPS
// server on 127.0.0.1 that speaks wire protocol 2 over mutual TLS with pinned
// certificates, exactly as upanel-agent does, and plays deployments the test
// scripts (lines, an end, a restart that loses them). It stands in for a
// remote peer at the protocol boundary; the panel code under test is real.
type scriptAgent struct {
	t        *testing.T
	srv      *httptest.Server
	pin      string // its certificate's fingerprint
	port     int
	serverID string

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	protocol int
	down     bool // answer 503 to everything, as an unreachable agent would
	deps     map[string]*scriptDeployment
	posts    []wire.DeployRequest
	cancels  []string
	polls    int
}

type scriptDeployment struct {
	req   wire.DeployRequest
	state wire.DeployState
	lines []wire.LogLine
}

// startScriptAgent serves the protocol for the panel whose client
// certificate has the fingerprint panelPin.
func startScriptAgent(t *testing.T, panelPin string) *scriptAgent {
	t.Helper()
	certPEM, keyPEM, err := pin.SelfSigned("upanel-agent", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	a := &scriptAgent{t: t, pin: pin.Fingerprint(cert.Certificate[0]), changed: make(chan struct{}), protocol: wire.ProtocolVersion,
		deps: map[string]*scriptDeployment{}}
	a.srv = httptest.NewUnstartedServer(a.routes())
	a.srv.Listener.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.srv.Listener = ln
	a.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert,
		VerifyPeerCertificate: pin.Peer(panelPin), MinVersion: tls.VersionTLS13}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	a.port = ln.Addr().(*net.TCPAddr).Port
	return a
}

func (a *scriptAgent) routes() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			a.mu.Lock()
			down := a.down
			a.mu.Unlock()
			if down {
				reply(w, http.StatusServiceUnavailable, wire.Error{Error: "agent is restarting"})
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET "+wire.AgentPathStatus, guard(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		reply(w, http.StatusOK, wire.Status{Protocol: a.protocol, ServerID: a.serverID, Host: wire.Host{AgentVersion: "script"}})
	}))
	mux.HandleFunc("POST "+wire.AgentPathDeploy, guard(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.protocol < 2 {
			reply(w, http.StatusNotFound, wire.Error{Error: "404 page not found"})
			return
		}
		var req wire.DeployRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, wire.Error{Error: "bad request"})
			return
		}
		a.posts = append(a.posts, req)
		d, ok := a.deps[req.ID]
		if !ok {
			d = &scriptDeployment{req: req, state: wire.DeployState{ID: req.ID, Status: wire.DeployRunning, Branch: req.Branch, StartedAt: time.Now().UTC()}}
			a.deps[req.ID] = d
			a.changedLocked()
		}
		reply(w, http.StatusAccepted, d.state)
	}))
	mux.HandleFunc("GET "+wire.AgentPathDeployState+"{id}", guard(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		wait, _ := strconv.Atoi(r.URL.Query().Get("wait"))
		deadline := time.After(time.Duration(min(wait, 10000)) * time.Millisecond)
		for {
			a.mu.Lock()
			a.polls++
			d, ok := a.deps[id]
			if !ok {
				a.mu.Unlock()
				reply(w, http.StatusNotFound, wire.Error{Error: "no such deployment"})
				return
			}
			var out wire.DeployLog
			out.State = d.state
			for _, l := range d.lines {
				if l.Seq > after && len(out.Lines) < wire.MaxLogLines {
					out.Lines = append(out.Lines, l)
				}
			}
			changed := a.changed
			a.mu.Unlock()
			if len(out.Lines) > 0 || out.State.Status != wire.DeployRunning {
				reply(w, http.StatusOK, out)
				return
			}
			select {
			case <-changed:
			case <-deadline:
				reply(w, http.StatusOK, out)
				return
			case <-r.Context().Done():
				return
			}
		}
	}))
	mux.HandleFunc("POST "+wire.AgentPathDeployState+"{id}"+wire.AgentPathDeployCancelSuffix, guard(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		id := r.PathValue("id")
		a.cancels = append(a.cancels, id)
		d, ok := a.deps[id]
		if !ok {
			reply(w, http.StatusNotFound, wire.Error{Error: "no such deployment"})
			return
		}
		if d.state.Status == wire.DeployRunning {
			a.addLocked(d, "step stopped: cancelled")
			now := time.Now().UTC()
			d.state.Status, d.state.FinishedAt = wire.DeployCancelled, &now
			a.changedLocked()
		}
		reply(w, http.StatusOK, d.state)
	}))
	return mux
}

func (a *scriptAgent) changedLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *scriptAgent) addLocked(d *scriptDeployment, text string) {
	d.state.LastSeq++
	d.lines = append(d.lines, wire.LogLine{Seq: d.state.LastSeq, At: time.Now().UTC(), Text: text})
}

// posted waits until the panel has started deployment id on the agent.
func (a *scriptAgent) posted(id string) wire.DeployRequest {
	a.t.Helper()
	var req wire.DeployRequest
	a.waitFor("the panel to start "+id, func() bool {
		d, ok := a.deps[id]
		if ok {
			req = d.req
		}
		return ok
	})
	return req
}

// say adds lines to a running deployment.
func (a *scriptAgent) say(id string, lines ...string) {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.deps[id]
	if d == nil {
		a.t.Fatalf("the agent has no deployment %s", id)
	}
	for _, l := range lines {
		a.addLocked(d, l)
	}
	a.changedLocked()
}

// end finishes a deployment as the agent would.
func (a *scriptAgent) end(id, status, errText, commit, message string) {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.deps[id]
	if d == nil {
		a.t.Fatalf("the agent has no deployment %s", id)
	}
	now := time.Now().UTC()
	d.state.Status, d.state.Error, d.state.Commit, d.state.CommitMessage, d.state.FinishedAt = status, errText, commit, message, &now
	a.changedLocked()
}

// forget loses every deployment, as a reinstalled agent would.
func (a *scriptAgent) forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deps = map[string]*scriptDeployment{}
	a.changedLocked()
}

func (a *scriptAgent) setDown(down bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.down = down
	a.changedLocked()
}

func (a *scriptAgent) setProtocol(p int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.protocol = p
}

// counts returns how many deploy requests and cancels the agent got.
func (a *scriptAgent) counts() (posts, cancels int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.posts), len(a.cancels)
}

func (a *scriptAgent) postedIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for _, p := range a.posts {
		ids = append(ids, p.ID)
	}
	return ids
}

// waitFor polls cond, under the agent's lock, until it holds.
func (a *scriptAgent) waitFor(what string, cond func() bool) {
	a.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.mu.Lock()
		ok := cond()
		a.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hasCancel reports whether the agent was asked to cancel id.
func (a *scriptAgent) hasCancel(id string) bool {
	for _, c := range a.cancels {
		if c == id {
			return true
		}
	}
	return false
}
