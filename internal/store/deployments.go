package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Deployment states. success, failed and cancelled are terminal.
const (
	DeploymentQueued    = "queued"
	DeploymentRunning   = "running"
	DeploymentSuccess   = "success"
	DeploymentFailed    = "failed"
	DeploymentCancelled = "cancelled"
)

// MaxDeploymentLog bounds deployments.log, in characters. Lines past it are
// not kept: the line that would cross it is replaced by a note, and the
// deployment goes on (log_seq still counts every line the agent sent).
const MaxDeploymentLog = 4 << 20

// DeploymentLogTruncated is the note that replaces the first line past
// MaxDeploymentLog.
const DeploymentLogTruncated = "[upanel] the log is longer than the panel keeps; later lines are not stored"

// Deployment is a row of deployments: every seed column and the 025
// additions. Log is filled only by GetDeploymentLog; lists leave it empty.
type Deployment struct {
	ID     string
	AppID  string
	UserID string // who asked; "" for push-to-deploy or a deleted user
	// CommitHash is what was checked out (the agent's report); until then
	// the requested commit, or "" for the branch head.
	CommitHash    string
	CommitMessage string
	Branch        string
	Environment   string // production or staging
	Status        string
	StartedAt     *time.Time
	FinishedAt    *time.Time
	// DurationSeconds is set when a deployment that started ends.
	DurationSeconds *int
	// ErrorMessage says why a deployment failed or who cancelled it. On a
	// running deployment it is set once a cancel was requested.
	ErrorMessage   string
	IsRollback     bool
	RollbackFromID string
	CreatedAt      time.Time
	// TriggeredBy is manual, api, webhook or rollback.
	TriggeredBy     string
	RequestedCommit string
	// LogSeq is the sequence number of the last log line stored: the
	// agent's numbering, from 1, one stored line per number.
	LogSeq int
	JobID  string
	Log    string
}

// Terminal reports whether the deployment has ended.
func (d *Deployment) Terminal() bool { return DeploymentTerminal(d.Status) }

// DeploymentTerminal reports whether a deployment status is an end state.
func DeploymentTerminal(status string) bool {
	return status == DeploymentSuccess || status == DeploymentFailed || status == DeploymentCancelled
}

// CancelRequested reports whether someone asked to cancel a running
// deployment.
func (d *Deployment) CancelRequested() bool {
	return d.Status == DeploymentRunning && d.ErrorMessage != ""
}

// deploymentColumns reads a deployment from "deployments d".
const deploymentColumns = `d.id, d.app_id, COALESCE(d.user_id, ''), d.commit_hash, COALESCE(d.commit_message, ''), d.branch, d.environment,
	d.status, d.started_at, d.finished_at, d.duration_seconds, COALESCE(d.error_message, ''), d.is_rollback,
	COALESCE(d.rollback_from_id, ''), d.created_at, d.triggered_by, COALESCE(d.requested_commit, ''), d.log_seq, COALESCE(d.job_id, '')`

func scanDeployment(s interface{ Scan(...any) error }, extra ...any) (*Deployment, error) {
	var d Deployment
	var started, finished, created nullTime
	var duration sql.NullInt64
	dest := []any{&d.ID, &d.AppID, &d.UserID, &d.CommitHash, &d.CommitMessage, &d.Branch, &d.Environment, &d.Status,
		&started, &finished, &duration, &d.ErrorMessage, &d.IsRollback, &d.RollbackFromID, &created,
		&d.TriggeredBy, &d.RequestedCommit, &d.LogSeq, &d.JobID}
	if err := s.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	// CHAR(26) columns come back padded from PostgreSQL when shorter.
	d.UserID, d.RollbackFromID, d.JobID = strings.TrimSpace(d.UserID), strings.TrimSpace(d.RollbackFromID), strings.TrimSpace(d.JobID)
	d.StartedAt, d.FinishedAt, d.CreatedAt = started.ptr(), finished.ptr(), created.Time
	d.DurationSeconds = intPtr(duration)
	return &d, nil
}

