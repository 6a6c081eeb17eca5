package web

import (
	"bufio"
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"upanel/internal/auth"
	"upanel/internal/notify"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// raise raises ev through the notify service in a transaction of its own, as
// the fleet does, and returns how many users got it.
func (e *env) raise(ev notify.Event) int {
	e.t.Helper()
	ctx := context.Background()
	var n int
	err := e.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		n, err = e.srv.Notify.Raise(ctx, tx, ev)
		return err
	})
	if err != nil {
		e.t.Fatalf("raise %s: %v", ev.Type, err)
	}
	return n
}

func serverOffline(serverID string) notify.Event {
	return notify.Event{Type: notify.ServerOffline, Title: "Server web-1 is offline", Message: "No heartbeat for 3 minutes.",
		SubjectType: "Server", SubjectID: serverID}
}

type notificationList struct {
	Items  []notificationJSON `json:"items"`
	Next   string             `json:"next"`
	Unread int                `json:"unread"`
}

func (c *client) notifications(t *testing.T, query string) notificationList {
	t.Helper()
	res := c.api("GET", "/api/v1/notifications"+query, nil)
	if res.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/notifications%s: %d %s", query, res.Code, res.Body)
	}
	return decode[notificationList](t, res)
}

func TestNotificationList(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.user("admin@example.test", auth.Admin)
		e.user("operator@example.test", auth.Operator)
		e.user("viewer@example.test", auth.Viewer)
		admin, operator, viewer := e.loggedIn("admin@example.test"), e.loggedIn("operator@example.test"), e.loggedIn("viewer@example.test")

		srv := store.NewID()
		if n := e.raise(serverOffline(srv)); n != 2 {
			t.Fatalf("server_offline reached %d users, want the admin and the operator", n)
		}
		e.raise(notify.Event{Type: notify.BackupFailed, Title: "Backup of db failed", Message: "pg_dump: exit 1"})

		// Each sees their own, newest first, with a link to the object.
		got := admin.notifications(t, "")
		if len(got.Items) != 2 || got.Unread != 2 || got.Next != "" {
			t.Fatalf("admin's notifications: %+v", got)
		}
		first, second := got.Items[0], got.Items[1]
		if first.Type != notify.BackupFailed || second.Type != notify.ServerOffline {
			t.Errorf("not newest first: %s, %s", first.Type, second.Type)
		}
		if s := second.Subject; s == nil || s.Type != "Server" || s.ID != srv || s.Path != "/servers/"+srv {
			t.Errorf("subject of server_offline: %+v", s)
		}
		if first.Subject != nil {
			t.Errorf("a notification about nothing has subject %+v", first.Subject)
		}
		if second.Title != "Server web-1 is offline" || second.Message != "No heartbeat for 3 minutes." || second.ReadAt != nil || second.CreatedAt.IsZero() {
			t.Errorf("server_offline: %+v", second)
		}
		if em := second.Email; !em.Wanted || em.Status != "pending" || em.SentAt != nil {
			t.Errorf("an admin's default is email: %+v", em)
		}
		if got := viewer.notifications(t, ""); len(got.Items) != 0 || got.Unread != 0 {
			t.Errorf("a viewer got notifications without asking: %+v", got)
		}
		theirs := operator.notifications(t, "").Items
		if len(theirs) != 2 {
			t.Fatalf("operator's notifications: %+v", theirs)
		}

		// Filters and pages.
		if got := admin.notifications(t, "?type=server_offline"); len(got.Items) != 1 || got.Items[0].ID != second.ID {
			t.Errorf("type filter: %+v", got.Items)
		}
		page := admin.notifications(t, "?limit=1")
		if len(page.Items) != 1 || page.Items[0].ID != first.ID || page.Next != first.ID {
			t.Fatalf("first page of one: %+v", page)
		}
		if got := admin.notifications(t, "?limit=1&before="+page.Next); len(got.Items) != 1 || got.Items[0].ID != second.ID {
			t.Errorf("second page: %+v", got.Items)
		}
		for _, q := range []string{"?type=nothing", "?unread=maybe", "?before=not-an-id", "?before=%27%20OR%201=1--"} {
			if res := admin.api("GET", "/api/v1/notifications"+q, nil); res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), `"invalid"`) {
				t.Errorf("GET /api/v1/notifications%s: %d %s", q, res.Code, res.Body)
			}
			if res := admin.get("/notifications" + q); res.Code != http.StatusBadRequest {
				t.Errorf("GET /notifications%s: %d", q, res.Code)
			}
		}

		// Nobody reads or marks another's notification: it is not found,
		// like a missing one.
		for _, id := range []string{theirs[0].ID, store.NewID()} {
			if res := admin.api("POST", "/api/v1/notifications/"+id+"/read", nil); res.Code != http.StatusNotFound {
				t.Errorf("admin marks %s read through the API: %d %s", id, res.Code, res.Body)
			}
			if res := admin.postForm("/notifications/"+id+"/read", nil); res.Code != http.StatusNotFound {
				t.Errorf("admin marks %s read through the page: %d", id, res.Code)
			}
		}
		if res := admin.api("POST", "/api/v1/notifications/not-an-id/read", nil); res.Code != http.StatusNotFound {
			t.Errorf("a malformed id: %d", res.Code)
		}
		if res := admin.get("/notifications"); strings.Contains(res.Body.String(), theirs[0].ID) {
			t.Error("the admin's list shows the operator's notification")
		}

		// Mark one read, through the API.
		if res := admin.api("POST", "/api/v1/notifications/"+second.ID+"/read", nil); res.Code != http.StatusNoContent {
			t.Fatalf("mark read: %d %s", res.Code, res.Body)
		}
		if res := admin.api("POST", "/api/v1/notifications/"+second.ID+"/read", nil); res.Code != http.StatusNoContent {
			t.Errorf("mark read again: %d %s", res.Code, res.Body)
		}
		got = admin.notifications(t, "?unread=1")
		if len(got.Items) != 1 || got.Items[0].ID != first.ID || got.Unread != 1 {
			t.Errorf("unread after marking one: %+v", got)
		}
		if all := admin.notifications(t, "?type=server_offline"); all.Items[0].ReadAt == nil {
			t.Error("read_at not set")
		}
		if got := operator.notifications(t, "?unread=1"); len(got.Items) != 2 {
			t.Errorf("the admin's marking touched the operator's: %d unread", len(got.Items))
		}

		// Mark all read, through the API: the count, and only the caller's.
		res := admin.api("POST", "/api/v1/notifications/read-all", nil)
		if res.Code != http.StatusOK || decode[struct{ Marked int }](t, res).Marked != 1 {
			t.Fatalf("read-all: %d %s", res.Code, res.Body)
		}
		if got := admin.notifications(t, ""); got.Unread != 0 {
			t.Errorf("unread after read-all: %d", got.Unread)
		}
		if got := operator.notifications(t, ""); got.Unread != 2 {
			t.Errorf("the admin's read-all touched the operator's: %d unread", got.Unread)
		}

		// The page: one item per notification, with its link, its state and
		// the forms, which come back to the list they were sent from.
		body := operator.get("/notifications?type=server_offline").Body.String()
		for _, want := range []string{`href="/servers/` + srv + `"`, "Server web-1 is offline", "No heartbeat for 3 minutes.",
			`action="/notifications/` + theirs[1].ID + `/read"`, `action="/notifications/read-all"`, "A server goes offline", "email queued"} {
			if !strings.Contains(body, want) {
				t.Errorf("the list lacks %q", want)
			}
		}
		if strings.Contains(body, "Backup of db failed") {
			t.Error("the type filter of the page shows other types")
		}
		back := "/notifications?type=server_offline"
		res = operator.postForm("/notifications/"+theirs[1].ID+"/read", url.Values{"back": {back}})
		if res.Code != http.StatusSeeOther || res.Header().Get("Location") != back {
			t.Errorf("mark read on the page: %d %q", res.Code, res.Header().Get("Location"))
		}
		for i, evil := range []string{"https://evil.example/", "//evil.example/notifications", "/admin/users"} {
			res = operator.postForm("/notifications/read-all", url.Values{"back": {evil}})
			if res.Header().Get("Location") != "/notifications" {
				t.Errorf("back=%q leads to %q", evil, res.Header().Get("Location"))
			}
			want := map[bool]string{true: "1 notification marked read.", false: "Nothing was unread."}[i == 0]
			if body := operator.get("/notifications").Body.String(); !strings.Contains(body, want) {
				t.Errorf("read-all %d does not flash %q", i+1, want)
			}
		}
		if got := operator.notifications(t, ""); got.Unread != 0 {
			t.Errorf("operator's unread after the page's read-all: %d", got.Unread)
		}
		body = operator.get("/notifications").Body.String()
		if strings.Contains(body, `action="/notifications/read-all"`) || strings.Contains(body, "Mark read") {
			t.Error("the list offers to mark read with nothing unread")
		}
		if body := viewer.get("/notifications").Body.String(); !strings.Contains(body, "No notifications yet") {
			t.Error("the viewer's empty list says nothing")
		}
	})
}

