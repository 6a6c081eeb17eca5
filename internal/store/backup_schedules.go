package store

import (
	"context"
	"fmt"
	"time"
)

// DueBackupSchedule is an active schedule whose next run is due or unknown.
type DueBackupSchedule struct {
	ID             string
	AppID          string
	CronExpression string
	Timezone       string
	NextRunAt      *time.Time // nil: never computed (a new schedule)
}

// DueBackupSchedules lists up to limit active schedules that are due at now or
// have no next run yet.
func (db *DB) DueBackupSchedules(ctx context.Context, now time.Time, limit int) ([]DueBackupSchedule, error) {
	rows, err := db.query(ctx, `SELECT id, app_id, cron_expression, timezone, next_run_at FROM backup_schedules
		WHERE is_active = TRUE AND (next_run_at IS NULL OR next_run_at <= ?)
		ORDER BY (next_run_at IS NOT NULL), next_run_at, id LIMIT ?`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("store: due backup schedules: %w", err)
	}
	defer rows.Close()
	var out []DueBackupSchedule
	for rows.Next() {
		var s DueBackupSchedule
		var next nullTime
		if err := rows.Scan(&s.ID, &s.AppID, &s.CronExpression, &s.Timezone, &next); err != nil {
			return nil, err
		}
		s.NextRunAt = next.ptr()
		out = append(out, s)
	}
	return out, rows.Err()
}

// AdvanceBackupSchedule moves a schedule from the run it was at (expected, nil
// for a new schedule) to next, recording lastRun if it ran. It reports false if
// another process advanced it first, in which case the caller enqueues nothing.
func (tx *Tx) AdvanceBackupSchedule(ctx context.Context, id string, expected *time.Time, lastRun *time.Time, next *time.Time) (bool, error) {
	q := "UPDATE backup_schedules SET next_run_at = ?, last_run_at = COALESCE(?, last_run_at) WHERE id = ? AND "
	args := []any{next, lastRun, id}
	if expected == nil {
		q += "next_run_at IS NULL"
	} else {
		// A range, not equality: the value read was cut to milliseconds,
		// and a row written elsewhere may carry microseconds.
		at := expected.UTC().Truncate(time.Millisecond)
		q += "next_run_at >= ? AND next_run_at < ?"
		args = append(args, at, at.Add(time.Millisecond))
	}
	res, err := tx.exec(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("store: advance backup schedule %s: %w", id, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// DeactivateBackupSchedule switches a schedule off and clears its next run.
func (tx *Tx) DeactivateBackupSchedule(ctx context.Context, id string) error {
	_, err := tx.exec(ctx, "UPDATE backup_schedules SET is_active = FALSE, next_run_at = NULL WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("store: deactivate backup schedule %s: %w", id, err)
	}
	return nil
}
