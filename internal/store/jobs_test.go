package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

var allKinds = []string{"test.a", "test.b"}

func claim(t *testing.T, db *store.DB, owner string) *store.Job {
	t.Helper()
	j, ok, err := db.ClaimJob(context.Background(), owner, allKinds, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return nil
	}
	return j
}

func TestEnqueueJoinsTheCallersTransaction(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var id string
		boom := errors.New("boom")
		err := db.InTx(ctx, func(tx *store.Tx) error {
			var err error
			id, _, err = tx.EnqueueJob(ctx, store.NewJob{Kind: "test.a"})
			if err != nil {
				return err
			}
			return boom // the change the job acts on fails: the job must go too
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if _, err := db.GetJob(ctx, id); err == nil {
			t.Fatal("job of a rolled-back transaction exists")
		}
		if j := claim(t, db, "w1"); j != nil {
			t.Fatalf("claimed a job that was rolled back: %+v", j)
		}
	})
}

func TestEnqueueIsIdempotentByIDAndUniqueKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		id := store.NewID()
		a, created, err := db.EnqueueJob(ctx, store.NewJob{ID: id, Kind: "test.a", Payload: map[string]int{"n": 1}})
		if err != nil || !created || a != id {
			t.Fatalf("first enqueue = %s, %v, %v", a, created, err)
		}
		b, created, err := db.EnqueueJob(ctx, store.NewJob{ID: id, Kind: "test.a"})
		if err != nil || created || b != id {
			t.Fatalf("same id again = %s, %v, %v", b, created, err)
		}

		u1, created, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a", UniqueKey: "app:1"})
		u2, created2, err := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a", UniqueKey: "app:1"})
		if err != nil || !created || created2 || u1 != u2 {
			t.Fatalf("unique key: %s %v / %s %v %v", u1, created, u2, created2, err)
		}
		// Once the first has ended, the key is free again.
		storetest.Exec(t, db, "UPDATE jobs SET status = 'succeeded' WHERE id = ?", u1)
		u3, created, err := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a", UniqueKey: "app:1"})
		if err != nil || !created || u3 == u1 {
			t.Fatalf("unique key after the first ended: %s %v %v", u3, created, err)
		}
		for _, bad := range []store.NewJob{{Kind: ""}, {Kind: "test.a", ID: "not-a-ulid"}} {
			if _, _, err := db.EnqueueJob(ctx, bad); err == nil {
				t.Errorf("enqueue %+v accepted", bad)
			}
		}
	})
}

func TestJobLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		id, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a", MaxAttempts: 2})
		if j, ok, _ := db.ClaimJob(ctx, "w1", []string{"other.kind"}, time.Minute); ok {
			t.Fatalf("claimed a kind it did not ask for: %+v", j)
		}
		j := claim(t, db, "w1")
		if j == nil || j.ID != id || j.Status != store.JobRunning || j.Attempts != 1 || j.LeaseOwner != "w1" {
			t.Fatalf("claim = %+v", j)
		}
		if claim(t, db, "w2") != nil {
			t.Fatal("a running job was claimed twice")
		}
		if _, err := db.HeartbeatJob(ctx, id, "w2", time.Minute); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("heartbeat by a non-owner: %v", err)
		}
		if cancel, err := db.HeartbeatJob(ctx, id, "w1", time.Minute); err != nil || cancel {
			t.Fatalf("heartbeat = %v, %v", cancel, err)
		}
		// Attempt 1 fails: back to the queue, not before runAt.
		again, err := db.RetryJob(ctx, id, "w1", "first failure", db.Now().Add(time.Hour))
		if err != nil || !again {
			t.Fatalf("RetryJob = %v, %v", again, err)
		}
		if claim(t, db, "w1") != nil {
			t.Fatal("claimed a job before its backoff elapsed")
		}
		storetest.Exec(t, db, "UPDATE jobs SET run_at = ? WHERE id = ?", db.Now().Add(-time.Second), id)
		j = claim(t, db, "w1")
		if j == nil || j.Attempts != 2 || j.LastError != "first failure" {
			t.Fatalf("second claim = %+v", j)
		}
		// Attempt 2 fails too: that was the last one.
		again, err = db.RetryJob(ctx, id, "w1", "second failure", db.Now())
		if err != nil || again {
			t.Fatalf("last RetryJob = %v, %v", again, err)
		}
		j, _ = db.GetJob(ctx, id)
		if j.Status != store.JobFailed || j.FinishedAt == nil || !j.Terminal() {
			t.Fatalf("after the last attempt: %+v", j)
		}
		if err := db.FinishJob(ctx, id, "w1", store.JobSucceeded, "", nil); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("finishing a failed job: %v", err)
		}
	})
}

