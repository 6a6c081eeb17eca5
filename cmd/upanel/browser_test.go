package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"upanel/internal/mail/mailtest"
)

// TestBrowserAccountsFlow drives Debian's chromium through the accounts flow
// against a real "upanel serve": first run with the setup token from the log,
// two-factor enrolment with codes from oathtool, sign-in with a code and with a
// recovery code, an invitation accepted through the link read back from a real
// SMTP server, a password reset, the admin pages, and a phone-sized dashboard.
// Every step leaves a full-page screenshot in the artifact folder
// ($UPANEL_TEST_ARTIFACTS/browser, or test-artifacts/browser in the repo).
func TestBrowserAccountsFlow(t *testing.T) {
	chromium := browserExecutable(t)
	oathtoolBin := browserOathtool(t)
	shots := browserArtifactDir(t)

	smtp := mailtest.Start(t, mailtest.Options{})
	vars, _, _ := panelEnv(t, "sqlite")
	vars["UPANEL_SMTP_URL"] = smtp.URL()
	vars["UPANEL_MAIL_FROM"] = "UPanel <upanel@example.test>"
	p := browserStartServe(t, vars)
	base := p.base

	// The whole browser part is bounded, so that nothing can hang.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	const (
		adminEmail    = "admin@example.test"
		adminPassword = "harbor lantern quiet 42"
		opEmail       = "operator@example.test"
		opPassword    = "copper meadow violin 17"
		opNewPassword = "silver thistle orbit 63"
	)
	b := &browserSession{t: t, base: base, dir: shots}

	// 1. First run: the setup token comes from serve's log.
	admin := b.open(ctx, chromium, "admin")
	token := setupToken(t, p.logs.String())
	admin.navigate("/setup?token=" + url.QueryEscape(token))
	admin.expectPath("/setup")
	admin.expectText("h1", "Set up UPanel")
	admin.fill("#email", adminEmail)
	admin.fill("#password", adminPassword)
	admin.fill("#password_confirm", adminPassword)
	admin.fill("#timezone", "Europe/Berlin")
	admin.shot("setup")
	admin.submit(`form[action="/setup"] button`)
	admin.expectPath("/login")
	admin.expectText(".flash", "Your admin account is ready")
	admin.shot("login-after-setup")
	admin.login(adminEmail, adminPassword)
	admin.expectPath("/dashboard")
	admin.expectText("header .badge", "admin")
	admin.expectText("main", "Two-factor authentication is off")
	admin.shot("dashboard-admin")

	// 2. Two-factor enrolment, confirmed with a code from oathtool.
	admin.navigate("/profile/two-factor")
	admin.shot("two-factor-start")
	admin.fill("#start_password", adminPassword)
	admin.submit(`form[action="/profile/two-factor/start"] button`)
	secret := admin.text("#totp-secret")
	if !regexp.MustCompile(`^[A-Z2-7]{32}$`).MatchString(secret) {
		t.Fatalf("TOTP secret on the page = %q, want 32 base32 characters", secret)
	}
	admin.expectVisible("img.qr")
	admin.waitJS("the QR code image to load", `(() => { const img = document.querySelector("img.qr"); return img.complete && img.naturalWidth > 0; })()`)
	admin.shot("two-factor-enroll")
	confirmedAt := time.Now()
	admin.fill("#code", oathCode(t, oathtoolBin, secret, confirmedAt))
	admin.submit(`form[action="/profile/two-factor/confirm"] button`)
	admin.expectText("h1", "Your recovery codes")
	admin.expectText(".flash", "Two-factor authentication is on")
	recovery := admin.evalStrings(`Array.from(document.querySelectorAll("#recovery-codes li")).map(li => li.textContent.trim())`)
	if len(recovery) != 10 {
		t.Fatalf("recovery codes page shows %d codes, want 10: %q", len(recovery), recovery)
	}
	for _, c := range recovery {
		if !regexp.MustCompile(`^[0-9a-z]{5}-[0-9a-z]{5}$`).MatchString(c) {
			t.Fatalf("recovery code %q is not of the form xxxxx-xxxxx", c)
		}
	}
	admin.shot("recovery-codes")

	// 3. Sign out and in again, with a fresh code: one of the time step after
	// the confirming code's, which the ±1 step window accepts now and which
	// replay protection has not seen.
	admin.logout()
	admin.login(adminEmail, adminPassword)
	admin.expectPath("/login/two-factor")
	admin.expectText("h1", "Two-factor authentication")
	admin.shot("login-two-factor")
	admin.fill("#code", oathCode(t, oathtoolBin, secret, laterStep(confirmedAt)))
	admin.submit(`form[action="/login/two-factor"] button`)
	admin.expectPath("/dashboard")
	admin.expectText("main", "Two-factor authentication is on.")
	admin.shot("dashboard-after-two-factor")

	// 4. Sign out and in with a recovery code.
	admin.logout()
	admin.login(adminEmail, adminPassword)
	admin.expectPath("/login/two-factor")
	admin.follow(`a[href="/login/recovery"]`)
	admin.expectPath("/login/recovery")
	admin.expectText("h1", "Use a recovery code")
	admin.fill("#code", recovery[0])
	admin.shot("login-recovery")
	admin.submit(`form[action="/login/recovery"] button`)
	admin.expectPath("/profile")
	admin.expectText(".flash", "Signed in with a recovery code. You have 9 left.")
	admin.expectText("main", "9 recovery codes left")
	admin.shot("profile-after-recovery")

	// 5. Invite an operator; the invitee accepts through the emailed link in
	// a browser of their own.
	admin.navigate("/admin/users")
	admin.expectText("h1", "Users")
	admin.fill("#i_email", opEmail)
	admin.fill("#i_role", "operator")
	admin.shot("invite-form")
	admin.submit(`form[action="/admin/invites"] button`)
	admin.expectPath("/admin/users")
	admin.expectText(".flash", "Invitation sent to "+opEmail)
	if rows := admin.evalStrings(`Array.from(document.querySelectorAll('form[action="/admin/invites"] ~ .table-wrap tbody tr')).map(r => r.textContent.replace(/\s+/g, " ").trim())`); !slices.ContainsFunc(rows, func(r string) bool {
		return strings.Contains(r, opEmail) && strings.Contains(r, "operator") && strings.Contains(r, "pending")
	}) {
		t.Fatalf("invitations table has no pending operator invitation for %s: %q", opEmail, rows)
	}
	admin.shot("invite-sent")

	invite := smtp.WaitForMessage(t, opEmail, 30*time.Second)
	acceptLink := mailedLink(t, invite, base, "/invite/accept")
	smtp.DeleteAll(t) // WaitForMessage returns the first message to an address

	invitee := b.open(ctx, chromium, "invitee")
	invitee.navigate(strings.TrimPrefix(acceptLink, base))
	invitee.expectPath("/invite/accept")
	invitee.expectText("h1", "Accept your invitation")
	invitee.expectText("main .badge", "operator")
	invitee.fill("#password", opPassword)
	invitee.fill("#password_confirm", opPassword)
	invitee.shot("invite-accept")
	invitee.submit(`form[action="/invite/accept"] button`)
	invitee.expectPath("/dashboard")
	invitee.expectText(".flash", "Welcome to UPanel")
	invitee.expectText("header .badge", "operator")
	invitee.expectText("header nav", opEmail)
	if invitee.count(`header nav a[href="/admin/users"]`) != 0 {
		t.Fatal("an operator's navigation links to the users page")
	}
	invitee.shot("dashboard-operator")
	invitee.close()

	// 6. Password reset, in a fresh browser.
	resetter := b.open(ctx, chromium, "reset")
	resetter.navigate("/password/forgot")
	resetter.expectText("h1", "Reset your password")
	resetter.fill("#email", opEmail)
	resetter.shot("password-forgot")
	resetter.submit(`form[action="/password/forgot"] button`)
	resetter.expectPath("/login")
	resetter.expectText(".flash", "If that address has an account, a reset link is on its way")
	resetter.shot("password-forgot-sent")

	reset := smtp.WaitForMessage(t, opEmail, 30*time.Second)
	resetLink := mailedLink(t, reset, base, "/password/reset")
	resetter.navigate(strings.TrimPrefix(resetLink, base))
	resetter.expectPath("/password/reset")
	resetter.expectText("h1", "Choose a new password")
	resetter.fill("#password", opNewPassword)
	resetter.fill("#password_confirm", opNewPassword)
	resetter.shot("password-reset")
	resetter.submit(`form[action="/password/reset"] button`)
	resetter.expectPath("/login")
	resetter.expectText(".flash", "Your password is changed")
	resetter.login(opEmail, opPassword)
	resetter.expectPath("/login")
	resetter.expectText(".error", "Invalid email or password")
	resetter.shot("login-old-password-refused")
	resetter.login(opEmail, opNewPassword)
	resetter.expectPath("/dashboard")
	resetter.expectText("header .badge", "operator")
	resetter.shot("dashboard-operator-after-reset")
	resetter.close()

	// 7. The admin's view of what happened.
	admin.navigate("/admin/security-events")
	admin.expectText("h1", "Security events")
	events := admin.evalStrings(`Array.from(document.querySelectorAll("main table tbody tr td:nth-child(2)")).map(td => td.textContent.trim())`)
	for _, want := range []string{"login_success", "two_factor_enabled", "invite_created", "recovery_code_used", "invite_accepted", "password_reset_completed"} {
		if !slices.Contains(events, want) {
			t.Errorf("security events page does not list %s; it lists %q", want, events)
		}
	}
	admin.shot("security-events")

	admin.navigate("/activity")
	admin.expectText("h1", "Activity")
	if admin.count("main table tbody tr td.muted") != 0 || admin.count("main table tbody tr") == 0 {
		t.Errorf("activity page lists nothing: %q", admin.text("main table tbody"))
	}
	admin.shot("activity")

	admin.navigate("/profile")
	admin.expectText("h1", "Your profile")
	admin.expectText("main", "9 recovery codes left")
	admin.expectText("main table tbody", "this one")
	admin.shot("profile")

	// 8. A phone-sized dashboard: no sideways scrolling, and the menu opens.
	admin.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	admin.navigate("/dashboard")
	admin.expectText("h1", "Dashboard")
	if overflow := admin.evalInt(`document.documentElement.scrollWidth - document.documentElement.clientWidth`); overflow > 0 {
		t.Errorf("the dashboard is %dpx wider than a 390px phone screen", overflow)
	}
	admin.shot("dashboard-phone")
	admin.run(chromedp.Click(chromedp.CSS(`label[for="nav-toggle"]`)))
	admin.expectVisible(`header nav a[href="/admin/security-events"]`)
	admin.shot("dashboard-phone-menu")

	b.checkConsoles()
}

