package jobs_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"upanel/internal/jobs"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func fastRunner(db *store.DB, grace time.Duration) *jobs.Runner {
	return jobs.NewRunner(db, jobs.Options{
		Workers: 2, Lease: 3 * time.Second, Poll: 50 * time.Millisecond, ShutdownGrace: grace,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond },
	})
}

// start runs r until the test ends or stop is called; stop waits for Run.
func start(t *testing.T, r *jobs.Runner) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func waitJob(t *testing.T, db *store.DB, id string, status string) *store.Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j, err := db.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == status {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s stayed %s (last error %q), want %s", id, j.Status, j.LastError, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func enqueue(t *testing.T, db *store.DB, j store.NewJob) string {
	t.Helper()
	id, _, err := db.EnqueueJob(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestOutcomes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := fastRunner(db, time.Second)
		var flaky atomic.Int32
		userID := store.NewID()
		storetest.Exec(t, db, "INSERT INTO users (id, email, password) VALUES (?, 'final@example.test', 'x')", userID)
		r.Handle("ok", func(ctx context.Context, j *jobs.Job) error {
			j.Finally(func(ctx context.Context, tx *store.Tx) error {
				return tx.SetSecret(ctx, store.SecretColumn{Table: "users", Column: "recovery_codes"}, userID, []byte("done by "+j.ID))
			})
			return nil
		})
		r.Handle("flaky", func(ctx context.Context, j *jobs.Job) error {
			if flaky.Add(1) < 3 {
				return errors.New("transient")
			}
			return nil
		})
		r.Handle("always-fails", func(ctx context.Context, j *jobs.Job) error { return errors.New("nope") })
		r.Handle("permanent", func(ctx context.Context, j *jobs.Job) error { return jobs.Permanent(errors.New("bad input")) })
		r.Handle("panics", func(ctx context.Context, j *jobs.Job) error { panic("handler bug") })
		r.Handle("bad-payload", func(ctx context.Context, j *jobs.Job) error {
			var v struct{ N int }
			return j.Decode(&v)
		})
		start(t, r)

		ok := enqueue(t, db, store.NewJob{Kind: "ok"})
		flakyID := enqueue(t, db, store.NewJob{Kind: "flaky"})
		fails := enqueue(t, db, store.NewJob{Kind: "always-fails", MaxAttempts: 3})
		perm := enqueue(t, db, store.NewJob{Kind: "permanent"})
		panics := enqueue(t, db, store.NewJob{Kind: "panics"})
		bad := enqueue(t, db, store.NewJob{Kind: "bad-payload", Payload: []int{1}})
		r.Wake()

		waitJob(t, db, ok, store.JobSucceeded)
		got, _, err := db.GetSecret(context.Background(), store.SecretColumn{Table: "users", Column: "recovery_codes"}, userID)
		if err != nil || string(got) != "done by "+ok {
			t.Fatalf("Finally's write = %q, %v", got, err)
		}
		if j := waitJob(t, db, flakyID, store.JobSucceeded); j.Attempts != 3 {
			t.Errorf("flaky job took %d attempts, want 3", j.Attempts)
		}
		if j := waitJob(t, db, fails, store.JobFailed); j.Attempts != 3 || j.LastError != "nope" {
			t.Errorf("failing job: attempts %d, last error %q", j.Attempts, j.LastError)
		}
		if j := waitJob(t, db, perm, store.JobFailed); j.Attempts != 1 {
			t.Errorf("permanent failure retried: %d attempts", j.Attempts)
		}
		waitJob(t, db, panics, store.JobFailed)
		waitJob(t, db, bad, store.JobFailed)
	})
}

func TestCancelRunningJob(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := fastRunner(db, time.Second)
		started := make(chan struct{})
		r.Handle("long", func(ctx context.Context, j *jobs.Job) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
		start(t, r)
		id := enqueue(t, db, store.NewJob{Kind: "long"})
		r.Wake()
		<-started
		if _, err := db.RequestJobCancel(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		// The heartbeat (every lease/3 = 1s) delivers the request.
		j := waitJob(t, db, id, store.JobCancelled)
		if j.FinishedAt == nil {
			t.Fatal("cancelled job has no finished_at")
		}
	})
}

// At shutdown a job that outlives the grace period is cancelled and released:
// it goes back to the queue without losing an attempt, for the next process.
func TestShutdownReleasesUnfinishedJobs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := fastRunner(db, 200*time.Millisecond)
		started := make(chan struct{})
		r.Handle("stubborn", func(ctx context.Context, j *jobs.Job) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
		stop := start(t, r)
		id := enqueue(t, db, store.NewJob{Kind: "stubborn"})
		r.Wake()
		<-started
		stop()
		j, _ := db.GetJob(context.Background(), id)
		if j.Status != store.JobQueued || j.Attempts != 0 || j.LeaseOwner != "" {
			t.Fatalf("after shutdown: status %s attempts %d owner %q; want queued, 0, none", j.Status, j.Attempts, j.LeaseOwner)
		}
	})
}

