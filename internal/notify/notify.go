// Package notify tells people what happened: a notification per user in the
// panel, email (one message, or a digest of a burst) and outgoing webhooks.
// Events are raised in the transaction of the change they report, so a
// notification exists if and only if the change committed, and delivery
// happens afterwards through jobs that retry.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
	"unicode"

	"upanel/internal/mail"
	"upanel/internal/store"
)

// Notification types.
const (
	ServerOffline    = "server_offline"
	ServerRecovered  = "server_recovered"
	DeploymentFailed = "deployment_failed"
	BackupFailed     = "backup_failed"
	SSLExpiring      = "ssl_expiring"
	SecurityDrift    = "security_drift"
)

// TypeInfo describes a notification type for the settings page.
type TypeInfo struct {
	Type  string
	Label string
}

// Types lists every type, in the order the settings page shows them.
func Types() []TypeInfo {
	return []TypeInfo{
		{ServerOffline, "A server goes offline"},
		{ServerRecovered, "A server comes back online"},
		{SecurityDrift, "A server's security score falls"},
		{DeploymentFailed, "A deployment fails"},
		{BackupFailed, "A backup fails"},
		{SSLExpiring, "A certificate is about to expire"},
	}
}

// ValidType reports whether t is a notification type.
func ValidType(t string) bool {
	for _, x := range Types() {
		if x.Type == t {
			return true
		}
	}
	return false
}

// roleDefaults is what each role gets without a choice of its own: admins
// and operators everything, in the panel and by email; viewers nothing.
var roleDefaults = map[string]string{"admin": store.ChannelEmail, "operator": store.ChannelEmail, "viewer": store.ChannelOff}

// DefaultChannel is the channel a role gets for every type until the user
// chooses.
func DefaultChannel(role string) string {
	if c, ok := roleDefaults[role]; ok {
		return c
	}
	return store.ChannelOff
}

// Event is something to tell people about.
type Event struct {
	Type    string
	Title   string // one line
	Message string
	// SubjectType and SubjectID name the object it is about ("Server", id);
	// notifications link to it.
	SubjectType string
	SubjectID   string
	// ServerID is the server the event concerns, if any: a server in
	// maintenance mode raises nothing.
	ServerID string
}

// Options configures the Service.
type Options struct {
	DB  *store.DB
	Log *slog.Logger
	// BaseURL is UPANEL_URL, which links in mails and webhooks start with.
	BaseURL *url.URL
	// Settle is how long a user's notifications must be quiet before they
	// are mailed, so that a burst becomes one digest (20 s).
	Settle time.Duration
	// MaxWait bounds how long a notification waits for a burst to end (5 min).
	MaxWait time.Duration
	// Wake tells the job runner a job was enqueued.
	Wake func()
}

// Service raises notifications and delivers them.
type Service struct {
	Options
}

// New returns the service.
func New(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Settle <= 0 {
		o.Settle = 20 * time.Second
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 5 * time.Minute
	}
	if o.Wake == nil {
		o.Wake = func() {}
	}
	return &Service{Options: o}
}

// Raise records ev for everyone who wants it, and queues its webhook
// deliveries, in tx. It returns how many users it notified. Nothing is raised
// for a server in maintenance mode.
func (s *Service) Raise(ctx context.Context, tx *store.Tx, ev Event) (int, error) {
	if !ValidType(ev.Type) {
		return 0, fmt.Errorf("notify: unknown type %q", ev.Type)
	}
	// Text from agents, logs and names is stored and mailed: PostgreSQL
	// refuses NUL and invalid UTF-8, and a title is a subject line.
	ev.Title, ev.Message = oneLine(ev.Title), cleanText(ev.Message)
	if ev.ServerID != "" {
		on, err := tx.ServerInMaintenance(ctx, ev.ServerID)
		if err != nil {
			return 0, err
		}
		if on {
			s.Log.Info("notification suppressed: server in maintenance", "type", ev.Type, "server_id", ev.ServerID)
			return 0, nil
		}
	}
	recipients, err := tx.NotificationRecipients(ctx, ev.Type, roleDefaults)
	if err != nil {
		return 0, err
	}
	for _, r := range recipients {
		if _, err := tx.InsertNotification(ctx, store.Notification{UserID: r.UserID, Type: ev.Type, Title: oneLine(ev.Title),
			Message: ev.Message, NotifiableType: ev.SubjectType, NotifiableID: ev.SubjectID, EmailWanted: r.Channel == store.ChannelEmail}); err != nil {
			return 0, err
		}
	}
	if err := s.queueWebhooks(ctx, tx, ev); err != nil {
		return 0, err
	}
	return len(recipients), nil
}

