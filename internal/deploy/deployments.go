package deploy

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/notify"
	"upanel/internal/store"
	"upanel/internal/wire"
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

// RunKind is the job that drives a deployment on its server's agent (run.go);
// its id is the deployment's.
const RunKind = "deploy.run"

// runAttempts is how many times a deployment's job may start: a panel that
// crashes or restarts mid-deploy costs one, and the job resumes where it was.
const runAttempts = 5

// commitRe is what the panel takes from an agent as a commit id; requests
// accept only whole ids (wire.IsCommitID), as the agent does.
var commitRe = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// ValidEnvironment checks an environment name; "" is production.
func ValidEnvironment(env string) (string, error) {
	switch env {
	case "":
		return Production, nil
	case Production, Staging:
		return env, nil
	}
	return "", apperr.New(apperr.Invalid, "the environment must be production or staging")
}

// Deploy queues a deployment and returns its id. It runs after the app's
// earlier deployments, one at a time per app (both environments). A push
// (TriggerWebhook) that finds a push-to-deploy deployment of the same app
// and environment still queued joins it instead, so that a burst of pushes
// deploys once; pushes deploy the branch head, so the joined deployment
// deploys the newest commit.
func (s *Service) Deploy(ctx context.Context, p *auth.Principal, in DeployInput, m auth.Meta) (string, error) {
	env, err := ValidEnvironment(in.Environment)
	if err != nil {
		return "", err
	}
	trigger := in.Trigger
	if trigger == "" {
		trigger = TriggerManual
		if in.RollbackFrom != "" {
			trigger = TriggerRollback
		}
	}
	switch trigger {
	case TriggerManual, TriggerAPI, TriggerWebhook:
		if in.RollbackFrom != "" {
			return "", apperr.New(apperr.Invalid, "a rollback is triggered as a rollback")
		}
	case TriggerRollback:
		if in.RollbackFrom == "" {
			return "", apperr.New(apperr.Invalid, "a rollback needs the deployment to roll back to")
		}
	default:
		return "", apperr.New(apperr.Invalid, "the trigger must be manual, api, webhook or rollback")
	}
	commit := strings.ToLower(strings.TrimSpace(in.Commit))
	if commit != "" && !wire.IsCommitID(commit) {
		return "", apperr.New(apperr.Invalid, "the commit must be a whole commit id: 40 hexadecimal digits (abbreviated ids are not accepted)")
	}
	var id string
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.LockAppForDeployment(ctx, in.AppID); err != nil {
			return err
		}
		app, err := tx.GetApp(ctx, in.AppID)
		if err != nil {
			return err
		}
		if app.Slug == "" {
			return apperr.New(apperr.Conflict, "the app %s has no slug: edit it to give it one before deploying", app.Name)
		}
		srv, err := tx.GetServer(ctx, app.ServerID)
		if err != nil {
			return err
		}
		if srv.AgentCertSHA256 == "" {
			return apperr.New(apperr.Conflict, "the agent of %s is not installed yet: provision the server first", srv.Name)
		}
		var from *store.Deployment
		if in.RollbackFrom != "" {
			if from, err = tx.GetDeployment(ctx, in.RollbackFrom); err != nil {
				return apperr.Wrap(err, apperr.NotFound, "the deployment to roll back to does not exist")
			}
			switch {
			case from.AppID != app.ID:
				return apperr.New(apperr.Invalid, "the deployment to roll back to belongs to another app")
			case from.Status != store.DeploymentSuccess:
				return apperr.New(apperr.Conflict, "only a successful deployment can be rolled back to; this one is %s", from.Status)
			case from.CommitHash == "":
				return apperr.New(apperr.Conflict, "the commit of that deployment is not known")
			case commit != "" && !strings.HasPrefix(from.CommitHash, commit):
				return apperr.New(apperr.Invalid, "a rollback deploys the commit of the deployment it rolls back to")
			}
			commit = from.CommitHash
			if in.Environment == "" {
				env = from.Environment
			}
		}
		desc := env + " deployment of " + app.Name
		changes := map[string]store.Change{"environment": {New: env}, "triggered_by": {New: trigger}}
		if commit != "" {
			changes["commit"] = store.Change{New: commit}
		}
		if trigger == TriggerWebhook {
			q, ok, err := tx.QueuedWebhookDeployment(ctx, app.ID, env)
			if err != nil {
				return err
			}
			joined := ok
			if ok && commit != q.RequestedCommit {
				// Pushes deploy the branch head (commit ""), so this is
				// only for a caller that names a commit. The queued one
				// may have started since it was read: then it is not
				// joined, and a new deployment is queued.
				if joined, err = tx.SetQueuedDeploymentCommit(ctx, q.ID, commit); err != nil {
					return err
				}
			}
			if joined {
				id = q.ID
				changes["deployment_id"] = store.Change{New: q.ID}
				return s.record(ctx, tx, p, m, "deploy_joined", "App", app.ID, "a push joined the queued "+desc, changes)
			}
		}
		n := store.NewDeployment{AppID: app.ID, Branch: app.GitBranch, Environment: env, TriggeredBy: trigger, RequestedCommit: commit}
		if p != nil && p.User != nil {
			n.UserID = p.User.ID
		}
		action := "deploy"
		if from != nil {
			n.IsRollback, n.RollbackFromID, action = true, from.ID, "rollback"
			changes["rollback_from_id"] = store.Change{New: from.ID}
			desc = "rollback of " + desc + " to " + wire.ShortCommit(commit)
		}
		d, err := tx.InsertDeployment(ctx, n)
		if err != nil {
			return err
		}
		if _, _, err := tx.EnqueueJob(ctx, store.NewJob{ID: d.ID, Kind: RunKind, Payload: runPayload{DeploymentID: d.ID},
			ConcurrencyKey: "app:" + app.ID, SubjectType: "deployment", SubjectID: d.ID, MaxAttempts: runAttempts}); err != nil {
			return err
		}
		id = d.ID
		changes["deployment_id"] = store.Change{New: d.ID}
		return s.record(ctx, tx, p, m, action, "App", app.ID, desc+" queued", changes)
	})
	if err != nil {
		return "", err
	}
	s.Wake()
	return id, nil
}

