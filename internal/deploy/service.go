// Package deploy is apps and their deployments: git credentials, app
// settings and encrypted environments, deployments run by the agent on the
// app's server (queued, one at a time per app, logged live, cancellable,
// recoverable after a crash), rollbacks, running-app controls and
// push-to-deploy webhooks.
package deploy

import (
	"log/slog"
	"net/url"
	"time"

	"upanel/internal/audit"
	"upanel/internal/fleet"
	"upanel/internal/notify"
	"upanel/internal/store"
)

// Options configures the Service.
type Options struct {
	DB       *store.DB
	Log      *slog.Logger
	Recorder *audit.Recorder
	Notify   *notify.Service
	// Fleet reaches the agents (AgentCall).
	Fleet *fleet.Service
	// BaseURL is UPANEL_URL: push-to-deploy URLs start with it.
	BaseURL *url.URL
	// Wake tells the job runner a job was enqueued.
	Wake func()
	// DeployTimeout bounds one deployment on the agent (default 30 min).
	DeployTimeout time.Duration
}

// Service manages apps and deployments.
type Service struct {
	Options
	// logs tells live log viewers of this process that lines were stored.
	logs *logBroker
	// timing is how a deployment job paces its calls (run.go).
	timing runTiming
}

// New returns the service.
func New(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Wake == nil {
		o.Wake = func() {}
	}
	if o.DeployTimeout <= 0 {
		o.DeployTimeout = 30 * time.Minute
	}
	return &Service{Options: o, logs: newLogBroker(), timing: defaultRunTiming()}
}