// NewDeployment is a deployment to queue. The caller validates it.
type NewDeployment struct {
	AppID           string
	UserID          string
	Branch          string
	Environment     string
	TriggeredBy     string
	RequestedCommit string
	IsRollback      bool
	RollbackFromID  string
}

// InsertDeployment adds a queued deployment; its job, enqueued by the caller
// in the same transaction, has the deployment's id (job_id).
func (tx *Tx) InsertDeployment(ctx context.Context, n NewDeployment) (*Deployment, error) {
	now := tx.Now()
	uid, err := newIDAt(now)
	if err != nil {
		return nil, err
	}
	id := uid.String()
	_, err = tx.exec(ctx, `INSERT INTO deployments (id, app_id, user_id, commit_hash, branch, environment, status, is_rollback,
		rollback_from_id, created_at, triggered_by, requested_commit, log_seq, job_id)
		VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, 0, ?)`,
		id, n.AppID, nullString(n.UserID), truncate(n.RequestedCommit, 40), cleanText(n.Branch, 100), n.Environment, n.IsRollback,
		nullString(n.RollbackFromID), now, n.TriggeredBy, nullString(truncate(n.RequestedCommit, 40)), id)
	if err != nil {
		return nil, fmt.Errorf("store: insert deployment: %w", err)
	}
	return tx.GetDeployment(ctx, id)
}

// GetDeployment returns a deployment without its log.
func (tx *Tx) GetDeployment(ctx context.Context, id string) (*Deployment, error) {
	d, err := scanDeployment(tx.queryRow(ctx, "SELECT "+deploymentColumns+" FROM deployments d WHERE d.id = ?", id))
	return d, notFound(err, "deployment")
}

// GetDeployment returns a deployment without its log.
func (db *DB) GetDeployment(ctx context.Context, id string) (*Deployment, error) {
	d, err := scanDeployment(db.queryRow(ctx, "SELECT "+deploymentColumns+" FROM deployments d WHERE d.id = ?", id))
	return d, notFound(err, "deployment")
}

// GetDeploymentLog returns a deployment with its whole log.
func (db *DB) GetDeploymentLog(ctx context.Context, id string) (*Deployment, error) {
	var log sql.NullString
	d, err := scanDeployment(db.queryRow(ctx, "SELECT "+deploymentColumns+", d.log FROM deployments d WHERE d.id = ?", id), &log)
	if err != nil {
		return nil, notFound(err, "deployment")
	}
	d.Log = log.String
	return d, nil
}

// DeploymentLogTail returns the stored log from a character offset on, with
// the deployment's state: a follower keeps its offset and reads only what is
// new. Offsets count characters, as both databases' SUBSTR does.
func (db *DB) DeploymentLogTail(ctx context.Context, id string, offset int) (tail string, d *Deployment, err error) {
	var t sql.NullString
	d, err = scanDeployment(db.queryRow(ctx, "SELECT "+deploymentColumns+", SUBSTR(COALESCE(d.log, ''), ?) FROM deployments d WHERE d.id = ?",
		offset+1, id), &t)
	if err != nil {
		return "", nil, notFound(err, "deployment")
	}
	return t.String, d, nil
}

// DeploymentFilter selects deployments of an app, newest first.
type DeploymentFilter struct {
	Environment string // "" for both
	Status      string // "" for any
	// Before is a deployment id: the page starts after it.
	Before string
	Limit  int // default 50, at most 500
}

// ListDeployments returns an app's deployments, newest first, without logs.
func (db *DB) ListDeployments(ctx context.Context, appID string, f DeploymentFilter) ([]*Deployment, error) {
	q, args := "SELECT "+deploymentColumns+" FROM deployments d WHERE d.app_id = ?", []any{appID}
	if f.Environment != "" {
		q, args = q+" AND d.environment = ?", append(args, f.Environment)
	}
	if f.Status != "" {
		q, args = q+" AND d.status = ?", append(args, f.Status)
	}
	if f.Before != "" {
		// Ids are ULIDs minted from the store's clock, so id order is
		// creation order.
		q, args = q+" AND d.id < ?", append(args, f.Before)
	}
	q += " ORDER BY d.id DESC LIMIT ?"
	args = append(args, listLimit(f.Limit))
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list deployments: %w", err)
	}
	defer rows.Close()
	out := []*Deployment{}
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// LockAppForDeployment serialises deployment requests of an app until the
// transaction ends: on PostgreSQL it locks the app's row, so that two pushes
// arriving together cannot both find no queued deployment and both queue one;
// SQLite's single writer already serialises transactions.
func (tx *Tx) LockAppForDeployment(ctx context.Context, appID string) error {
	if tx.db.d.name != "postgres" {
		return nil
	}
	var id string
	err := tx.queryRow(ctx, "SELECT id FROM apps WHERE id = ? FOR UPDATE", appID).Scan(&id)
	return notFound(err, "app")
}

