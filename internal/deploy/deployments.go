package deploy

import (
	"context"

	"upanel/internal/apperr"
	"upanel/internal/auth"
)

// Environments of an app: separate compose projects on its server.
const (
	Production = "production"
	Staging    = "staging"
)

// Triggers: what asked for a deployment (deployments.triggered_by).
const (
	TriggerManual   = "manual"
	TriggerAPI      = "api"
	TriggerWebhook  = "webhook"
	TriggerRollback = "rollback"
)

// DeployInput asks for a deployment.
type DeployInput struct {
	AppID       string
	Environment string // production (default) or staging
	// Commit, when set, deploys that exact commit instead of the branch head.
	Commit string
	// RollbackFrom is the earlier successful deployment whose commit is
	// redeployed (is_rollback).
	RollbackFrom string
	Trigger      string
}

// Deploy queues a deployment and returns its id. (Being written: the
// deployments work replaces this.)
func (s *Service) Deploy(ctx context.Context, p *auth.Principal, in DeployInput, m auth.Meta) (string, error) {
	return "", apperr.New(apperr.Unavailable, "deployments are not available yet")
}
