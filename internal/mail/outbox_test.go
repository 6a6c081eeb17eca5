package mail_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/jobs"
	"upanel/internal/mail"
	"upanel/internal/mail/mailtest"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// startRunner runs the mail handler until the test ends. Failed attempts back
// off for an hour, so a retry happens only when the test calls retryNow: the
// tests decide when the next attempt runs, and never race a timer.
func startRunner(t *testing.T, db *store.DB, h jobs.Handler) (retryNow func(jobID string)) {
	t.Helper()
	r := jobs.NewRunner(db, jobs.Options{
		Workers: 1, Lease: 10 * time.Second, Poll: 25 * time.Millisecond, ShutdownGrace: 5 * time.Second,
		Backoff: func(int) time.Duration { return time.Hour },
	})
	r.Handle(mail.SendKind, h)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return func(jobID string) {
		t.Helper()
		storetest.Exec(t, db, "UPDATE jobs SET run_at = ? WHERE id = ? AND status = 'queued'", db.Now(), jobID)
		r.Wake()
	}
}

// waitJob waits until the job satisfies ok, and returns it. The bound is a
// limit on waiting, not a measurement.
func waitJob(t *testing.T, db *store.DB, id string, what string, ok func(j *store.Job) bool) *store.Job {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		j, err := db.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never became %s: %+v", id, what, j)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func finished(status string) func(*store.Job) bool {
	return func(j *store.Job) bool { return j.Status == status }
}

// failedOnce is a job whose first attempt failed and which waits to retry.
func failedOnce(j *store.Job) bool { return j.Status == store.JobQueued && j.Attempts == 1 }

// enqueueReset writes a password-reset mail to the outbox, as the accounts
// code does, and returns the outbox and job ids.
func enqueueReset(t *testing.T, db *store.DB, to, token string) (outboxID, jobID string) {
	t.Helper()
	m, err := mail.PasswordResetEmail(to, mail.PasswordReset{
		Link: "https://panel.example.test/reset/" + token, IP: "198.51.100.4", ExpiresIn: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = db.InTx(ctx, func(tx *store.Tx) (err error) {
		outboxID, err = tx.EnqueueMail(ctx, m)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowRaw(ctx, "SELECT id FROM jobs WHERE subject_type = 'mail_outbox' AND subject_id = ?", outboxID).Scan(&jobID); err != nil {
		t.Fatal(err)
	}
	return outboxID, jobID
}

func getMail(t *testing.T, db *store.DB, id string) *store.OutboxRow {
	t.Helper()
	row, err := db.GetMail(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return row
}

func countTo(t *testing.T, srv *mailtest.Server, to string) int {
	t.Helper()
	n := 0
	for _, m := range srv.Messages(t) {
		for _, a := range m.To {
			if a == to {
				n++
			}
		}
	}
	return n
}

func TestOutboxDeliversOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		srv := mailtest.Start(t, mailtest.Options{TLS: mailtest.RequireStartTLS, Username: "upanel", Password: "outbox-pass-1"})
		id, jobID := enqueueReset(t, db, "ana@example.test", "tok-once")
		if row := getMail(t, db, id); row.Status != store.MailQueued || row.SentAt != nil {
			t.Fatalf("before any worker ran: %+v", row)
		}
		if n := len(srv.Messages(t)); n != 0 {
			t.Fatalf("mail went out before the job ran: %d messages", n)
		}

		startRunner(t, db, mail.SendHandler(db, sender(t, srv, srv.CA), nil))
		waitJob(t, db, jobID, "succeeded", finished(store.JobSucceeded))
		row := getMail(t, db, id)
		if row.Status != store.MailSent || row.SentAt == nil || row.Attempts != 1 || row.LastError != "" {
			t.Fatalf("after delivery: %+v", row)
		}
		m := srv.WaitForMessage(t, "ana@example.test", wait)
		if m.Subject != "Reset your UPanel password" || m.MessageID != id+"@panel.example.test" || m.Username != "upanel" {
			t.Fatalf("received %+v", m)
		}
		if !strings.Contains(m.Text, "https://panel.example.test/reset/tok-once") || !strings.Contains(m.HTML, `href="https://panel.example.test/reset/tok-once"`) ||
			!strings.Contains(m.Text, "198.51.100.4") || !strings.Contains(m.Text, "60 minutes") {
			t.Fatalf("bodies: %q\n%q", m.Text, m.HTML)
		}

		// A second job for the same row (a retry after the mark, say) sends nothing.
		again, _, err := db.EnqueueJob(context.Background(), store.NewJob{Kind: mail.SendKind, Payload: map[string]string{"outbox_id": id}})
		if err != nil {
			t.Fatal(err)
		}
		waitJob(t, db, again, "succeeded", finished(store.JobSucceeded))
		if n := countTo(t, srv, "ana@example.test"); n != 1 {
			t.Fatalf("%d messages to ana, want exactly 1", n)
		}
		if row2 := getMail(t, db, id); !row2.SentAt.Equal(*row.SentAt) || row2.Attempts != 1 {
			t.Fatalf("the sent row changed: %+v", row2)
		}
	})
}

func TestOutboxRetriesUntilServerIsBack(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		srv := mailtest.Start(t, mailtest.Options{})
		s := sender(t, srv, nil)
		srv.Stop(t)
		id, jobID := enqueueReset(t, db, "bo@example.test", "tok-down")
		retryNow := startRunner(t, db, mail.SendHandler(db, s, nil))

		j := waitJob(t, db, jobID, "failed once", failedOnce)
		row := getMail(t, db, id)
		if row.Status != store.MailQueued || row.SentAt != nil || row.Attempts != 1 || !strings.Contains(row.LastError, "connect") {
			t.Fatalf("after a failed attempt: %+v (job %+v)", row, j)
		}

		srv.Restart(t)
		retryNow(jobID)
		j = waitJob(t, db, jobID, "succeeded", finished(store.JobSucceeded))
		if j.Attempts != 2 {
			t.Fatalf("succeeded after %d attempts, want 2", j.Attempts)
		}
		row = getMail(t, db, id)
		if row.Status != store.MailSent || row.SentAt == nil || row.Attempts != 2 || row.LastError != "" {
			t.Fatalf("after delivery: %+v", row)
		}
		srv.WaitForMessage(t, "bo@example.test", wait)
		if n := countTo(t, srv, "bo@example.test"); n != 1 {
			t.Fatalf("%d messages to bo, want exactly 1", n)
		}
	})
}

