// Package jobs runs UPanel's background work from the jobs table: workers lease
// jobs, renew the lease while they work, and record a terminal state for every
// job; a crashed worker's jobs are rescued when its lease expires. The scheduler
// enqueues periodic and cron-scheduled jobs.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"upanel/internal/store"
)

// Handler does one job's work. Returning nil marks the job succeeded; an error
// retries it with backoff until its attempts run out, unless it is Permanent.
// The context is cancelled when the job is cancelled, its lease is lost, or the
// panel shuts down past its grace period; handlers must return promptly then.
// Handlers are retried after crashes, so they must be idempotent.
type Handler func(ctx context.Context, j *Job) error

// Job is a claimed job, as a handler sees it.
type Job struct {
	*store.Job
	final func(ctx context.Context, tx *store.Tx) error
}

// Finally registers writes to commit in the same transaction that marks the job
// succeeded: they land exactly once, and not at all if the lease was lost. fn
// gets its own context, because the handler's has ended by then.
func (j *Job) Finally(fn func(ctx context.Context, tx *store.Tx) error) { j.final = fn }

// Decode unmarshals the payload.
func (j *Job) Decode(v any) error {
	if err := json.Unmarshal(j.Payload, v); err != nil {
		return Permanent(fmt.Errorf("job %s: bad payload: %w", j.ID, err))
	}
	return nil
}

type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// Permanent marks an error that retrying cannot fix; the job fails at once.
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool { return errors.As(err, new(permanentError)) }

var (
	errCancelRequested = errors.New("cancel requested")
	errLeaseLost       = errors.New("lease lost")
	errShutdown        = errors.New("panel shutting down")
)

// Options tunes a Runner. Zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// Owner identifies this process in leases; default host:pid:random.
	Owner   string
	Workers int           // default 2
	Lease   time.Duration // default 30s; heartbeats renew it every third of it
	// Poll is the longest an idle worker sleeps before looking again; a local
	// Wake or the earliest queued run_at wakes it sooner.
	Poll time.Duration // default 5s
	// ShutdownGrace is how long running jobs may take to finish at shutdown
	// before they are cancelled and their leases released.
	ShutdownGrace time.Duration // default 20s
	Backoff       func(attempt int) time.Duration
}

// Runner leases and runs jobs.
type Runner struct {
	db       *store.DB
	log      *slog.Logger
	opts     Options
	handlers map[string]Handler
	wake     chan struct{}

	mu       sync.Mutex
	inflight map[string]context.CancelCauseFunc
}

// NewRunner returns a runner; register handlers before Run.
func NewRunner(db *store.DB, opts Options) *Runner {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Owner == "" {
		host, _ := os.Hostname()
		opts.Owner = fmt.Sprintf("%s:%d:%04x", host, os.Getpid(), rand.Uint32()&0xffff)
	}
	if len(opts.Owner) > 64 {
		opts.Owner = opts.Owner[:64]
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 5 * time.Second
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 20 * time.Second
	}
	if opts.Backoff == nil {
		opts.Backoff = Backoff
	}
	return &Runner{
		db: db, log: opts.Logger.With("component", "jobs"), opts: opts,
		handlers: map[string]Handler{}, wake: make(chan struct{}, 1),
		inflight: map[string]context.CancelCauseFunc{},
	}
}

// Backoff is the default retry delay: 5s doubling per attempt up to 10 minutes,
// with ±20% jitter so that jobs failing together do not retry together.
func Backoff(attempt int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < attempt && d < 10*time.Minute; i++ {
		d *= 2
	}
	d = min(d, 10*time.Minute)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Handle registers the handler for a job kind.
func (r *Runner) Handle(kind string, h Handler) { r.handlers[kind] = h }

// Has reports whether a kind has a handler.
func (r *Runner) Has(kind string) bool { _, ok := r.handlers[kind]; return ok }

// Owner is this runner's lease owner name.
func (r *Runner) Owner() string { return r.opts.Owner }

func (r *Runner) kinds() []string {
	ks := make([]string, 0, len(r.handlers))
	for k := range r.handlers {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Wake tells idle workers that a job was just enqueued.
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run works until ctx is cancelled, then stops claiming, gives running jobs
// ShutdownGrace to finish, cancels the rest and releases their leases so that
// another process (or the next start) picks them up at once.
func (r *Runner) Run(ctx context.Context) error {
	kinds := r.kinds()
	r.log.Info("job runner started", "owner", r.opts.Owner, "workers", r.opts.Workers, "kinds", kinds)
	var workers sync.WaitGroup
	for range r.opts.Workers {
		workers.Go(func() { r.work(ctx, kinds) })
	}
	rescuer := make(chan struct{})
	go func() { defer close(rescuer); r.rescue(ctx) }()

	<-ctx.Done()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.opts.ShutdownGrace):
		r.mu.Lock()
		n := len(r.inflight)
		for _, cancel := range r.inflight {
			cancel(errShutdown)
		}
		r.mu.Unlock()
		r.log.Warn("shutdown grace over; releasing running jobs", "jobs", n)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			r.log.Error("jobs did not stop after cancel; their leases will expire and be rescued")
		}
	}
	<-rescuer
	r.log.Info("job runner stopped")
	return nil
}

func (r *Runner) work(ctx context.Context, kinds []string) {
	for ctx.Err() == nil {
		job, ok, err := r.db.ClaimJob(ctx, r.opts.Owner, kinds, r.opts.Lease)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("claim job", "err", err)
			}
			r.sleep(ctx, r.opts.Poll)
			continue
		}
		if !ok {
			r.sleep(ctx, r.idleWait(ctx))
			continue
		}
		r.process(job)
	}
}