// oneLine makes s one line of printable text: control characters (NUL, CR,
// LF, ESC...) become spaces, runs of spaces one, and invalid UTF-8 U+FFFD.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// cleanText keeps a message's line breaks and tabs, drops every other control
// character (NUL included) and replaces invalid UTF-8 with U+FFFD.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ReplaceAll(s, "\r\n", "\n"))
}

// Path returns the panel path of the object a notification is about, or of
// the notifications page when it names none the panel shows: links inside the
// panel use it as is, mails and webhooks through Link.
func Path(subjectType, subjectID string) string {
	if subjectID == "" {
		return "/notifications"
	}
	switch subjectType {
	case "Server":
		return "/servers/" + url.PathEscape(subjectID)
	case "App":
		return "/apps/" + url.PathEscape(subjectID)
	case "Backup":
		return "/backups/" + url.PathEscape(subjectID)
	}
	return "/notifications"
}

// Link returns the absolute URL of Path.
func (s *Service) Link(subjectType, subjectID string) string {
	u := *s.BaseURL
	// Path is escaped already: set it as the raw path, or String escapes
	// its escapes again.
	u.RawPath = strings.TrimRight(u.EscapedPath(), "/") + Path(subjectType, subjectID)
	u.Path, _ = url.PathUnescape(u.RawPath)
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// maxDigest bounds the notifications in one mail; more go in the next.
const maxDigest = 50

// SendDue composes the mails that are due: for each user whose notifications
// have been quiet for Settle (or waited MaxWait), one mail with all of them.
// Each mail goes through the outbox and its job, which set email_sent_at
// once the SMTP server accepts it. Several panels may run it at once: a
// notification is attached to one mail only, and a transaction that loses
// that race rolls back. It returns how many mails it queued.
func (s *Service) SendDue(ctx context.Context) (int, error) {
	queued := 0
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		now := tx.Now()
		due, err := tx.DueNotificationMail(ctx, now.Add(-s.Settle), now.Add(-s.MaxWait), maxDigest)
		if err != nil {
			return err
		}
		for _, d := range due {
			tz, err := tx.UserTimezone(ctx, d.UserID)
			if err != nil {
				return err
			}
			loc, err := time.LoadLocation(tz)
			if err != nil {
				loc = time.UTC
			}
			msg := mail.Notifications{Settings: s.Link("", "") + "/settings"}
			ids := make([]string, 0, len(d.Notifications))
			for _, n := range d.Notifications {
				msg.Items = append(msg.Items, mail.NotificationItem{Title: n.Title, Message: n.Message,
					Link: s.Link(n.NotifiableType, n.NotifiableID), When: n.CreatedAt.In(loc).Format("2006-01-02 15:04 MST")})
				ids = append(ids, n.ID)
			}
			m, err := mail.NotificationEmail(d.Email, msg)
			if err != nil {
				return err
			}
			mailID, err := tx.EnqueueMail(ctx, m)
			if err != nil {
				return err
			}
			ok, err := tx.AttachMail(ctx, mailID, ids)
			if err != nil {
				return err
			}
			if !ok {
				return errRaced
			}
			queued++
		}
		return nil
	})
	if err == errRaced {
		return 0, nil // another panel mailed them
	}
	if err != nil {
		return 0, err // rolled back: nothing was queued
	}
	if queued > 0 {
		s.Wake()
	}
	return queued, nil
}

var errRaced = fmt.Errorf("notify: another process mailed these notifications first")

// Run mails due notifications every few seconds until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.SendDue(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("mail notifications", "err", err)
		} else if n > 0 {
			s.Log.Info("notification mails queued", "mails", n)
		}
	}
}