// The bell is in every page's header, with the unread count in its badge
// and in the title.
func TestBell(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("admin@example.test", auth.Admin)
	admin := e.loggedIn("admin@example.test")
	body := admin.get("/dashboard").Body.String()
	if !strings.Contains(body, `id="bell" href="/notifications"`) || !strings.Contains(body, `data-count="0"`) ||
		!strings.Contains(body, `<title>Dashboard · UPanel</title>`) || !strings.Contains(body, `<script src="/static/notifications.js" defer>`) {
		t.Fatalf("dashboard without notifications:\n%s", body)
	}
	e.raise(serverOffline(store.NewID()))
	e.raise(serverOffline(store.NewID()))
	for _, path := range []string{"/dashboard", "/profile", "/activity", "/notifications"} {
		body := admin.get(path).Body.String()
		if !strings.Contains(body, `data-count="2"`) || !strings.Contains(body, `<span class="bell-num">2</span>`) || !strings.Contains(body, "<title>(2) ") {
			t.Errorf("%s shows no count of 2", path)
		}
	}
	// Refused and signed-out pages have no bell.
	if body := e.client().get("/login").Body.String(); strings.Contains(body, `id="bell"`) || strings.Contains(body, "notifications.js") {
		t.Error("the sign-in page has a bell")
	}
	if res := admin.get("/admin/nothing"); res.Code != http.StatusNotFound || !strings.Contains(res.Body.String(), `data-count="2"`) {
		t.Errorf("the not-found page of a signed-in user: %d, no bell", res.Code)
	}
	if res := e.client().get("/notifications"); res.Code != http.StatusSeeOther || !strings.HasPrefix(res.Header().Get("Location"), "/login?next=") {
		t.Errorf("the list signed out: %d %q", res.Code, res.Header().Get("Location"))
	}
}

