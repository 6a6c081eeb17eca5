package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"upanel/internal/cron"
	"upanel/internal/store"
)

// Scheduler turns time into jobs: periodic maintenance on cron expressions in
// UTC, and the users' backup_schedules in their own time zones. Several panel
// processes may run one each: every scheduled run gets a job id derived from the
// run's time, so only one of them enqueues it.
type Scheduler struct {
	db    *store.DB
	log   *slog.Logger
	wake  func()
	tasks []*periodic
	// backupKind, when set, is the job kind backup_schedules are enqueued as.
	backupKind string
}

type periodic struct {
	kind  string
	sched cron.Schedule
	next  time.Time
}

// NewScheduler returns a scheduler; wake is called after it enqueues.
func NewScheduler(db *store.DB, log *slog.Logger, wake func()) *Scheduler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if wake == nil {
		wake = func() {}
	}
	return &Scheduler{db: db, log: log.With("component", "scheduler"), wake: wake}
}

// Every enqueues a job of kind at each time the UTC cron expression names.
func (s *Scheduler) Every(kind, expr string) error {
	sched, err := cron.Parse(expr, "UTC")
	if err != nil {
		return fmt.Errorf("scheduler: %s: %w", kind, err)
	}
	s.tasks = append(s.tasks, &periodic{kind: kind, sched: sched})
	return nil
}

// SweepBackupSchedules makes the scheduler enqueue a job of kind for each due
// backup schedule. The backups feature turns it on with its handler.
func (s *Scheduler) SweepBackupSchedules(kind string) { s.backupKind = kind }

// BackupPayload is the payload of a scheduled backup job.
type BackupPayload struct {
	ScheduleID   string    `json:"schedule_id"`
	ScheduledFor time.Time `json:"scheduled_for"`
}

// Run ticks every interval until ctx ends.
func (s *Scheduler) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduler tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick enqueues whatever is due now. Periodic maintenance does not catch up on
// slots missed while no panel ran: the next slot runs. Backup schedules do
// catch up, once: a schedule that fell due while the panel was down runs at the
// next tick.
func (s *Scheduler) Tick(ctx context.Context) error {
	now := s.db.Now()
	enqueued := 0
	for _, p := range s.tasks {
		if p.next.IsZero() {
			p.next = p.sched.Next(now)
			continue
		}
		if now.Before(p.next) {
			continue
		}
		_, created, err := s.db.EnqueueJob(ctx, store.NewJob{
			ID:          store.DeterministicID(p.next, "periodic", p.kind),
			Kind:        p.kind,
			UniqueKey:   "periodic:" + p.kind,
			MaxAttempts: 3,
		})
		if err != nil {
			return err
		}
		if created {
			enqueued++
		}
		p.next = p.sched.Next(now)
	}
	if s.backupKind != "" {
		n, err := s.sweepBackups(ctx, now)
		if err != nil {
			return err
		}
		enqueued += n
	}
	if enqueued > 0 {
		s.wake()
	}
	return nil
}

func (s *Scheduler) sweepBackups(ctx context.Context, now time.Time) (int, error) {
	due, err := s.db.DueBackupSchedules(ctx, now, 200)
	if err != nil {
		return 0, err
	}
	enqueued := 0
	for _, d := range due {
		sched, err := cron.Parse(d.CronExpression, d.Timezone)
		if err != nil {
			// Schedules are validated when saved; one that no longer parses (a
			// zone renamed in tzdata) is switched off rather than run at random.
			s.log.Error("backup schedule cannot be parsed; deactivating it", "schedule_id", d.ID, "err", err)
			if err := s.db.InTx(ctx, func(tx *store.Tx) error { return tx.DeactivateBackupSchedule(ctx, d.ID) }); err != nil {
				return enqueued, err
			}
			continue
		}
		var next *time.Time
		if n := sched.Next(now); !n.IsZero() {
			next = &n
		}
		err = s.db.InTx(ctx, func(tx *store.Tx) error {
			var lastRun *time.Time
			if d.NextRunAt != nil {
				lastRun = &now
			}
			ok, err := tx.AdvanceBackupSchedule(ctx, d.ID, d.NextRunAt, lastRun, next)
			if err != nil || !ok || d.NextRunAt == nil {
				return err
			}
			_, created, err := tx.EnqueueJob(ctx, store.NewJob{
				ID:             store.DeterministicID(*d.NextRunAt, "backup", d.ID),
				Kind:           s.backupKind,
				Payload:        BackupPayload{ScheduleID: d.ID, ScheduledFor: *d.NextRunAt},
				UniqueKey:      "backup_schedule:" + d.ID,
				ConcurrencyKey: "backup:" + d.AppID,
				SubjectType:    "backup_schedule",
				SubjectID:      d.ID,
			})
			if created {
				enqueued++
			}
			return err
		})
		if err != nil {
			return enqueued, err
		}
	}
	return enqueued, nil
}
