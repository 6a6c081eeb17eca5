package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"upanel/internal/apperr"
)

// Push-to-deploy: the deliveries each app has seen, so that a replayed
// delivery id is refused (apps.go finds the app behind a hook URL and opens
// its secret). And the few queries of the running-app controls.

// Push-to-deploy senders (deploy_hook_deliveries.provider).
const (
	HookGitHub  = "github"
	HookGitLab  = "gitlab"
	HookGitea   = "gitea" // Gitea and Forgejo
	HookGeneric = "generic"
)

// Delivery outcomes (deploy_hook_deliveries.outcome, at most 20 characters).
const (
	// HookReceived: claimed, and a deployment is being queued.
	HookReceived = "received"
	// HookDeployed: a deployment was queued (deployment_id says which).
	HookDeployed = "deployed"
	// HookFailed: the deployment could not be queued. A failed delivery may
	// be sent again under the same id (a sender's retry or redelivery).
	HookFailed = "failed"
	// Ignored deliveries: a push to another branch, a tag push, a branch
	// deletion, an event that never deploys (pull and merge requests...),
	// a ping.
	HookIgnoredBranch = "ignored_branch"
	HookIgnoredTag    = "ignored_tag"
	HookIgnoredDelete = "ignored_delete"
	HookIgnoredEvent  = "ignored_event"
	HookPing          = "ping"
)

// KeepDeployHookDeliveries is how long deliveries are remembered (migration
// 025): a delivery id older than this is no longer recognised as a replay.
const KeepDeployHookDeliveries = 30 * 24 * time.Hour

// DeployHookDelivery is a row of deploy_hook_deliveries.
type DeployHookDelivery struct {
	ID           string
	AppID        string
	DeliveryID   string // the sender's id: 1-100 printable ASCII characters
	Provider     string // github, gitlab, gitea, generic
	Event        string // the sender's event name, 1-50 characters
	Outcome      string
	DeploymentID string // empty unless a deployment was queued
	CreatedAt    time.Time
}