func TestNotificationPreferences(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		adminUser := e.user("admin@example.test", auth.Admin)
		operatorUser := e.user("operator@example.test", auth.Operator)
		viewerUser := e.user("viewer@example.test", auth.Viewer)
		admin, operator, viewer := e.loggedIn("admin@example.test"), e.loggedIn("operator@example.test"), e.loggedIn("viewer@example.test")
		mine := func(u *store.User) []*store.Notification {
			t.Helper()
			ns, err := db.ListNotifications(ctx, u.ID, store.NotificationFilter{})
			if err != nil {
				t.Fatal(err)
			}
			return ns
		}

		// The defaults: everything by email for admins and operators, nothing
		// for viewers.
		res := viewer.api("GET", "/api/v1/notifications/preferences", nil)
		if res.Code != http.StatusOK {
			t.Fatalf("viewer's preferences: %d %s", res.Code, res.Body)
		}
		prefs := decode[map[string]string](t, res)
		if len(prefs) != len(notify.Types()) {
			t.Errorf("preferences name %d types, want %d: %v", len(prefs), len(notify.Types()), prefs)
		}
		for _, ti := range notify.Types() {
			if prefs[ti.Type] != store.ChannelOff {
				t.Errorf("viewer's default for %s: %q", ti.Type, prefs[ti.Type])
			}
		}
		if got := decode[map[string]string](t, admin.api("GET", "/api/v1/notifications/preferences", nil)); got[notify.SSLExpiring] != store.ChannelEmail {
			t.Errorf("admin's defaults: %v", got)
		}
		page := viewer.get("/notifications/settings").Body.String()
		for _, ti := range notify.Types() {
			if !strings.Contains(page, `name="`+ti.Type+`" value="off" aria-label="`+html.EscapeString(ti.Label)+`: Off" checked`) {
				t.Errorf("the settings page does not show %s off for a viewer", ti.Type)
			}
		}
		if strings.Contains(page, "role default") || !strings.Contains(page, "your role (viewer)") {
			t.Error("the settings page does not say the choices follow the role, or marks each type")
		}

		// Refused changes save nothing, even their valid part.
		activityBefore := countActivity(t, db, viewerUser.ID)
		for _, body := range []string{
			`{"server_offline":"in_app","nothing":"email"}`,
			`{"server_offline":"in_app","backup_failed":"pigeon"}`,
			`{"server_offline":""}`,
			`{"server_offline":1}`,
			`["server_offline"]`,
		} {
			req := newRawRequest("PUT", "/api/v1/notifications/preferences", body)
			req.Header.Set("X-CSRF-Token", viewer.csrf())
			res := viewer.do(req)
			if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), `"invalid"`) {
				t.Errorf("PUT %s: %d %s", body, res.Code, res.Body)
			}
		}
		res = viewer.postForm("/notifications/settings", url.Values{"server_offline": {"in_app"}, "nothing": {"email"}})
		if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), `&#34;nothing&#34; is not a notification type.`) {
			t.Errorf("the form with an unknown type: %d %s", res.Code, res.Body)
		}
		res = viewer.postForm("/notifications/settings", url.Values{"server_offline": {"in_app"}, "backup_failed": {"loud"}})
		if res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "is not a channel") {
			t.Errorf("the form with an unknown channel: %d", res.Code)
		}
		res = viewer.postForm("/notifications/settings", url.Values{"server_offline": {"in_app", "email"}})
		if res.Code != http.StatusBadRequest {
			t.Errorf("the form with a type twice: %d", res.Code)
		}
		if got, err := db.NotificationPreferences(ctx, viewerUser.ID); err != nil || len(got) != 0 {
			t.Errorf("refused changes saved %v (%v)", got, err)
		}
		if n := countActivity(t, db, viewerUser.ID); n != activityBefore {
			t.Errorf("refused changes were logged")
		}
		e.raise(serverOffline(store.NewID()))
		if ns := mine(viewerUser); len(ns) != 0 {
			t.Fatalf("a viewer got %d notifications by default", len(ns))
		}

		// The viewer opts in: server_offline in the panel (the form),
		// backup_failed by email too (the API).
		res = viewer.postForm("/notifications/settings", url.Values{"server_offline": {"in_app"}, "backup_failed": {"off"}})
		if res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/notifications/settings" {
			t.Fatalf("save the form: %d %s", res.Code, res.Body)
		}
		if body := viewer.get("/notifications/settings").Body.String(); !strings.Contains(body, "Notification settings saved.") ||
			!strings.Contains(body, `name="server_offline" value="in_app" aria-label="A server goes offline: In the panel" checked`) ||
			strings.Count(body, `<span class="badge">role default</span></th>`) != len(notify.Types())-1 {
			t.Error("the settings page does not show the saved choice, and which types follow the role")
		}
		got, err := db.NotificationPreferences(ctx, viewerUser.ID)
		if err != nil || len(got) != 1 || got[notify.ServerOffline] != store.ChannelInApp {
			t.Errorf("saved %v (%v): want only server_offline, as backup_failed stays at its default", got, err)
		}
		res = viewer.api("PUT", "/api/v1/notifications/preferences", map[string]string{"backup_failed": "email"})
		if res.Code != http.StatusOK {
			t.Fatalf("PUT: %d %s", res.Code, res.Body)
		}
		if got := decode[map[string]string](t, res); got[notify.BackupFailed] != store.ChannelEmail || got[notify.ServerOffline] != store.ChannelInApp || got[notify.SSLExpiring] != store.ChannelOff {
			t.Errorf("PUT answers %v", got)
		}
		if n := countActivity(t, db, viewerUser.ID); n != activityBefore+2 {
			t.Errorf("%d activity entries for two saved changes", n-activityBefore)
		}
		var changes string
		if err := db.QueryRowRaw(ctx, "SELECT changes FROM activity_log WHERE user_id = ? AND description = 'notification preferences changed' ORDER BY id LIMIT 1", viewerUser.ID).Scan(&changes); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(changes, `"server_offline"`) || !strings.Contains(changes, `"in_app"`) || strings.Contains(changes, "backup_failed") {
			t.Errorf("activity changes %s", changes)
		}

		// The admin turns server_offline off, the operator takes it in the
		// panel only.
		if res := admin.api("PUT", "/api/v1/notifications/preferences", map[string]string{"server_offline": "off"}); res.Code != http.StatusOK {
			t.Fatalf("admin PUT: %d %s", res.Code, res.Body)
		}
		if res := operator.postForm("/notifications/settings", url.Values{"server_offline": {"in_app"}}); res.Code != http.StatusSeeOther {
			t.Fatalf("operator form: %d", res.Code)
		}
		// A read-only token cannot change them.
		tok := e.withToken("viewer@example.test", auth.Viewer)
		if res := tok.api("PUT", "/api/v1/notifications/preferences", map[string]string{"ssl_expiring": "email"}); res.Code != http.StatusForbidden {
			t.Errorf("a viewer token changed preferences: %d", res.Code)
		}

		adminBefore, operatorBefore := len(mine(adminUser)), len(mine(operatorUser))
		if n := e.raise(serverOffline(store.NewID())); n != 2 {
			t.Errorf("server_offline reached %d users, want the operator and the viewer", n)
		}
		e.raise(notify.Event{Type: notify.BackupFailed, Title: "Backup failed"})
		if got := len(mine(adminUser)) - adminBefore; got != 1 {
			t.Errorf("the admin got %d notifications, want only backup_failed", got)
		}
		op := mine(operatorUser)
		if len(op)-operatorBefore != 2 || op[1].Type != notify.ServerOffline || op[1].EmailWanted || !op[0].EmailWanted {
			t.Errorf("operator: server_offline should be in the panel only, backup_failed by email too")
		}
		vw := mine(viewerUser)
		if len(vw) != 2 || vw[1].Type != notify.ServerOffline || vw[1].EmailWanted || vw[0].Type != notify.BackupFailed || !vw[0].EmailWanted {
			t.Errorf("viewer after opting in: %d notifications", len(vw))
		}
	})
}

