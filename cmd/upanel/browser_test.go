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
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"upanel/internal/browsertest"
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
	chromium := browsertest.Chromium(t)
	oathtoolBin := browserOathtool(t)

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
	b := browsertest.NewSession(t, chromium, base, "")

	// 1. First run: the setup token comes from serve's log.
	admin := b.Open(ctx, "admin")
	token := setupToken(t, p.logs.String())
	admin.Navigate("/setup?token=" + url.QueryEscape(token))
	admin.ExpectPath("/setup")
	admin.ExpectText("h1", "Set up UPanel")
	admin.Fill("#email", adminEmail)
	admin.Fill("#password", adminPassword)
	admin.Fill("#password_confirm", adminPassword)
	admin.Fill("#timezone", "Europe/Berlin")
	admin.Shot("setup")
	admin.Submit(`form[action="/setup"] button`)
	admin.ExpectPath("/login")
	admin.ExpectText(".flash", "Your admin account is ready")
	admin.Shot("login-after-setup")
	admin.Login(adminEmail, adminPassword)
	admin.ExpectPath("/dashboard")
	admin.ExpectText("header .badge", "admin")
	admin.ExpectText("main", "Two-factor authentication is off")
	admin.Shot("dashboard-admin")

	// 2. Two-factor enrolment, confirmed with a code from oathtool.
	admin.Navigate("/profile/two-factor")
	admin.Shot("two-factor-start")
	admin.Fill("#start_password", adminPassword)
	admin.Submit(`form[action="/profile/two-factor/start"] button`)
	secret := admin.Text("#totp-secret")
	if !regexp.MustCompile(`^[A-Z2-7]{32}$`).MatchString(secret) {
		t.Fatalf("TOTP secret on the page = %q, want 32 base32 characters", secret)
	}
	admin.ExpectVisible("img.qr")
	admin.WaitJS("the QR code image to load", `(() => { const img = document.querySelector("img.qr"); return img.complete && img.naturalWidth > 0; })()`)
	admin.Shot("two-factor-enroll")
	confirmedAt := time.Now()
	admin.Fill("#code", oathCode(t, oathtoolBin, secret, confirmedAt))
	admin.Submit(`form[action="/profile/two-factor/confirm"] button`)
	admin.ExpectText("h1", "Your recovery codes")
	admin.ExpectText(".flash", "Two-factor authentication is on")
	recovery := admin.EvalStrings(`Array.from(document.querySelectorAll("#recovery-codes li")).map(li => li.textContent.trim())`)
	if len(recovery) != 10 {
		t.Fatalf("recovery codes page shows %d codes, want 10: %q", len(recovery), recovery)
	}
	for _, c := range recovery {
		if !regexp.MustCompile(`^[0-9a-z]{5}-[0-9a-z]{5}$`).MatchString(c) {
			t.Fatalf("recovery code %q is not of the form xxxxx-xxxxx", c)
		}
	}
	admin.Shot("recovery-codes")

	// 3. Sign out and in again, with a fresh code: one of the time step after
	// the confirming code's, which the ±1 step window accepts now and which
	// replay protection has not seen.
	admin.Logout()
	admin.Login(adminEmail, adminPassword)
	admin.ExpectPath("/login/two-factor")
	admin.ExpectText("h1", "Two-factor authentication")
	admin.Shot("login-two-factor")
	admin.Fill("#code", oathCode(t, oathtoolBin, secret, laterStep(confirmedAt)))
	admin.Submit(`form[action="/login/two-factor"] button`)
	admin.ExpectPath("/dashboard")
	admin.ExpectText("main", "Two-factor authentication is on.")
	admin.Shot("dashboard-after-two-factor")

	// 4. Sign out and in with a recovery code.
	admin.Logout()
	admin.Login(adminEmail, adminPassword)
	admin.ExpectPath("/login/two-factor")
	admin.Follow(`a[href="/login/recovery"]`)
	admin.ExpectPath("/login/recovery")
	admin.ExpectText("h1", "Use a recovery code")
	admin.Fill("#code", recovery[0])
	admin.Shot("login-recovery")
	admin.Submit(`form[action="/login/recovery"] button`)
	admin.ExpectPath("/profile")
	admin.ExpectText(".flash", "Signed in with a recovery code. You have 9 left.")
	admin.ExpectText("main", "9 recovery codes left")
	admin.Shot("profile-after-recovery")

	// 5. Invite an operator; the invitee accepts through the emailed link in
	// a browser of their own.
	admin.Navigate("/admin/users")
	admin.ExpectText("h1", "Users")
	admin.Fill("#i_email", opEmail)
	admin.Fill("#i_role", "operator")
	admin.Shot("invite-form")
	admin.Submit(`form[action="/admin/invites"] button`)
	admin.ExpectPath("/admin/users")
	admin.ExpectText(".flash", "Invitation sent to "+opEmail)
	if rows := admin.EvalStrings(`Array.from(document.querySelectorAll('form[action="/admin/invites"] ~ .table-wrap tbody tr')).map(r => r.textContent.replace(/\s+/g, " ").trim())`); !slices.ContainsFunc(rows, func(r string) bool {
		return strings.Contains(r, opEmail) && strings.Contains(r, "operator") && strings.Contains(r, "pending")
	}) {
		t.Fatalf("invitations table has no pending operator invitation for %s: %q", opEmail, rows)
	}
	admin.Shot("invite-sent")

	invite := smtp.WaitForMessage(t, opEmail, 30*time.Second)
	acceptLink := mailedLink(t, invite, base, "/invite/accept")
	smtp.DeleteAll(t) // WaitForMessage returns the first message to an address

	invitee := b.Open(ctx, "invitee")
	invitee.Navigate(strings.TrimPrefix(acceptLink, base))
	invitee.ExpectPath("/invite/accept")
	invitee.ExpectText("h1", "Accept your invitation")
	invitee.ExpectText("main .badge", "operator")
	invitee.Fill("#password", opPassword)
	invitee.Fill("#password_confirm", opPassword)
	invitee.Shot("invite-accept")
	invitee.Submit(`form[action="/invite/accept"] button`)
	invitee.ExpectPath("/dashboard")
	invitee.ExpectText(".flash", "Welcome to UPanel")
	invitee.ExpectText("header .badge", "operator")
	invitee.ExpectText("header nav", opEmail)
	if invitee.Count(`header nav a[href="/admin/users"]`) != 0 {
		t.Fatal("an operator's navigation links to the users page")
	}
	invitee.Shot("dashboard-operator")
	invitee.Close()

	// 6. Password reset, in a fresh browser.
	resetter := b.Open(ctx, "reset")
	resetter.Navigate("/password/forgot")
	resetter.ExpectText("h1", "Reset your password")
	resetter.Fill("#email", opEmail)
	resetter.Shot("password-forgot")
	resetter.Submit(`form[action="/password/forgot"] button`)
	resetter.ExpectPath("/login")
	resetter.ExpectText(".flash", "If that address has an account, a reset link is on its way")
	resetter.Shot("password-forgot-sent")

	reset := smtp.WaitForMessage(t, opEmail, 30*time.Second)
	resetLink := mailedLink(t, reset, base, "/password/reset")
	resetter.Navigate(strings.TrimPrefix(resetLink, base))
	resetter.ExpectPath("/password/reset")
	resetter.ExpectText("h1", "Choose a new password")
	resetter.Fill("#password", opNewPassword)
	resetter.Fill("#password_confirm", opNewPassword)
	resetter.Shot("password-reset")
	resetter.Submit(`form[action="/password/reset"] button`)
	resetter.ExpectPath("/login")
	resetter.ExpectText(".flash", "Your password is changed")
	resetter.Login(opEmail, opPassword)
	resetter.ExpectPath("/login")
	resetter.ExpectText(".error", "Invalid email or password")
	resetter.Shot("login-old-password-refused")
	resetter.Login(opEmail, opNewPassword)
	resetter.ExpectPath("/dashboard")
	resetter.ExpectText("header .badge", "operator")
	resetter.Shot("dashboard-operator-after-reset")
	resetter.Close()

	// 7. The admin's view of what happened.
	admin.Navigate("/admin/security-events")
	admin.ExpectText("h1", "Security events")
	events := admin.EvalStrings(`Array.from(document.querySelectorAll("main table tbody tr td:nth-child(2)")).map(td => td.textContent.trim())`)
	for _, want := range []string{"login_success", "two_factor_enabled", "invite_created", "recovery_code_used", "invite_accepted", "password_reset_completed"} {
		if !slices.Contains(events, want) {
			t.Errorf("security events page does not list %s; it lists %q", want, events)
		}
	}
	admin.Shot("security-events")

	admin.Navigate("/activity")
	admin.ExpectText("h1", "Activity")
	if admin.Count("main table tbody tr td.muted") != 0 || admin.Count("main table tbody tr") == 0 {
		t.Errorf("activity page lists nothing: %q", admin.Text("main table tbody"))
	}
	admin.Shot("activity")

	admin.Navigate("/profile")
	admin.ExpectText("h1", "Your profile")
	admin.ExpectText("main", "9 recovery codes left")
	admin.ExpectText("main table tbody", "this one")
	admin.Shot("profile")

	// 8. A phone-sized dashboard: no sideways scrolling, and the menu opens.
	admin.Run(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	admin.Navigate("/dashboard")
	admin.ExpectText("h1", "Dashboard")
	if overflow := admin.EvalInt(`document.documentElement.scrollWidth - document.documentElement.clientWidth`); overflow > 0 {
		t.Errorf("the dashboard is %dpx wider than a 390px phone screen", overflow)
	}
	admin.Shot("dashboard-phone")
	admin.Run(chromedp.Click(chromedp.CSS(`label[for="nav-toggle"]`)))
	admin.ExpectVisible(`header nav a[href="/admin/security-events"]`)
	admin.Shot("dashboard-phone-menu")

	b.CheckConsoles()
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