func validDeliveryID(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// ClaimDeployHookDelivery records a delivery an app received, with its
// outcome so far, and returns the row's id. A delivery id the app has already
// seen is a Conflict (a replay), unless that delivery failed to queue its
// deployment, or was claimed over staleDeliveryClaim ago and never finished
// (the panel died in between): then this one takes its row over, so that a
// sender's retry gets another chance. Claiming is atomic: of two concurrent
// deliveries with one id, one wins.
// staleDeliveryClaim is how long a delivery may stay received: a live
// request finishes it within its own timeout, far sooner.
const staleDeliveryClaim = 5 * time.Minute

func (db *DB) ClaimDeployHookDelivery(ctx context.Context, d DeployHookDelivery) (string, error) {
	if d.ID != "" || !d.CreatedAt.IsZero() || d.DeploymentID != "" {
		return "", apperr.New(apperr.Invalid, "delivery id, time and deployment are assigned by the store")
	}
	if !validDeliveryID(d.DeliveryID) {
		return "", apperr.New(apperr.Invalid, "a delivery id must be 1-100 printable ASCII characters")
	}
	if !validName(d.Event) || d.Outcome == "" || len(d.Outcome) > 20 {
		return "", apperr.New(apperr.Invalid, "bad delivery event or outcome")
	}
	switch d.Provider {
	case HookGitHub, HookGitLab, HookGitea, HookGeneric:
	default:
		return "", apperr.New(apperr.Invalid, "unknown delivery provider %q", d.Provider)
	}
	var id string
	err := db.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		// A failed or stranded delivery is taken over by its retry. A
		// stranded one may have queued its deployment before the panel
		// died: the retry then joins it, or deploys the same branch head.
		err := tx.queryRow(ctx, `UPDATE deploy_hook_deliveries SET provider = ?, event = ?, outcome = ?, deployment_id = NULL, created_at = ?
			WHERE app_id = ? AND delivery_id = ? AND (outcome = ? OR (outcome = ? AND created_at < ?)) RETURNING id`,
			d.Provider, d.Event, d.Outcome, now, d.AppID, d.DeliveryID, HookFailed, HookReceived, now.Add(-staleDeliveryClaim)).Scan(&id)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: retake delivery: %w", err)
		}
		id = NewID()
		_, err = tx.exec(ctx, `INSERT INTO deploy_hook_deliveries (id, app_id, delivery_id, provider, event, outcome, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, id, d.AppID, d.DeliveryID, d.Provider, d.Event, d.Outcome, now)
		if isUniqueViolation(err) {
			return apperr.New(apperr.Conflict, "delivery already processed")
		}
		if err != nil {
			return fmt.Errorf("store: insert delivery: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// FinishDeployHookDelivery sets a claimed delivery's outcome and the
// deployment it queued (empty for none).
func (tx *Tx) FinishDeployHookDelivery(ctx context.Context, id, outcome, deploymentID string) error {
	if outcome == "" || len(outcome) > 20 {
		return apperr.New(apperr.Invalid, "bad delivery outcome")
	}
	res, err := tx.exec(ctx, "UPDATE deploy_hook_deliveries SET outcome = ?, deployment_id = ? WHERE id = ?", outcome, nullStr(deploymentID), id)
	if err != nil {
		return fmt.Errorf("store: finish delivery: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.New(apperr.NotFound, "delivery not found")
	}
	return nil
}

// DeployHookDeliveries returns an app's most recent deliveries, newest first
// (limit defaults to 50, at most 500).
func (db *DB) DeployHookDeliveries(ctx context.Context, appID string, limit int) ([]DeployHookDelivery, error) {
	rows, err := db.query(ctx, `SELECT id, app_id, delivery_id, provider, event, outcome, COALESCE(deployment_id, ''), created_at
		FROM deploy_hook_deliveries WHERE app_id = ? ORDER BY created_at DESC, id DESC LIMIT ?`, appID, listLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: deliveries: %w", err)
	}
	defer rows.Close()
	var out []DeployHookDelivery
	for rows.Next() {
		var d DeployHookDelivery
		var created nullTime
		if err := rows.Scan(&d.ID, &d.AppID, &d.DeliveryID, &d.Provider, &d.Event, &d.Outcome, &d.DeploymentID, &created); err != nil {
			return nil, err
		}
		d.CreatedAt = created.Time
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeleteOldDeployHookDeliveries removes up to limit deliveries received
// before cutoff.
func (db *DB) DeleteOldDeployHookDeliveries(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return db.deleteBatch(ctx, "deploy_hook_deliveries", "created_at < ?", limit, cutoff)
}

// RecentSecurityEvent reports whether an event of this type about this
// server was recorded at or after since: callers use it to record a burst of
// refusals once rather than once per request.
func (db *DB) RecentSecurityEvent(ctx context.Context, eventType, serverID string, since time.Time) (bool, error) {
	var one int
	err := db.queryRow(ctx, `SELECT 1 FROM security_events WHERE event_type = ? AND server_id = ? AND created_at >= ? LIMIT 1`,
		eventType, serverID, since).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: recent security event: %w", err)
	}
	return true, nil
}

// Running-app controls.

// DeploymentRunning reports whether a deployment of the app's environment
// is running now.
func (db *DB) DeploymentRunning(ctx context.Context, appID, environment string) (bool, error) {
	var one int
	err := db.queryRow(ctx, `SELECT 1 FROM deployments WHERE app_id = ? AND environment = ? AND status = 'running' LIMIT 1`,
		appID, environment).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: running deployment: %w", err)
	}
	return true, nil
}

// SetAppRunStatus records that an app's production containers were started
// (running) or stopped. Only an app that has been deployed changes
// (status running, stopped or failed); a pending or deploying app keeps its
// status, which its deployment sets. It returns the status before.
func (tx *Tx) SetAppRunStatus(ctx context.Context, id, status string) (old string, changed bool, err error) {
	if status != AppRunning && status != AppStopped {
		return "", false, apperr.New(apperr.Invalid, "bad run status %q", status)
	}
	if err := tx.queryRow(ctx, "SELECT status FROM apps WHERE id = ?", id).Scan(&old); err != nil {
		return "", false, notFound(err, "app")
	}
	if old == status || (old != AppRunning && old != AppStopped && old != AppFailed) {
		return old, false, nil
	}
	res, err := tx.exec(ctx, "UPDATE apps SET status = ? WHERE id = ? AND status = ?", status, id, old)
	if err != nil {
		return "", false, fmt.Errorf("store: set app status: %w", err)
	}
	n, _ := res.RowsAffected()
	return old, n == 1, nil
}
