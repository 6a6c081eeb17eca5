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
	"os"
	"sync"
	"time"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/config"
	"upanel/internal/deploy"
	"upanel/internal/fleet"
	"upanel/internal/jobs"
	"upanel/internal/logging"
	"upanel/internal/mail"
	"upanel/internal/metrics"
	"upanel/internal/notify"
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
	// Listener, if set, is served instead of listening on cfg.Addr: a test
	// binds first to know the port that UPANEL_URL must name.
	Listener net.Listener
}

// openDB opens the configured database, without keys yet.
func openDB(ctx context.Context, cfg *config.Config, log *slog.Logger, red *logging.Redactor) (*store.DB, error) {
	if err := cfg.EnsureDataDir(); err != nil {
		return nil, err
	}
	if u, err := url.Parse(cfg.DatabaseURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			red.Add(pw)
		}
	}
	if cfg.SMTP != nil {
		red.Add(cfg.SMTP.Secrets()...) // the password as given and percent-encoded
	}
	return store.Open(ctx, cfg.DatabaseURL, store.Options{Logger: log})
}

// loadKeys reads the keyring into db and verifies that it fits the data,
// changing nothing if it does not. Callers hold the instance lock first, so
// that no rotation can change the key file between this read and their use of
// the keys.
func loadKeys(ctx context.Context, db *store.DB, cfg *config.Config, log *slog.Logger, red *logging.Redactor) (secret.Source, error) {
	src := cfg.KeySource()
	created := src.Create && !fileExists(src.File)
	keys, err := src.ReadKeys()
	if err != nil {
		return src, err
	}
	if created {
		log.Warn("created a new app key: back it up apart from the database, it encrypts every secret", "file", src.File, "key_id", keys[0].ID())
	}
	for _, k := range keys {
		red.Add(k.Encode())
	}
	kr, err := secret.NewKeyring(keys[0], keys[1:]...)
	if err != nil {
		return src, err
	}
	db.SetKeyring(kr)
	return src, db.CheckKeys(ctx)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Serve runs the panel until ctx is cancelled, then shuts down gracefully:
// in-flight requests finish, running jobs get the shutdown timeout to finish and
// are otherwise released for another process to take.
func Serve(ctx context.Context, cfg config.Config, log *slog.Logger, red *logging.Redactor, opts Options) error {
	db, err := openDB(ctx, &cfg, log, red)
	if err != nil {
		return err
	}
	defer db.Close()
	// Alone on the database, every job still marked running belongs to a
	// process that died: take the lock exclusively to find out, rescue those
	// jobs at once instead of waiting out their leases, then share the lock
	// with any panel that starts later.
	release, err := db.LockInstance(ctx, true)
	alone := err == nil
	if errors.Is(err, store.ErrInstanceBusy) {
		release, err = db.LockInstance(ctx, false)
	}
	if err != nil {
		return err
	}
	defer func() { release() }()
	if _, err := loadKeys(ctx, db, &cfg, log, red); err != nil {
		return err
	}
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
	if alone {
		n, err := db.RescueOrphanedJobs(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			log.Warn("requeued jobs left running by a previous process", "jobs", n)
		}
		release()
		shared, err := db.LockInstance(ctx, false)
		if err != nil {
			release = func() {}
			return err
		}
		release = shared
	}

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

	recorder := audit.New(db)
	accounts := auth.New(auth.Options{DB: db, Log: log, Audit: recorder, BaseURL: cfg.URL,
		IdleTimeout: cfg.SessionIdleTimeout, AbsoluteTimeout: cfg.SessionAbsoluteTimeout,
		QueueMail: queueAccountMail})
	runner.Handle(auth.ResetRequestKind, accounts.ResetRequestHandler())
	notifier := notify.New(notify.Options{DB: db, Log: log, BaseURL: cfg.URL, Settle: cfg.NotifySettle, Wake: runner.Wake})
	webhooks := notifier.Webhooks(notify.WebhookOptions{Recorder: recorder, AllowPrivate: cfg.WebhookAllowPrivate, Redactor: red})
	runner.Handle(store.WebhookDeliveryJobKind, webhooks.Handler())
	runner.Handle(notify.WebhookMaintainKind, webhooks.MaintainHandler(notify.KeepWebhookDeliveries))
	if err := sched.Every(notify.WebhookMaintainKind, "*/15 * * * *"); err != nil {
		return err
	}
	servers := fleet.New(fleet.Options{DB: db, Log: log, Recorder: recorder, BaseURL: cfg.URL,
		AgentDir: cfg.AgentDir, AgentInterval: cfg.AgentInterval, Wake: runner.Wake, Notify: notifier})
	runner.Handle(fleet.ProvisionKind, servers.ProvisionHandler())
	runner.Handle(fleet.HardenKind, servers.HardenHandler())
	if _, _, err := servers.Identity(ctx); err != nil {
		return err
	}
	apps := deploy.New(deploy.Options{DB: db, Log: log, Recorder: recorder, Notify: notifier, Fleet: servers, BaseURL: cfg.URL, Wake: runner.Wake})
	runner.Handle(deploy.RunKind, apps.RunHandler())
	runner.Handle(deploy.ReconcileKind, apps.ReconcileHandler())
	if err := sched.Every(deploy.ReconcileKind, "*/5 * * * *"); err != nil {
		return err
	}
	runner.Handle(deploy.HookRetentionKind, apps.HookRetention(store.KeepDeployHookDeliveries))
	if err := sched.Every(deploy.HookRetentionKind, "41 * * * *"); err != nil {
		return err
	}
	if cfg.URL.Scheme == "http" {
		log.Warn("UPANEL_URL is http: agent tokens and bootstrap commands travel unencrypted; use https outside a test network", "url", cfg.URL.String())
	}

	handler, err := web.New(web.Deps{DB: db, Log: log, Auth: accounts, Audit: recorder, Fleet: servers, Deploy: apps, Notify: notifier, Webhooks: webhooks, Stop: ctx.Done(), BaseURL: cfg.URL, TrustedProxies: cfg.TrustedProxies})
	if err != nil {
		return err
	}
	if token, err := accounts.NewSetupToken(ctx); err != nil {
		return err
	} else if token != "" {
		// Printed on purpose: only someone who can read this log can create
		// the first admin. It is useless once a user exists.
		log.Warn("no user exists yet: open the setup page to create the first admin",
			"setup_url", cfg.URL.String()+"/setup?token="+token)
	}

	ln := opts.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           handler,
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
	wg.Go(func() { servers.WatchStatus(workCtx) })
	wg.Go(func() { notifier.Run(workCtx, max(time.Second, cfg.NotifySettle/4)) })

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
	r.Handle(jobs.CleanupKind, r.Cleanup(30*24*time.Hour))
	var sender *mail.Sender
	if cfg.SMTP != nil && cfg.MailFrom != nil {
		var err error
		if sender, err = mail.NewSender(*cfg.SMTP, *cfg.MailFrom); err != nil {
			return err
		}
		log.Info("outgoing mail", "smtp", sender.Server(), "from", cfg.MailFrom.String())
	} else {
		log.Warn("outgoing mail is off: set UPANEL_SMTP_URL; password-reset and invite emails will fail")
	}
	r.Handle(mail.SendKind, mail.SendHandler(db, sender, log))
	r.Handle(mail.MaintainKind, mail.Maintain(db, log, mail.KeepBodies))
	return errors.Join(
		s.Every(mail.MaintainKind, "*/15 * * * *"),
		s.Every(metrics.RetentionKind, "7 * * * *"),
		s.Every(auth.ExpiryKind, "*/10 * * * *"),
		s.Every(jobs.CleanupKind, "23 3 * * *"),
	)
}

// queueAccountMail renders an account email and puts it in the outbox, in the
// caller's transaction.
func queueAccountMail(ctx context.Context, tx *store.Tx, m auth.Mail) error {
	var om store.OutboxMail
	var err error
	switch m.Kind {
	case mail.KindPasswordReset:
		om, err = mail.PasswordResetEmail(m.To, mail.PasswordReset{Link: m.Link, IP: m.Data["ip"], ExpiresIn: m.Expires})
	case mail.KindInvite:
		om, err = mail.InviteEmail(m.To, mail.Invite{Link: m.Link, InviterEmail: m.Data["inviter"], Role: m.Data["role"], ExpiresIn: m.Expires})
	default:
		err = fmt.Errorf("panel: unknown account email %q", m.Kind)
	}
	if err != nil {
		return err
	}
	_, err = tx.EnqueueMail(ctx, om)
	return err
}
