package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/fleet"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
	"upanel/internal/wire"
)

// The panel's side of the agent link, through the real handler over a real
// database: the agent token is the only key to the agent routes, every
// message carries a sequence number that is used once, and bodies are bounded.

// agentEnv is a panel with the fleet service wired in, a settable clock, and
// one server whose agent holds token.
type agentEnv struct {
	*env
	clock *storetest.Clock
	srvID string
	token string
}

// eachAgentEnv runs fn on SQLite and PostgreSQL.
func eachAgentEnv(t *testing.T, fn func(t *testing.T, a *agentEnv)) {
	t.Helper()
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			clock := storetest.NewClock(time.Now().UTC().Truncate(time.Second))
			db := storetest.NewWithClock(t, d, clock).DB
			e := newEnv(t, db)
			e.srv.Fleet = fleet.New(fleet.Options{DB: db, Recorder: audit.New(db), AgentInterval: 10 * time.Second})
			e.h = e.srv.handler()
			a := &agentEnv{env: e, clock: clock}
			a.srvID, a.token = a.addServer("web-1")
			fn(t, a)
		})
	}
}

// addServer creates a server whose agent is installed: its certificate pinned
// and its token's hash stored. It returns the id and the raw token.
func (a *agentEnv) addServer(name string) (id, token string) {
	a.t.Helper()
	ctx := context.Background()
	token, hash := auth.NewAgentToken()
	err := a.db.InTx(ctx, func(tx *store.Tx) error {
		srv, err := tx.CreateServer(ctx, store.NewServer{Name: name, Host: "192.0.2.1", Port: 22, Username: "upanel", AgentPort: 8443,
			SSHPrivateKey: []byte("not a real key"), SSHPublicKey: "ssh-ed25519 AAAA"})
		if err != nil {
			return err
		}
		id = srv.ID
		return tx.SetAgentCredentials(ctx, id, strings.Repeat("ab", 32), hash)
	})
	if err != nil {
		a.t.Fatal(err)
	}
	return id, token
}

// agent is a client that holds the server's agent token.
func (a *agentEnv) agent() *client {
	c := a.client()
	c.bearer = a.token
	return c
}

func (a *agentEnv) msg(seq uint64) wire.Message {
	return wire.Message{Protocol: wire.ProtocolVersion, Seq: seq, SentAt: a.clock.Now()}
}

func (a *agentEnv) heartbeat(seq uint64) []byte {
	return mustJSON(a.t, wire.Heartbeat{Message: a.msg(seq), Host: wire.Host{Hostname: "web-1", OS: "Debian GNU/Linux 12 (bookworm)",
		Kernel: "6.1.0", Arch: "amd64", CPUCores: 2, RAMMB: 3900, DiskGB: 40, AgentVersion: "test"}})
}

func (a *agentEnv) sample(at time.Time) wire.Sample {
	in, out := int64(1000), int64(2000)
	return wire.Sample{At: at, CPUPercent: 12.5, RAMUsedMB: 1000, RAMTotalMB: 3900, DiskUsedGB: 10, DiskTotalGB: 40, NetInBytes: &in, NetOutBytes: &out}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body as it is: no CSRF header, no re-encoding.
func (c *client) post(path string, body io.Reader) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", path, body)
	req.Header.Set("Content-Type", "application/json")
	return c.do(req)
}

// agentServerRow is what an agent message may change on its server.
type agentServerRow struct {
	Status   string
	LastSeen string
	Seq      int64
	Score    string
	Metrics  int
}

func (a *agentEnv) row(id string) agentServerRow {
	a.t.Helper()
	ctx := context.Background()
	srv, err := a.db.GetServer(ctx, id)
	if err != nil {
		a.t.Fatal(err)
	}
	r := agentServerRow{Status: srv.Status, LastSeen: "<nil>", Score: "<nil>"}
	if srv.LastSeenAt != nil {
		r.LastSeen = srv.LastSeenAt.UTC().Format(time.RFC3339Nano)
	}
	if srv.SecurityScore != nil {
		r.Score = fmt.Sprint(*srv.SecurityScore)
	}
	if err := a.db.QueryRowRaw(ctx, "SELECT agent_seq FROM servers WHERE id = ?", id).Scan(&r.Seq); err != nil {
		a.t.Fatal(err)
	}
	if err := a.db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM server_metrics WHERE server_id = ?", id).Scan(&r.Metrics); err != nil {
		a.t.Fatal(err)
	}
	return r
}