// browserSession numbers the screenshots of all the browsers of a test.
type browserSession struct {
	t    *testing.T
	base string
	dir  string

	mu       sync.Mutex
	n        int
	browsers []*browser
}

// browser is one Chromium process with a profile of its own, so that its
// cookies are its own: a fresh browser for each person in the test.
type browser struct {
	s      *browserSession
	name   string
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

func (s *browserSession) open(parent context.Context, chromium, name string) *browser {
	t := s.t
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
	}
	actx, acancel := chromedp.NewExecAllocator(parent, opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{s: s, name: name, ctx: ctx, cancel: func() { cancel(); acancel() }}
	t.Cleanup(b.close) // before the profile directory is removed
	// Console starts the browser; its messages are checked at the end.
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium (%s): %v", name, err)
	}
	s.mu.Lock()
	s.browsers = append(s.browsers, b)
	s.mu.Unlock()
	return b
}

func (b *browser) close() { b.cancel() }

// checkConsoles fails the test on an uncaught exception or a Content Security
// Policy violation in any page, and logs the other console messages.
func (s *browserSession) checkConsoles() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.browsers {
		b.mu.Lock()
		for _, m := range b.console {
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				s.t.Errorf("%s browser console: %s (%s)", b.name, m, m.URL)
			} else {
				s.t.Logf("%s browser console: %s (%s)", b.name, m, m.URL)
			}
		}
		b.mu.Unlock()
	}
}