func countActivity(t *testing.T, db *store.DB, userID string) int {
	t.Helper()
	var n int
	if err := db.QueryRowRaw(context.Background(), "SELECT COUNT(*) FROM activity_log WHERE user_id = ?", userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The list and the API show how each notification's email went, a failure
// with its reason.
func TestNotificationMailStatus(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		u := e.user("admin@example.test", auth.Admin)
		admin := e.loggedIn("admin@example.test")
		mailer := notify.New(notify.Options{DB: db, BaseURL: e.srv.BaseURL, Settle: time.Millisecond, MaxWait: time.Millisecond})
		sendOne := func(title string) string {
			t.Helper()
			e.raise(notify.Event{Type: notify.BackupFailed, Title: title})
			time.Sleep(5 * time.Millisecond)
			if n, err := mailer.SendDue(ctx); err != nil || n != 1 {
				t.Fatalf("SendDue: %d %v", n, err)
			}
			rows, err := db.ListMail(ctx, "", 1)
			if err != nil || len(rows) != 1 {
				t.Fatalf("outbox: %v %v", rows, err)
			}
			return rows[0].ID
		}
		status := func(title string) notificationEmailJSON {
			t.Helper()
			for _, n := range admin.notifications(t, "").Items {
				if n.Title == title {
					return n.Email
				}
			}
			t.Fatalf("no notification %q", title)
			return notificationEmailJSON{}
		}

		queued := sendOne("queued one")
		if em := status("queued one"); em.Status != "queued" || !em.Wanted || em.Error != "" {
			t.Errorf("queued: %+v", em)
		}
		if err := db.RecordMailFailure(ctx, queued, "421 try again later", false); err != nil {
			t.Fatal(err)
		}
		if em := status("queued one"); em.Status != "queued" || em.Error != "421 try again later" {
			t.Errorf("queued after a failed attempt: %+v", em)
		}

		failed := sendOne("failed one")
		if err := db.RecordMailFailure(ctx, failed, "550 5.1.1 <admin@example.test>: mailbox unavailable", true); err != nil {
			t.Fatal(err)
		}
		if em := status("failed one"); em.Status != "failed" || em.Error != "550 5.1.1 <admin@example.test>: mailbox unavailable" || em.SentAt != nil {
			t.Errorf("failed: %+v", em)
		}

		sent := sendOne("sent one")
		if ok, err := db.MarkMailSent(ctx, sent); err != nil || !ok {
			t.Fatalf("mark sent: %v %v", ok, err)
		}
		em := status("sent one")
		if em.Status != "sent" || em.SentAt == nil || em.Error != "" {
			t.Errorf("sent: %+v", em)
		}

		// Not wanted by email.
		if res := admin.api("PUT", "/api/v1/notifications/preferences", map[string]string{"ssl_expiring": "in_app"}); res.Code != http.StatusOK {
			t.Fatal(res.Body)
		}
		e.raise(notify.Event{Type: notify.SSLExpiring, Title: "panel only"})
		if em := status("panel only"); em.Status != "none" || em.Wanted {
			t.Errorf("in the panel only: %+v", em)
		}

		// The page, in the user's time zone.
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.SetTimezone(ctx, u.ID, "Asia/Tokyo") }); err != nil {
			t.Fatal(err)
		}
		body := admin.get("/notifications").Body.String()
		for _, want := range []string{
			"email failed: 550 5.1.1 &lt;admin@example.test&gt;: mailbox unavailable",
			"email queued (last attempt failed: 421 try again later)",
			"emailed " + em.SentAt.In(mustZone(t, "Asia/Tokyo")).Format("2006-01-02 15:04:05 MST"),
		} {
			if !strings.Contains(body, want) {
				t.Errorf("the list lacks %q", want)
			}
		}
		if strings.Count(body, `class="mail `) != 3 {
			t.Errorf("%d email states on the page, want 3 (none for the one in the panel only)", strings.Count(body, `class="mail `))
		}
	})
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// stream is a client of /notifications/stream over a real connection.
type stream struct {
	t      *testing.T
	res    *http.Response
	cancel context.CancelFunc
	events chan string // "unread N", ": comment", "retry N", "EOF"
}