func TestOutboxRetriesOnTemporaryRefusal(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		srv := mailtest.Start(t, mailtest.Options{})
		srv.SetChaos(t, mailtest.Chaos{Recipient: 451})
		id, jobID := enqueueReset(t, db, "cy@example.test", "tok-451")
		retryNow := startRunner(t, db, mail.SendHandler(db, sender(t, srv, nil), nil))

		waitJob(t, db, jobID, "failed once", failedOnce)
		// Refused with 4xx: nothing was accepted, so nothing is marked sent.
		if row := getMail(t, db, id); row.Status != store.MailQueued || row.SentAt != nil || !strings.Contains(row.LastError, "451") {
			t.Fatalf("after a 451: %+v", row)
		}
		if n := len(srv.Messages(t)); n != 0 {
			t.Fatalf("%d messages stored after a refusal", n)
		}

		srv.SetChaos(t, mailtest.Chaos{})
		retryNow(jobID)
		waitJob(t, db, jobID, "succeeded", finished(store.JobSucceeded))
		if row := getMail(t, db, id); row.Status != store.MailSent || row.SentAt == nil {
			t.Fatalf("after delivery: %+v", row)
		}
		if n := countTo(t, srv, "cy@example.test"); n != 1 {
			t.Fatalf("%d messages, want exactly 1", n)
		}
	})
}

func TestOutboxPermanentRefusalFailsAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		srv := mailtest.Start(t, mailtest.Options{})
		srv.SetChaos(t, mailtest.Chaos{Recipient: 550})
		id, jobID := enqueueReset(t, db, "dee@example.test", "tok-550")
		startRunner(t, db, mail.SendHandler(db, sender(t, srv, nil), nil))

		j := waitJob(t, db, jobID, "failed", finished(store.JobFailed))
		if j.Attempts != 1 || !strings.Contains(j.LastError, "550") {
			t.Fatalf("job after a 550: %+v", j)
		}
		row := getMail(t, db, id)
		if row.Status != store.MailFailed || row.SentAt != nil || row.Attempts != 1 || !strings.Contains(row.LastError, "550") {
			t.Fatalf("outbox after a 550: %+v", row)
		}
		if n := len(srv.Messages(t)); n != 0 {
			t.Fatalf("%d messages stored", n)
		}
	})
}

func TestOutboxFailsWhenAttemptsRunOut(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	srv := mailtest.Start(t, mailtest.Options{})
	s := sender(t, srv, nil)
	srv.Stop(t)
	id, jobID := enqueueReset(t, db, "eve@example.test", "tok-last")
	storetest.Exec(t, db, "UPDATE jobs SET max_attempts = 1 WHERE id = ?", jobID)
	startRunner(t, db, mail.SendHandler(db, s, nil))
	waitJob(t, db, jobID, "failed", finished(store.JobFailed))
	if row := getMail(t, db, id); row.Status != store.MailFailed || row.SentAt != nil || !strings.Contains(row.LastError, "connect") {
		t.Fatalf("after the last attempt: %+v", row)
	}
}

func TestOutboxWithoutSMTPConfigured(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	id, jobID := enqueueReset(t, db, "fay@example.test", "tok-off")
	startRunner(t, db, mail.SendHandler(db, nil, nil))
	waitJob(t, db, jobID, "failed", finished(store.JobFailed))
	if row := getMail(t, db, id); row.Status != store.MailFailed || !strings.Contains(row.LastError, "UPANEL_SMTP_URL") {
		t.Fatalf("without SMTP: %+v", row)
	}
}

func TestOutboxBodyIsNeverStoredInPlainText(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			env := storetest.New(t, d)
			const token = "RESETTOKEN-5be1c0d9a7"
			srv := mailtest.Start(t, mailtest.Options{})
			_, jobID := enqueueReset(t, env.DB, "gus@example.test", token)
			storetest.AssertNotStored(t, env.DB, env.URL, token)

			startRunner(t, env.DB, mail.SendHandler(env.DB, sender(t, srv, nil), nil))
			waitJob(t, env.DB, jobID, "succeeded", finished(store.JobSucceeded))
			if m := srv.WaitForMessage(t, "gus@example.test", wait); !strings.Contains(m.Text, token) {
				t.Fatalf("the token did not reach the recipient: %q", m.Text)
			}
			// Sent, and still only ciphertext at rest (job payload included).
			storetest.AssertNotStored(t, env.DB, env.URL, token)
		})
	}
}

func TestMaintain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		orphan, orphanJob := enqueueReset(t, db, "hal@example.test", "tok-orphan")
		sent, _ := enqueueReset(t, db, "ida@example.test", "tok-sent")
		queued, _ := enqueueReset(t, db, "joe@example.test", "tok-queued")
		if _, err := db.RequestJobCancel(ctx, orphanJob); err != nil {
			t.Fatal(err)
		}
		if ok, err := db.MarkMailSent(ctx, sent); err != nil || !ok {
			t.Fatal(ok, err)
		}
		// keep < 0 puts the purge cutoff in the future: every finished body goes.
		h := mail.Maintain(db, nil, -time.Hour)
		if err := h(ctx, &jobs.Job{Job: &store.Job{ID: store.NewID(), Kind: mail.MaintainKind}}); err != nil {
			t.Fatal(err)
		}
		if row := getMail(t, db, orphan); row.Status != store.MailFailed || row.LastError == "" || row.HasBody {
			t.Fatalf("orphan after upkeep: %+v", row)
		}
		if row := getMail(t, db, sent); row.Status != store.MailSent || row.HasBody {
			t.Fatalf("sent mail after upkeep: %+v", row)
		}
		if row := getMail(t, db, queued); row.Status != store.MailQueued || !row.HasBody {
			t.Fatalf("queued mail after upkeep: %+v", row)
		}
	})
}