func (a *agentEnv) refusals() []store.SecurityEvent {
	a.t.Helper()
	evs, err := a.db.ListSecurityEvents(context.Background(), store.SecurityEventFilter{EventType: audit.AgentRefused, Limit: 500})
	if err != nil {
		a.t.Fatal(err)
	}
	return evs
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", rec.Body, err)
	}
	return body.Error.Code
}

func TestAgentLinkAcceptsItsAgent(t *testing.T) {
	eachAgentEnv(t, func(t *testing.T, a *agentEnv) {
		ag := a.agent()
		if got := a.row(a.srvID); got.Status != store.ServerPending || got.Seq != 0 {
			t.Fatalf("before any message: %+v", got)
		}
		res := ag.post(wire.PathHeartbeat, bytes.NewReader(a.heartbeat(1)))
		if res.Code != http.StatusOK {
			t.Fatalf("heartbeat: %d %s", res.Code, res.Body)
		}
		if reply := decode[wire.HeartbeatReply](t, res); reply.IntervalSeconds != 10 {
			t.Errorf("reply: %+v", reply)
		}
		srv, err := a.db.GetServer(context.Background(), a.srvID)
		if err != nil {
			t.Fatal(err)
		}
		if srv.Status != store.ServerOnline || srv.LastSeenAt == nil || srv.OSVersion != "Debian GNU/Linux 12 (bookworm)" ||
			srv.CPUCores == nil || *srv.CPUCores != 2 || srv.AgentVersion != "test" {
			t.Fatalf("after a heartbeat: %+v", srv)
		}

		now := a.clock.Now()
		m := wire.Metrics{Message: a.msg(2), Samples: []wire.Sample{a.sample(now.Add(-20 * time.Second)), a.sample(now.Add(-10 * time.Second))}}
		if res := ag.post(wire.PathMetrics, bytes.NewReader(mustJSON(t, m))); res.Code != http.StatusNoContent {
			t.Fatalf("metrics: %d %s", res.Code, res.Body)
		}
		au := wire.Audit{Message: a.msg(3), Checks: []wire.Check{{ID: "a", Weight: 60, Passed: true}, {ID: "b", Weight: 40}}}
		if res := ag.post(wire.PathAudit, bytes.NewReader(mustJSON(t, au))); res.Code != http.StatusNoContent {
			t.Fatalf("audit: %d %s", res.Code, res.Body)
		}
		if got := a.row(a.srvID); got.Seq != 3 || got.Metrics != 2 || got.Score != "60" {
			t.Fatalf("after heartbeat, metrics and audit: %+v", got)
		}
		if n := len(a.refusals()); n != 0 {
			t.Fatalf("%d agent_refused events for good messages", n)
		}
	})
}