// A job that finishes within the grace period is recorded as succeeded.
func TestShutdownLetsRunningJobsFinish(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := fastRunner(db, 10*time.Second)
		started := make(chan struct{})
		r.Handle("short", func(ctx context.Context, j *jobs.Job) error {
			close(started)
			select {
			case <-time.After(300 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		stop := start(t, r)
		id := enqueue(t, db, store.NewJob{Kind: "short"})
		r.Wake()
		<-started
		stop()
		if j, _ := db.GetJob(context.Background(), id); j.Status != store.JobSucceeded {
			t.Fatalf("job finishing within the grace period ended %s", j.Status)
		}
	})
}

// When a worker loses its lease (it stalled and another took the job), the
// handler is cancelled and the first worker records nothing.
func TestLostLeaseStopsTheHandler(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := fastRunner(db, time.Second)
		started, stopped := make(chan struct{}), make(chan error, 1)
		r.Handle("victim", func(ctx context.Context, j *jobs.Job) error {
			close(started)
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return ctx.Err()
		})
		stop := start(t, r)
		id := enqueue(t, db, store.NewJob{Kind: "victim"})
		r.Wake()
		<-started
		storetest.Exec(t, db, "UPDATE jobs SET lease_owner = 'another-process' WHERE id = ?", id)
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatal("handler kept running after its lease was lost")
		}
		stop() // waits until the worker has dealt with the job's end
		if j, _ := db.GetJob(context.Background(), id); j.Status != store.JobRunning || j.LeaseOwner != "another-process" {
			t.Fatalf("the worker that lost the lease changed the job: %s %s", j.Status, j.LeaseOwner)
		}
	})
}

// Whatever handlers do, every job ends in a terminal state.
func TestEveryJobEndsTerminal(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := fastRunner(db, time.Second)
		var n atomic.Int32
		r.Handle("mixed", func(ctx context.Context, j *jobs.Job) error {
			switch n.Add(1) % 4 {
			case 0:
				return nil
			case 1:
				return errors.New("retry me")
			case 2:
				return jobs.Permanent(errors.New("no"))
			default:
				panic("boom")
			}
		})
		start(t, r)
		var ids []string
		for range 40 {
			ids = append(ids, enqueue(t, db, store.NewJob{Kind: "mixed", MaxAttempts: 2}))
		}
		r.Wake()
		deadline := time.Now().Add(30 * time.Second)
		for _, id := range ids {
			for {
				j, _ := db.GetJob(context.Background(), id)
				if j.Terminal() {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("job %s still %s", id, j.Status)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
}

// A cancel requested while a job runs holds even if the handler then fails:
// the job ends cancelled instead of being retried.
func TestCancelSurvivesAFailedAttempt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := fastRunner(db, time.Second)
		started, proceed := make(chan struct{}), make(chan struct{})
		r.Handle("fails", func(ctx context.Context, j *jobs.Job) error {
			close(started)
			<-proceed
			return errors.New("failed before it saw the cancel")
		})
		start(t, r)
		id := enqueue(t, db, store.NewJob{Kind: "fails", MaxAttempts: 5})
		r.Wake()
		<-started
		if _, err := db.RequestJobCancel(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		close(proceed)
		if j := waitJob(t, db, id, store.JobCancelled); j.Attempts != 1 {
			t.Fatalf("cancelled job ran %d attempts", j.Attempts)
		}
	})
}

// A job of a kind no process handles ends failed instead of waiting forever.
func TestUnhandledKindsEndFailed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		r := fastRunner(db, time.Second)
		r.Handle("known", func(ctx context.Context, j *jobs.Job) error { return nil })
		id := enqueue(t, db, store.NewJob{Kind: "retired.kind", RunAt: db.Now().Add(-2 * time.Hour)})
		fresh := enqueue(t, db, store.NewJob{Kind: "newer.kind"})
		if err := r.Cleanup(30*24*time.Hour)(context.Background(), &jobs.Job{Job: &store.Job{ID: store.NewID()}}); err != nil {
			t.Fatal(err)
		}
		if j, _ := db.GetJob(context.Background(), id); j.Status != store.JobFailed || j.LastError == "" {
			t.Fatalf("unhandled job: %s %q", j.Status, j.LastError)
		}
		if j, _ := db.GetJob(context.Background(), fresh); j.Status != store.JobQueued {
			t.Fatalf("a recent job of an unknown kind was failed before its grace period: %s", j.Status)
		}
	})
}
