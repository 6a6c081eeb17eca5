package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"upanel/internal/apperr"
)

// Job states. succeeded, failed and cancelled are terminal.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// ErrLeaseLost means the worker no longer holds the job: its lease expired and
// another worker was given the job, or it was finished elsewhere. The worker must
// stop and record nothing.
var ErrLeaseLost = errors.New("store: job lease lost")

// Job is a row of the jobs table.
type Job struct {
	ID                string
	Kind              string
	Payload           json.RawMessage
	Status            string
	UniqueKey         string
	ConcurrencyKey    string
	SubjectType       string
	SubjectID         string
	Attempts          int
	MaxAttempts       int
	RunAt             time.Time
	LeaseOwner        string
	LeaseExpiresAt    *time.Time
	CancelRequestedAt *time.Time
	LastError         string
	StartedAt         *time.Time
	FinishedAt        *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Terminal reports whether the job has ended.
func (j *Job) Terminal() bool {
	return j.Status == JobSucceeded || j.Status == JobFailed || j.Status == JobCancelled
}

// NewJob describes a job to enqueue. Payloads never hold secrets: a job names
// the rows it acts on, and secrets stay in their encrypted columns.
type NewJob struct {
	// ID makes enqueueing idempotent: a second enqueue with the same id is a
	// no-op. Empty means a fresh ULID.
	ID   string
	Kind string
	// Payload is marshalled to JSON; nil means {}.
	Payload any
	// UniqueKey: while a queued or running job has this key, enqueueing another
	// returns the existing one instead.
	UniqueKey string
	// ConcurrencyKey: jobs with the same key run one at a time, in order.
	ConcurrencyKey string
	SubjectType    string
	SubjectID      string
	MaxAttempts    int       // 0 means 5
	RunAt          time.Time // zero means now
}

// DeterministicID returns a ULID fixed by its parts and timestamped at t, so
// that several panel processes scheduling the same run produce the same id and
// only one of them is enqueued.
func DeterministicID(t time.Time, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	var id ulid.ULID
	if err := id.SetTime(ulid.Timestamp(t)); err != nil {
		panic(err) // only for times past the year 10889
	}
	copy(id[6:], h[:10])
	return id.String()
}

const jobColumns = `id, kind, payload, status, unique_key, concurrency_key, subject_type, subject_id,
	attempts, max_attempts, run_at, lease_owner, lease_expires_at, cancel_requested_at, last_error,
	started_at, finished_at, created_at, updated_at`

func scanJob(s interface{ Scan(...any) error }) (*Job, error) {
	var j Job
	var payload string
	var unique, conc, stype, sid, owner, lastErr sql.NullString
	var runAt, leaseExp, cancelReq, started, finished, created, updated nullTime
	err := s.Scan(&j.ID, &j.Kind, &payload, &j.Status, &unique, &conc, &stype, &sid,
		&j.Attempts, &j.MaxAttempts, &runAt, &owner, &leaseExp, &cancelReq, &lastErr,
		&started, &finished, &created, &updated)
	if err != nil {
		return nil, err
	}
	j.Payload = json.RawMessage(payload)
	j.UniqueKey, j.ConcurrencyKey, j.SubjectType, j.SubjectID = unique.String, conc.String, stype.String, sid.String
	j.LeaseOwner, j.LastError = owner.String, lastErr.String
	j.RunAt, j.CreatedAt, j.UpdatedAt = runAt.Time, created.Time, updated.Time
	j.LeaseExpiresAt, j.CancelRequestedAt = leaseExp.ptr(), cancelReq.ptr()
	j.StartedAt, j.FinishedAt = started.ptr(), finished.ptr()
	return &j, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// EnqueueJob adds a job in the caller's transaction, so that the job exists if
// and only if the change it acts on commits. It returns the id of the job that
// is now responsible: the new one, or the existing job with the same id or the
// same active unique key (created is then false).
func (tx *Tx) EnqueueJob(ctx context.Context, j NewJob) (id string, created bool, err error) {
	return tx.enqueueJob(ctx, j, false)
}

func (tx *Tx) enqueueJob(ctx context.Context, j NewJob, retried bool) (id string, created bool, err error) {
	if j.Kind == "" || len(j.Kind) > 50 {
		return "", false, apperr.New(apperr.Invalid, "job kind must be 1-50 characters")
	}
	if len(j.UniqueKey) > 191 || len(j.ConcurrencyKey) > 191 {
		return "", false, apperr.New(apperr.Invalid, "job keys must be at most 191 characters")
	}
	if j.ID == "" {
		j.ID = NewID()
	} else if _, err := ulid.ParseStrict(j.ID); err != nil {
		return "", false, apperr.New(apperr.Invalid, "job id must be a ULID")
	}
	if j.MaxAttempts <= 0 {
		j.MaxAttempts = 5
	}
	now := tx.Now()
	if j.RunAt.IsZero() {
		j.RunAt = now
	}
	payload := []byte("{}")
	if j.Payload != nil {
		if payload, err = json.Marshal(j.Payload); err != nil {
			return "", false, fmt.Errorf("store: job payload: %w", err)
		}
	}
	res, err := tx.exec(ctx, `INSERT INTO jobs (id, kind, payload, status, unique_key, concurrency_key, subject_type, subject_id,
		max_attempts, run_at, created_at, updated_at)
		VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		j.ID, j.Kind, string(payload), nullString(j.UniqueKey), nullString(j.ConcurrencyKey),
		nullString(j.SubjectType), nullString(j.SubjectID), j.MaxAttempts, j.RunAt, now, now)
	if err != nil {
		return "", false, fmt.Errorf("store: enqueue %s: %w", j.Kind, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return j.ID, true, nil
	}
	// Nothing inserted: either this id exists, or the unique key is taken.
	var existing string
	err = tx.queryRow(ctx, "SELECT id FROM jobs WHERE id = ?", j.ID).Scan(&existing)
	if err == nil {
		return existing, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", false, err
	}
	err = tx.queryRow(ctx, "SELECT id FROM jobs WHERE unique_key = ? AND status IN ('queued', 'running')", j.UniqueKey).Scan(&existing)
	if errors.Is(err, sql.ErrNoRows) && !retried {
		// The job holding the key ended between our insert and our look:
		// the key is free now, so try once more.
		return tx.enqueueJob(ctx, j, true)
	}
	if err != nil {
		return "", false, fmt.Errorf("store: enqueue %s: %w", j.Kind, err)
	}
	return existing, false, nil
}

// EnqueueJob adds a job in a transaction of its own.
func (db *DB) EnqueueJob(ctx context.Context, j NewJob) (id string, created bool, err error) {
	err = db.InTx(ctx, func(tx *Tx) error {
		id, created, err = tx.EnqueueJob(ctx, j)
		return err
	})
	return id, created, err
}

// ClaimJob leases the next runnable job of one of kinds to owner. ok is false
// when there is none. On PostgreSQL the candidate row is locked with SKIP
// LOCKED, so concurrent panel processes never claim the same job; on SQLite the
// single writer makes the statement atomic. Jobs that share a concurrency key
// run one at a time and in order: only the first queued one of a key is a
// candidate, so two workers claiming at once cannot start a later one while
// SKIP LOCKED passes over the first, locked by the other.
func (db *DB) ClaimJob(ctx context.Context, owner string, kinds []string, lease time.Duration) (job *Job, ok bool, err error) {
	if len(kinds) == 0 {
		return nil, false, nil
	}
	now := db.Now()
	args := []any{owner, now.Add(lease), now, now, now}
	for _, k := range kinds {
		args = append(args, k)
	}
	q := `UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1,
		started_at = COALESCE(started_at, ?), updated_at = ?
		WHERE status = 'queued' AND id = (
			SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.run_at <= ? AND j.cancel_requested_at IS NULL
			AND j.kind IN (` + placeholders(len(kinds)) + `)
			AND (j.concurrency_key IS NULL OR (NOT EXISTS (
				SELECT 1 FROM jobs r WHERE r.concurrency_key = j.concurrency_key AND r.status = 'running')
			AND NOT EXISTS (
				SELECT 1 FROM jobs e WHERE e.concurrency_key = j.concurrency_key AND e.status = 'queued'
				AND e.cancel_requested_at IS NULL AND (e.run_at < j.run_at OR (e.run_at = j.run_at AND e.id < j.id)))))
			ORDER BY j.run_at, j.id LIMIT 1` + db.d.skipLocked + `)
		RETURNING ` + jobColumns
	err = db.InTx(ctx, func(tx *Tx) error {
		j, err := scanJob(tx.queryRow(ctx, q, args...))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		job, ok = j, true
		return nil
	})
	if err != nil && isUniqueViolation(err) {
		// Another process started a job with the same concurrency key between
		// our check and our update; the index kept them apart. Try again later.
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: claim job: %w", err)
	}
	return job, ok, nil
}

// HeartbeatJob extends a held lease. It reports whether a cancel was requested,
// and ErrLeaseLost if the lease is no longer the owner's.
func (db *DB) HeartbeatJob(ctx context.Context, id, owner string, lease time.Duration) (cancelRequested bool, err error) {
	now := db.Now()
	var cancelAt nullTime
	err = db.InTx(ctx, func(tx *Tx) error {
		return tx.queryRow(ctx, `UPDATE jobs SET lease_expires_at = ?, updated_at = ?
			WHERE id = ? AND lease_owner = ? AND status = 'running' RETURNING cancel_requested_at`,
			now.Add(lease), now, id, owner).Scan(&cancelAt)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, ErrLeaseLost
	}
	if err != nil {
		return false, fmt.Errorf("store: heartbeat job %s: %w", id, err)
	}
	return cancelAt.Valid, nil
}

// FinishJob ends a job the owner holds, in one transaction with fn (which may be
// nil), so that a job's final writes land exactly when it is marked done, and
// not at all if the lease was lost meanwhile. status is succeeded, failed or
// cancelled.
func (db *DB) FinishJob(ctx context.Context, id, owner, status, lastError string, fn func(tx *Tx) error) error {
	if status != JobSucceeded && status != JobFailed && status != JobCancelled {
		return fmt.Errorf("store: %q is not a terminal job status", status)
	}
	return db.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		res, err := tx.exec(ctx, `UPDATE jobs SET status = ?, last_error = ?, finished_at = ?, updated_at = ?,
			lease_owner = NULL, lease_expires_at = NULL
			WHERE id = ? AND lease_owner = ? AND status = 'running'`,
			status, nullString(lastError), now, now, id, owner)
		if err != nil {
			return fmt.Errorf("store: finish job %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrLeaseLost
		}
		if fn != nil {
			return fn(tx)
		}
		return nil
	})
}

// RetryJob puts a held job back in the queue to run at runAt after a failed
// attempt, or fails it for good once its attempts are used up. It reports
// whether the job will run again.
func (db *DB) RetryJob(ctx context.Context, id, owner, lastError string, runAt time.Time) (again bool, err error) {
	err = db.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		var status string
		err := tx.queryRow(ctx, `UPDATE jobs SET
				status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
					WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
				finished_at = CASE WHEN cancel_requested_at IS NOT NULL OR attempts >= max_attempts THEN `+tx.db.d.timeParam+` ELSE NULL END,
				run_at = ?, last_error = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL
			WHERE id = ? AND lease_owner = ? AND status = 'running' RETURNING status`,
			now, runAt, nullString(lastError), now, id, owner).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrLeaseLost
		}
		again = status == JobQueued
		return err
	})
	return again, err
}

// ReleaseJob hands a held job back untouched, for a worker that is shutting
// down: the attempt is not counted and the job can be claimed at once, unless a
// cancel was requested meanwhile, which ends it.
func (db *DB) ReleaseJob(ctx context.Context, id, owner string) error {
	now := db.Now()
	res, err := db.exec(ctx, `UPDATE jobs SET
			status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'queued' END,
			finished_at = CASE WHEN cancel_requested_at IS NOT NULL THEN `+db.d.timeParam+` ELSE NULL END,
			attempts = attempts - 1, run_at = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL
		WHERE id = ? AND lease_owner = ? AND status = 'running'`, now, now, now, id, owner)
	if err != nil {
		return fmt.Errorf("store: release job %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// RescueExpiredJobs returns running jobs whose lease expired (their worker died)
// to the queue, to run at retryAt, or ends them when they used up their attempts
// or were asked to cancel. It returns how many it touched.
func (db *DB) RescueExpiredJobs(ctx context.Context, retryAt time.Time) (int, error) {
	return db.rescue(ctx, retryAt, db.Now())
}

// rescue requeues or ends running jobs whose lease expires before cutoff.
func (db *DB) rescue(ctx context.Context, retryAt, cutoff time.Time) (int, error) {
	now := db.Now()
	res, err := db.exec(ctx, `UPDATE jobs SET
			status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
				WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
			finished_at = CASE WHEN cancel_requested_at IS NOT NULL OR attempts >= max_attempts THEN `+db.d.timeParam+` ELSE NULL END,
			last_error = 'lease expired: worker ' || COALESCE(lease_owner, '?') || ' stopped without finishing',
			run_at = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL
		WHERE status = 'running' AND lease_expires_at < ?`, now, retryAt, now, cutoff)
	if err != nil {
		return 0, fmt.Errorf("store: rescue jobs: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// RequestJobCancel cancels a queued job at once, or asks the worker of a running
// one to stop; the worker sees the request at its next heartbeat.
func (db *DB) RequestJobCancel(ctx context.Context, id string) (*Job, error) {
	var job *Job
	err := db.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		if _, err := tx.exec(ctx, `UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ?, last_error = 'cancelled before it started'
			WHERE id = ? AND status = 'queued'`, now, now, id); err != nil {
			return err
		}
		if _, err := tx.exec(ctx, `UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?)
			WHERE id = ? AND status = 'running'`, now, id); err != nil {
			return err
		}
		j, err := scanJob(tx.queryRow(ctx, "SELECT "+jobColumns+" FROM jobs WHERE id = ?", id))
		job = j
		return notFound(err, "job")
	})
	return job, err
}

// GetJob returns one job.
func (db *DB) GetJob(ctx context.Context, id string) (*Job, error) {
	j, err := scanJob(db.queryRow(ctx, "SELECT "+jobColumns+" FROM jobs WHERE id = ?", id))
	if err != nil {
		return nil, notFound(err, "job")
	}
	return j, nil
}

// NextJobRunAt returns when the earliest queued job of kinds becomes
// runnable, so idle workers can sleep until then instead of polling.
func (db *DB) NextJobRunAt(ctx context.Context, kinds []string) (time.Time, bool, error) {
	var t nullTime
	if len(kinds) == 0 {
		return time.Time{}, false, nil
	}
	args := make([]any, len(kinds))
	for i, k := range kinds {
		args[i] = k
	}
	if err := db.queryRow(ctx, "SELECT MIN(run_at) FROM jobs WHERE status = 'queued' AND cancel_requested_at IS NULL AND kind IN ("+placeholders(len(kinds))+")", args...).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("store: next job: %w", err)
	}
	return t.Time, t.Valid, nil
}

// DeleteFinishedJobs removes up to limit terminal jobs that ended before cutoff.
func (db *DB) DeleteFinishedJobs(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return db.deleteBatch(ctx, "jobs", "status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?", limit, cutoff)
}

// deleteBatch deletes up to limit rows of table matching where. Retention jobs
// loop over it so that no single transaction holds the write lock for long.
func (db *DB) deleteBatch(ctx context.Context, table, where string, limit int, args ...any) (int, error) {
	args = append(args, limit)
	res, err := db.exec(ctx, "DELETE FROM "+table+" WHERE id IN (SELECT id FROM "+table+" WHERE "+where+" LIMIT ?)", args...)
	if err != nil {
		return 0, fmt.Errorf("store: delete from %s: %w", table, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }

// RescueOrphanedJobs returns every running job to the queue (or ends it, like
// RescueExpiredJobs) without waiting for its lease: serve calls it at start
// when it holds the database alone, so the jobs' workers are certainly gone.
func (db *DB) RescueOrphanedJobs(ctx context.Context) (int, error) {
	now := db.Now()
	return db.rescue(ctx, now, now.Add(100*365*24*time.Hour))
}

// FailUnclaimedJobs ends jobs of kinds no process handles: queued longer than
// cutoff allows, never attempted, and not among handled. Without it a job of a
// removed or misspelt kind would wait forever instead of reaching a terminal
// state.
func (db *DB) FailUnclaimedJobs(ctx context.Context, handled []string, cutoff time.Time) (int, error) {
	now := db.Now()
	args := []any{now, now, cutoff}
	q := `UPDATE jobs SET status = 'failed', finished_at = ?, updated_at = ?,
		last_error = 'no panel process handles jobs of this kind'
		WHERE status = 'queued' AND attempts = 0 AND run_at < ?`
	if len(handled) > 0 {
		q += " AND kind NOT IN (" + placeholders(len(handled)) + ")"
		for _, k := range handled {
			args = append(args, k)
		}
	}
	res, err := db.exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("store: fail unclaimed jobs: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