// Rollback redeploys the commit of an earlier successful deployment, to the
// same environment.
func (s *Service) Rollback(ctx context.Context, p *auth.Principal, deploymentID string, m auth.Meta) (string, error) {
	from, err := s.DB.GetDeployment(ctx, deploymentID)
	if err != nil {
		return "", err
	}
	return s.Deploy(ctx, p, DeployInput{AppID: from.AppID, Environment: from.Environment, RollbackFrom: from.ID, Trigger: TriggerRollback}, m)
}

// Cancel stops a deployment. A queued one is cancelled at once, with its
// job. For a running one the request is recorded (error_message says who
// asked) and the job that drives it tells the agent, which stops the running
// step and leaves the previous release serving; the deployment ends
// cancelled when the agent says so, or as whatever it reached first.
func (s *Service) Cancel(ctx context.Context, p *auth.Principal, id string, m auth.Meta) (*store.Deployment, error) {
	who := "cancelled"
	if p != nil && p.User != nil {
		who = "cancelled by " + p.User.Email
	}
	var d *store.Deployment
	var dequeued bool
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		cur, err := tx.GetDeployment(ctx, id)
		if err != nil {
			return err
		}
		app, err := tx.GetApp(ctx, cur.AppID)
		if err != nil {
			return err
		}
		d = cur
		changes := map[string]store.Change{"deployment_id": {New: id}, "environment": {New: cur.Environment}, "status": {Old: cur.Status}}
		switch cur.Status {
		case store.DeploymentQueued:
			var ended bool
			if d, ended, err = s.finishDeployment(ctx, tx, id, store.DeploymentEnd{Status: store.DeploymentCancelled, Error: who}); err != nil {
				return err
			}
			if !ended {
				return apperr.New(apperr.Conflict, "the deployment started meanwhile: cancel it again")
			}
			dequeued = true
			changes["status"] = store.Change{Old: store.DeploymentQueued, New: store.DeploymentCancelled}
		case store.DeploymentRunning:
			if _, err := tx.RequestDeploymentCancel(ctx, id, who); err != nil {
				return err
			}
			if d, err = tx.GetDeployment(ctx, id); err != nil {
				return err
			}
			changes["status"] = store.Change{Old: store.DeploymentRunning, New: "cancel requested"}
		default:
			return apperr.New(apperr.Conflict, "the deployment has already ended (%s)", cur.Status)
		}
		return s.record(ctx, tx, p, m, "deploy_cancel", "App", app.ID, cur.Environment+" deployment of "+app.Name+" "+who, changes)
	})
	if err != nil {
		return nil, err
	}
	if dequeued {
		// The job may have been claimed meanwhile; its handler then finds
		// the deployment ended and stops.
		if _, err := s.DB.RequestJobCancel(ctx, d.JobID); err != nil && !apperr.Is(err, apperr.NotFound) {
			s.Log.Warn("cancel a queued deployment's job", "deployment_id", id, "err", err)
		}
	}
	s.logs.notify(id)
	s.logs.notify(cancelKey(id))
	return d, nil
}

// cancelKey is the broker key that wakes a deployment's job in this process
// when a cancel is requested.
func cancelKey(id string) string { return "cancel:" + id }

// finishDeployment ends a deployment in tx and, when it failed, tells admins
// and operators (deployment_failed) in the same transaction.
func (s *Service) finishDeployment(ctx context.Context, tx *store.Tx, id string, end store.DeploymentEnd) (*store.Deployment, bool, error) {
	d, ended, err := tx.FinishDeployment(ctx, id, end)
	if err != nil || !ended || d.Status != store.DeploymentFailed || s.Notify == nil {
		return d, ended, err
	}
	app, err := tx.GetApp(ctx, d.AppID)
	if err != nil {
		return nil, false, err
	}
	what := "the branch head of " + d.Branch
	if d.CommitHash != "" {
		what = "commit " + wire.ShortCommit(d.CommitHash)
	}
	msg := fmt.Sprintf("The %s deployment of %s (%s) failed: %s", d.Environment, app.Name, what, d.ErrorMessage)
	if s.BaseURL != nil {
		msg += "\nLog: " + strings.TrimRight(s.BaseURL.String(), "/") + "/deployments/" + d.ID
	}
	_, err = s.Notify.Raise(ctx, tx, notify.Event{Type: notify.DeploymentFailed, Title: "Deployment of " + app.Name + " failed",
		Message: msg, SubjectType: "App", SubjectID: app.ID, ServerID: app.ServerID})
	if err != nil {
		return nil, false, err
	}
	return d, true, nil
}

// DeploymentDuration is how long a deployment took, or has been running.
func DeploymentDuration(d *store.Deployment, now time.Time) time.Duration {
	switch {
	case d.DurationSeconds != nil:
		return time.Duration(*d.DurationSeconds) * time.Second
	case d.StartedAt != nil && d.FinishedAt == nil:
		return now.Sub(*d.StartedAt).Round(time.Second)
	}
	return 0
}
