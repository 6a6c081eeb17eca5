package jobs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"upanel/internal/jobs"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func mustTick(t *testing.T, s *jobs.Scheduler) {
	t.Helper()
	if err := s.Tick(context.Background()); err != nil {
		t.Fatalf("tick: %v", err)
	}
}

func countJobs(t *testing.T, db *store.DB, kind string) int {
	t.Helper()
	var n int
	if err := db.QueryRowRaw(context.Background(), "SELECT COUNT(*) FROM jobs WHERE kind = ?", kind).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPeriodicJobsOnePerSlotAcrossProcesses(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			clock := storetest.NewClock(time.Date(2026, 11, 26, 10, 3, 0, 0, time.UTC))
			env := storetest.NewWithClock(t, d, clock)
			other := env.Reopen(t, store.Options{Now: clock.Now}) // a second panel process
			a := jobs.NewScheduler(env.DB, nil, nil)
			b := jobs.NewScheduler(other, nil, nil)
			for _, s := range []*jobs.Scheduler{a, b} {
				if err := s.Every("test.tick", "*/10 * * * *"); err != nil {
					t.Fatal(err)
				}
				mustTick(t, s) // first tick only learns the next slot (10:10)
			}
			if n := countJobs(t, env.DB, "test.tick"); n != 0 {
				t.Fatalf("%d jobs before the first slot", n)
			}
			clock.Set(time.Date(2026, 11, 26, 10, 10, 5, 0, time.UTC))
			for range 3 {
				mustTick(t, a)
				mustTick(t, b)
			}
			if n := countJobs(t, env.DB, "test.tick"); n != 1 {
				t.Fatalf("%d jobs for one slot from two processes, want 1", n)
			}
			// The panel was down for an hour: the missed slots run once, not six times.
			storetest.Exec(t, env.DB, "UPDATE jobs SET status = 'succeeded'")
			clock.Set(time.Date(2026, 11, 26, 11, 15, 0, 0, time.UTC))
			mustTick(t, a)
			mustTick(t, a)
			if n := countJobs(t, env.DB, "test.tick"); n != 2 {
				t.Fatalf("%d jobs after a long gap, want 2", n)
			}
		})
	}
	if err := jobs.NewScheduler(nil, nil, nil).Every("x", "not cron"); err == nil {
		t.Fatal("bad expression accepted")
	}
}

func TestBackupSchedulesFollowTheirTimeZone(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			berlin, _ := time.LoadLocation("Europe/Berlin")
			// Saturday before the autumn DST change in Berlin (25 Oct 2026, 03:00 → 02:00).
			clock := storetest.NewClock(time.Date(2026, 10, 24, 12, 0, 0, 0, berlin))
			env := storetest.NewWithClock(t, d, clock)
			db := env.DB
			ids := storetest.SecretRows(t, db, "x")
			destID, schedID := ids["backup_destinations"], store.NewID()
			storetest.Exec(t, db, `INSERT INTO backup_schedules (id, app_id, backup_destination_id, type, cron_expression, timezone)
				VALUES (?, ?, ?, 'database', '30 2 * * *', 'Europe/Berlin')`, schedID, ids["apps"], destID)

			s := jobs.NewScheduler(db, nil, nil)
			s.SweepBackupSchedules("backup.run")
			nextRun := func() time.Time {
				var next time.Time
				if err := db.QueryRowRaw(ctx, "SELECT next_run_at FROM backup_schedules WHERE id = ?", schedID).Scan(&next); err != nil {
					t.Fatal(err)
				}
				return next.UTC()
			}
			mustTick(t, s)
			// 02:30 CEST on the 25th is 00:30 UTC; the fold makes 02:30 occur
			// twice that night, and a daily backup must run once.
			want := time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)
			if got := nextRun(); !got.Equal(want) {
				t.Fatalf("first next_run_at = %s, want %s", got, want)
			}
			if n := countJobs(t, db, "backup.run"); n != 0 {
				t.Fatalf("a new schedule enqueued %d jobs before its time", n)
			}
			clock.Set(want.Add(30 * time.Second))
			mustTick(t, s)
			mustTick(t, s)
			if n := countJobs(t, db, "backup.run"); n != 1 {
				t.Fatalf("%d backup jobs for one due run, want 1", n)
			}
			var payload string
			db.QueryRowRaw(ctx, "SELECT payload FROM jobs WHERE kind = 'backup.run'").Scan(&payload)
			var p jobs.BackupPayload
			if err := json.Unmarshal([]byte(payload), &p); err != nil || p.ScheduleID != schedID || !p.ScheduledFor.Equal(want) {
				t.Fatalf("payload %s → %+v, %v", payload, p, err)
			}
			// Next: 02:30 CET on the 26th = 01:30 UTC, skipping the second 02:30 of the 25th.
			if got, want := nextRun(), time.Date(2026, 10, 26, 1, 30, 0, 0, time.UTC); !got.Equal(want) {
				t.Fatalf("after running, next_run_at = %s, want %s", got, want)
			}
			var last time.Time
			db.QueryRowRaw(ctx, "SELECT last_run_at FROM backup_schedules WHERE id = ?", schedID).Scan(&last)
			if last.IsZero() {
				t.Fatal("last_run_at not set")
			}
			// An inactive schedule is left alone.
			storetest.Exec(t, db, "UPDATE backup_schedules SET is_active = FALSE")
			clock.Set(time.Date(2026, 10, 27, 0, 0, 0, 0, time.UTC))
			mustTick(t, s)
			if n := countJobs(t, db, "backup.run"); n != 1 {
				t.Fatalf("inactive schedule enqueued: %d jobs", n)
			}
		})
	}
}

func TestUnparseableBackupScheduleIsDeactivatedNotRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ids := storetest.SecretRows(t, db, "x")
		schedID := store.NewID()
		past := db.Now().Add(-time.Minute)
		storetest.Exec(t, db, `INSERT INTO backup_schedules (id, app_id, backup_destination_id, type, cron_expression, timezone, next_run_at)
			VALUES (?, ?, ?, 'files', '0 3 * * *', 'Mars/Olympus_Mons', ?)`, schedID, ids["apps"], ids["backup_destinations"], past)
		s := jobs.NewScheduler(db, nil, nil)
		s.SweepBackupSchedules("backup.run")
		mustTick(t, s)
		mustTick(t, s)
		if n := countJobs(t, db, "backup.run"); n != 0 {
			t.Fatalf("an unparseable schedule ran %d times", n)
		}
		var active bool
		db.QueryRowRaw(context.Background(), "SELECT is_active FROM backup_schedules WHERE id = ?", schedID).Scan(&active)
		if active {
			t.Fatal("the unparseable schedule is still active")
		}
	})
}
