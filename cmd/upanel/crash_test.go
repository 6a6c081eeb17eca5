package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// count runs a COUNT-like query that must succeed.
func count(t *testing.T, db *store.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowRaw(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// jobRuns counts test_job_runs rows of a job by event.
func jobRuns(t *testing.T, db *store.DB, jobID, event string) int {
	t.Helper()
	var n int
	if err := db.QueryRowRaw(context.Background(), "SELECT COUNT(*) FROM test_job_runs WHERE job_id = ? AND event = ?", jobID, event).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func jobStatus(t *testing.T, db *store.DB, id string) *store.Job {
	t.Helper()
	j, err := db.GetJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// A serve process killed with SIGKILL while a job runs leaves the job leased to
// a dead worker. After a restart the lease expires, the job is rescued, runs
// again and is finished exactly once.
func TestKillDashNineMidJob(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			vars, dataDir, dbURL := panelEnv(t, d)
			vars["UPANEL_JOB_LEASE"] = "3s"
			first := startChild(t, vars)
			db := openWithKeyFile(t, dataDir, dbURL)
			storetest.Exec(t, db, createTestJobRuns)
			id, _, err := db.EnqueueJob(context.Background(), store.NewJob{Kind: "test.block", MaxAttempts: 3})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the job to start", func() bool { return jobRuns(t, db, id, "start") == 1 })
			if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-first.exit
			if j := jobStatus(t, db, id); j.Status != store.JobRunning {
				t.Fatalf("after kill -9 the job is %s, want still running (leased to the dead process)", j.Status)
			}

			startChild(t, vars)
			waitFor(t, 60*time.Second, "the rescued job to succeed", func() bool {
				return jobStatus(t, db, id).Status == store.JobSucceeded
			})
			j := jobStatus(t, db, id)
			if j.Attempts != 2 {
				t.Errorf("attempts = %d, want 2 (the killed one and the rescue)", j.Attempts)
			}
			if starts, finishes := jobRuns(t, db, id, "start"), jobRuns(t, db, id, "finish"); starts != 2 || finishes != 1 {
				t.Errorf("job started %d times and finished %d times; want 2 and exactly 1", starts, finishes)
			}
		})
	}
}

// SIGTERM with a job that will not finish within the shutdown timeout: the
// process exits cleanly and hands the job back, attempt uncounted, for the next
// process to run at once (no lease to wait out).
func TestSigtermReleasesRunningJob(t *testing.T) {
	vars, dataDir, dbURL := panelEnv(t, "sqlite")
	vars["UPANEL_SHUTDOWN_TIMEOUT"] = "1s"
	c := startChild(t, vars)
	db := openWithKeyFile(t, dataDir, dbURL)
	storetest.Exec(t, db, createTestJobRuns)
	id, _, _ := db.EnqueueJob(context.Background(), store.NewJob{Kind: "test.block"})
	waitFor(t, 30*time.Second, "the job to start", func() bool { return jobRuns(t, db, id, "start") == 1 })
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.exit:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", err, c.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM\n%s", c.logs)
	}
	if j := jobStatus(t, db, id); j.Status != store.JobQueued || j.Attempts != 0 || j.LeaseOwner != "" {
		t.Fatalf("after SIGTERM: %s, %d attempts, owner %q; want queued, 0, none", j.Status, j.Attempts, j.LeaseOwner)
	}
}

// Two serve processes on one PostgreSQL database share the work and never run
// one job twice.
func TestTwoServeProcessesNeverRunAJobTwice(t *testing.T) {
	vars, dataDir, dbURL := panelEnv(t, "postgres")
	vars["UPANEL_JOB_WORKERS"] = "4"
	a := startChild(t, vars)
	db := openWithKeyFile(t, dataDir, dbURL)
	storetest.Exec(t, db, createTestJobRuns)
	b := startChild(t, vars)
	_, _ = a, b

	const n = 400
	ctx := context.Background()
	ids := make([]string, 0, n)
	err := db.InTx(ctx, func(tx *store.Tx) error {
		for range n {
			id, _, err := tx.EnqueueJob(ctx, store.NewJob{Kind: "test.record"})
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "every job to finish", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM jobs WHERE kind = 'test.record' AND status <> 'succeeded'") == 0
	})
	dupStarts := count(t, db, "SELECT COUNT(*) FROM (SELECT job_id FROM test_job_runs WHERE event = 'start' GROUP BY job_id HAVING COUNT(*) > 1) d")
	dupFinishes := count(t, db, "SELECT COUNT(*) FROM (SELECT job_id FROM test_job_runs WHERE event = 'finish' GROUP BY job_id HAVING COUNT(*) <> 1) d")
	owners := count(t, db, "SELECT COUNT(DISTINCT owner) FROM test_job_runs")
	finished := count(t, db, "SELECT COUNT(DISTINCT job_id) FROM test_job_runs WHERE event = 'finish'")
	if dupStarts != 0 || dupFinishes != 0 || finished != n {
		t.Fatalf("%d jobs started twice, %d not finished exactly once, %d of %d finished", dupStarts, dupFinishes, finished, n)
	}
	if owners != 2 {
		t.Errorf("work was done by %d processes, want both (the test shows nothing if one did it all)", owners)
	}
	if attempts := count(t, db, "SELECT MAX(attempts) FROM jobs WHERE kind = 'test.record'"); attempts != 1 {
		t.Errorf("some job took %d attempts; none should have failed", attempts)
	}
}
