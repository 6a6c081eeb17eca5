package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"upanel/internal/auth"
	"upanel/internal/browsertest"
	"upanel/internal/config"
	"upanel/internal/logging"
	"upanel/internal/notify"
	"upanel/internal/panel"
	"upanel/internal/store"
)

// The accounts startPanel creates, and the viewer browseServers adds.
const (
	adminEmail    = "admin@example.com"
	operatorEmail = "operator@example.com"
	viewerEmail   = "viewer@example.com"
	e2ePassword   = "correct horse battery staple 1"
)

// browseServers looks at the server pages in Debian's chromium, as the people
// who use them would, while the servers ids are provisioned, hardened and
// audited Debian hosts:
//
//   - the admin sees every server online in the list, with a CPU sparkline
//     and a score; on each server's page the inventory, the charts of every
//     range, the security checks with their weight, result and fix, the
//     provisioning log, and the actions. "Audit now" flashes a confirmation
//     and a fresh audit follows; "Remove" asks first, and Cancel keeps the
//     server. A server added through the form shows its bootstrap command
//     and the empty states (no metrics, no audit), and is removed again
//     through the confirmation;
//   - an operator gets the same actions;
//   - a viewer sees the pages without any action, cannot open the form to
//     add a server, and a forged form post of an action, with the viewer's
//     own session and CSRF token, is refused with 403 and recorded;
//   - on a phone-sized screen no page is wider than the screen;
//   - the bell in the header counts the admin's unread notifications and
//     follows a new one live, without a reload; the notification center
//     lists it with a link to its server, "Mark all read" takes the bell to
//     0, and the settings page shows a choice per type (checkLiveBell).
//
// Screenshots of every step go to the artifact folder as servers-NN-*.png.
func browseServers(t testing.TB, p *panelUnderTest, ids ...string) {
	t.Helper()
	chromium := browsertest.Chromium(t)
	if len(ids) == 0 {
		t.Fatal("browseServers needs at least one server")
	}
	servers := make([]serverView, len(ids))
	for i, id := range ids {
		waitOnline(t, p, id, time.Minute)
		servers[i] = p.server(id)
	}
	addUser(t, p, viewerEmail, auth.Viewer)

	// The whole browser part is bounded, so that nothing can hang.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := browsertest.NewSession(t, chromium, p.url, "servers-")
	defer s.CheckConsoles()

	admin := s.Open(ctx, "admin")
	signIn(admin, adminEmail)

	// The list: every server online, with a sparkline of the last hour's CPU
	// (drawn once the metrics span two one-minute points) and its score.
	waitFor(t, "a CPU sparkline for every server", 2*time.Minute, func() bool {
		admin.Navigate("/servers")
		for _, v := range servers {
			if serverRow(admin, v.ID).Lines == 0 {
				return false
			}
		}
		return true
	})
	admin.ExpectText("h1", "Servers")
	admin.ExpectVisible(`main a.button[href="/servers/new"]`)
	for _, v := range servers {
		row := serverRow(admin, v.ID)
		if row.Name != v.Name || row.Status != "online" || row.Lines != 1 || row.Score == "" {
			t.Errorf("servers list row of %s: %+v", v.Name, row)
		}
		if v.SecurityScore != nil && row.Score != strconv.Itoa(*v.SecurityScore) {
			t.Errorf("servers list shows score %q for %s, the API %d", row.Score, v.Name, *v.SecurityScore)
		}
	}
	admin.Shot("list")

	// Each server's page.
	for _, v := range servers {
		checkServerPage(t, admin, p, v.ID)
		admin.Shot("detail-" + v.Name)
	}

	// The ranges of the charts.
	first := servers[0]
	admin.Navigate("/servers/" + first.ID)
	for _, rg := range []string{"24h", "7d", "1h"} {
		admin.Follow(fmt.Sprintf(`#metrics nav.tabs a[href="/servers/%s?range=%s"]`, first.ID, rg))
		admin.ExpectPath("/servers/" + first.ID)
		if got := admin.Location().Query().Get("range"); got != rg {
			t.Errorf("range link leads to range %q, want %s", got, rg)
		}
		admin.ExpectText(`#metrics nav.tabs a[aria-current="page"]`, rg)
		if n := admin.Count("#metrics svg.chart"); n != 4 {
			t.Errorf("range %s: %d charts, want 4", rg, n)
		}
		if n := admin.Count("#metrics svg.chart .s1"); n < 2 {
			t.Errorf("range %s: the CPU and network charts draw no data (%d series)", rg, n)
		}
		admin.Shot("charts-" + rg)
	}

	// Audit now: a flash says so, and a fresh audit arrives.
	before := admin.Text("#security .audited")
	admin.Submit(fmt.Sprintf(`#actions form[action="/servers/%s/audit"] button`, first.ID))
	admin.ExpectPath("/servers/" + first.ID)
	admin.ExpectText(".flash", "The agent is auditing the server")
	admin.Shot("audit-requested")
	waitFor(t, "the audit asked for in the browser", time.Minute, func() bool {
		admin.Navigate("/servers/" + first.ID)
		return admin.Text("#security .audited") != before
	})
	checkSecurity(t, admin, p, first.ID)
	admin.Shot("audited")

	// Remove asks first; Cancel keeps the server.
	msg := admin.Confirm(fmt.Sprintf(`#actions form[action="/servers/%s/delete"] button`, first.ID), false)
	if !strings.Contains(msg, "Remove "+first.Name) {
		t.Errorf("the removal asks %q", msg)
	}
	admin.ExpectPath("/servers/" + first.ID)
	if code := p.call("GET", "/api/v1/servers/"+first.ID, nil, nil); code != http.StatusOK {
		t.Fatalf("%s after cancelling its removal: %d", first.Name, code)
	}

	// A server added through the form: its bootstrap command, the empty
	// states, and a removal that is confirmed. No host is behind it.
	admin.Navigate("/servers")
	admin.Follow(`main a.button[href="/servers/new"]`)
	admin.ExpectPath("/servers/new")
	admin.ExpectText("h1", "Add a server")
	admin.ExpectVisible(`form[action="/servers"] a[href="/servers"]`)
	admin.Fill("#name", "charlie")
	admin.Fill("#host", "203.0.113.7")
	admin.Shot("add-form")
	admin.Submit(`form[action="/servers"] button`)
	admin.ExpectText(".flash", "Server added")
	admin.ExpectText("h1", "charlie")
	admin.ExpectText("h1 .status", "pending")
	admin.ExpectText("#bootstrap-cmd", "curl -fsSL '"+p.url+"/bootstrap/")
	admin.ExpectText("#metrics", "No metrics yet")
	admin.ExpectText("#security", "No audit yet")
	if n := admin.Count("#provisioning, #hardening"); n != 0 {
		t.Errorf("a new server shows %d job sections", n)
	}
	// Until it is onboarded, the page offers what onboards it, and removal.
	for _, a := range []string{"bootstrap", "scan", "delete"} {
		if n := admin.Count(fmt.Sprintf(`#actions form[action$="/%s"] button`, a)); n != 1 {
			t.Errorf("a new server's page has %d %q buttons, want 1", n, a)
		}
	}
	for _, a := range []string{"provision", "harden", "audit", "upgrade-agent"} {
		if n := admin.Count(fmt.Sprintf(`#actions form[action$="/%s"]`, a)); n != 0 {
			t.Errorf("a new server's page offers %q before it is onboarded", a)
		}
	}
	admin.Shot("added")
	var newID string
	if forms := admin.EvalStrings(`Array.from(document.querySelectorAll('#actions form[action$="/delete"]')).map(f => f.getAttribute("action"))`); len(forms) == 1 {
		newID = strings.TrimSuffix(strings.TrimPrefix(forms[0], "/servers/"), "/delete")
	}
	if newID == "" || strings.Contains(newID, "/") {
		t.Fatal("the new server's page has no remove button")
	}
	// The page the form answered is at /servers; its links must still lead
	// to the new server.
	if n := admin.Count(fmt.Sprintf(`#metrics nav.tabs a[href^="/servers/%s?range="]`, newID)); n != 3 {
		t.Errorf("the range links of the new server's page do not lead to it (%d of 3)", n)
	}
	phone(admin, func() {
		admin.Shot("added-phone")
	})
	admin.Navigate("/servers/" + newID)
	msg = admin.Confirm(fmt.Sprintf(`#actions form[action="/servers/%s/delete"] button`, newID), true)
	if !strings.Contains(msg, "Remove charlie") {
		t.Errorf("the removal asks %q", msg)
	}
	admin.ExpectPath("/servers")
	admin.ExpectText(".flash", "Server removed from the panel")
	if n := admin.Count(fmt.Sprintf(`main a[href="/servers/%s"]`, newID)); n != 0 {
		t.Error("the removed server is still listed")
	}
	if code := p.call("GET", "/api/v1/servers/"+newID, nil, nil); code != http.StatusNotFound {
		t.Errorf("the removed server: GET %d, want 404", code)
	}

	// On a phone: nothing wider than the screen, long keys and commands
	// wrapped, the security table scrolling inside its card.
	phone(admin, func() {
		admin.Navigate("/servers")
		admin.Shot("list-phone")
		for _, v := range servers {
			admin.Navigate("/servers/" + v.ID)
			admin.Shot("detail-phone-" + v.Name)
		}
	})

	// An operator runs servers too.
	operator := s.Open(ctx, "operator")
	signIn(operator, operatorEmail)
	operator.Navigate("/servers")
	operator.ExpectVisible(`main a.button[href="/servers/new"]`)
	operator.Navigate("/servers/" + first.ID)
	for _, a := range serverActions {
		if n := operator.Count(fmt.Sprintf(`#actions form[action="/servers/%s/%s"] button`, first.ID, a)); n != 1 {
			t.Errorf("the operator has %d %q buttons, want 1", n, a)
		}
	}
	operator.Close()

	// A viewer sees, and does nothing.
	viewer := s.Open(ctx, "viewer")
	signIn(viewer, viewerEmail)
	viewer.Navigate("/servers")
	for _, v := range servers {
		if row := serverRow(viewer, v.ID); row.Status != "online" || row.Lines != 1 {
			t.Errorf("the viewer's list row of %s: %+v", v.Name, row)
		}
	}
	if n := viewer.Count(`a[href="/servers/new"]`); n != 0 {
		t.Error("the viewer is offered to add a server")
	}
	viewer.Shot("list-viewer")
	for _, v := range servers {
		viewer.Navigate("/servers/" + v.ID)
		viewer.ExpectText("#inventory", "Debian")
		viewer.ExpectText("#security", "Weight")
		if n := viewer.Count(`main form[method="post"], #actions`); n != 0 {
			t.Errorf("the viewer's page of %s has %d forms or actions", v.Name, n)
		}
		if n := viewer.Count("main button:not([data-copy])"); n != 0 {
			t.Errorf("the viewer's page of %s has %d buttons besides copying", v.Name, n)
		}
	}
	viewer.Shot("detail-viewer")
	if code := viewer.NavigateStatus("/servers/new"); code != http.StatusForbidden {
		t.Errorf("the viewer opens /servers/new: %d, want 403", code)
	}
	viewer.Shot("new-viewer-refused")

	// A forged post with the viewer's own session and CSRF token: the role,
	// not the token, refuses it.
	viewer.Navigate("/servers/" + first.ID)
	csrf := viewer.EvalStrings(`Array.from(document.querySelectorAll('header input[name="csrf_token"]')).map(i => i.value)`)
	if len(csrf) == 0 || csrf[0] == "" {
		t.Fatal("no CSRF token on the viewer's page")
	}
	denied := "SELECT COUNT(*) FROM security_events e JOIN users u ON u.id = e.user_id WHERE e.event_type = 'permission_denied' AND u.email = ?"
	deniedBefore := p.countRows(denied, viewerEmail)
	for _, a := range serverActions {
		code := forgedPost(t, p.url+"/servers/"+first.ID+"/"+a, viewer.Cookies(), csrf[0])
		if code != http.StatusForbidden {
			t.Errorf("a viewer's POST /servers/{id}/%s: %d, want 403", a, code)
		}
	}
	if got := p.countRows(denied, viewerEmail) - deniedBefore; got != len(serverActions) {
		t.Errorf("%d permission_denied events for the viewer's posts, want %d", got, len(serverActions))
	}
	if code := p.call("GET", "/api/v1/servers/"+first.ID, nil, nil); code != http.StatusOK {
		t.Errorf("%s after the viewer's forged delete: %d", first.Name, code)
	}
	viewer.Close()

	checkLiveBell(t, admin, p, first)
}