func TestFinishCommitsFinalWritesOnlyWithTheLease(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		db.EnqueueJob(ctx, store.NewJob{Kind: "test.a"})
		j := claim(t, db, "w1")
		serverID := store.NewID()
		final := func(tx *store.Tx) error {
			return tx.SetSecret(ctx, store.SecretColumn{Table: "users", Column: "two_factor_secret"}, serverID, []byte("x"))
		}
		// Someone else took the job over (the lease expired and it was rescued):
		storetest.Exec(t, db, "UPDATE jobs SET lease_owner = 'w2' WHERE id = ?", j.ID)
		if err := db.FinishJob(ctx, j.ID, "w1", store.JobSucceeded, "", final); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("FinishJob without the lease = %v", err)
		}
		// With the lease, a failing final write rolls the finish back too.
		boom := errors.New("boom")
		if err := db.FinishJob(ctx, j.ID, "w2", store.JobSucceeded, "", func(*store.Tx) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("FinishJob with failing final = %v", err)
		}
		if got, _ := db.GetJob(ctx, j.ID); got.Status != store.JobRunning {
			t.Fatalf("job finished although its final writes failed: %s", got.Status)
		}
		if err := db.FinishJob(ctx, j.ID, "w2", store.JobSucceeded, "", nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRescueExpiredLeases(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		retry, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a", MaxAttempts: 3})
		last, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.b", MaxAttempts: 1})
		cancelled, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.b"})
		alive, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.b"})
		for range 4 {
			claim(t, db, "dead-worker")
		}
		db.RequestJobCancel(ctx, cancelled)
		past := db.Now().Add(-time.Second)
		for _, id := range []string{retry, last, cancelled} {
			storetest.Exec(t, db, "UPDATE jobs SET lease_expires_at = ? WHERE id = ?", past, id)
		}
		n, err := db.RescueExpiredJobs(ctx, db.Now())
		if err != nil || n != 3 {
			t.Fatalf("RescueExpiredJobs = %d, %v", n, err)
		}
		want := map[string]string{retry: store.JobQueued, last: store.JobFailed, cancelled: store.JobCancelled, alive: store.JobRunning}
		for id, status := range want {
			j, _ := db.GetJob(ctx, id)
			if j.Status != status {
				t.Errorf("job %s: status %s, want %s (last_error %q)", id, j.Status, status, j.LastError)
			}
			if status != store.JobRunning && j.LeaseOwner != "" {
				t.Errorf("job %s keeps lease owner %q", id, j.LeaseOwner)
			}
		}
		if _, err := db.HeartbeatJob(ctx, retry, "dead-worker", time.Minute); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("the dead worker's heartbeat after rescue: %v", err)
		}
	})
}

func TestCancelQueuedAndRunning(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		running, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a"})
		claim(t, db, "w1")
		queued, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a"})
		if j, err := db.RequestJobCancel(ctx, queued); err != nil || j.Status != store.JobCancelled {
			t.Fatalf("cancel queued = %+v, %v", j, err)
		}
		if j, err := db.RequestJobCancel(ctx, running); err != nil || j.Status != store.JobRunning || j.CancelRequestedAt == nil {
			t.Fatalf("cancel running = %+v, %v", j, err)
		}
		if cancel, err := db.HeartbeatJob(ctx, running, "w1", time.Minute); err != nil || !cancel {
			t.Fatalf("heartbeat after cancel request = %v, %v", cancel, err)
		}
		if _, err := db.RequestJobCancel(ctx, store.NewID()); err == nil {
			t.Fatal("cancelling a missing job succeeded")
		}
	})
}

