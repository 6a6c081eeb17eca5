// Package browsertest drives Debian's chromium (through chromedp) over the
// panel's pages in tests, the way a person would: open a page, fill a form,
// click, read what the page says, and leave a full-page screenshot of each
// step for a human to look at.
//
// It exists because more than one package tests pages in a real browser (the
// accounts flow in cmd/upanel, the server pages against real Debian hosts in
// test/e2e), and the harness (finding chromium, one profile per person,
// bounded steps, console checks, numbered screenshots in one artifact folder)
// should behave the same in all of them. It is test support, like
// internal/testhost: everything takes a testing.TB and fails it.
//
// Without chromium the tests skip, except under CI=true, where they fail.
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// stepTimeout bounds one action, so that a page that never shows what the
// test waits for fails that step instead of using up the whole test's time.
const stepTimeout = 30 * time.Second

// Chromium finds Debian's chromium: the test fails without it under CI=true
// and skips otherwise.
func Chromium(t testing.TB) string {
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

// ArtifactDir is the folder of the screenshots: $UPANEL_TEST_ARTIFACTS/browser,
// or test-artifacts/browser at the root of the module. Tests of several
// packages share it, so each names its screenshots with a prefix of its own.
func ArtifactDir(t testing.TB) string {
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Session is the browsers of one test. It numbers the screenshots of all of
// them in the order they are taken: prefix + "NN-name.png".
type Session struct {
	t        testing.TB
	chromium string
	base     string
	dir      string
	prefix   string

	mu       sync.Mutex
	n        int
	browsers []*Browser
}

// NewSession starts a session against the panel at base (no trailing slash),
// with the chromium that Chromium found. Screenshots go to ArtifactDir, named
// prefix + "NN-name.png"; an earlier run's screenshots of the same prefix are
// removed first, and only those, so tests with other prefixes can run at the
// same time.
func NewSession(t testing.TB, chromium, base, prefix string) *Session {
	t.Helper()
	dir := ArtifactDir(t)
	old := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `[0-9]+-.*\.png$`)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && old.MatchString(e.Name()) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("screenshots in %s, named %sNN-step.png", dir, prefix)
	return &Session{t: t, chromium: chromium, base: base, dir: dir, prefix: prefix}
}

// Dir is the folder the screenshots go to.
func (s *Session) Dir() string { return s.dir }

// Browser is one Chromium process with a profile of its own, so that its
// cookies are its own: a fresh browser for each person in the test.
type Browser struct {
	s      *Session
	name   string
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// Open starts a browser for the person name, a 1280×900 window, living until
// parent ends or the test's cleanup.
func (s *Session) Open(parent context.Context, name string) *Browser {
	t := s.t
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(s.chromium),
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
	b := &Browser{s: s, name: name, ctx: ctx, cancel: func() { cancel(); acancel() }}
	t.Cleanup(b.Close) // before the profile directory is removed
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

// Close ends the browser; it is safe to call more than once.
func (b *Browser) Close() { b.cancel() }

// CheckConsoles fails the test on an uncaught exception, a Content Security
// Policy violation or an invalid pattern attribute (which turns the field's
// check off without a word) in any page of any browser of the session, and
// logs the other console messages.
func (s *Session) CheckConsoles() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.browsers {
		b.mu.Lock()
		for _, m := range b.console {
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "is not a valid regular expression") {
				s.t.Errorf("%s browser console: %s (%s)", b.name, m, m.URL)
			} else {
				s.t.Logf("%s browser console: %s (%s)", b.name, m, m.URL)
			}
		}
		b.mu.Unlock()
	}
}

// Fatalf fails the test with the browser's location and the page's text, and
// leaves a screenshot named FAILED.
func (b *Browser) Fatalf(format string, args ...any) {
	b.s.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	b.s.shotNamed(b, "FAILED")
	b.s.t.Fatalf("%s browser at %s: %s\npage text:\n%s", b.name, loc, fmt.Sprintf(format, args...), body)
}

func (b *Browser) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, stepTimeout)
}

// Run runs chromedp actions as one bounded step.
func (b *Browser) Run(actions ...chromedp.Action[chromedp.Void]) {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.Fatalf("%v", err)
	}
}

// Navigate opens a path of the panel and waits for it to load; it fails
// unless the answer is 200.
func (b *Browser) Navigate(path string) {
	b.s.t.Helper()
	if status := b.NavigateStatus(path); status != http.StatusOK {
		b.Fatalf("open %s: HTTP %d", path, status)
	}
}

// NavigateStatus opens a path of the panel, waits for it to load, and returns
// the HTTP status of the page, for pages that are meant to be refused.
func (b *Browser) NavigateStatus(path string) int {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(b.s.base+path))
	if err != nil {
		b.Fatalf("open %s: %v", path, err)
	}
	if resp == nil {
		b.Fatalf("open %s: no response", path)
	}
	return int(resp.Status)
}

// Submit clicks a button that submits a form and waits for the page that
// answers, after any redirect.
func (b *Browser) Submit(button string) {
	b.s.t.Helper()
	b.clickAndLoad(button)
}

// Follow clicks a link and waits for the page it leads to.
func (b *Browser) Follow(link string) {
	b.s.t.Helper()
	b.clickAndLoad(link)
}

func (b *Browser) clickAndLoad(sel string) {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.Fatalf("click %s: %v", sel, err)
	}
	if resp == nil {
		b.Fatalf("click %s: no response", sel)
	}
	// Refused forms answer 4xx with the form and its message; the test checks
	// the page it expects next, so a status alone does not fail it here.
	if resp.Status >= 500 {
		b.Fatalf("click %s: HTTP %d", sel, resp.Status)
	}
}