// checkLiveBell watches the admin's bell while a notification is raised in
// the panel's database, as the fleet raises them: the count follows over the
// live stream, with no reload. Then the notification center lists it, "Mark
// all read" clears the bell, and the settings page offers every type.
func checkLiveBell(t testing.TB, b *browsertest.Browser, p *panelUnderTest, srv serverView) {
	t.Helper()
	// The size of a desktop window again, after the phone-sized checks.
	b.Run(chromedp.EmulateViewport(1280, 900))
	b.Navigate("/servers")
	bell := func() int { return b.EvalInt(`Number(document.getElementById("bell").dataset.count)`) }
	var list struct {
		Unread int `json:"unread"`
	}
	p.must(http.StatusOK, "GET", "/api/v1/notifications?limit=1", nil, &list)
	before := bell()
	if before != list.Unread {
		t.Errorf("the bell shows %d unread, the API %d", before, list.Unread)
	}
	// A mark that a reload would wipe.
	b.EvalInt(`window.noReload = 7`)

	base, err := url.Parse(p.url)
	if err != nil {
		t.Fatal(err)
	}
	title := "Backup of " + srv.Name + " failed"
	ctx := context.Background()
	err = p.db.InTx(ctx, func(tx *store.Tx) error {
		n, err := notify.New(notify.Options{DB: p.db, BaseURL: base}).Raise(ctx, tx, notify.Event{Type: notify.BackupFailed,
			Title: title, Message: "The browser test raised this.", SubjectType: "Server", SubjectID: srv.ID})
		if err == nil && n < 2 {
			err = fmt.Errorf("raised for %d users, want the admin and the operator", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bell to count the new notification", 15*time.Second, func() bool { return bell() == before+1 })
	if b.EvalInt(`window.noReload || 0`) != 7 {
		t.Error("the page reloaded to update the bell")
	}
	b.ExpectText("#bell .bell-num", strconv.Itoa(before+1))
	if got := b.EvalStrings(`[document.title]`); !strings.HasPrefix(got[0], fmt.Sprintf("(%d) Servers", before+1)) {
		t.Errorf("the title %q does not count the unread", got[0])
	}
	b.Shot("bell-live")

	// The notification center: the newest first, linking to its server.
	b.Follow("#bell")
	b.ExpectPath("/notifications")
	b.ExpectText("h1", "Notifications")
	b.ExpectText("ul.notifications li.unread .n-title a", title)
	if href := b.EvalStrings(`[document.querySelector("ul.notifications li .n-title a").getAttribute("href")]`); href[0] != "/servers/"+srv.ID {
		t.Errorf("the notification links to %q", href[0])
	}
	if n := b.Count("ul.notifications li.unread"); n != before+1 {
		t.Errorf("%d unread in the list, the bell said %d", n, before+1)
	}
	b.Shot("notifications")
	b.Submit("#read-all button")
	b.ExpectPath("/notifications")
	b.ExpectText(".flash", "marked read")
	b.WaitJS("the bell at 0", `document.getElementById("bell").dataset.count === "0" && document.querySelector("#bell .bell-count").hidden`)
	if n := b.Count("ul.notifications li.unread, #read-all"); n != 0 {
		t.Errorf("after marking all read the list has %d unread items or buttons", n)
	}
	if got := b.EvalStrings(`[document.title]`); strings.HasPrefix(got[0], "(") {
		t.Errorf("the title still counts: %q", got[0])
	}
	b.Shot("notifications-read")

	// Settings: a choice per type, the role's default until one is made.
	b.Follow(`a[href="/notifications/settings"]`)
	b.ExpectText("h1", "Notification settings")
	if n := b.Count(`table.prefs input[type="radio"][value="email"]:checked`); n != len(notify.Types()) {
		t.Errorf("%d types by email for an admin who chose nothing, want all %d", n, len(notify.Types()))
	}
	b.Shot("notification-settings")

	phone(b, func() {
		b.Navigate("/notifications")
		b.ExpectVisible("#bell")
		b.Shot("notifications-phone")
	})
	phone(b, func() {
		b.Navigate("/notifications/settings")
		b.Shot("notification-settings-phone")
	})
}

// serverActions are the buttons of a server's page that act on it.
var serverActions = []string{"provision", "harden", "audit", "upgrade-agent", "delete"}

// listRow is what the servers list shows of one server.
type listRow struct {
	Name, Status, Score string
	Lines               int // lines in the sparkline
}

func serverRow(b *browsertest.Browser, id string) listRow {
	sel, _ := json.Marshal(fmt.Sprintf(`main tbody a[href="/servers/%s"]`, id))
	cells := b.EvalStrings(`(() => {
		const a = document.querySelector(` + string(sel) + `);
		if (!a) return [];
		const tr = a.closest("tr"), text = (s) => { const e = tr.querySelector(s); return e ? e.textContent.trim() : ""; };
		return [a.textContent.trim(), text(".status"), text(".score"), String(tr.querySelectorAll("svg.spark polyline").length)];
	})()`)
	if len(cells) != 4 {
		return listRow{}
	}
	n, _ := strconv.Atoi(cells[3])
	return listRow{Name: cells[0], Status: cells[1], Score: cells[2], Lines: n}
}

// checkServerPage opens a server's page and checks what it shows against the
// API.
func checkServerPage(t testing.TB, b *browsertest.Browser, p *panelUnderTest, id string) {
	t.Helper()
	v := p.server(id)
	if v.CPUCores == nil || v.DiskGB == nil || v.RAMMB == nil {
		t.Fatalf("%s has no inventory yet: %+v", v.Name, v)
	}
	b.Navigate("/servers/" + id)
	b.ExpectText("h1", v.Name)
	b.ExpectText("h1 .status", "online")

	// Inventory, with units.
	inv := b.Text("#inventory")
	for _, want := range []string{"Debian", v.Arch, fmt.Sprintf("%d core", *v.CPUCores), fmt.Sprintf("%d GB disk", *v.DiskGB),
		ramText(*v.RAMMB) + " RAM", v.AgentVersion, "certificate pinned"} {
		if !strings.Contains(inv, want) {
			t.Errorf("%s inventory lacks %q:\n%s", v.Name, want, inv)
		}
	}
	if n := b.Count("#ssh .hostkey"); n != len(v.HostKeys) || n == 0 {
		t.Errorf("%s shows %d pinned host keys, the API %d", v.Name, n, len(v.HostKeys))
	}

	// Charts, drawn on the server, with units on their axes.
	if n := b.Count("#metrics svg.chart"); n != 4 {
		t.Errorf("%s: %d charts, want 4", v.Name, n)
	}
	if n := b.Count("#metrics svg.chart polyline"); n < 5 {
		t.Errorf("%s: %d chart lines, want 5 (CPU, memory, disk, network in and out)", v.Name, n)
	}
	if n := b.Count("#metrics nav.tabs a"); n != 3 {
		t.Errorf("%s: %d range links, want 3", v.Name, n)
	}
	if px := b.EvalInt(`Math.round(document.querySelector("#metrics svg.chart text").getBoundingClientRect().height)`); px < 11 {
		t.Errorf("%s: the chart labels are %dpx high, too small to read", v.Name, px)
	}
	axes := strings.Join(b.EvalStrings(`Array.from(document.querySelectorAll("#metrics svg.chart text")).map(t => t.textContent)`), " | ")
	for _, unit := range []string{"100%", "GB", "B/s"} {
		if !strings.Contains(axes, unit) {
			t.Errorf("%s: the chart axes name no %q: %s", v.Name, unit, axes)
		}
	}

	checkSecurity(t, b, p, id)

	// The provisioning log.
	b.ExpectText("#provisioning .badge", "succeeded")
	log := b.Text("#provisioning pre.log")
	for _, step := range []string{"install and start the agent under systemd", "call the agent over mutual TLS"} {
		if !strings.Contains(log, step) {
			t.Errorf("%s provisioning log lacks %q:\n%s", v.Name, step, log)
		}
	}
	b.ExpectText("#hardening .badge", "succeeded")

	// The actions.
	for _, a := range serverActions {
		if n := b.Count(fmt.Sprintf(`#actions form[action="/servers/%s/%s"] button`, id, a)); n != 1 {
			t.Errorf("%s: %d %q buttons, want 1", v.Name, n, a)
		}
	}
	if confirm := b.EvalStrings(fmt.Sprintf(`Array.from(document.querySelectorAll('#actions form[action="/servers/%s/delete"]')).map(f => f.dataset.confirm || "")`, id)); len(confirm) != 1 || confirm[0] == "" {
		t.Errorf("%s: removing asks for no confirmation: %q", v.Name, confirm)
	}
}

// checkSecurity compares the security section of the page the browser is on
// with the server's latest audit.
func checkSecurity(t testing.TB, b *browsertest.Browser, p *panelUnderTest, id string) {
	t.Helper()
	var audit struct {
		Score  int `json:"score"`
		Checks []struct {
			Title  string `json:"title"`
			Weight int    `json:"weight"`
			Passed bool   `json:"passed"`
			Fix    string `json:"fix"`
		} `json:"checks"`
	}
	p.must(http.StatusOK, "GET", "/api/v1/servers/"+id+"/audit", nil, &audit)
	b.ExpectText("#security h2 .score", strconv.Itoa(audit.Score))
	rows := b.EvalStrings(`Array.from(document.querySelectorAll("#security tbody tr")).map(tr => JSON.stringify(Array.from(tr.cells).map(td => td.textContent.trim())))`)
	if len(rows) != len(audit.Checks) {
		t.Fatalf("the page lists %d checks, the audit has %d", len(rows), len(audit.Checks))
	}
	for i, c := range audit.Checks {
		var cells []string // check, weight, result, found, fix
		if err := json.Unmarshal([]byte(rows[i]), &cells); err != nil || len(cells) != 5 {
			t.Fatalf("security row %d: %q", i, rows[i])
		}
		result := "pass"
		if !c.Passed {
			result = "fail"
		}
		if cells[0] != c.Title || cells[1] != strconv.Itoa(c.Weight) || cells[2] != result {
			t.Errorf("security row %q, want %s, weight %d, %s", cells, c.Title, c.Weight, result)
		}
		if !c.Passed && (c.Fix == "" || !strings.Contains(cells[4], c.Fix)) {
			t.Errorf("failed check %s shows fix %q, want %q", c.Title, cells[4], c.Fix)
		}
	}
}

// ramText is how the pages show an amount of memory.
func ramText(mb int) string {
	if mb >= 1024 {
		return strconv.FormatFloat(float64(mb)/1024, 'f', 1, 64) + " GB"
	}
	return strconv.Itoa(mb) + " MB"
}

func signIn(b *browsertest.Browser, email string) {
	b.Navigate("/login")
	b.Login(email, e2ePassword)
	b.ExpectPath("/dashboard")
}

// phone runs f with the browser the size of a phone, and checks that no page
// f opens is wider than the screen, then returns to the desktop size.
func phone(b *browsertest.Browser, f func()) {
	b.Run(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	defer b.Run(chromedp.ResetViewport())
	f()
	if overflow := b.EvalInt(`document.documentElement.scrollWidth - document.documentElement.clientWidth`); overflow > 0 {
		b.Fatalf("the page is %dpx wider than a 390px phone screen", overflow)
	}
}

// forgedPost posts an HTML form as a browser with cookies would, without
// following a redirect, and returns the status.
func forgedPost(t testing.TB, target string, cookies []*http.Cookie, csrf string) int {
	t.Helper()
	req, err := http.NewRequest("POST", target, strings.NewReader(url.Values{"csrf_token": {csrf}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// addUser creates an account on the running panel the way "upanel user
// create" does next to a running serve: through the accounts service, on a
// database connection of its own.
func addUser(t testing.TB, p *panelUnderTest, email string, role auth.Role) {
	t.Helper()
	env := map[string]string{"UPANEL_DATA_DIR": p.dataDir, "UPANEL_URL": p.url}
	cfg, err := config.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	red := logging.NewRedactor()
	ctx := context.Background()
	accounts, _, closeAccounts, err := panel.Accounts(ctx, cfg, logging.New(p.log, "text", slog.LevelInfo, red), red)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAccounts()
	if _, err := accounts.CreateUser(ctx, email, e2ePassword, role); err != nil {
		t.Fatalf("create the %s %s: %v", role, email, err)
	}
}
