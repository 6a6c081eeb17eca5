package agent

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"upanel/internal/wire"
)

// bufferSamples bounds the metrics kept while the panel is unreachable: a day
// at the default 10-second interval, a few hundred kilobytes.
const bufferSamples = 8640

// auditEvery is how often the agent audits the server on its own.
const auditEvery = 24 * time.Hour

// Agent is a running upanel-agent.
type Agent struct {
	cfg     *Config
	log     *slog.Logger
	version string
	started time.Time
	root    string // "/" in production; tests point it at a fake tree

	panel   *panel
	sampler *Sampler
	buffer  *Buffer
	auditor *Auditor
	deploys *Deployer

	mu    sync.Mutex
	host  wire.Host
	audit chan struct{}
}

// New prepares an agent from its config.
func New(cfg *Config, log *slog.Logger, version string) (*Agent, error) {
	st, err := loadState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	p, err := newPanel(cfg, st)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, version: version, started: time.Now().UTC(), root: "/", panel: p,
		sampler: NewSampler("/", nil), buffer: NewBuffer(bufferSamples), audit: make(chan struct{}, 1)}
	a.auditor = &Auditor{Root: "/", DeployRoot: cfg.DeployRoot, ExpectedPorts: cfg.ExpectedPorts}
	if a.deploys, err = NewDeployer(cfg.DeployRoot, cfg.StateDir, log); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) currentHost() wire.Host {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.host
}

func (a *Agent) refreshHost() {
	h, err := ReadHost(a.root, a.version)
	if err != nil {
		a.log.Warn("read inventory", "err", err)
	}
	a.mu.Lock()
	a.host = h
	a.mu.Unlock()
}

func (a *Agent) requestAudit() {
	select {
	case a.audit <- struct{}{}:
	default: // one is already pending
	}
}

// Run works until ctx ends: it serves the panel's calls, and every interval
// samples metrics, sends a heartbeat and pushes what it buffered.
func (a *Agent) Run(ctx context.Context) error {
	cert, err := EnsureCertificate(a.cfg.CertFile, a.cfg.KeyFile)
	if err != nil {
		return err
	}
	a.refreshHost()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		if err := listen(ctx, a.cfg, cert, a.routes(), a.log); err != nil {
			errc <- err
			cancel()
		}
	})
	wg.Go(func() { a.auditLoop(ctx) })
	a.pushLoop(ctx)
	wg.Wait()
	a.deploys.Close()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (a *Agent) pushLoop(ctx context.Context) {
	interval := time.Duration(a.cfg.IntervalSeconds) * time.Second
	a.sampler.Sample(time.Now()) // primes the CPU and network deltas
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s, err := a.sampler.Sample(time.Now()); err != nil {
			a.log.Warn("sample metrics", "err", err)
		} else {
			a.buffer.Add(s)
		}
		a.refreshHost()
		reply, err := a.panel.heartbeat(ctx, a.currentHost())
		if err != nil {
			a.logPushError("heartbeat", err)
			continue
		}
		if reply.IntervalSeconds > 0 && time.Duration(reply.IntervalSeconds)*time.Second != interval {
			interval = time.Duration(reply.IntervalSeconds) * time.Second
			t.Reset(interval)
		}
		if reply.AuditNow {
			a.requestAudit()
		}
		a.flushMetrics(ctx)
	}
}

// flushMetrics pushes buffered samples, oldest first, until the buffer is
// empty or the panel stops taking them.
func (a *Agent) flushMetrics(ctx context.Context) {
	for a.buffer.Len() > 0 {
		batch := a.buffer.Take(500)
		err := a.panel.metrics(ctx, batch)
		if errors.Is(err, errRefused) {
			// The panel will never take this batch (it judged it invalid):
			// drop it rather than block every later sample behind it.
			a.log.Error("panel refused metrics; dropping the batch", "samples", len(batch), "err", err)
			a.buffer.Drop(len(batch))
			continue
		}
		if err != nil {
			a.logPushError("metrics", err)
			return
		}
		a.buffer.Drop(len(batch))
	}
}

func (a *Agent) logPushError(what string, err error) {
	a.log.Warn("push to panel failed; will retry", "what", what, "err", err, "buffered_samples", a.buffer.Len(), "dropped_samples", a.buffer.Dropped())
}

func (a *Agent) auditLoop(ctx context.Context) {
	t := time.NewTimer(30 * time.Second) // a first audit soon after start
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.audit:
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		checks := a.auditor.Audit(actx)
		err := a.panel.audit(actx, checks)
		cancel()
		if err != nil {
			a.logPushError("audit", err)
		}
		// An audit reads command outputs of several megabytes (apt-get, the
		// deploy tree) once a day: hand that memory back now rather than
		// keep it resident until the next one.
		debug.FreeOSMemory()
		t.Reset(auditEvery)
	}
}
