// Package panel assembles a running UPanel from its parts: it opens the store,
// checks the keys, migrates, and runs the HTTP server, job runner and scheduler
// until asked to stop. cmd/upanel parses flags and calls it; tests call it too.
package panel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"upanel/internal/auth"
	"upanel/internal/config"
	"upanel/internal/jobs"
	"upanel/internal/logging"
	"upanel/internal/metrics"
	"upanel/internal/secret"
	"upanel/internal/store"
	"upanel/internal/web"
)

// Options are the hooks tests and embedders need; the zero value is fine.
type Options struct {
	// Handlers adds job handlers beyond the built-in ones (tests).
	Handlers func(db *store.DB) map[string]jobs.Handler
	// Listening is called with the bound address once the server accepts
	// connections (tests listen on port 0).
	Listening func(addr net.Addr)
	// JobPoll overrides how long idle job workers sleep.
	JobPoll time.Duration
}

// OpenStore loads the keyring, opens the database and verifies that the keyring
// fits the data, changing nothing if it does not. Every command that touches
// secrets starts here.
func OpenStore(ctx context.Context, cfg *config.Config, log *slog.Logger, red *logging.Redactor) (*store.DB, secret.Source, error) {
	if err := cfg.EnsureDataDir(); err != nil {
		return nil, secret.Source{}, err
	}
	src := cfg.KeySource()
	keys, err := src.ReadKeys()
	if err != nil {
		return nil, src, err
	}
	for _, k := range keys {
		red.Add(k.String())
	}
	kr, err := secret.NewKeyring(keys[0], keys[1:]...)
	if err != nil {
		return nil, src, err
	}
	if u, err := url.Parse(cfg.DatabaseURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			red.Add(pw)
		}
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Options{Logger: log, Keyring: kr})
	if err != nil {
		return nil, src, err
	}
	if err := db.CheckKeys(ctx); err != nil {
		db.Close()
		return nil, src, err
	}
	return db, src, nil
}

// Serve runs the panel until ctx is cancelled, then shuts down gracefully:
// in-flight requests finish, running jobs get the shutdown timeout to finish and
// are otherwise released for another process to take.
func Serve(ctx context.Context, cfg config.Config, log *slog.Logger, red *logging.Redactor, opts Options) error {
	db, _, err := OpenStore(ctx, &cfg, log, red)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		log.Info("database migrated", "applied", len(applied), "version", store.LatestVersion())
	}
	if err := db.RegisterActiveKey(ctx); err != nil {
		return err
	}
	release, err := db.LockInstance(ctx, false)
	if err != nil {
		return err
	}
	defer release()

	runner := jobs.NewRunner(db, jobs.Options{
		Logger: log, Workers: cfg.JobWorkers, Lease: cfg.JobLease,
		ShutdownGrace: cfg.ShutdownTimeout, Poll: opts.JobPoll,
	})
	sched := jobs.NewScheduler(db, log, runner.Wake)
	if err := registerJobs(runner, sched, db, log, cfg); err != nil {
		return err
	}
	if opts.Handlers != nil {
		for kind, h := range opts.Handlers(db) {
			runner.Handle(kind, h)
		}
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           web.New(db, log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	log.Info("panel listening", "addr", ln.Addr().String(), "url", cfg.URL.String(), "database", db.Dialect(), "job_owner", runner.Owner())
	if opts.Listening != nil {
		opts.Listening(ln.Addr())
	}

	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	})
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	wg.Go(func() { runner.Run(workCtx) })
	wg.Go(func() { sched.Run(workCtx, 15*time.Second) })

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-serveErr:
		log.Error("http server failed", "err", runErr)
	}
	stopWork()
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("http shutdown", "err", err)
		srv.Close()
	}
	wg.Wait()
	log.Info("stopped")
	return runErr
}

// registerJobs wires the built-in jobs and their schedules.
func registerJobs(r *jobs.Runner, s *jobs.Scheduler, db *store.DB, log *slog.Logger, cfg config.Config) error {
	r.Handle(metrics.RetentionKind, metrics.Retention(db, log, metrics.Keep, 5000))
	r.Handle(auth.ExpiryKind, auth.Expiry(db, log, cfg.SessionIdleTimeout))
	r.Handle(jobs.CleanupKind, jobs.Cleanup(db, 30*24*time.Hour))
	return errors.Join(
		s.Every(metrics.RetentionKind, "7 * * * *"),
		s.Every(auth.ExpiryKind, "*/10 * * * *"),
		s.Every(jobs.CleanupKind, "23 3 * * *"),
	)
}