// Only the agent token of a server that exists opens the agent routes: every
// other credential is refused before the message is read, and nothing is
// recorded, not even the sequence number.
func TestAgentLinkRefusesWrongCredentials(t *testing.T) {
	eachAgentEnv(t, func(t *testing.T, a *agentEnv) {
		ctx := context.Background()
		a.user("admin@example.test", auth.Admin)

		goneID, goneToken := a.addServer("gone")
		if err := a.db.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteServer(ctx, goneID) }); err != nil {
			t.Fatal(err)
		}
		// A server whose token was replaced: the old one no longer works.
		rotatedID, oldToken := a.addServer("rotated")
		_, newHash := auth.NewAgentToken()
		if err := a.db.InTx(ctx, func(tx *store.Tx) error { return tx.SetAgentToken(ctx, rotatedID, newHash) }); err != nil {
			t.Fatal(err)
		}
		wrong, _ := auth.NewAgentToken()

		withBearer := func(b string) *client { c := a.client(); c.bearer = b; return c }
		withHeader := func(h string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("Authorization", h) } }
		cases := []struct {
			name  string
			c     *client
			setup func(*http.Request)
			want  int
		}{
			{"no credentials", a.client(), nil, http.StatusUnauthorized},
			{"a wrong agent token", withBearer(wrong), nil, http.StatusUnauthorized},
			{"the token with one character changed", withBearer(a.token[:len(a.token)-1] + flip(a.token[len(a.token)-1])), nil, http.StatusUnauthorized},
			{"the token without its prefix", withBearer(strings.TrimPrefix(a.token, auth.AgentTokenPrefix)), nil, http.StatusUnauthorized},
			{"the token padded past the length limit", withBearer(a.token + strings.Repeat("A", 100)), nil, http.StatusUnauthorized},
			{"the token of a deleted server", withBearer(goneToken), nil, http.StatusUnauthorized},
			{"a replaced token", withBearer(oldToken), nil, http.StatusUnauthorized},
			{"the token as Basic credentials", a.client(), withHeader("Basic " + a.token), http.StatusUnauthorized},
			{"the token in lower-case scheme", a.client(), withHeader("bearer " + a.token), http.StatusUnauthorized},
			{"the token in a cookie", a.client(), func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "token", Value: a.token}) }, http.StatusUnauthorized},
			{"the token in the query", a.client(), func(r *http.Request) { r.URL.RawQuery = "token=" + a.token }, http.StatusUnauthorized},
			{"an admin's API token", a.withToken("admin@example.test", auth.Admin), nil, http.StatusUnauthorized},
			{"an admin's session", a.loggedIn("admin@example.test"), nil, http.StatusUnauthorized},
		}
		before := a.row(a.srvID)
		for _, path := range []string{wire.PathHeartbeat, wire.PathMetrics, wire.PathAudit} {
			body := a.heartbeat(1)
			switch path {
			case wire.PathMetrics:
				body = mustJSON(t, wire.Metrics{Message: a.msg(1), Samples: []wire.Sample{a.sample(a.clock.Now())}})
			case wire.PathAudit:
				body = mustJSON(t, wire.Audit{Message: a.msg(1), Checks: []wire.Check{{ID: "a", Weight: 1, Passed: true}}})
			}
			for _, tc := range cases {
				req := httptest.NewRequest("POST", path, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if tc.setup != nil {
					tc.setup(req)
				}
				// A session client would send its CSRF token; a script has none.
				if tc.c.session() != "" {
					req.Header.Set("X-CSRF-Token", tc.c.csrf())
				}
				res := tc.c.do(req)
				if res.Code != tc.want {
					t.Errorf("%s with %s: %d %s, want %d", path, tc.name, res.Code, res.Body, tc.want)
					continue
				}
				if code := errorCode(t, res); code != "unauthorized" {
					t.Errorf("%s with %s: error code %q", path, tc.name, code)
				}
			}
		}
		if after := a.row(a.srvID); after != before {
			t.Fatalf("refused requests changed the server: %+v, was %+v", after, before)
		}
		if r := a.row(rotatedID); r.Status != store.ServerPending || r.Seq != 0 {
			t.Fatalf("the server with the replaced token changed: %+v", r)
		}
		// Nothing was consumed: the agent's first message is still its first.
		if res := a.agent().post(wire.PathHeartbeat, bytes.NewReader(a.heartbeat(1))); res.Code != http.StatusOK {
			t.Fatalf("the agent after the refusals: %d %s", res.Code, res.Body)
		}
	})
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// An agent speaks only for its own server: the message names none, the token
// decides.
func TestAgentTokenSpeaksOnlyForItsServer(t *testing.T) {
	eachAgentEnv(t, func(t *testing.T, a *agentEnv) {
		otherID, otherToken := a.addServer("web-2")
		other := a.client()
		other.bearer = otherToken
		if res := other.post(wire.PathHeartbeat, bytes.NewReader(a.heartbeat(7))); res.Code != http.StatusOK {
			t.Fatalf("other agent: %d %s", res.Code, res.Body)
		}
		if r := a.row(otherID); r.Status != store.ServerOnline || r.Seq != 7 {
			t.Fatalf("the other server: %+v", r)
		}
		if r := a.row(a.srvID); r.Status != store.ServerPending || r.Seq != 0 {
			t.Fatalf("web-1 changed by another server's agent: %+v", r)
		}
	})
}