// idleWait sleeps until the earliest queued job is due, within Poll.
func (r *Runner) idleWait(ctx context.Context) time.Duration {
	next, ok, err := r.db.NextJobRunAt(ctx, r.kinds())
	if err != nil || !ok {
		return r.opts.Poll
	}
	d := time.Until(next)
	// A due job we could not claim belongs to a kind we lack, or waits on its
	// concurrency key: don't spin on it.
	if d < 200*time.Millisecond {
		return min(time.Second, r.opts.Poll)
	}
	return min(d, r.opts.Poll)
}

func (r *Runner) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-r.wake:
	case <-t.C:
	}
}

func (r *Runner) rescue(ctx context.Context) {
	every := r.opts.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := r.db.RescueExpiredJobs(ctx, r.db.Now().Add(time.Second))
		if err != nil && ctx.Err() == nil {
			r.log.Error("rescue expired jobs", "err", err)
		}
		if n > 0 {
			r.log.Warn("rescued jobs with expired leases", "jobs", n)
			r.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// process runs one claimed job to a recorded outcome. Its context is not derived
// from Run's, so that shutdown lets it finish within the grace period.
func (r *Runner) process(sj *store.Job) {
	log := r.log.With("job_id", sj.ID, "kind", sj.Kind, "attempt", sj.Attempts)
	jobCtx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	r.mu.Lock()
	r.inflight[sj.ID] = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.inflight, sj.ID)
		r.mu.Unlock()
	}()

	hbDone := make(chan struct{})
	go func() { defer close(hbDone); r.heartbeat(jobCtx, cancel, sj.ID, log) }()

	start := time.Now()
	job := &Job{Job: sj}
	err := r.call(jobCtx, job)
	cause := context.Cause(jobCtx)
	cancel(nil) // stops the heartbeat; the cause, if any, is already set
	<-hbDone

	// The outcome is recorded even when Run's context is gone.
	ctx, stop := context.WithTimeout(context.Background(), 15*time.Second)
	defer stop()
	var ferr error
	switch {
	case errors.Is(cause, errLeaseLost):
		log.Warn("job lease lost; another worker owns it now", "err", err)
		return
	case err == nil:
		// Finished work counts even if a cancel or shutdown arrived meanwhile.
		var final func(tx *store.Tx) error
		if job.final != nil {
			final = func(tx *store.Tx) error { return job.final(ctx, tx) }
		}
		ferr = r.db.FinishJob(ctx, sj.ID, r.opts.Owner, store.JobSucceeded, "", final)
		if ferr != nil && !errors.Is(ferr, store.ErrLeaseLost) {
			// The final writes failed, so the job did not succeed: retry it.
			log.Warn("job's final writes failed; will retry", "err", ferr)
			_, ferr = r.db.RetryJob(ctx, sj.ID, r.opts.Owner, "recording the result failed: "+ferr.Error(), r.db.Now().Add(r.opts.Backoff(sj.Attempts)))
			break
		}
		log.Info("job succeeded", "duration", time.Since(start).Round(time.Millisecond))
	case errors.Is(cause, errShutdown):
		ferr = r.db.ReleaseJob(ctx, sj.ID, r.opts.Owner)
		log.Info("job released at shutdown")
	case errors.Is(cause, errCancelRequested):
		ferr = r.db.FinishJob(ctx, sj.ID, r.opts.Owner, store.JobCancelled, "cancelled by request", nil)
		log.Info("job cancelled")
	case errors.As(err, new(permanentError)):
		ferr = r.db.FinishJob(ctx, sj.ID, r.opts.Owner, store.JobFailed, err.Error(), nil)
		log.Error("job failed", "err", err)
	default:
		var again bool
		again, ferr = r.db.RetryJob(ctx, sj.ID, r.opts.Owner, err.Error(), r.db.Now().Add(r.opts.Backoff(sj.Attempts)))
		if again {
			log.Warn("job attempt failed; will retry", "err", err)
		} else if ferr == nil {
			log.Error("job failed after its last attempt", "err", err)
		}
	}
	if errors.Is(ferr, store.ErrLeaseLost) {
		log.Warn("job lease lost before its outcome was recorded; another worker owns it now")
	} else if ferr != nil {
		log.Error("record job outcome", "err", ferr)
	}
}

// call runs the handler, turning a panic into an error so that one bad job
// cannot take the panel down.
func (r *Runner) call(ctx context.Context, j *Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("job handler panicked", "job_id", j.ID, "kind", j.Kind, "panic", p, "stack", string(debug.Stack()))
			err = Permanent(fmt.Errorf("handler panicked: %v", p))
		}
	}()
	h, ok := r.handlers[j.Kind]
	if !ok {
		return Permanent(fmt.Errorf("no handler for job kind %q", j.Kind))
	}
	return h(ctx, j)
}

// heartbeat renews the lease every third of it. If renewals keep failing (the
// database is unreachable) the handler is stopped before the lease can expire,
// because past that point another process may rescue and run the job too.
func (r *Runner) heartbeat(ctx context.Context, cancel context.CancelCauseFunc, id string, log *slog.Logger) {
	every := r.opts.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, stop := context.WithTimeout(ctx, every)
		cancelRequested, err := r.db.HeartbeatJob(hctx, id, r.opts.Owner, r.opts.Lease)
		stop()
		switch {
		case errors.Is(err, store.ErrLeaseLost):
			cancel(errLeaseLost)
			return
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			if time.Since(renewed) >= r.opts.Lease-every {
				log.Error("job heartbeat failing for most of the lease; stopping the job before another worker takes it", "err", err)
				cancel(errLeaseLost)
				return
			}
			log.Warn("job heartbeat failed; will retry", "err", err)
		case cancelRequested:
			cancel(errCancelRequested)
			return
		default:
			renewed = time.Now()
		}
	}
}