func openStream(t *testing.T, ts *httptest.Server, c *client) (*stream, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+notificationStreamPath, nil)
	for k, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	req.Header.Set("Accept", "text/event-stream")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noRedirect.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		cancel()
		return nil, res.StatusCode
	}
	s := &stream{t: t, res: res, cancel: cancel, events: make(chan string, 100)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(res.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, ":"):
				s.events <- line
			case strings.HasPrefix(line, "retry: "):
				s.events <- "retry " + strings.TrimPrefix(line, "retry: ")
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if event == "unread" {
					d := strings.TrimPrefix(line, "data: ")
					s.events <- "unread " + strings.TrimSuffix(strings.TrimPrefix(d, `{"count":`), "}")
				}
			case line == "":
				event = ""
			}
		}
		s.events <- "EOF"
	}()
	t.Cleanup(s.close)
	return s, res.StatusCode
}

func (s *stream) close() {
	s.cancel()
	s.res.Body.Close()
}

// next waits for the next event that is not a comment.
func (s *stream) next(within time.Duration) string {
	s.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return "EOF"
			}
			if !strings.HasPrefix(ev, ":") && !strings.HasPrefix(ev, "retry ") {
				return ev
			}
		case <-deadline:
			s.t.Fatalf("no event within %s", within)
		}
	}
}