// A captured message cannot be replayed, and an old one cannot be sent late:
// each refusal is a security event naming the server and the sender.
func TestAgentLinkRefusesReplayedAndStaleMessages(t *testing.T) {
	eachAgentEnv(t, func(t *testing.T, a *agentEnv) {
		ag := a.agent()
		first := a.heartbeat(1)
		if res := ag.post(wire.PathHeartbeat, bytes.NewReader(first)); res.Code != http.StatusOK {
			t.Fatalf("first heartbeat: %d %s", res.Code, res.Body)
		}
		seen := a.row(a.srvID)
		a.clock.Add(time.Minute)

		metricsAt := func(seq uint64) []byte {
			return mustJSON(t, wire.Metrics{Message: a.msg(seq), Samples: []wire.Sample{a.sample(a.clock.Now())}})
		}
		refusals := 0
		expectRefused := func(name, path string, body []byte, status int, reason string) {
			t.Helper()
			before := a.row(a.srvID)
			known := map[string]bool{}
			for _, ev := range a.refusals() {
				known[ev.ID] = true
			}
			res := ag.post(path, bytes.NewReader(body))
			if res.Code != status {
				t.Errorf("%s: %d %s, want %d", name, res.Code, res.Body, status)
				return
			}
			if after := a.row(a.srvID); after != before {
				t.Errorf("%s changed the server: %+v, was %+v", name, after, before)
			}
			refusals++
			evs := a.refusals()
			if len(evs) != refusals {
				t.Errorf("%s: %d agent_refused events, want %d", name, len(evs), refusals)
				return
			}
			var ev store.SecurityEvent
			for _, x := range evs {
				if !known[x.ID] {
					ev = x
				}
			}
			if ev.ServerID != a.srvID || ev.IPAddress != "192.0.2.10" || ev.Details["reason"] != reason || ev.Severity != store.SeverityWarning {
				t.Errorf("%s: event %+v", name, ev)
			}
		}

		// The very same request, byte for byte.
		expectRefused("the first heartbeat sent again", wire.PathHeartbeat, first, http.StatusConflict, "replayed sequence number")
		if r := a.row(a.srvID); r.LastSeen != seen.LastSeen {
			t.Fatalf("a replayed heartbeat moved last_seen_at: %s, was %s", r.LastSeen, seen.LastSeen)
		}
		if res := ag.post(wire.PathHeartbeat, bytes.NewReader(a.heartbeat(5))); res.Code != http.StatusOK {
			t.Fatalf("seq 5: %d %s", res.Code, res.Body)
		}
		expectRefused("a lower seq", wire.PathHeartbeat, a.heartbeat(4), http.StatusConflict, "replayed sequence number")
		expectRefused("the same seq, fresh time", wire.PathHeartbeat, a.heartbeat(5), http.StatusConflict, "replayed sequence number")
		// One sequence covers every endpoint.
		expectRefused("seq 5 on metrics", wire.PathMetrics, metricsAt(5), http.StatusConflict, "replayed sequence number")
		expectRefused("seq 5 on audit", wire.PathAudit, mustJSON(t, wire.Audit{Message: a.msg(5)}), http.StatusConflict, "replayed sequence number")
		expectRefused("seq 0", wire.PathHeartbeat, a.heartbeat(0), http.StatusConflict, "replayed sequence number")
		expectRefused("a seq past the store's range", wire.PathHeartbeat, a.heartbeat(1<<63), http.StatusConflict, "replayed sequence number")

		stale := func(seq uint64, at time.Time) []byte {
			return mustJSON(t, wire.Heartbeat{Message: wire.Message{Protocol: wire.ProtocolVersion, Seq: seq, SentAt: at}})
		}
		now := a.clock.Now()
		expectRefused("sent a day and a minute ago", wire.PathHeartbeat, stale(6, now.Add(-24*time.Hour-time.Minute)), http.StatusBadRequest, "stale message")
		expectRefused("sent a year ago", wire.PathMetrics, mustJSON(t, wire.Metrics{Message: wire.Message{Protocol: 1, Seq: 6, SentAt: now.AddDate(-1, 0, 0)}}), http.StatusBadRequest, "stale message")
		expectRefused("sent an hour from now", wire.PathHeartbeat, stale(6, now.Add(time.Hour)), http.StatusBadRequest, "stale message")
		expectRefused("with no send time", wire.PathHeartbeat, stale(6, time.Time{}), http.StatusBadRequest, "stale message")
		// Refused stale messages did not use up their seq.
		if res := ag.post(wire.PathHeartbeat, bytes.NewReader(a.heartbeat(6))); res.Code != http.StatusOK {
			t.Fatalf("seq 6 after the stale ones: %d %s", res.Code, res.Body)
		}
		// Within the window is fine: a day-old message from a buffered agent.
		if res := ag.post(wire.PathMetrics, bytes.NewReader(mustJSON(t, wire.Metrics{Message: wire.Message{Protocol: 1, Seq: 7, SentAt: now.Add(-23 * time.Hour)}}))); res.Code != http.StatusNoContent {
			t.Fatalf("a message from 23 hours ago: %d %s", res.Code, res.Body)
		}
		for _, p := range []int{0, -1} {
			body := mustJSON(t, wire.Heartbeat{Message: wire.Message{Protocol: p, Seq: 8, SentAt: now}})
			if res := ag.post(wire.PathHeartbeat, bytes.NewReader(body)); res.Code != http.StatusBadRequest {
				t.Errorf("protocol %d: %d %s", p, res.Code, res.Body)
			}
		}
	})
}