func (b *browser) fatalf(format string, args ...any) {
	b.s.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	b.s.shotNamed(b, "FAILED")
	b.s.t.Fatalf("%s browser at %s: %s\npage text:\n%s", b.name, loc, fmt.Sprintf(format, args...), body)
}

// step bounds one action, so that a page that never shows what the test waits
// for fails that step instead of using up the whole test's time.
func (b *browser) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, 30*time.Second)
}

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatalf("%v", err)
	}
}

// navigate opens a path of the panel and waits for it to load.
func (b *browser) navigate(path string) {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(b.s.base+path))
	if err != nil {
		b.fatalf("open %s: %v", path, err)
	}
	if resp == nil || resp.Status != 200 {
		b.fatalf("open %s: response %+v", path, resp)
	}
}

// submit clicks a button that submits a form and waits for the page that
// answers, after any redirect.
func (b *browser) submit(button string) {
	b.s.t.Helper()
	b.clickAndLoad(button)
}

// follow clicks a link and waits for the page it leads to.
func (b *browser) follow(link string) {
	b.s.t.Helper()
	b.clickAndLoad(link)
}

func (b *browser) clickAndLoad(sel string) {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.fatalf("click %s: %v", sel, err)
	}
	if resp == nil {
		b.fatalf("click %s: no response", sel)
	}
	// Refused forms answer 4xx with the form and its message; the test checks
	// the page it expects next, so a status alone does not fail it here.
	if resp.Status >= 500 {
		b.fatalf("click %s: HTTP %d", sel, resp.Status)
	}
}

