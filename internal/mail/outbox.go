package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/jobs"
	"upanel/internal/store"
)

// SendKind is the job that delivers one outbox row; store.Tx.EnqueueMail
// enqueues it.
const SendKind = store.MailSendJobKind

// ErrNotConfigured is the error of every delivery while no SMTP server is
// configured. It is permanent: the row fails at once with a message that says
// what to set, rather than retrying into the same wall.
var ErrNotConfigured = errors.New("outgoing mail is not configured: set UPANEL_SMTP_URL")

// SendHandler delivers outbox rows. It sends the message, and only after the
// SMTP server accepted it marks the row sent, in a write of its own that
// outlives the job's context; a crash between the two can send a message
// twice (with the same Message-ID), but a row is never marked sent without
// having been sent. A 5xx reply fails the row at once; 4xx replies and network
// errors retry with backoff until the job's attempts run out. Every failure is
// kept in the row's last_error. sender may be nil when no SMTP server is
// configured: each mail then fails with ErrNotConfigured.
func SendHandler(db *store.DB, sender *Sender, log *slog.Logger) jobs.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, j *jobs.Job) error {
		id, err := store.DecodeMailJob(j.Payload)
		if err != nil {
			return jobs.Permanent(err)
		}
		row, err := db.GetMail(ctx, id)
		if apperr.Is(err, apperr.NotFound) {
			return jobs.Permanent(fmt.Errorf("mail %s: %w", id, err))
		}
		if err != nil {
			return fmt.Errorf("mail %s: %w", id, err)
		}
		switch row.Status {
		case store.MailSent:
			return nil // an earlier attempt sent it and recorded that; the job just missed the news
		case store.MailFailed:
			return jobs.Permanent(fmt.Errorf("mail %s already failed: %s", id, row.LastError))
		}
		log := log.With("outbox_id", id, "mail_kind", row.Kind, "attempt", j.Attempts)

		// fail records err on the row, where the panel shows it, and tells the
		// runner whether to retry. It writes with a context of its own so that a
		// cancelled job still leaves its reason behind.
		fail := func(err error, permanent bool) error {
			final := permanent || j.Attempts >= j.MaxAttempts
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			defer cancel()
			if rerr := db.RecordMailFailure(wctx, id, err.Error(), final); rerr != nil {
				log.Error("record mail failure", "err", rerr)
			}
			if permanent {
				log.Error("mail refused; not retrying", "err", err)
				return jobs.Permanent(err)
			}
			if final {
				log.Error("mail failed after its last attempt", "err", err)
			} else {
				log.Warn("mail attempt failed; will retry", "err", err)
			}
			return err
		}

		if sender == nil {
			return fail(ErrNotConfigured, true)
		}
		body, err := db.MailBody(ctx, id)
		if err != nil {
			// A purged body cannot come back; a decryption or database error might.
			return fail(err, apperr.Is(err, apperr.NotFound))
		}
		to, err := ParseAddress(row.To)
		if err != nil {
			return fail(err, true)
		}
		from := sender.From()
		raw, err := Message{
			From: from, To: *to, Subject: row.Subject, Text: body.Text, HTML: body.HTML,
			Date:      row.CreatedAt,
			MessageID: id + "@" + domainOf(from.Address),
		}.Bytes()
		if err != nil {
			return fail(err, true)
		}
		if err := sender.Send(ctx, to.Address, raw); err != nil {
			return fail(err, IsPermanent(err))
		}

		// Accepted. Record it even if the job was cancelled meanwhile: the
		// message is out, and the row must say so.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		if _, err := db.MarkMailSent(wctx, id); err != nil {
			// Retrying sends the message again; that beats a mail that went
			// out while the panel says it did not.
			log.Error("mail accepted by the SMTP server, but recording that failed; it may be sent twice", "err", err)
			return fmt.Errorf("mail %s was accepted but could not be marked sent: %w", id, err)
		}
		log.Info("mail sent", "server", sender.Server())
		return nil
	}
}

// MaintainKind is the periodic outbox upkeep job.
const MaintainKind = "mail.maintain"

// KeepBodies is how long the body of a sent or failed mail is kept. Reset links
// die after an hour and invites after a week; a month leaves time to look at
// what was sent, and then the secret goes.
const KeepBodies = 30 * 24 * time.Hour

// Maintain is the periodic outbox upkeep: it fails rows whose delivery job
// ended without recording an outcome (cancelled, or its worker died on the
// last attempt), so that no mail stays "queued" forever, and purges bodies of
// rows that finished more than keep ago. The rows themselves stay as the
// delivery log.
func Maintain(db *store.DB, log *slog.Logger, keep time.Duration) jobs.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, j *jobs.Job) error {
		orphans, err := db.FailOrphanedMail(ctx)
		if err != nil {
			return err
		}
		if orphans > 0 {
			log.Warn("mail whose delivery job ended without sending it marked failed", "mails", orphans)
		}
		cutoff := db.Now().Add(-keep)
		purged, err := jobs.DeleteInBatches(ctx, 500, func(ctx context.Context, limit int) (int, error) {
			return db.PurgeMailBodies(ctx, cutoff, limit)
		})
		if purged > 0 {
			log.Info("purged old mail bodies", "mails", purged)
		}
		return err
	}
}