// countingReader counts what the handler read of a body.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// repeat is an endless stream of one byte.
type repeat byte

func (b repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// Bodies over wire.MaxBody are refused, and the handler reads no further than
// the limit (plus the one byte that shows it was passed), whether the sender
// declares the length or streams without one.
func TestAgentLinkRefusesOversizedBodies(t *testing.T) {
	eachAgentEnv(t, func(t *testing.T, a *agentEnv) {
		ag := a.agent()
		valid := a.heartbeat(1)
		type body struct {
			name   string
			r      func() io.Reader
			length bool // declare Content-Length
		}
		oversized := []body{
			{"a host name of 8 MiB", func() io.Reader {
				return io.MultiReader(strings.NewReader(`{"protocol":1,"seq":1,"host":{"hostname":"`), io.LimitReader(repeat('a'), 8<<20), strings.NewReader(`"}}`))
			}, false},
			{"an endless host name", func() io.Reader {
				return io.MultiReader(strings.NewReader(`{"protocol":1,"seq":1,"host":{"hostname":"`), repeat('a'))
			}, false},
			{"a good message padded with spaces past the limit", func() io.Reader {
				return io.MultiReader(bytes.NewReader(valid), io.LimitReader(repeat(' '), wire.MaxBody))
			}, true},
			{"a good message followed by an endless stream", func() io.Reader {
				return io.MultiReader(bytes.NewReader(valid), repeat(' '))
			}, false},
			{"a good message followed by 2 MiB of junk", func() io.Reader {
				return io.MultiReader(bytes.NewReader(valid), io.LimitReader(repeat('x'), 2<<20))
			}, true},
		}
		for _, path := range []string{wire.PathHeartbeat, wire.PathMetrics, wire.PathAudit} {
			for _, b := range oversized {
				cr := &countingReader{r: b.r()}
				req := httptest.NewRequest("POST", path, cr)
				req.ContentLength = -1
				if b.length {
					data, _ := io.ReadAll(b.r())
					req.ContentLength = int64(len(data))
				}
				req.Header.Set("Content-Type", "application/json")
				res := ag.do(req)
				if res.Code < 400 || res.Code >= 500 {
					t.Errorf("%s with %s: %d %s, want a 4xx", path, b.name, res.Code, res.Body)
				}
				if n := cr.n.Load(); n > wire.MaxBody+1 {
					t.Errorf("%s with %s: the handler read %d bytes, over the %d-byte limit", path, b.name, n, wire.MaxBody)
				}
			}
		}
		if r := a.row(a.srvID); r.Seq != 0 || r.Status != store.ServerPending {
			t.Fatalf("an oversized message was recorded: %+v", r)
		}

		// Just under the limit is fine.
		padded := append(bytes.Clone(valid[:len(valid)-1]), []byte(`,"pad":"`)...)
		padded = append(padded, bytes.Repeat([]byte("p"), wire.MaxBody-len(padded)-2)...)
		padded = append(padded, '"', '}')
		if len(padded) != wire.MaxBody {
			t.Fatalf("padded body is %d bytes", len(padded))
		}
		if res := ag.post(wire.PathHeartbeat, bytes.NewReader(padded)); res.Code != http.StatusOK {
			t.Fatalf("a heartbeat of exactly MaxBody bytes: %d %s", res.Code, res.Body)
		}
	})
}

// Whatever the body, a malformed message is a 400 with a JSON error, never a
// 500, and changes nothing.
func TestAgentLinkRefusesMalformedMessages(t *testing.T) {
	eachAgentEnv(t, func(t *testing.T, a *agentEnv) {
		ag := a.agent()
		now := a.clock.Now().Format(time.RFC3339Nano)
		env := `"protocol":1,"seq":1,"sent_at":"` + now + `"`
		// Bodies no endpoint takes.
		common := []string{
			``, ` `, `{`, `}`, `[]`, `null`, `"hello"`, `42`, `true`, "\x00", "\xff\xfe{}", `{"protocol":1,}`, `{'protocol':1}`,
			`{"protocol":"1","seq":1,"sent_at":"` + now + `"}`,
			`{"protocol":1,"seq":-1,"sent_at":"` + now + `"}`,
			`{"protocol":1,"seq":1.5,"sent_at":"` + now + `"}`,
			`{"protocol":1,"seq":1e400,"sent_at":"` + now + `"}`,
			`{"protocol":1,"seq":18446744073709551616,"sent_at":"` + now + `"}`,
			`{"protocol":99999999999999999999,"seq":1,"sent_at":"` + now + `"}`,
			`{"protocol":1,"seq":1,"sent_at":"yesterday"}`,
			`{"protocol":1,"seq":1,"sent_at":1700000000}`,
			`{` + env + `}{` + env + `}`, `{` + env + `} trailing`, `{` + env + `}]`,
			strings.Repeat("[", 100000), `{"a":` + strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat("}", 20001),
			`{` + env + `,"note":"` + "\\ud800" + `",` + strings.Repeat(" ", 10),
		}
		// Bodies whose endpoint-specific part has the wrong shape.
		specific := map[string][]string{
			wire.PathHeartbeat: {`{` + env + `,"host":[]}`, `{` + env + `,"host":{"cpu_cores":"two"}}`, `{` + env + `,"host":{"cpu_cores":1e99}}`,
				`{` + env + `,"host":{"boot_time":"at dawn"}}`},
			wire.PathMetrics: {`{` + env + `,"samples":{}}`, `{` + env + `,"samples":[{"cpu_percent":"high"}]}`, `{` + env + `,"samples":[{"at":"now"}]}`,
				`{` + env + `,"samples":[{"net_in_bytes":1e30}]}`},
			wire.PathAudit: {`{` + env + `,"checks":"all good"}`, `{` + env + `,"checks":[{"weight":"heavy"}]}`, `{` + env + `,"checks":[[]]}`},
		}
		for _, path := range []string{wire.PathHeartbeat, wire.PathMetrics, wire.PathAudit} {
			for _, b := range append(common, specific[path]...) {
				res := ag.post(path, strings.NewReader(b))
				if res.Code != http.StatusBadRequest {
					t.Errorf("%s with %.60q: %d %s, want 400", path, b, res.Code, res.Body)
					continue
				}
				if code := errorCode(t, res); code != "invalid" {
					t.Errorf("%s with %.60q: error code %q", path, b, code)
				}
			}
		}
		if r := a.row(a.srvID); r.Seq != 0 || r.Status != store.ServerPending || r.Metrics != 0 || r.Score != "<nil>" {
			t.Fatalf("a malformed message was recorded: %+v", r)
		}
		if n := len(a.refusals()); n != 0 {
			t.Fatalf("%d agent_refused events for malformed bodies (they are refused before the envelope is checked)", n)
		}
	})
}

// A metrics batch is taken whole or not at all: too many samples, or one
// sample out of range, and nothing is stored.
func TestAgentLinkRefusesBadBatches(t *testing.T) {
	eachAgentEnv(t, func(t *testing.T, a *agentEnv) {
		ag := a.agent()
		now := a.clock.Now()
		good := a.sample(now.Add(-time.Minute))
		neg := int64(-1)
		mutate := map[string]func(*wire.Sample){
			"cpu below 0":             func(s *wire.Sample) { s.CPUPercent = -0.5 },
			"cpu above 100":           func(s *wire.Sample) { s.CPUPercent = 100.5 },
			"negative ram used":       func(s *wire.Sample) { s.RAMUsedMB = -1 },
			"negative ram total":      func(s *wire.Sample) { s.RAMTotalMB = -1 },
			"negative disk used":      func(s *wire.Sample) { s.DiskUsedGB = -1 },
			"negative disk total":     func(s *wire.Sample) { s.DiskTotalGB = -1 },
			"no time":                 func(s *wire.Sample) { s.At = time.Time{} },
			"an hour in the future":   func(s *wire.Sample) { s.At = now.Add(time.Hour) },
			"nine days old":           func(s *wire.Sample) { s.At = now.Add(-9 * 24 * time.Hour) },
			"negative bytes received": func(s *wire.Sample) { s.NetInBytes = &neg },
			"negative bytes sent":     func(s *wire.Sample) { s.NetOutBytes = &neg },
		}
		seq := uint64(0)
		for name, m := range mutate {
			bad := good
			m(&bad)
			seq++
			body := mustJSON(t, wire.Metrics{Message: a.msg(seq), Samples: []wire.Sample{good, bad, good}})
			res := ag.post(wire.PathMetrics, bytes.NewReader(body))
			if res.Code != http.StatusBadRequest {
				t.Errorf("a sample with %s: %d %s, want 400", name, res.Code, res.Body)
			}
		}
		if r := a.row(a.srvID); r.Metrics != 0 {
			t.Fatalf("%d samples stored from refused batches", r.Metrics)
		}

		batch := func(n int) []wire.Sample {
			out := make([]wire.Sample, n)
			for i := range out {
				out[i] = a.sample(now.Add(-time.Duration(n-i) * time.Second))
			}
			return out
		}
		seq++
		before := a.row(a.srvID)
		res := ag.post(wire.PathMetrics, bytes.NewReader(mustJSON(t, wire.Metrics{Message: a.msg(seq), Samples: batch(wire.MaxSamples + 1)})))
		if res.Code != http.StatusBadRequest {
			t.Fatalf("%d samples: %d %s", wire.MaxSamples+1, res.Code, res.Body)
		}
		if after := a.row(a.srvID); after != before {
			t.Fatalf("an over-long batch changed the server: %+v, was %+v", after, before)
		}
		// The refused batch did not use its seq; a full batch is taken.
		res = ag.post(wire.PathMetrics, bytes.NewReader(mustJSON(t, wire.Metrics{Message: a.msg(seq), Samples: batch(wire.MaxSamples)})))
		if res.Code != http.StatusNoContent {
			t.Fatalf("%d samples: %d %s", wire.MaxSamples, res.Code, res.Body)
		}
		if r := a.row(a.srvID); r.Metrics != wire.MaxSamples {
			t.Fatalf("%d samples stored, want %d", r.Metrics, wire.MaxSamples)
		}

		seq++
		checks := make([]wire.Check, 101)
		for i := range checks {
			checks[i] = wire.Check{ID: fmt.Sprint("c", i), Weight: 1}
		}
		if res := ag.post(wire.PathAudit, bytes.NewReader(mustJSON(t, wire.Audit{Message: a.msg(seq), Checks: checks}))); res.Code != http.StatusBadRequest {
			t.Fatalf("an audit of 101 checks: %d %s", res.Code, res.Body)
		}
		if r := a.row(a.srvID); r.Score != "<nil>" {
			t.Fatalf("a refused audit set the score: %+v", r)
		}
	})
}