// fill sets the value of an input or a select.
func (b *browser) fill(sel, value string) {
	b.s.t.Helper()
	b.run(chromedp.SetValue(chromedp.CSS(sel), value, chromedp.NodeVisible))
}

func (b *browser) login(email, password string) {
	b.s.t.Helper()
	b.expectPath("/login")
	b.fill("#email", email)
	b.fill("#password", password)
	b.submit(`form[action="/login"] button`)
}

func (b *browser) logout() {
	b.s.t.Helper()
	b.submit(`header form[action="/logout"] button`)
	b.expectPath("/login")
	b.expectText(".flash", "You are signed out.")
}

func (b *browser) text(sel string) string {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeReady))
	if err != nil {
		b.fatalf("read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// expectText fails unless the first element that sel matches contains want.
func (b *browser) expectText(sel, want string) {
	b.s.t.Helper()
	if got := b.text(sel); !strings.Contains(got, want) {
		b.fatalf("%s shows %q, want it to contain %q", sel, got, want)
	}
}

func (b *browser) expectVisible(sel string) {
	b.s.t.Helper()
	b.run(chromedp.WaitVisible(chromedp.CSS(sel)))
}

// waitJS waits until the JavaScript expression is true, failing at the end of
// the poll's own time limit.
func (b *browser) waitJS(what, js string) {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		b.fatalf("waiting for %s: %v", what, err)
	}
}

func (b *browser) expectPath(path string) {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		b.fatalf("location: %v", err)
	}
	u, err := url.Parse(loc)
	if err != nil || u.Path != path {
		b.fatalf("at %s, want path %s", loc, path)
	}
}

func (b *browser) evalStrings(js string) []string {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](js))
	if err != nil {
		b.fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (b *browser) evalInt(js string) int {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
	if err != nil {
		b.fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (b *browser) count(sel string) int {
	b.s.t.Helper()
	js, _ := json.Marshal(sel)
	return b.evalInt("document.querySelectorAll(" + string(js) + ").length")
}

// shot saves a full-page PNG named NN-name.png.
func (b *browser) shot(name string) {
	b.s.t.Helper()
	if err := b.s.shotNamed(b, name); err != nil {
		b.s.t.Fatalf("screenshot %s: %v", name, err)
	}
}

func (s *browserSession) shotNamed(b *browser, name string) error {
	ctx, cancel := b.step()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.n++
	file := filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, name))
	s.mu.Unlock()
	return os.WriteFile(file, png, 0o644)
}

// browserExecutable finds Debian's chromium: the test fails without it under
// CI=true and skips otherwise.
func browserExecutable(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is needed for the browser test (apt install chromium); make test installs it")
	}
	t.Skip("chromium not installed: run make test, or apt install chromium")
	return ""
}

func browserOathtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("oathtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("oathtool is needed (apt install oathtool); make test installs it")
		}
		t.Skip("oathtool not installed: run make test")
	}
	return p
}

