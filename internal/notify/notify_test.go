package notify_test

import (
	"context"
	"fmt"
	netmail "net/mail"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/fleet"
	"upanel/internal/jobs"
	"upanel/internal/mail"
	"upanel/internal/mail/mailtest"
	"upanel/internal/notify"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
	"upanel/internal/wire"
)

// wait bounds every wait for a job or a message; it is a limit, not a
// measurement.
const wait = 30 * time.Second

const (
	settle  = 20 * time.Second
	maxWait = 5 * time.Minute
	// agentInterval makes a server offline after 3 × 10 s of silence.
	agentInterval = 10 * time.Second
	baseURL       = "https://panel.example"
)

// Each user's time zone differs, so a test can tell that a mail uses the
// recipient's.
var userZones = map[string]string{"admin": "Europe/Berlin", "operator": "Asia/Kolkata", "viewer": "America/New_York"}

// env is a panel on a fresh database with a settable clock: the notify and
// fleet services, an admin, an operator and a viewer, and (once started) a
// real job runner delivering mail to a real SMTP server.
type env struct {
	t      *testing.T
	st     storetest.Env
	db     *store.DB
	clock  *storetest.Clock
	notify *notify.Service
	fleet  *fleet.Service
	users  map[string]*store.User // by role
	seq    atomic.Uint64          // agent message sequence numbers

	runner   atomic.Pointer[jobs.Runner]
	retryNow func(jobID string)
	smtp     *mailtest.Server
}