// Confirm clicks sel, expects the page to ask with a window.confirm dialog,
// and answers it: OK when accept is true, and then waits for the page that
// the confirmed action leads to; Cancel otherwise, and the page stays. It
// returns the dialog's message.
func (b *Browser) Confirm(sel string, accept bool) string {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	type dialog struct {
		ev  page.EventJavascriptDialogOpening
		err error
	}
	opening := chromedp.Events(ctx, page.JavascriptDialogOpening)
	got := make(chan dialog, 1)
	go func() {
		for ev, err := range opening {
			if err == nil {
				// The click waits for the dialog, so it is answered from here.
				_, err = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: accept})
			}
			got <- dialog{ev, err}
			return
		}
	}()
	click := chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)
	if accept {
		resp, err := chromedp.RunResponse(ctx, click)
		if err != nil {
			b.Fatalf("click %s and confirm: %v", sel, err)
		}
		if resp == nil || resp.Status >= 500 {
			b.Fatalf("click %s and confirm: response %+v", sel, resp)
		}
	} else if err := chromedp.Do(ctx, click); err != nil {
		b.Fatalf("click %s: %v", sel, err)
	}
	select {
	case d := <-got:
		if d.err != nil {
			b.Fatalf("the dialog of %s: %v", sel, d.err)
		}
		if d.ev.Type != page.DialogTypeConfirm {
			b.Fatalf("clicking %s opened a %s dialog, want confirm: %q", sel, d.ev.Type, d.ev.Message)
		}
		return d.ev.Message
	case <-ctx.Done():
		b.Fatalf("clicking %s asked for no confirmation", sel)
	}
	return ""
}

// Fill sets the value of an input or a select.
func (b *Browser) Fill(sel, value string) {
	b.s.t.Helper()
	b.Run(chromedp.SetValue(chromedp.CSS(sel), value, chromedp.NodeVisible))
}

// Login fills and submits the sign-in form of the page the browser is on,
// which must be /login.
func (b *Browser) Login(email, password string) {
	b.s.t.Helper()
	b.ExpectPath("/login")
	b.Fill("#email", email)
	b.Fill("#password", password)
	b.Submit(`form[action="/login"] button`)
}

// Logout signs out with the header's button.
func (b *Browser) Logout() {
	b.s.t.Helper()
	b.Submit(`header form[action="/logout"] button`)
	b.ExpectPath("/login")
	b.ExpectText(".flash", "You are signed out.")
}

// Text is the trimmed text of the first element sel matches, waiting for it.
func (b *Browser) Text(sel string) string {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeReady))
	if err != nil {
		b.Fatalf("read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// ExpectText fails unless the first element that sel matches contains want.
func (b *Browser) ExpectText(sel, want string) {
	b.s.t.Helper()
	if got := b.Text(sel); !strings.Contains(got, want) {
		b.Fatalf("%s shows %q, want it to contain %q", sel, got, want)
	}
}

// ExpectVisible waits until sel matches a visible element.
func (b *Browser) ExpectVisible(sel string) {
	b.s.t.Helper()
	b.Run(chromedp.WaitVisible(chromedp.CSS(sel)))
}

// WaitJS waits until the JavaScript expression is true, failing at the end of
// the poll's own time limit.
func (b *Browser) WaitJS(what, js string) {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		b.Fatalf("waiting for %s: %v", what, err)
	}
}

// ExpectPath fails unless the browser is on path.
func (b *Browser) ExpectPath(path string) {
	b.s.t.Helper()
	if u := b.Location(); u.Path != path {
		b.Fatalf("at %s, want path %s", u, path)
	}
}

// Location is the URL the browser is on.
func (b *Browser) Location() *url.URL {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		b.Fatalf("location: %v", err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		b.Fatalf("location %q: %v", loc, err)
	}
	return u
}

// EvalStrings evaluates JavaScript that gives an array of strings.
func (b *Browser) EvalStrings(js string) []string {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](js))
	if err != nil {
		b.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// EvalInt evaluates JavaScript that gives a number.
func (b *Browser) EvalInt(js string) int {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](js))
	if err != nil {
		b.Fatalf("evaluate %s: %v", js, err)
	}
	return int(math.Round(v))
}

// Count is the number of elements sel matches.
func (b *Browser) Count(sel string) int {
	b.s.t.Helper()
	js, _ := json.Marshal(sel)
	return b.EvalInt("document.querySelectorAll(" + string(js) + ").length")
}

// Cookies are the browser's cookies for the panel, as a Go client would send
// them: for requests the page would not make, such as a forged form post.
func (b *Browser) Cookies() []*http.Cookie {
	b.s.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.s.base + "/"}})
	if err != nil {
		b.Fatalf("cookies: %v", err)
	}
	out := make([]*http.Cookie, 0, len(res.Cookies))
	for _, c := range res.Cookies {
		out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
	}
	return out
}

// Shot saves a full-page PNG named prefix + "NN-name.png" and returns its
// path.
func (b *Browser) Shot(name string) string {
	b.s.t.Helper()
	file, err := b.s.shotNamed(b, name)
	if err != nil {
		b.s.t.Fatalf("screenshot %s: %v", name, err)
	}
	return file
}

func (s *Session) shotNamed(b *Browser, name string) (string, error) {
	ctx, cancel := b.step()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.n++
	file := filepath.Join(s.dir, fmt.Sprintf("%s%02d-%s.png", s.prefix, s.n, name))
	s.mu.Unlock()
	return file, os.WriteFile(file, png, 0o644)
}
