package fleetbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"upanel/internal/wire"
)

// What upanel-agent does (internal/agent): the panel's interval, at most 500
// samples a metrics request, and a buffer of a day of samples.
const (
	interval      = 10 * time.Second
	batchSamples  = 500
	bufferSamples = 8640
)

// warmup comes before the measured window: two intervals (see benchFleet).
const warmup = 2 * interval

// simAgent is one simulated upanel-agent. Every interval it does what the real
// agent's push loop does, minus reading /proc: it takes a sample, sends a
// heartbeat with its inventory and, if the panel took it, pushes its buffered
// samples (one, when all is well) in batches of at most 500, each message with
// the next sequence number. It has its own HTTP client, as every real agent
// has, so the panel holds one keep-alive connection per agent.
//
// It leaves out the audit the real agent sends 30 s after it starts and then
// once a day: a fleet in steady state sends 0.06 audits a second per 5,000
// agents.
type simAgent struct {
	serverID, token string
	host            wire.Host
	client          *http.Client
	rng             *rand.Rand
	seq             uint64
	buf             []wire.Sample
	lat             []time.Duration // latencies of the pushes started in the window
}

func newSimAgent(serverID, token string, n int) *simAgent {
	return &simAgent{
		serverID: serverID, token: token,
		host: wire.Host{Hostname: fmt.Sprintf("fleet-%05d", n), OS: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.1.0-28-amd64",
			Arch: "amd64", CPUCores: 2, RAMMB: 3915, DiskGB: 79, AgentVersion: "fleetbench",
			BootTime: time.Now().UTC().Add(-72 * time.Hour).Truncate(time.Second)},
		// As internal/agent's client, over plain HTTP on loopback.
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			ForceAttemptHTTP2: true, MaxIdleConns: 2, IdleConnTimeout: 90 * time.Second}},
		rng: rand.New(rand.NewPCG(uint64(n), 0x5eed)),
	}
}

// fleetRun is what the agents of one case share: where to push, the measured
// window, and the errors.
type fleetRun struct {
	base     string
	from, to time.Time // pushes that start in [from, to) are measured

	errors atomic.Int64
	mu     sync.Mutex
	first  []string // the first few errors, for the failure message
}

func (r *fleetRun) fail(msg string) {
	r.errors.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.first) < 5 {
		r.first = append(r.first, msg)
	}
}

// run pushes every interval from first on until ctx ends.
func (a *simAgent) run(ctx context.Context, r *fleetRun, first time.Duration) {
	start := time.NewTimer(first)
	defer start.Stop()
	select {
	case <-ctx.Done():
		return
	case <-start.C:
	}
	every := interval
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if d := a.push(ctx, r); d > 0 && d != every {
			every = d
			t.Reset(every)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// push is one turn of the agent's loop. It returns the interval the panel
// asked for, or 0.
func (a *simAgent) push(ctx context.Context, r *fleetRun) time.Duration {
	a.buf = append(a.buf, a.sample(time.Now()))
	if len(a.buf) > bufferSamples {
		a.buf = a.buf[:copy(a.buf, a.buf[len(a.buf)-bufferSamples:])]
	}
	var reply wire.HeartbeatReply
	if _, err := a.post(ctx, r, wire.PathHeartbeat, wire.Heartbeat{Message: a.message(), Host: a.host}, &reply); err != nil {
		return 0 // the samples wait in the buffer, as the agent's do
	}
	for len(a.buf) > 0 {
		n := min(len(a.buf), batchSamples)
		refused, err := a.post(ctx, r, wire.PathMetrics, wire.Metrics{Message: a.message(), Samples: a.buf[:n]}, nil)
		if err != nil && !refused {
			break
		}
		a.buf = a.buf[:copy(a.buf, a.buf[n:])]
	}
	return time.Duration(reply.IntervalSeconds) * time.Second
}

func (a *simAgent) message() wire.Message {
	a.seq++
	return wire.Message{Protocol: wire.ProtocolVersion, Seq: a.seq, SentAt: time.Now().UTC()}
}

// sample is a plausible reading of a small server.
func (a *simAgent) sample(now time.Time) wire.Sample {
	in, out := a.rng.Int64N(200_000), a.rng.Int64N(50_000)
	return wire.Sample{At: now.UTC(), CPUPercent: math.Round(a.rng.Float64()*1000) / 10,
		RAMUsedMB: 800 + a.rng.IntN(2000), RAMTotalMB: a.host.RAMMB, DiskUsedGB: 20 + a.rng.IntN(5), DiskTotalGB: a.host.DiskGB,
		NetInBytes: &in, NetOutBytes: &out}
}

// post sends one message as internal/agent does and times it. refused is a
// 4xx answer, which the agent drops rather than retries. Every failure counts
// as an error of the run, except those caused by the end of the run.
func (a *simAgent) post(ctx context.Context, r *fleetRun, path string, body, reply any) (refused bool, err error) {
	b, err := json.Marshal(body)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+path, bytes.NewReader(b))
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := a.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			r.fail(fmt.Sprintf("%s: %v", path, err))
		}
		return false, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxBody))
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		if ctx.Err() == nil {
			r.fail(fmt.Sprintf("%s: reading the answer: %v", path, err))
		}
		return false, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		r.fail(fmt.Sprintf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(data))))
		return resp.StatusCode >= 400 && resp.StatusCode < 500, fmt.Errorf("panel answered %s", resp.Status)
	}
	if !start.Before(r.from) && start.Before(r.to) {
		a.lat = append(a.lat, took)
	}
	if reply != nil {
		if err := json.Unmarshal(data, reply); err != nil {
			r.fail(fmt.Sprintf("%s: bad answer: %v", path, err))
			return false, err
		}
	}
	return false, nil
}