// QueuedWebhookDeployment finds a queued push-to-deploy deployment of an app's
// environment, which a new push joins instead of queueing another.
func (tx *Tx) QueuedWebhookDeployment(ctx context.Context, appID, environment string) (*Deployment, bool, error) {
	d, err := scanDeployment(tx.queryRow(ctx, "SELECT "+deploymentColumns+` FROM deployments d
		WHERE d.app_id = ? AND d.environment = ? AND d.status = 'queued' AND d.triggered_by = 'webhook' ORDER BY d.id LIMIT 1`, appID, environment))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return d, true, nil
}

// SetQueuedDeploymentCommit changes the commit a queued deployment will
// deploy (a newer push joined it). It reports false if it already started.
func (tx *Tx) SetQueuedDeploymentCommit(ctx context.Context, id, commit string) (bool, error) {
	c := nullString(truncate(commit, 40))
	res, err := tx.exec(ctx, `UPDATE deployments SET requested_commit = ?, commit_hash = COALESCE(?, '') WHERE id = ? AND status = 'queued'`, c, c, id)
	if err != nil {
		return false, fmt.Errorf("store: update queued deployment: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// OtherRunningDeployment returns the id of another running deployment of the
// app, if there is one.
func (db *DB) OtherRunningDeployment(ctx context.Context, appID, id string) (string, bool, error) {
	var other string
	err := db.queryRow(ctx, "SELECT id FROM deployments WHERE app_id = ? AND id <> ? AND status = 'running' ORDER BY id LIMIT 1", appID, id).Scan(&other)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return other, true, nil
}

// MarkDeploymentRunning starts a queued deployment (started_at, and for
// production apps.status deploying), or finds it running already (a resumed
// job). ok is false when it has ended, cancelled before it began for one.
//
// It locks the app's row before it changes the deployment's, in the order
// Deploy does (LockAppForDeployment, then the queued deployment), so that the
// two never wait for each other on PostgreSQL.
func (db *DB) MarkDeploymentRunning(ctx context.Context, id string) (d *Deployment, ok bool, err error) {
	err = db.InTx(ctx, func(tx *Tx) error {
		if d, err = tx.GetDeployment(ctx, id); err != nil {
			return err
		}
		if d.Status == DeploymentQueued {
			if err := tx.LockAppForDeployment(ctx, d.AppID); err != nil {
				return err
			}
			// Read again under the lock: a push may have joined it.
			if d, err = tx.GetDeployment(ctx, id); err != nil {
				return err
			}
		}
		if d.Status == DeploymentRunning {
			ok = true
			return nil
		}
		if d.Status != DeploymentQueued {
			return nil
		}
		now := tx.Now()
		res, err := tx.exec(ctx, "UPDATE deployments SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'", now, id)
		if err != nil {
			return fmt.Errorf("store: start deployment: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		if d.Environment == EnvProduction {
			if _, err := tx.exec(ctx, "UPDATE apps SET status = 'deploying', updated_at = ? WHERE id = ?", now, d.AppID); err != nil {
				return fmt.Errorf("store: start deployment: %w", err)
			}
		}
		d.Status, d.StartedAt, ok = DeploymentRunning, &now, true
		return nil
	})
	return d, ok, err
}

// AppendDeploymentLog stores log lines of a running deployment and advances
// log_seq from after to last, in one statement that applies only if log_seq
// is still after: a job that resumes, or two workers that both believe they
// own the deployment, never store a line twice. ok is false when nothing was
// stored for that reason (or the deployment ended). Lines must be single
// lines; they are stored one per sequence number, up to MaxDeploymentLog.
func (db *DB) AppendDeploymentLog(ctx context.Context, id string, after int, lines []string, last int) (ok bool, err error) {
	if last < after {
		return false, fmt.Errorf("store: deployment log: last %d is before %d", last, after)
	}
	err = db.InTx(ctx, func(tx *Tx) error {
		var size, seq int
		var status string
		if err := tx.queryRow(ctx, "SELECT COALESCE(LENGTH(log), 0), log_seq, status FROM deployments WHERE id = ?", id).Scan(&size, &seq, &status); err != nil {
			return notFound(err, "deployment")
		}
		if seq != after || status != DeploymentRunning {
			return nil
		}
		var b strings.Builder
		for _, l := range lines {
			l = cleanLogLine(l)
			n := utf8.RuneCountInString(l) + 1
			if size+n > MaxDeploymentLog {
				// The note goes past the bound, once: a log longer than
				// it has its note already.
				if size <= MaxDeploymentLog {
					b.WriteString(DeploymentLogTruncated + "\n")
				}
				break
			}
			b.WriteString(l)
			b.WriteByte('\n')
			size += n
		}
		res, err := tx.exec(ctx, "UPDATE deployments SET log = COALESCE(log, '') || ?, log_seq = ? WHERE id = ? AND log_seq = ? AND status = 'running'",
			b.String(), last, id, after)
		if err != nil {
			return fmt.Errorf("store: deployment log: %w", err)
		}
		n, _ := res.RowsAffected()
		ok = n == 1
		return nil
	})
	return ok, err
}

// cleanLogLine makes a line storable as one line on both databases.
func cleanLogLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.ContainsAny(s, "\x00\r\n") {
		s = strings.NewReplacer("\x00", "", "\r", " ", "\n", " ").Replace(s)
	}
	return s
}

// DeploymentEnd is how a deployment ended.
type DeploymentEnd struct {
	Status string // success, failed or cancelled
	// Error is why it failed, or who cancelled it; ignored on success.
	Error         string
	Commit        string // the commit checked out, when known
	CommitMessage string
	// RestoreFailed: the deployment had changed the containers and the
	// agent could not put the previous release back, so a production app
	// is failed rather than running its previous release.
	RestoreFailed bool
}

// FinishDeployment ends a queued or running deployment: finished_at,
// duration_seconds, error_message and the commit. For production it updates
// the app: a success makes it running at the new commit; a failure or a
// cancel of a deployment that had started leaves the previous release
// serving, so the app is running again if it had one (current_commit is
// set), else failed (or pending, for a cancel). ended is false if the
// deployment had ended already; d is the row as it is now.
func (tx *Tx) FinishDeployment(ctx context.Context, id string, e DeploymentEnd) (d *Deployment, ended bool, err error) {
	if !DeploymentTerminal(e.Status) {
		return nil, false, fmt.Errorf("store: %q is not a terminal deployment status", e.Status)
	}
	if d, err = tx.GetDeployment(ctx, id); err != nil {
		return nil, false, err
	}
	if d.Terminal() {
		return d, false, nil
	}
	if d.Environment == EnvProduction && d.Status == DeploymentRunning {
		// The app's row first, then the deployment's, as everywhere.
		if err := tx.LockAppForDeployment(ctx, d.AppID); err != nil {
			return nil, false, err
		}
	}
	now := tx.Now()
	var duration *int
	if d.StartedAt != nil {
		s := int(now.Sub(*d.StartedAt).Round(time.Second) / time.Second)
		duration = &s
	}
	msg := cleanText(e.Error, 4000)
	if e.Status == DeploymentSuccess {
		msg = ""
	}
	commit, message := d.CommitHash, d.CommitMessage
	if e.Commit != "" {
		commit = truncate(e.Commit, 40)
	}
	if e.CommitMessage != "" {
		message = cleanText(e.CommitMessage, 4000)
	}
	res, err := tx.exec(ctx, `UPDATE deployments SET status = ?, finished_at = ?, duration_seconds = ?, error_message = ?,
		commit_hash = ?, commit_message = ? WHERE id = ? AND status = ?`,
		e.Status, now, duration, nullString(msg), commit, nullString(message), id, d.Status)
	if err != nil {
		return nil, false, fmt.Errorf("store: finish deployment: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		d, err = tx.GetDeployment(ctx, id)
		return d, false, err
	}
	if d.Environment == EnvProduction && d.Status == DeploymentRunning {
		switch e.Status {
		case DeploymentSuccess:
			_, err = tx.exec(ctx, "UPDATE apps SET status = 'running', current_commit = ?, updated_at = ? WHERE id = ?", nullString(commit), now, d.AppID)
		case DeploymentFailed, DeploymentCancelled:
			if e.RestoreFailed {
				_, err = tx.exec(ctx, "UPDATE apps SET status = 'failed', updated_at = ? WHERE id = ? AND status = 'deploying'", now, d.AppID)
				break
			}
			if e.Status == DeploymentFailed {
				_, err = tx.exec(ctx, `UPDATE apps SET status = CASE WHEN current_commit IS NULL THEN 'failed' ELSE 'running' END, updated_at = ?
				WHERE id = ? AND status = 'deploying'`, now, d.AppID)
				break
			}
			_, err = tx.exec(ctx, `UPDATE apps SET status = CASE WHEN current_commit IS NULL THEN 'pending' ELSE 'running' END, updated_at = ?
				WHERE id = ? AND status = 'deploying'`, now, d.AppID)
		}
		if err != nil {
			return nil, false, fmt.Errorf("store: finish deployment: %w", err)
		}
	}
	d, err = tx.GetDeployment(ctx, id)
	return d, err == nil, err
}

// RequestDeploymentCancel records a request to cancel a running deployment:
// its error_message says who asked, and the job running it sees the request
// and tells the agent. It reports false if the deployment is not running or a
// cancel was requested already.
func (tx *Tx) RequestDeploymentCancel(ctx context.Context, id, message string) (bool, error) {
	res, err := tx.exec(ctx, "UPDATE deployments SET error_message = ? WHERE id = ? AND status = 'running' AND error_message IS NULL",
		cleanText(message, 4000), id)
	if err != nil {
		return false, fmt.Errorf("store: cancel deployment: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// StrandedDeployment is a deployment that is queued or running although the
// job that runs it has ended (or is gone): the job failed for good, lost its
// last attempt to a crash, or its handler panicked.
type StrandedDeployment struct {
	*Deployment
	JobStatus string // "" when the job is gone
	JobError  string
}

// StrandedDeployments returns up to limit deployments whose job has ended
// while they have not.
func (db *DB) StrandedDeployments(ctx context.Context, limit int) ([]StrandedDeployment, error) {
	rows, err := db.query(ctx, "SELECT "+deploymentColumns+`, COALESCE(j.status, ''), COALESCE(j.last_error, '')
		FROM deployments d LEFT JOIN jobs j ON j.id = d.job_id
		WHERE d.status IN ('queued', 'running') AND (j.id IS NULL OR j.status IN ('succeeded', 'failed', 'cancelled'))
		ORDER BY d.id LIMIT ?`, listLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: stranded deployments: %w", err)
	}
	defer rows.Close()
	var out []StrandedDeployment
	for rows.Next() {
		var s StrandedDeployment
		d, err := scanDeployment(rows, &s.JobStatus, &s.JobError)
		if err != nil {
			return nil, err
		}
		s.Deployment = d
		out = append(out, s)
	}
	return out, rows.Err()
}

// LastSuccessfulDeployment returns the newest successful deployment of an
// app's environment.
func (db *DB) LastSuccessfulDeployment(ctx context.Context, appID, environment string) (*Deployment, error) {
	d, err := scanDeployment(db.queryRow(ctx, "SELECT "+deploymentColumns+` FROM deployments d
		WHERE d.app_id = ? AND d.environment = ? AND d.status = 'success' ORDER BY d.id DESC LIMIT 1`, appID, environment))
	return d, notFound(err, "successful deployment")
}