// oathCode asks oathtool, an implementation independent of UPanel's, for the
// TOTP code of secret at the given time.
func oathCode(t *testing.T, bin, secret string, at time.Time) string {
	t.Helper()
	out, err := exec.Command(bin, "--totp", "-b", "-N", at.UTC().Format("2006-01-02 15:04:05 UTC"), secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// laterStep is a time in the 30-second TOTP step after the one of used, and
// no further from now than the one step that verification allows: the code
// of a later step than the one already used, valid now.
func laterStep(used time.Time) time.Time {
	next := time.Unix((used.Unix()/30+1)*30, 0)
	if now := time.Now(); now.After(next) {
		return now
	}
	return next
}

// browserArtifactDir is where the screenshots go, emptied of an earlier run's.
func browserArtifactDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("UPANEL_TEST_ARTIFACTS")
	if root == "" {
		dir, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				t.Fatal("no go.mod above the test's directory")
			}
			dir = parent
		}
		root = filepath.Join(dir, "test-artifacts")
	}
	dir := filepath.Join(root, "browser")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// setupToken reads the one-time setup token from the setup_url that serve
// logs while no user exists.
func setupToken(t *testing.T, logs string) string {
	t.Helper()
	for line := range strings.Lines(logs) {
		var rec struct {
			Msg      string `json:"msg"`
			SetupURL string `json:"setup_url"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || !strings.HasPrefix(rec.Msg, "no user exists yet") {
			continue
		}
		u, err := url.Parse(rec.SetupURL)
		if err != nil || u.Query().Get("token") == "" {
			t.Fatalf("setup_url %q has no token", rec.SetupURL)
		}
		return u.Query().Get("token")
	}
	t.Fatalf("serve logged no setup URL:\n%s", logs)
	return ""
}

// mailedLink finds the link to path in the text of a message, and checks that
// it points at the panel's own base URL.
func mailedLink(t *testing.T, m mailtest.Message, base, path string) string {
	t.Helper()
	re := regexp.MustCompile(`https?://[^\s<>"]+` + regexp.QuoteMeta(path) + `\?token=[^\s<>"]+`)
	link := re.FindString(m.Text)
	if link == "" {
		t.Fatalf("message %q has no %s link in its text:\n%s", m.Subject, path, m.Text)
	}
	if !strings.HasPrefix(link, base+path+"?") {
		t.Fatalf("emailed link %q is not built from UPANEL_URL %s", link, base)
	}
	return link
}

// browserStartServe starts serve in-process on a port chosen beforehand, with
// UPANEL_URL naming that port, so that emailed links lead back to it. A port
// found free can be taken before serve binds it; then it tries another.
func browserStartServe(t *testing.T, vars map[string]string) *inProcess {
	t.Helper()
	for try := 1; ; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		v := maps.Clone(vars)
		v["UPANEL_URL"] = "http://" + addr
		p, err := startServeAt(v, addr)
		if err == nil {
			t.Cleanup(func() { p.stop(t) })
			return p
		}
		if try == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
}

// startServeAt is startServe with a fixed address, returning an error instead
// of failing, so that the caller can retry another port.
func startServeAt(vars map[string]string, addr string) (*inProcess, error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	e := newEnv(envFunc(vars), strings.NewReader(""), io.Discard, p.logs)
	listening := make(chan net.Addr, 1)
	e.panel.Listening = func(a net.Addr) { listening <- a }
	go func() { p.done <- e.run(ctx, []string{"serve", "--addr", addr}) }()
	select {
	case a := <-listening:
		p.base = "http://" + a.String()
		if p.base != vars["UPANEL_URL"] {
			cancel()
			<-p.done
			return nil, fmt.Errorf("serve listens on %s, not on %s", p.base, vars["UPANEL_URL"])
		}
		return p, nil
	case err := <-p.done:
		cancel()
		if err == nil {
			err = errors.New("serve returned before listening")
		}
		return nil, fmt.Errorf("serve exited: %w\n%s", err, p.logs)
	case <-time.After(60 * time.Second):
		cancel()
		return nil, fmt.Errorf("serve did not start within a minute\n%s", p.logs)
	}
}