// until waits for an event, skipping others.
func (s *stream) until(want string, within time.Duration) {
	s.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-s.events:
			if ev == want {
				return
			}
			if !ok || ev == "EOF" {
				s.t.Fatalf("the stream ended before %q", want)
			}
		case <-deadline:
			s.t.Fatalf("no %q within %s", want, within)
		}
	}
}

func waitStreams(t *testing.T, e *env, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for e.srv.streams.open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d: a handler did not return", e.srv.streams.open(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamServer serves e over a real connection, with a ReadTimeout and a
// WriteTimeout shorter than the test's streams (the panel has a ReadTimeout
// of 60 s): a stream must outlive both.
func streamServer(t *testing.T, e *env) *httptest.Server {
	l := e.srv.streams
	l.poll, l.heartbeat, l.recheck = 50*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	ts := httptest.NewUnstartedServer(e.h)
	ts.Config.ReadTimeout = 500 * time.Millisecond
	ts.Config.WriteTimeout = 500 * time.Millisecond
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func TestNotificationStream(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		adminUser := e.user("admin@example.test", auth.Admin)
		e.user("operator@example.test", auth.Operator)
		admin := e.loggedIn("admin@example.test")
		ts := streamServer(t, e)

		e.raise(serverOffline(store.NewID()))
		s, code := openStream(t, ts, admin)
		if code != http.StatusOK {
			t.Fatalf("stream: %d", code)
		}
		if ct := s.res.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" || s.res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("headers %v", s.res.Header)
		}
		if ev := <-s.events; ev != "retry 3000" {
			t.Errorf("first line %q, want the retry delay", ev)
		}
		if ev := s.next(time.Second); ev != "unread 1" {
			t.Fatalf("first event %q, want unread 1", ev)
		}
		// Past the server's timeouts, with heartbeats meanwhile.
		time.Sleep(700 * time.Millisecond)
		s.until(": keep-alive", time.Second)
		e.raise(serverOffline(store.NewID()))
		if ev := s.next(3 * time.Second); ev != "unread 2" {
			t.Fatalf("after a new notification: %q", ev)
		}
		// Marking read elsewhere (another tab, the API) shows too.
		if res := admin.api("POST", "/api/v1/notifications/read-all", nil); res.Code != http.StatusOK {
			t.Fatal(res.Body)
		}
		if ev := s.next(3 * time.Second); ev != "unread 0" {
			t.Fatalf("after read-all: %q", ev)
		}
		// The client goes away: the handler returns.
		s.close()
		waitStreams(t, e, 0, 2*time.Second)

		// Too many at once for one user: 429, and another user is not
		// affected. Closing one makes room.
		var open []*stream
		for i := 0; i < e.srv.streams.maxPerUser; i++ {
			s, code := openStream(t, ts, admin)
			if code != http.StatusOK {
				t.Fatalf("stream %d: %d", i+1, code)
			}
			s.next(time.Second)
			open = append(open, s)
		}
		if _, code := openStream(t, ts, admin); code != http.StatusTooManyRequests {
			t.Errorf("stream %d of one user: %d, want 429", len(open)+1, code)
		}
		operator := e.loggedIn("operator@example.test")
		other, code := openStream(t, ts, operator)
		if code != http.StatusOK {
			t.Fatalf("another user's stream: %d", code)
		}
		other.close()
		open[0].close()
		waitStreams(t, e, len(open)-1, 2*time.Second)
		if s, code := openStream(t, ts, admin); code != http.StatusOK {
			t.Errorf("a stream after one closed: %d", code)
		} else {
			s.close()
		}
		for _, s := range open[1:] {
			s.close()
		}
		waitStreams(t, e, 0, 2*time.Second)

		// Signed out, or only with an API token (which counts under /api/
		// only): the policy sends the browser to sign in.
		for name, c := range map[string]*client{"anonymous": e.client(), "token": e.withToken("admin@example.test", auth.Admin)} {
			req, _ := http.NewRequest("GET", ts.URL+notificationStreamPath, nil)
			if c.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+c.bearer)
			}
			res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login?next=") {
				t.Errorf("%s: %d %q", name, res.StatusCode, res.Header.Get("Location"))
			}
		}

		// The stream is no activity: it does not keep an idle session
		// alive. Signing out ends it.
		idle := db.Now().Add(-30 * time.Minute).Truncate(time.Second)
		if err := db.ExecRaw(ctx, "UPDATE sessions SET last_activity_at = ? WHERE user_id = ?", idle, adminUser.ID); err != nil {
			t.Fatal(err)
		}
		s, _ = openStream(t, ts, admin)
		s.next(time.Second)
		time.Sleep(300 * time.Millisecond) // a few rechecks
		sessions, err := db.ListSessions(ctx, adminUser.ID)
		if err != nil || len(sessions) != 1 {
			t.Fatalf("sessions: %v %v", sessions, err)
		}
		if last := sessions[0].LastActivityAt; !last.Equal(idle) {
			t.Errorf("the stream touched the session: last activity %s, was %s", last, idle)
		}
		if res := admin.postForm("/logout", nil); res.Code != http.StatusSeeOther {
			t.Fatalf("logout: %d", res.Code)
		}
		s.until("EOF", 2*time.Second)
		waitStreams(t, e, 0, 2*time.Second)
	})
}

// A stream ends by itself after its lifetime, and at once when the panel
// shuts down.
func TestNotificationStreamEnds(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("admin@example.test", auth.Admin)
	admin := e.loggedIn("admin@example.test")
	stop := make(chan struct{})
	e.srv.Stop = stop
	ts := streamServer(t, e)
	e.srv.streams.life = 300 * time.Millisecond
	s, _ := openStream(t, ts, admin)
	s.next(time.Second)
	start := time.Now()
	s.until("EOF", 2*time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a 300ms stream lasted %s", d)
	}
	waitStreams(t, e, 0, time.Second)

	e.srv.streams.life = time.Hour
	var streams []*stream
	for i := 0; i < 3; i++ {
		s, _ := openStream(t, ts, admin)
		s.next(time.Second)
		streams = append(streams, s)
	}
	close(stop)
	for _, s := range streams {
		s.until("EOF", time.Second)
	}
	waitStreams(t, e, 0, time.Second)
}