func newEnv(t *testing.T, dialect string) *env {
	t.Helper()
	// Milliseconds in the start time catch comparisons that only work on
	// whole seconds.
	clock := storetest.NewClock(time.Date(2025, 3, 10, 22, 47, 13, 250_000_000, time.UTC))
	st := storetest.NewWithClock(t, dialect, clock)
	if err := st.DB.RegisterActiveKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, db: st.DB, clock: clock, users: map[string]*store.User{}}
	e.notify, e.fleet = e.services(st.DB)
	for _, role := range []string{"admin", "operator", "viewer"} {
		err := e.db.InTx(context.Background(), func(tx *store.Tx) error {
			u, err := tx.CreateUser(context.Background(), store.NewUser{Email: role + "@example.test", PasswordHash: "x", Role: role, Timezone: userZones[role]})
			e.users[role] = u
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// services returns a notify and a fleet service on db, as one panel process
// has them.
func (e *env) services(db *store.DB) (*notify.Service, *fleet.Service) {
	base, _ := url.Parse(baseURL)
	wake := func() {
		if r := e.runner.Load(); r != nil {
			r.Wake()
		}
	}
	n := notify.New(notify.Options{DB: db, BaseURL: base, Settle: settle, MaxWait: maxWait, Wake: wake})
	f := fleet.New(fleet.Options{DB: db, Recorder: audit.New(db), BaseURL: base, AgentInterval: agentInterval, Wake: wake, Notify: n})
	return n, f
}

// startMail starts mailpit and a job runner that delivers the outbox to it
// with the real SendHandler. Failed attempts back off for an hour, so a retry
// runs only when the test calls e.retryNow.
func (e *env) startMail() {
	t := e.t
	t.Helper()
	e.smtp = mailtest.Start(t, mailtest.Options{})
	cfg, err := mail.ParseSMTPURL(e.smtp.URL())
	if err != nil {
		t.Fatal(err)
	}
	sender, err := mail.NewSender(cfg, netmail.Address{Name: "UPanel", Address: "upanel@panel.example"})
	if err != nil {
		t.Fatal(err)
	}
	r := jobs.NewRunner(e.db, jobs.Options{
		Workers: 2, Lease: 10 * time.Second, Poll: 25 * time.Millisecond, ShutdownGrace: 5 * time.Second,
		Backoff: func(int) time.Duration { return time.Hour },
	})
	r.Handle(mail.SendKind, mail.SendHandler(e.db, sender, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	e.runner.Store(r)
	t.Cleanup(func() { cancel(); wg.Wait() })
	e.retryNow = func(jobID string) {
		t.Helper()
		storetest.Exec(t, e.db, "UPDATE jobs SET run_at = ? WHERE id = ? AND status = 'queued'", e.db.Now(), jobID)
		r.Wake()
	}
}

func (e *env) createServer(name string) *store.Server {
	e.t.Helper()
	srv, _, err := e.fleet.Create(context.Background(), nil, fleet.ServerInput{Name: name, Host: name + ".example.com"}, auth.Meta{})
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return srv
}

func (e *env) heartbeat(id string) {
	e.t.Helper()
	msg := wire.Message{Protocol: wire.ProtocolVersion, Seq: e.seq.Add(1), SentAt: e.clock.Now()}
	_, err := e.fleet.Heartbeat(context.Background(), id, wire.Heartbeat{Message: msg,
		Host: wire.Host{OS: "Debian GNU/Linux 12 (bookworm)", CPUCores: 2, RAMMB: 2048, DiskGB: 40, AgentVersion: "1.0", Arch: "amd64"}}, "192.0.2.1")
	if err != nil {
		e.t.Fatalf("heartbeat: %v", err)
	}
}

func (e *env) checkOffline() {
	e.t.Helper()
	if err := e.fleet.CheckOffline(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) status(id string) string {
	e.t.Helper()
	s, err := e.db.GetServer(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.Status
}

func (e *env) setMaintenance(id string, on bool) {
	e.t.Helper()
	err := e.db.InTx(context.Background(), func(tx *store.Tx) error {
		changed, err := tx.SetServerMaintenance(context.Background(), id, on)
		if err == nil && !changed {
			err = fmt.Errorf("maintenance of %s was already %v", id, on)
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) setPreference(role, typ, channel string) {
	e.t.Helper()
	if err := e.db.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.SetNotificationPreference(context.Background(), e.users[role].ID, typ, channel)
	}); err != nil {
		e.t.Fatal(err)
	}
}

// raise raises ev in a transaction of its own and returns how many users it
// notified.
func (e *env) raise(ev notify.Event) int {
	e.t.Helper()
	var n int
	err := e.db.InTx(context.Background(), func(tx *store.Tx) (err error) {
		n, err = e.notify.Raise(context.Background(), tx, ev)
		return err
	})
	if err != nil {
		e.t.Fatalf("raise %+v: %v", ev, err)
	}
	return n
}

func (e *env) sendDue() int {
	e.t.Helper()
	n, err := e.notify.SendDue(context.Background())
	if err != nil {
		e.t.Fatalf("SendDue: %v", err)
	}
	return n
}

// notifications returns a user's notifications, newest first.
func (e *env) notifications(role string) []*store.Notification {
	e.t.Helper()
	ns, err := e.db.ListNotifications(context.Background(), e.users[role].ID, store.NotificationFilter{Limit: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	return ns
}

func (e *env) count(q string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRowRaw(context.Background(), q, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// outbox returns every outbox row, newest first.
func (e *env) outbox() []store.OutboxRow {
	e.t.Helper()
	rows, err := e.db.ListMail(context.Background(), "", 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return rows
}

// mailJob returns the delivery job of an outbox row.
func (e *env) mailJob(outboxID string) *store.Job {
	e.t.Helper()
	j, err := e.db.LatestJobFor(context.Background(), "mail_outbox", outboxID, mail.SendKind)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

// waitMailJobs waits until the delivery job of every outbox row satisfies ok.
func (e *env) waitMailJobs(what string, ok func(j *store.Job) bool) {
	e.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		done := true
		var last *store.Job
		for _, row := range e.outbox() {
			if j := e.mailJob(row.ID); !ok(j) {
				done, last = false, j
				break
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("mail job never became %s: %+v", what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func succeeded(j *store.Job) bool { return j.Status == store.JobSucceeded }
func failed(j *store.Job) bool    { return j.Status == store.JobFailed }

// failedOnce is a job whose first attempt failed and which waits to retry.
func failedOnce(j *store.Job) bool { return j.Status == store.JobQueued && j.Attempts == 1 }

// messagesTo returns the messages mailpit holds for an address.
func messagesTo(all []mailtest.Message, addr string) []mailtest.Message {
	var out []mailtest.Message
	for _, m := range all {
		for _, a := range m.To {
			if strings.EqualFold(a, addr) {
				out = append(out, m)
			}
		}
	}
	return out
}

// when is how a mail to role shows t: in the user's time zone.
func when(t *testing.T, role string, at time.Time) string {
	t.Helper()
	loc, err := time.LoadLocation(userZones[role])
	if err != nil {
		t.Fatal(err)
	}
	return at.In(loc).Format("2006-01-02 15:04 MST")
}

// TestBurstBecomesOneDigest: thirty servers go offline at once. Admins and
// operators get thirty notifications each and, once the burst has settled,
// one mail each, read back from a real SMTP server; the viewer gets nothing.
func TestBurstBecomesOneDigest(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			e := newEnv(t, d)
			e.startMail()
			ctx := context.Background()

			servers := make([]*store.Server, 30)
			for i := range servers {
				servers[i] = e.createServer(fmt.Sprintf("web-%02d", i+1))
				e.heartbeat(servers[i].ID)
			}
			e.clock.Add(3*agentInterval + time.Second)
			down := e.clock.Now()
			e.checkOffline()
			for _, s := range servers {
				if st := e.status(s.ID); st != store.ServerOffline {
					t.Fatalf("%s is %s after 31 s of silence", s.Name, st)
				}
			}
			for role, want := range map[string]int{"admin": 30, "operator": 30, "viewer": 0} {
				ns := e.notifications(role)
				if len(ns) != want {
					t.Fatalf("%s has %d notifications, want %d", role, len(ns), want)
				}
				for _, n := range ns {
					if n.Type != notify.ServerOffline || !n.EmailWanted || n.EmailSentAt != nil || n.MailStatus != "" || n.NotifiableType != "Server" {
						t.Fatalf("%s: new notification %+v", role, n)
					}
				}
			}

			// A burst is mailed only once it has been quiet for Settle.
			e.clock.Add(settle - time.Second)
			if n := e.sendDue(); n != 0 {
				t.Fatalf("SendDue queued %d mails before the burst settled", n)
			}
			if rows := e.outbox(); len(rows) != 0 {
				t.Fatalf("%d outbox rows before the burst settled", len(rows))
			}
			e.clock.Add(2 * time.Second)
			if n := e.sendDue(); n != 2 {
				t.Fatalf("SendDue queued %d mails, want 2 (admin and operator)", n)
			}
			e.waitMailJobs("succeeded", succeeded)

			all := e.smtp.Messages(t)
			if len(all) != 2 {
				t.Fatalf("mailpit holds %d messages, want 2", len(all))
			}
			if got := messagesTo(all, "viewer@example.test"); len(got) != 0 {
				t.Fatalf("the viewer was mailed: %+v", got[0].Subject)
			}
			outbox := map[string]store.OutboxRow{}
			for _, r := range e.outbox() {
				outbox[r.To] = r
			}
			for _, role := range []string{"admin", "operator"} {
				addr := role + "@example.test"
				got := messagesTo(all, addr)
				if len(got) != 1 {
					t.Fatalf("%d messages to %s, want exactly 1", len(got), addr)
				}
				m := got[0]
				row := outbox[addr]
				if row.Status != store.MailSent || row.SentAt == nil || row.Kind != mail.KindNotification {
					t.Fatalf("outbox row of %s: %+v", addr, row)
				}
				if m.MessageID != row.ID+"@panel.example" {
					t.Errorf("Message-ID %q does not name outbox row %s", m.MessageID, row.ID)
				}
				if !strings.Contains(m.Subject, "30 notifications") || strings.ContainsAny(m.Subject, "\r\n") {
					t.Errorf("subject %q", m.Subject)
				}
				if strings.TrimSpace(m.Text) == "" || strings.TrimSpace(m.HTML) == "" {
					t.Fatalf("a part is missing: text %d bytes, HTML %d bytes", len(m.Text), len(m.HTML))
				}
				if ct := strings.Join(m.Headers["Content-Type"], ""); !strings.HasPrefix(ct, "multipart/alternative") {
					t.Errorf("Content-Type %q", ct)
				}
				for _, s := range servers {
					link := baseURL + "/servers/" + s.ID
					if !strings.Contains(m.Text, link) || !strings.Contains(m.Text, "Server "+s.Name+" is offline") {
						t.Errorf("%s: the text part lacks %s or its title", addr, link)
					}
					if !strings.Contains(m.HTML, `href="`+link+`"`) || !strings.Contains(m.HTML, "Server "+s.Name+" is offline") {
						t.Errorf("%s: the HTML part lacks a link to %s or its title", addr, link)
					}
				}
				settings := baseURL + "/notifications/settings"
				if !strings.Contains(m.Text, settings) || !strings.Contains(m.HTML, `href="`+settings+`"`) {
					t.Errorf("%s: no link to the notification settings", addr)
				}
				// Times are the user's: 23:47 CET in Berlin, 04:17 IST the next day in
				// Kolkata, for an outage at 22:47 UTC.
				local := when(t, role, down)
				if !strings.Contains(m.Text, local) || !strings.Contains(m.HTML, local) {
					t.Errorf("%s: the mail does not show the time as %q:\n%s", addr, local, m.Text)
				}
				if utc := down.Format("2006-01-02 15:04"); strings.Contains(m.Text, utc) {
					t.Errorf("%s: the mail shows the UTC time %s", addr, utc)
				}
			}

			// Accepted, so every notification says so, and nothing is due any more.
			for _, role := range []string{"admin", "operator"} {
				for _, n := range e.notifications(role) {
					if n.EmailSentAt == nil || n.MailStatus != store.MailSent || n.MailError != "" {
						t.Fatalf("%s: after delivery %+v", role, n)
					}
				}
			}
			e.clock.Add(maxWait + time.Minute)
			if n := e.sendDue(); n != 0 {
				t.Fatalf("SendDue queued %d more mails", n)
			}
			if rows := e.outbox(); len(rows) != 2 {
				t.Fatalf("%d outbox rows, want 2", len(rows))
			}
			if n, err := e.db.MailFailures(ctx, e.clock.Now().Add(-24*time.Hour)); err != nil || n != 0 {
				t.Fatalf("mail failures %d, %v", n, err)
			}
		})
	}
}

// TestSettleAndMaxWait: notifications that keep coming postpone the mail
// until the oldest has waited MaxWait; then one mail carries all of them. A
// lone notification afterwards is mailed on its own once it settled.
func TestSettleAndMaxWait(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			e := newEnv(t, d)
			ctx := context.Background()
			ev := func(i int) notify.Event {
				id := store.NewID()
				return notify.Event{Type: notify.DeploymentFailed, Title: fmt.Sprintf("Deployment %d of shop failed", i),
					Message: "The build step exited with status 1.", SubjectType: "App", SubjectID: id}
			}
			start := e.clock.Now()
			var titles []string
			for i := 0; ; i++ {
				if n := e.raise(ev(i)); n != 2 {
					t.Fatalf("notified %d users, want 2", n)
				}
				titles = append(titles, fmt.Sprintf("Deployment %d of shop failed", i))
				queued := e.sendDue()
				waited := e.clock.Now().Sub(start)
				if waited <= maxWait {
					if queued != 0 {
						t.Fatalf("a mail was queued after %s while notifications kept coming every 10 s", waited)
					}
					e.clock.Add(10 * time.Second)
					continue
				}
				if queued != 2 {
					t.Fatalf("after %s, %d mails queued, want 2", waited, queued)
				}
				break
			}
			if len(titles) != 32 {
				t.Fatalf("%d notifications before the mail, want 32", len(titles))
			}
			rows := e.outbox()
			if len(rows) != 2 {
				t.Fatalf("%d outbox rows, want 2", len(rows))
			}
			for _, r := range rows {
				if !strings.Contains(r.Subject, "32 notifications") {
					t.Errorf("subject %q", r.Subject)
				}
				body, err := e.db.MailBody(ctx, r.ID)
				if err != nil {
					t.Fatal(err)
				}
				for _, title := range titles {
					if !strings.Contains(body.Text, title+" (") || !strings.Contains(body.HTML, title) {
						t.Errorf("mail to %s lacks %q", r.To, title)
					}
				}
			}

			// A new one starts a new burst: mailed alone, once settled.
			e.clock.Add(time.Second)
			e.raise(ev(99))
			if n := e.sendDue(); n != 0 {
				t.Fatalf("%d mails queued at once for a new notification", n)
			}
			e.clock.Add(settle + time.Millisecond)
			if n := e.sendDue(); n != 2 {
				t.Fatalf("%d mails for the settled notification, want 2", n)
			}
			rows = e.outbox()
			if len(rows) != 4 || rows[0].Subject != "[UPanel] Deployment 99 of shop failed" {
				t.Fatalf("newest outbox row %+v of %d", rows[0], len(rows))
			}
		})
	}
}

// TestSMTPFailure: while the SMTP server is down the mail job fails and
// retries, the notification shows the failure and no email_sent_at; once
// the server is back the retry delivers. A permanent refusal fails the mail
// for good, and the notification and the panel's health say so.
func TestSMTPFailure(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			e := newEnv(t, d)
			e.startMail()
			ctx := context.Background()
			e.setPreference("operator", notify.BackupFailed, store.ChannelInApp)
			srvID := store.NewID()
			backup := notify.Event{Type: notify.BackupFailed, Title: "Backup of db failed", Message: "pg_dump exited with status 1.",
				SubjectType: "Backup", SubjectID: srvID}

			// Down: the attempt fails, and the notification shows it.
			e.smtp.Stop(t)
			e.raise(backup)
			e.clock.Add(settle + time.Second)
			if n := e.sendDue(); n != 1 {
				t.Fatalf("%d mails queued, want 1", n)
			}
			e.waitMailJobs("failed once", failedOnce)
			ns := e.notifications("admin")
			if len(ns) != 1 {
				t.Fatalf("%d notifications", len(ns))
			}
			n := ns[0]
			if n.EmailSentAt != nil || n.MailStatus != store.MailQueued || !strings.Contains(n.MailError, "connect") {
				t.Fatalf("after a failed attempt: %+v", n)
			}
			if got := e.outbox()[0]; got.Status != store.MailQueued || got.Attempts != 1 || got.SentAt != nil {
				t.Fatalf("outbox after a failed attempt: %+v", got)
			}
			if n, _ := e.db.MailFailures(ctx, e.clock.Now().Add(-24*time.Hour)); n != 0 {
				t.Fatalf("%d failures counted while retries go on", n)
			}
			// A retrying mail is not due again: no second mail is composed.
			e.clock.Add(maxWait)
			if n := e.sendDue(); n != 0 {
				t.Fatalf("%d mails queued for a notification whose mail is retrying", n)
			}

			// Temporarily refused (451): still queued, still not sent.
			e.smtp.Restart(t)
			e.smtp.SetChaos(t, mailtest.Chaos{Recipient: 451})
			job := e.mailJob(e.outbox()[0].ID)
			e.retryNow(job.ID)
			e.waitMailJobs("failed twice", func(j *store.Job) bool { return j.Status == store.JobQueued && j.Attempts == 2 })
			n = e.notifications("admin")[0]
			if n.EmailSentAt != nil || n.MailStatus != store.MailQueued || !strings.Contains(n.MailError, "451") {
				t.Fatalf("after a 451: %+v", n)
			}
			if got := len(e.smtp.Messages(t)); got != 0 {
				t.Fatalf("%d messages stored while refusing", got)
			}

			// Back: the retry delivers, and only now is email_sent_at set.
			e.smtp.SetChaos(t, mailtest.Chaos{})
			e.retryNow(job.ID)
			e.waitMailJobs("succeeded", succeeded)
			n = e.notifications("admin")[0]
			if n.EmailSentAt == nil || n.MailStatus != store.MailSent || n.MailError != "" {
				t.Fatalf("after delivery: %+v", n)
			}
			if got := e.outbox()[0]; got.Attempts != 3 || got.SentAt == nil || !n.EmailSentAt.Equal(*got.SentAt) {
				t.Fatalf("outbox after delivery: %+v (notification sent at %v)", got, n.EmailSentAt)
			}
			m := e.smtp.WaitForMessage(t, "admin@example.test", wait)
			if m.Subject != "[UPanel] Backup of db failed" || !strings.Contains(m.Text, baseURL+"/backups/"+srvID) {
				t.Fatalf("delivered %q:\n%s", m.Subject, m.Text)
			}
			if got := len(e.smtp.Messages(t)); got != 1 {
				t.Fatalf("%d messages, want exactly 1", got)
			}

			// Refused for good (550): failed at once, and shown as failed.
			e.smtp.SetChaos(t, mailtest.Chaos{Recipient: 550})
			e.clock.Add(time.Minute)
			e.raise(notify.Event{Type: notify.BackupFailed, Title: "Backup of files failed", Message: "Disk full.", SubjectType: "Backup", SubjectID: store.NewID()})
			e.clock.Add(settle + time.Second)
			if n := e.sendDue(); n != 1 {
				t.Fatalf("%d mails queued, want 1", n)
			}
			e.waitMailJobs("finished", func(j *store.Job) bool { return j.Terminal() })
			failedRow := e.outbox()[0]
			if j := e.mailJob(failedRow.ID); j.Status != store.JobFailed || j.Attempts != 1 {
				t.Fatalf("job after a 550: %+v", j)
			}
			if failedRow.Status != store.MailFailed || failedRow.SentAt != nil || !strings.Contains(failedRow.LastError, "550") {
				t.Fatalf("outbox after a 550: %+v", failedRow)
			}
			n = e.notifications("admin")[0]
			if n.Title != "Backup of files failed" || n.EmailSentAt != nil || n.MailStatus != store.MailFailed || !strings.Contains(n.MailError, "550") {
				t.Fatalf("notification after a 550: %+v", n)
			}
			if got, err := e.db.MailFailures(ctx, e.clock.Now().Add(-24*time.Hour)); err != nil || got != 1 {
				t.Fatalf("mail failures %d, %v; want 1", got, err)
			}
			// The failure stays visible and is not retried behind the user's back.
			e.clock.Add(maxWait)
			if n := e.sendDue(); n != 0 {
				t.Fatalf("%d mails queued after a permanent failure", n)
			}
			// The operator wanted backups in the panel only.
			for _, n := range e.notifications("operator") {
				if n.EmailWanted || n.MailStatus != "" || n.EmailSentAt != nil {
					t.Fatalf("in-app notification %+v", n)
				}
			}
			if got := len(e.smtp.Messages(t)); got != 1 {
				t.Fatalf("%d messages, want 1", got)
			}
		})
	}
}

// TestPreferences: in_app notifies without mail, off does not notify, and a
// viewer who opts in gets both. An unknown type is an error.
func TestPreferences(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			e := newEnv(t, d)
			e.startMail()
			ctx := context.Background()
			offline := func(name string) notify.Event {
				return notify.Event{Type: notify.ServerOffline, Title: "Server " + name + " is offline", Message: name + " stopped reporting.",
					SubjectType: "Server", SubjectID: store.NewID()}
			}

			e.setPreference("admin", notify.ServerOffline, store.ChannelInApp)
			e.setPreference("viewer", notify.ServerOffline, store.ChannelEmail)
			if n := e.raise(offline("alpha")); n != 3 {
				t.Fatalf("notified %d users, want 3", n)
			}
			for role, wantMail := range map[string]bool{"admin": false, "operator": true, "viewer": true} {
				ns := e.notifications(role)
				if len(ns) != 1 || ns[0].EmailWanted != wantMail {
					t.Fatalf("%s: %+v, want one with email_wanted %v", role, ns, wantMail)
				}
			}
			// Other types keep the role defaults: the viewer gets no deployment news.
			e.raise(notify.Event{Type: notify.DeploymentFailed, Title: "Deployment of shop failed", Message: "x", SubjectType: "App", SubjectID: store.NewID()})
			if ns := e.notifications("viewer"); len(ns) != 1 {
				t.Fatalf("viewer has %d notifications, want 1", len(ns))
			}
			if ns := e.notifications("admin"); len(ns) != 2 || !ns[0].EmailWanted {
				t.Fatalf("admin: %+v", ns)
			}

			e.clock.Add(settle + time.Second)
			if n := e.sendDue(); n != 3 {
				t.Fatalf("%d mails queued, want 3 (admin: deployment, operator: both, viewer: offline)", n)
			}
			e.waitMailJobs("succeeded", succeeded)
			all := e.smtp.Messages(t)
			admin := messagesTo(all, "admin@example.test")
			if len(admin) != 1 || admin[0].Subject != "[UPanel] Deployment of shop failed" {
				t.Fatalf("admin got %d messages: %+v", len(admin), admin)
			}
			viewer := messagesTo(all, "viewer@example.test")
			if len(viewer) != 1 || viewer[0].Subject != "[UPanel] Server alpha is offline" {
				t.Fatalf("viewer got %+v", viewer)
			}
			if op := messagesTo(all, "operator@example.test"); len(op) != 1 || !strings.Contains(op[0].Subject, "2 notifications") {
				t.Fatalf("operator got %+v", op)
			}
			for _, n := range e.notifications("admin") {
				if n.Type == notify.ServerOffline && (n.EmailSentAt != nil || n.MailStatus != "") {
					t.Fatalf("an in-app notification reports mail: %+v", n)
				}
			}

			// Off: not notified at all.
			e.setPreference("admin", notify.ServerOffline, store.ChannelOff)
			if n := e.raise(offline("bravo")); n != 2 {
				t.Fatalf("notified %d users, want 2 (operator and viewer)", n)
			}
			if ns := e.notifications("admin"); len(ns) != 2 {
				t.Fatalf("admin with offline notifications off has %d notifications, want 2", len(ns))
			}

			// An unknown type is an error, and records nothing.
			before := e.count("SELECT COUNT(*) FROM notifications")
			err := e.db.InTx(ctx, func(tx *store.Tx) error {
				_, err := e.notify.Raise(ctx, tx, notify.Event{Type: "server_exploded", Title: "?"})
				return err
			})
			if err == nil {
				t.Fatal("an unknown type was raised")
			}
			if after := e.count("SELECT COUNT(*) FROM notifications"); after != before {
				t.Fatalf("an unknown type recorded %d notifications", after-before)
			}
		})
	}
}

// addWebhookTarget adds an active target that takes every type, so that a
// test sees every delivery Raise queues.
func (e *env) addWebhookTarget() {
	e.t.Helper()
	storetest.Exec(e.t, e.db, "INSERT INTO webhook_targets (id, name, url, format, secret, types) VALUES (?, 'all', 'https://hooks.example.test/x', 'generic', '', '*')", store.NewID())
}

func (e *env) deliveriesAbout(serverID string) int {
	e.t.Helper()
	return e.count("SELECT COUNT(*) FROM webhook_deliveries WHERE CAST(payload AS TEXT) LIKE ?", "%"+serverID+"%")
}

func (e *env) notificationsAbout(typ, serverID string) int {
	e.t.Helper()
	n, err := e.db.CountNotifications(context.Background(), typ, serverID)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestMaintenanceSuppresses: a server in maintenance goes offline without a
// word (no notification, no webhook, no mail), and its recovery, from an
// outage nobody was told about, is not announced either.
func TestMaintenanceSuppresses(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			e := newEnv(t, d)
			e.addWebhookTarget()
			quiet, loud := e.createServer("quiet"), e.createServer("loud")

			// A told outage and its recovery, before any maintenance.
			e.heartbeat(quiet.ID)
			e.heartbeat(loud.ID)
			e.clock.Add(3*agentInterval + time.Second)
			e.checkOffline()
			e.clock.Add(time.Minute)
			e.heartbeat(quiet.ID)
			e.heartbeat(loud.ID)
			e.clock.Add(settle + time.Second)
			if n := e.sendDue(); n != 2 {
				t.Fatalf("%d mails queued for the first outage, want 2", n)
			}
			for _, s := range []*store.Server{quiet, loud} {
				if off, rec := e.notificationsAbout(notify.ServerOffline, s.ID), e.notificationsAbout(notify.ServerRecovered, s.ID); off != 2 || rec != 2 {
					t.Fatalf("%s: %d offline and %d recovered notifications, want 2 and 2", s.Name, off, rec)
				}
				if n := e.deliveriesAbout(s.ID); n != 2 {
					t.Fatalf("%s: %d webhook deliveries, want 2", s.Name, n)
				}
			}

			// Past the flap window, quiet goes into maintenance and both go down.
			e.clock.Add(20 * time.Minute)
			e.setMaintenance(quiet.ID, true)
			e.heartbeat(quiet.ID)
			e.heartbeat(loud.ID)
			e.clock.Add(3*agentInterval + time.Second)
			e.checkOffline()
			if e.status(quiet.ID) != store.ServerOffline || e.status(loud.ID) != store.ServerOffline {
				t.Fatal("maintenance kept a silent server from being marked offline")
			}
			if off := e.notificationsAbout(notify.ServerOffline, quiet.ID); off != 2 {
				t.Fatalf("a server in maintenance raised %d new offline notifications", off-2)
			}
			if n := e.deliveriesAbout(quiet.ID); n != 2 {
				t.Fatalf("a server in maintenance queued %d webhook deliveries", n-2)
			}
			if off := e.notificationsAbout(notify.ServerOffline, loud.ID); off != 4 {
				t.Fatalf("the other server: %d offline notifications, want 4", off)
			}

			// Nothing about quiet is mailed.
			e.clock.Add(settle + time.Second)
			if n := e.sendDue(); n != 2 {
				t.Fatalf("%d mails queued, want 2", n)
			}
			for _, r := range e.outbox()[:2] {
				body, err := e.db.MailBody(context.Background(), r.ID)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(body.Text, "quiet") || strings.Contains(body.HTML, quiet.ID) || !strings.Contains(body.Text, loud.ID) {
					t.Fatalf("mail to %s:\n%s", r.To, body.Text)
				}
			}

			// Maintenance ends; the server comes back. Its outage was never told, so
			// its recovery is not either, though an earlier outage was told.
			e.clock.Add(time.Minute)
			e.setMaintenance(quiet.ID, false)
			e.heartbeat(quiet.ID)
			e.heartbeat(loud.ID)
			if e.status(quiet.ID) != store.ServerOnline {
				t.Fatal("quiet is not back online")
			}
			if rec := e.notificationsAbout(notify.ServerRecovered, quiet.ID); rec != 2 {
				t.Fatalf("recovery from an untold outage: %d recovered notifications, want the earlier 2", rec)
			}
			if n := e.deliveriesAbout(quiet.ID); n != 2 {
				t.Fatalf("recovery from an untold outage queued %d webhook deliveries", n-2)
			}
			if rec := e.notificationsAbout(notify.ServerRecovered, loud.ID); rec != 4 {
				t.Fatalf("the other server: %d recovered notifications, want 4", rec)
			}

			// An outage told before maintenance began, whose recovery came during
			// it: the recovery is not announced while in maintenance.
			e.clock.Add(20 * time.Minute)
			e.heartbeat(quiet.ID)
			e.clock.Add(3*agentInterval + time.Second)
			e.checkOffline()
			if off := e.notificationsAbout(notify.ServerOffline, quiet.ID); off != 4 {
				t.Fatalf("out of maintenance: %d offline notifications, want 4", off)
			}
			e.setMaintenance(quiet.ID, true)
			e.clock.Add(time.Minute)
			e.heartbeat(quiet.ID)
			if rec := e.notificationsAbout(notify.ServerRecovered, quiet.ID); rec != 2 {
				t.Fatalf("a recovery in maintenance raised %d notifications", rec-2)
			}
			e.setMaintenance(quiet.ID, false)

			// Out of maintenance, a new outage and its recovery are told again.
			e.clock.Add(20 * time.Minute)
			e.heartbeat(quiet.ID)
			e.clock.Add(3*agentInterval + time.Second)
			e.checkOffline()
			e.clock.Add(time.Minute)
			e.heartbeat(quiet.ID)
			if off, rec := e.notificationsAbout(notify.ServerOffline, quiet.ID), e.notificationsAbout(notify.ServerRecovered, quiet.ID); off != 6 || rec != 4 {
				t.Fatalf("after maintenance: %d offline and %d recovered notifications, want 6 and 4", off, rec)
			}

			// Raise itself refuses for a server in maintenance, whatever the type.
			e.setMaintenance(quiet.ID, true)
			before := e.count("SELECT COUNT(*) FROM webhook_deliveries")
			if n := e.raise(notify.Event{Type: notify.SecurityDrift, ServerID: quiet.ID, Title: "Security score of quiet fell to 40",
				Message: "x", SubjectType: "Server", SubjectID: quiet.ID}); n != 0 {
				t.Fatalf("Raise notified %d users about a server in maintenance", n)
			}
			if after := e.count("SELECT COUNT(*) FROM webhook_deliveries"); after != before {
				t.Fatal("Raise queued a webhook for a server in maintenance")
			}
		})
	}
}

// TestOncePerIncident: two panel processes on one database find each outage
// once, tell each recovery once, and mail each notification once, however
// their work interleaves.
func TestOncePerIncident(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			e := newEnv(t, d)
			ctx := context.Background()
			notify2, fleet2 := e.services(e.st.Reopen(t, store.Options{Now: e.clock.Now}))
			fleets := []*fleet.Service{e.fleet, fleet2}
			notifiers := []*notify.Service{e.notify, notify2}

			servers := make([]*store.Server, 8)
			for i := range servers {
				servers[i] = e.createServer(fmt.Sprintf("app-%d", i+1))
			}
			parallel := func(n int, fn func(i int) error) {
				t.Helper()
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i := range n {
					wg.Go(func() { errs[i] = fn(i) })
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			mailsQueued := 0
			for round := 1; round <= 3; round++ {
				for _, s := range servers {
					e.heartbeat(s.ID)
				}
				e.clock.Add(3*agentInterval + time.Second)
				// Both panels' watchers fire at once, and again.
				for range 2 {
					parallel(4, func(i int) error { return fleets[i%2].CheckOffline(ctx) })
				}
				e.clock.Add(time.Minute)
				for _, s := range servers {
					// Heartbeats reach both panels at once (an agent retrying one that
					// timed out, say): each sees the server offline, one tells.
					parallel(4, func(i int) error {
						msg := wire.Message{Protocol: wire.ProtocolVersion, Seq: e.seq.Add(1), SentAt: e.clock.Now()}
						_, err := fleets[i%2].Heartbeat(ctx, s.ID, wire.Heartbeat{Message: msg}, "192.0.2.1")
						if apperr.Is(err, apperr.Conflict) {
							return nil // overtaken by a later sequence number: refused as a replay
						}
						return err
					})
					e.heartbeat(s.ID) // a later heartbeat is no second recovery
					if off, rec := e.notificationsAbout(notify.ServerOffline, s.ID), e.notificationsAbout(notify.ServerRecovered, s.ID); off != 2*round || rec != 2*round {
						t.Fatalf("round %d, %s: %d offline and %d recovered notifications, want %d each", round, s.Name, off, rec, 2*round)
					}
				}

				// Both panels mail at once, from several goroutines each.
				e.clock.Add(settle + time.Second)
				var queued atomic.Int64
				parallel(6, func(i int) error {
					n, err := notifiers[i%2].SendDue(ctx)
					queued.Add(int64(n))
					return err
				})
				// A loser rolled back; whatever is left is due on the next tick.
				for _, s := range notifiers {
					n, err := s.SendDue(ctx)
					if err != nil {
						t.Fatal(err)
					}
					queued.Add(int64(n))
				}
				mailsQueued += int(queued.Load())
				if mailsQueued != 2*round {
					t.Fatalf("round %d: %d mails queued in all, want %d (one per user per round)", round, mailsQueued, 2*round)
				}
				e.clock.Add(20 * time.Minute) // past the flap window
			}
			rows := e.outbox()
			if len(rows) != 6 {
				t.Fatalf("%d outbox rows, want 6", len(rows))
			}
			for _, r := range rows {
				if n := e.count("SELECT COUNT(*) FROM notifications WHERE mail_outbox_id = ?", r.ID); n != 16 || !strings.Contains(r.Subject, "16 notifications") {
					t.Fatalf("mail %s (%s) carries %d notifications, want 16 (8 offline, 8 recovered)", r.ID, r.Subject, n)
				}
				if n := e.count("SELECT COUNT(*) FROM jobs WHERE subject_type = 'mail_outbox' AND subject_id = ?", r.ID); n != 1 {
					t.Fatalf("mail %s has %d delivery jobs", r.ID, n)
				}
			}
			if n := e.count("SELECT COUNT(*) FROM notifications WHERE mail_outbox_id IS NULL"); n != 0 {
				t.Fatalf("%d notifications were never mailed", n)
			}
			if n := e.count("SELECT COUNT(*) FROM mail_outbox"); n != 6 {
				t.Fatalf("%d outbox rows in all: a losing transaction left a mail behind", n)
			}
		})
	}
}

// TestMailContentSafety: what a notification says cannot break out of the
// mail: markup is escaped in HTML, a line break cannot start a header, and
// a title too long for a subject is cut.
func TestMailContentSafety(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			e := newEnv(t, d)
			e.startMail()
			e.setPreference("operator", notify.ServerOffline, store.ChannelOff)
			id := store.NewID()
			e.raise(notify.Event{Type: notify.ServerOffline, ServerID: "",
				Title:   "Server <script>alert(1)</script>\r\nBcc: eve@example.test\x00 is offline",
				Message: "<b>web</b> stopped reporting.\nSecond line & more", SubjectType: "Server", SubjectID: id})
			e.clock.Add(settle + time.Second)
			if n := e.sendDue(); n != 1 {
				t.Fatalf("%d mails", n)
			}
			e.waitMailJobs("succeeded", succeeded)
			m := e.smtp.WaitForMessage(t, "admin@example.test", wait)
			if m.Subject != "[UPanel] Server <script>alert(1)</script> Bcc: eve@example.test is offline" {
				t.Errorf("subject %q", m.Subject)
			}
			if _, ok := m.Headers["Bcc"]; ok || strings.Contains(string(m.Raw), "\r\nBcc:") {
				t.Errorf("the title injected a header:\n%s", m.Raw)
			}
			if strings.Contains(m.HTML, "<script>") || strings.Contains(m.HTML, "<b>web</b>") ||
				!strings.Contains(m.HTML, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(m.HTML, "&lt;b&gt;web&lt;/b&gt;") {
				t.Errorf("HTML part not escaped:\n%s", m.HTML)
			}
			if !strings.Contains(m.Text, "<b>web</b> stopped reporting.") || !strings.Contains(m.Text, "Second line & more") {
				t.Errorf("text part:\n%s", m.Text)
			}
			n := e.notifications("admin")[0]
			if strings.ContainsAny(n.Title, "\r\n\x00") {
				t.Errorf("stored title %q is not one line", n.Title)
			}

			// A very long title is cut, in the subject and in the stored title.
			e.smtp.DeleteAll(t)
			long := "Server " + strings.Repeat("ünïcode-", 60) + " is offline"
			e.raise(notify.Event{Type: notify.ServerOffline, Title: long, Message: "x", SubjectType: "Server", SubjectID: store.NewID()})
			e.clock.Add(settle + time.Second)
			if n := e.sendDue(); n != 1 {
				t.Fatalf("%d mails", n)
			}
			e.waitMailJobs("succeeded", succeeded)
			m = e.smtp.WaitForMessage(t, "admin@example.test", wait)
			if r := []rune(m.Subject); len(r) > 255 || !strings.HasSuffix(m.Subject, "…") || !strings.HasPrefix(m.Subject, "[UPanel] Server ünïcode-") {
				t.Errorf("subject of %d characters: %q", len(r), m.Subject)
			}
			if n := e.notifications("admin")[0]; len(n.Title) > 255 || !strings.HasPrefix(long, n.Title) {
				t.Errorf("stored title of %d bytes", len(n.Title))
			}
		})
	}
}

// TestLinks: links in mails start with UPANEL_URL, under its path if it has
// one, and never carry its query or fragment.
func TestLinks(t *testing.T) {
	for base, want := range map[string]string{
		"https://panel.example":                "https://panel.example/servers/01J0SRV",
		"https://panel.example/":               "https://panel.example/servers/01J0SRV",
		"https://example.com/upanel/?x=1#frag": "https://example.com/upanel/servers/01J0SRV",
		"http://192.0.2.10:8080":               "http://192.0.2.10:8080/servers/01J0SRV",
		"https://example.com/my%20panel":       "https://example.com/my%20panel/servers/01J0SRV",
	} {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		s := notify.New(notify.Options{BaseURL: u})
		if got := s.Link("Server", "01J0SRV"); got != want {
			t.Errorf("%s: link %s, want %s", base, got, want)
		}
	}
	s := notify.New(notify.Options{BaseURL: &url.URL{Scheme: "https", Host: "panel.example"}})
	for _, c := range []struct{ typ, id, want string }{
		{"App", "01J0APP", "https://panel.example/apps/01J0APP"},
		{"Backup", "01J0BAK", "https://panel.example/backups/01J0BAK"},
		{"Server", "a/../../admin", "https://panel.example/servers/a%2F..%2F..%2Fadmin"},
		{"Nothing", "x", "https://panel.example/notifications"},
		{"", "", "https://panel.example/notifications"},
	} {
		if got := s.Link(c.typ, c.id); got != c.want {
			t.Errorf("Link(%q, %q) = %s, want %s", c.typ, c.id, got, c.want)
		}
	}
}