func TestReleaseDoesNotCountTheAttempt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		id, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a"})
		claim(t, db, "w1")
		if err := db.ReleaseJob(ctx, id, "w1"); err != nil {
			t.Fatal(err)
		}
		j := claim(t, db, "w2")
		if j == nil || j.ID != id || j.Attempts != 1 {
			t.Fatalf("after release: %+v", j)
		}
	})
}

func TestConcurrencyKeyRunsOneAtATimeInOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var ids []string
		for i := range 3 {
			id, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a", ConcurrencyKey: "app:1", RunAt: db.Now().Add(time.Duration(i-10) * time.Millisecond)})
			ids = append(ids, id)
		}
		other, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a", ConcurrencyKey: "app:2", RunAt: db.Now().Add(-time.Second)})
		first := claim(t, db, "w1")
		second := claim(t, db, "w2")
		if first == nil || second == nil || first.ID != other || second.ID != ids[0] {
			t.Fatalf("claims = %v, %v; want the other app's job and then app 1's first", first, second)
		}
		if j := claim(t, db, "w3"); j != nil {
			t.Fatalf("claimed %s while app 1 has a job running", j.ID)
		}
		db.FinishJob(ctx, second.ID, "w2", store.JobSucceeded, "", nil)
		if j := claim(t, db, "w3"); j == nil || j.ID != ids[1] {
			t.Fatalf("after the first finished, claimed %v; want %s", j, ids[1])
		}
	})
}

// While one worker holds the first job of a key locked (claiming it), another
// worker must not start the second: SKIP LOCKED passes over the locked row,
// and only the order rule keeps the key's jobs in order. PostgreSQL only: on
// SQLite the single writer serializes claims.
func TestClaimKeepsOrderWhileTheFirstIsLocked(t *testing.T) {
	db := storetest.Open(t, "postgres")
	ctx := context.Background()
	first, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a", ConcurrencyKey: "app:1", RunAt: db.Now().Add(-time.Second)})
	second, _, _ := db.EnqueueJob(ctx, store.NewJob{Kind: "test.a", ConcurrencyKey: "app:1", RunAt: db.Now().Add(-time.Second)})
	err := db.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.ExecRaw(ctx, "SELECT id FROM jobs WHERE id = ? FOR UPDATE", first); err != nil {
			return err
		}
		j, ok, err := db.ClaimJob(ctx, "w2", allKinds, time.Minute)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("claimed %s (second is %s) while the key's first job was being claimed", j.ID, second)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if j := claim(t, db, "w1"); j == nil || j.ID != first {
		t.Fatalf("claimed %v, want the first job %s", j, first)
	}
}

// Many workers claiming at once never get the same job: on PostgreSQL this is
// SKIP LOCKED at work, on SQLite the single writer.
func TestConcurrentClaimsNeverDuplicate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const n = 200
		err := db.InTx(ctx, func(tx *store.Tx) error {
			for range n {
				if _, _, err := tx.EnqueueJob(ctx, store.NewJob{Kind: "test.a"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[string]string{}
		var wg sync.WaitGroup
		for w := range 8 {
			owner := fmt.Sprintf("w%d", w)
			wg.Go(func() {
				for {
					j, ok, err := db.ClaimJob(ctx, owner, allKinds, time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if !ok {
						return
					}
					mu.Lock()
					if prev, dup := seen[j.ID]; dup {
						t.Errorf("job %s claimed by %s and %s", j.ID, prev, owner)
					}
					seen[j.ID] = owner
					mu.Unlock()
					if err := db.FinishJob(ctx, j.ID, owner, store.JobSucceeded, "", nil); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if len(seen) != n {
			t.Fatalf("claimed %d jobs, want %d", len(seen), n)
		}
	})
}

func TestDeterministicID(t *testing.T) {
	at := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	a := store.DeterministicID(at, "periodic", "metrics.retention")
	if a != store.DeterministicID(at, "periodic", "metrics.retention") {
		t.Fatal("DeterministicID is not deterministic")
	}
	for _, b := range []string{
		store.DeterministicID(at.Add(time.Minute), "periodic", "metrics.retention"),
		store.DeterministicID(at, "periodic", "auth.expiry"),
		store.DeterministicID(at, "periodicm", "etrics.retention"),
	} {
		if a == b {
			t.Fatalf("distinct runs share id %s", a)
		}
	}
}
