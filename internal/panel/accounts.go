package panel

import (
	"context"
	"log/slog"

	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/config"
	"upanel/internal/fleet"
	"upanel/internal/logging"
	"upanel/internal/store"
)

// Accounts opens the database as serve does (keys checked, schema migrated) and
// returns the accounts service, for the user and token commands. close releases
// everything. Account emails cannot be sent from the command line; commands
// that would send one are not offered there.
func Accounts(ctx context.Context, cfg config.Config, log *slog.Logger, red *logging.Redactor) (svc *auth.Service, db *store.DB, close func(), err error) {
	db, close, err = openForCommand(ctx, &cfg, log, red)
	if err != nil {
		return nil, nil, nil, err
	}
	svc = auth.New(auth.Options{DB: db, Log: log, Audit: audit.New(db), BaseURL: cfg.URL,
		IdleTimeout: cfg.SessionIdleTimeout, AbsoluteTimeout: cfg.SessionAbsoluteTimeout, QueueMail: queueAccountMail})
	return svc, db, close, nil
}

// Fleet opens the database as Accounts does and returns the servers service,
// for the server commands. It runs no jobs: provisioning and hardening jobs it
// queues wait for a running panel (serve) to take them. Bootstrap commands
// point at cfg.URL, as serve's do. close releases everything.
func Fleet(ctx context.Context, cfg config.Config, log *slog.Logger, red *logging.Redactor) (svc *fleet.Service, db *store.DB, close func(), err error) {
	db, close, err = openForCommand(ctx, &cfg, log, red)
	if err != nil {
		return nil, nil, nil, err
	}
	svc = fleet.New(fleet.Options{DB: db, Log: log, Recorder: audit.New(db), BaseURL: cfg.URL,
		AgentDir: cfg.AgentDir, AgentInterval: cfg.AgentInterval})
	return svc, db, close, nil
}

// openForCommand is the start of serve for a short command: it opens the
// database, takes the instance lock shared (so that a key rotation cannot run
// meanwhile, while serve may), loads and checks the keys, migrates and
// registers the active key. close releases the lock and the database.
func openForCommand(ctx context.Context, cfg *config.Config, log *slog.Logger, red *logging.Redactor) (db *store.DB, close func(), err error) {
	db, err = openDB(ctx, cfg, log, red)
	if err != nil {
		return nil, nil, err
	}
	release, err := db.LockInstance(ctx, false)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	close = func() { release(); db.Close() }
	if _, err = loadKeys(ctx, db, cfg, log, red); err == nil {
		if _, err = db.Migrate(ctx); err == nil {
			err = db.RegisterActiveKey(ctx)
		}
	}
	if err != nil {
		close()
		return nil, nil, err
	}
	return db, close, nil
}
