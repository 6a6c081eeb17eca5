package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func testMail(to string) store.OutboxMail {
	return store.OutboxMail{
		Kind: "password_reset", To: to, Subject: "Reset your UPanel password",
		Text: "open https://panel.example.test/reset/TOKEN-abc", HTML: "<a href=\"https://panel.example.test/reset/TOKEN-abc\">reset</a>",
	}
}

func enqueueMail(t *testing.T, db *store.DB, m store.OutboxMail) string {
	t.Helper()
	var id string
	err := db.InTx(context.Background(), func(tx *store.Tx) (err error) {
		id, err = tx.EnqueueMail(context.Background(), m)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// mailJob returns the mail.send job that delivers an outbox row.
func mailJob(t *testing.T, db *store.DB, outboxID string) *store.Job {
	t.Helper()
	var jobID string
	if err := db.QueryRowRaw(context.Background(), "SELECT id FROM jobs WHERE subject_type = 'mail_outbox' AND subject_id = ?", outboxID).Scan(&jobID); err != nil {
		t.Fatalf("no job for mail %s: %v", outboxID, err)
	}
	j, err := db.GetJob(context.Background(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestEnqueueMailWritesRowAndJobTogether(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		id := enqueueMail(t, db, testMail("Ana@Example.TEST"))
		row, err := db.GetMail(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if row.Status != store.MailQueued || row.SentAt != nil || row.Attempts != 0 || !row.HasBody ||
			row.To != "Ana@Example.TEST" || row.Kind != "password_reset" || row.Subject != "Reset your UPanel password" {
			t.Fatalf("new row = %+v", row)
		}
		body, err := db.MailBody(ctx, id)
		if err != nil || body.Text != testMail("").Text || body.HTML != testMail("").HTML {
			t.Fatalf("MailBody = %+v, %v", body, err)
		}

		// The job carries the row id and nothing of the body.
		j := mailJob(t, db, id)
		if j.Kind != store.MailSendJobKind || j.Status != store.JobQueued || j.MaxAttempts < 5 {
			t.Fatalf("job = %+v", j)
		}
		if strings.Contains(string(j.Payload), "TOKEN") {
			t.Fatalf("job payload %s carries the body", j.Payload)
		}
		if got, err := store.DecodeMailJob(j.Payload); err != nil || got != id {
			t.Fatalf("DecodeMailJob(%s) = %q, %v", j.Payload, got, err)
		}
		var raw string
		if err := db.QueryRowRaw(ctx, "SELECT body FROM mail_outbox WHERE id = ?", id).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(raw, "v1:") || strings.Contains(raw, "TOKEN") {
			t.Fatalf("stored body %q is not a ciphertext", raw)
		}

		// A transaction that fails leaves neither the row nor the job.
		boom := errors.New("boom")
		var rolledBack string
		err = db.InTx(ctx, func(tx *store.Tx) (err error) {
			if rolledBack, err = tx.EnqueueMail(ctx, testMail("bo@example.test")); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if _, err := db.GetMail(ctx, rolledBack); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("rolled-back mail: %v", err)
		}
		var jobs int
		if err := db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM jobs WHERE subject_id = ?", rolledBack).Scan(&jobs); err != nil || jobs != 0 {
			t.Fatalf("rolled-back mail left %d jobs (%v)", jobs, err)
		}
	})
}

func TestEnqueueMailRefusesBadMail(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	ok := testMail("ana@example.test")
	for name, m := range map[string]store.OutboxMail{
		"no kind":             {To: ok.To, Subject: ok.Subject, Text: ok.Text},
		"kind too long":       {Kind: strings.Repeat("k", 51), To: ok.To, Subject: ok.Subject, Text: ok.Text},
		"recipient with name": {Kind: "x", To: "Ana <ana@example.test>", Subject: ok.Subject, Text: ok.Text},
		"two recipients":      {Kind: "x", To: "ana@example.test, bo@example.test", Subject: ok.Subject, Text: ok.Text},
		"recipient injection": {Kind: "x", To: "ana@example.test\r\nBcc: eve@example.test", Subject: ok.Subject, Text: ok.Text},
		"subject injection":   {Kind: "x", To: ok.To, Subject: "Hi\r\nBcc: eve@example.test", Text: ok.Text},
		"empty subject":       {Kind: "x", To: ok.To, Text: ok.Text},
		"long subject":        {Kind: "x", To: ok.To, Subject: strings.Repeat("s", 256), Text: ok.Text},
		"no text":             {Kind: "x", To: ok.To, Subject: ok.Subject, HTML: "<p>only html</p>"},
	} {
		t.Run(name, func(t *testing.T) {
			err := db.InTx(context.Background(), func(tx *store.Tx) error {
				_, err := tx.EnqueueMail(context.Background(), m)
				return err
			})
			if !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("EnqueueMail(%+v) = %v, want an invalid error", m, err)
			}
		})
	}
}

func TestMailOutcomes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		sent := enqueueMail(t, db, testMail("sent@example.test"))
		failed := enqueueMail(t, db, testMail("failed@example.test"))
		queued := enqueueMail(t, db, testMail("queued@example.test"))

		// A transient failure keeps the row queued, counted, with its error.
		if err := db.RecordMailFailure(ctx, sent, "dial tcp: connection refused", false); err != nil {
			t.Fatal(err)
		}
		row, _ := db.GetMail(ctx, sent)
		if row.Status != store.MailQueued || row.Attempts != 1 || row.LastError != "dial tcp: connection refused" || row.SentAt != nil {
			t.Fatalf("after a transient failure: %+v", row)
		}
		if ok, err := db.MarkMailSent(ctx, sent); err != nil || !ok {
			t.Fatalf("MarkMailSent = %v, %v", ok, err)
		}
		row, _ = db.GetMail(ctx, sent)
		if row.Status != store.MailSent || row.SentAt == nil || row.Attempts != 2 || row.LastError != "" {
			t.Fatalf("after sending: %+v", row)
		}
		// Marking again changes nothing, and a failure can no longer be recorded.
		if ok, err := db.MarkMailSent(ctx, sent); err != nil || ok {
			t.Fatalf("second MarkMailSent = %v, %v", ok, err)
		}
		if err := db.RecordMailFailure(ctx, sent, "late", true); err != nil {
			t.Fatal(err)
		}
		if row2, _ := db.GetMail(ctx, sent); row2.Status != store.MailSent || !row2.SentAt.Equal(*row.SentAt) || row2.Attempts != 2 {
			t.Fatalf("a sent row changed: %+v", row2)
		}

		long := strings.Repeat("550 no such user ", 200)
		if err := db.RecordMailFailure(ctx, failed, long, true); err != nil {
			t.Fatal(err)
		}
		row, _ = db.GetMail(ctx, failed)
		if row.Status != store.MailFailed || row.SentAt != nil || len(row.LastError) > 1100 || !strings.HasPrefix(row.LastError, "550 no such user") {
			t.Fatalf("after a permanent failure: %+v", row)
		}
		if ok, err := db.MarkMailSent(ctx, failed); err != nil || ok {
			t.Fatalf("MarkMailSent on a failed row = %v, %v", ok, err)
		}

		list, err := db.ListMail(ctx, "", 10)
		if err != nil || len(list) != 3 || list[0].ID != queued {
			t.Fatalf("ListMail = %+v, %v", list, err)
		}
		if list, err := db.ListMail(ctx, store.MailFailed, 10); err != nil || len(list) != 1 || list[0].ID != failed {
			t.Fatalf("ListMail(failed) = %+v, %v", list, err)
		}

		// Purging takes the bodies of finished rows only, and keeps the rows.
		n, err := db.PurgeMailBodies(ctx, db.Now().Add(time.Hour), 10)
		if err != nil || n != 2 {
			t.Fatalf("PurgeMailBodies = %d, %v; want 2", n, err)
		}
		for _, id := range []string{sent, failed} {
			row, err := db.GetMail(ctx, id)
			if err != nil || row.HasBody {
				t.Fatalf("purged row %s: %+v, %v", id, row, err)
			}
			if _, err := db.MailBody(ctx, id); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("MailBody of a purged row: %v", err)
			}
		}
		if _, err := db.MailBody(ctx, queued); err != nil {
			t.Fatalf("the queued row lost its body: %v", err)
		}
		if n, err := db.PurgeMailBodies(ctx, db.Now().Add(-time.Hour), 10); err != nil || n != 0 {
			t.Fatalf("PurgeMailBodies before the rows finished = %d, %v", n, err)
		}
	})
}

func TestFailOrphanedMail(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		orphan := enqueueMail(t, db, testMail("orphan@example.test"))
		waiting := enqueueMail(t, db, testMail("waiting@example.test"))
		if _, err := db.RequestJobCancel(ctx, mailJob(t, db, orphan).ID); err != nil {
			t.Fatal(err)
		}
		n, err := db.FailOrphanedMail(ctx)
		if err != nil || n != 1 {
			t.Fatalf("FailOrphanedMail = %d, %v; want 1", n, err)
		}
		row, _ := db.GetMail(ctx, orphan)
		if row.Status != store.MailFailed || row.LastError == "" || row.SentAt != nil {
			t.Fatalf("orphan = %+v", row)
		}
		if row, _ := db.GetMail(ctx, waiting); row.Status != store.MailQueued {
			t.Fatalf("a mail whose job is still queued was touched: %+v", row)
		}
	})
}

func TestDecodeMailJobRefusesOtherPayloads(t *testing.T) {
	for _, p := range []string{`{}`, `{"outbox_id":""}`, `[]`, `nope`} {
		if _, err := store.DecodeMailJob(json.RawMessage(p)); err == nil {
			t.Errorf("DecodeMailJob(%s) accepted it", p)
		}
	}
}
