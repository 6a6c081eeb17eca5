package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

func TestInviteeCannotChooseTheirRole(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.user("admin@example.test", auth.Admin)
		admin := e.loggedIn("admin@example.test")
		if res := admin.postForm("/admin/invites", url.Values{"email": {"new@example.test"}, "role": {"viewer"}}); res.Code != http.StatusSeeOther {
			t.Fatalf("invite: %d %s", res.Code, res.Body)
		}
		link, _ := url.Parse(e.lastMail().Link)
		token := link.Query().Get("token")
		guest := e.client()
		if res := guest.get("/invite/accept?token=" + url.QueryEscape(token)); res.Code != 200 || !strings.Contains(res.Body.String(), "viewer") {
			t.Fatalf("invite page: %d", res.Code)
		}
		res := guest.postForm("/invite/accept", url.Values{"token": {token}, "password": {testPassword}, "password_confirm": {testPassword},
			"timezone": {"UTC"}, "role": {"admin"}, "email": {"attacker@example.test"}})
		if res.Code != http.StatusSeeOther {
			t.Fatalf("accept: %d %s", res.Code, res.Body)
		}
		u, err := db.GetUserByEmail(context.Background(), "new@example.test")
		if err != nil || u.Role != "viewer" {
			t.Fatalf("invitee: %+v %v; want role viewer", u, err)
		}
		if _, err := db.GetUserByEmail(context.Background(), "attacker@example.test"); err == nil {
			t.Fatal("the invitee chose their own email")
		}
		if me := decode[map[string]any](t, guest.api("GET", "/api/v1/me", nil)); me["role"] != "viewer" {
			t.Fatalf("/me after accepting: %v", me)
		}
		// The link works once.
		again := e.client().postForm("/invite/accept", url.Values{"token": {token}, "password": {testPassword}, "password_confirm": {testPassword}})
		if again.Code != http.StatusNotFound {
			t.Fatalf("second use of an invite: %d", again.Code)
		}
	})
}

func TestViewerTokenNeverWrites(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.user("admin@example.test", auth.Admin)
		ro := e.withToken("admin@example.test", auth.Viewer) // an admin's read-only token
		if res := ro.api("GET", "/api/v1/activity", nil); res.Code != http.StatusOK {
			t.Fatalf("viewer token read: %d", res.Code)
		}
		if res := ro.api("GET", "/api/v1/users", nil); res.Code != http.StatusForbidden {
			t.Fatalf("an admin's viewer token read admin data: %d", res.Code)
		}
		me := decode[map[string]any](t, ro.api("GET", "/api/v1/me", nil))
		if me["effective_role"] != "viewer" || me["via_token"] != true {
			t.Fatalf("/me: %v", me)
		}
		for _, w := range []struct{ method, path string }{
			{"POST", "/api/v1/tokens"}, {"POST", "/api/v1/invites"}, {"DELETE", "/api/v1/tokens/" + store.NewID()},
			{"PATCH", "/api/v1/users/" + store.NewID()}, {"DELETE", "/api/v1/sessions/" + store.NewID()},
		} {
			res := ro.api(w.method, w.path, map[string]any{"name": "x", "email": "x@example.test", "role": "admin"})
			if res.Code != http.StatusForbidden {
				t.Errorf("viewer token %s %s: %d %s", w.method, w.path, res.Code, res.Body)
			}
		}
		// A token never outranks its owner, even one made before a demotion.
		e.user("op@example.test", auth.Operator)
		if _, _, err := e.svc.CreateTokenFor(context.Background(), "op@example.test", auth.NewToken{Name: "x", Role: auth.Admin}); err == nil {
			t.Fatal("an operator made an admin token")
		}
		tok := e.withToken("op@example.test", auth.Operator)
		u, _ := db.GetUserByEmail(context.Background(), "op@example.test")
		db.InTx(context.Background(), func(tx *store.Tx) error { return tx.SetRole(context.Background(), u.ID, "viewer") })
		if res := tok.api("POST", "/api/v1/tokens", map[string]any{"name": "y"}); res.Code != http.StatusForbidden {
			t.Fatalf("token of a demoted user wrote: %d", res.Code)
		}
	})
}

func TestResetLinkIgnoresForgedHost(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("owner@example.test", auth.Admin)
	c := e.client()
	form := url.Values{"email": {"owner@example.test"}, "csrf_token": {c.csrf()}}
	req := newFormRequest("/password/forgot", form)
	req.Host = "evil.example"
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Forwarded", "host=evil.example;proto=http")
	if res := c.do(req); res.Code != http.StatusSeeOther {
		t.Fatalf("forgot: %d %s", res.Code, res.Body)
	}
	link := e.lastMail().Link
	if !strings.HasPrefix(link, "https://panel.example.test/password/reset?token=") || strings.Contains(link, "evil") {
		t.Fatalf("reset link %q is not built from UPANEL_URL", link)
	}
}

func TestResetAnswersAlikeAndWorksOnce(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("owner@example.test", auth.Admin)
	known := e.client().postForm("/password/forgot", url.Values{"email": {"owner@example.test"}})
	unknown := e.client().postForm("/password/forgot", url.Values{"email": {"nobody@example.test"}})
	if known.Code != unknown.Code || known.Header().Get("Location") != unknown.Header().Get("Location") ||
		flashOf(known) != flashOf(unknown) {
		t.Fatalf("answers differ: %d %q / %d %q", known.Code, flashOf(known), unknown.Code, flashOf(unknown))
	}
	link, _ := url.Parse(e.lastMail().Link)
	token := link.Query().Get("token")
	session := e.loggedIn("owner@example.test")
	c := e.client()
	if res := c.postForm("/password/reset", url.Values{"token": {token}, "password": {"short"}, "password_confirm": {"short"}}); res.Code != http.StatusBadRequest ||
		!strings.Contains(res.Body.String(), "at least 12 characters") {
		t.Fatalf("weak password: %d", res.Code)
	}
	const fresh = "granite lantern meadow 7"
	if res := c.postForm("/password/reset", url.Values{"token": {token}, "password": {fresh}, "password_confirm": {fresh}}); res.Code != http.StatusSeeOther {
		t.Fatalf("reset: %d %s", res.Code, res.Body)
	}
	if res := session.get("/profile"); res.Code != http.StatusSeeOther {
		t.Fatalf("a session survived the reset: %d", res.Code)
	}
	if res := c.postForm("/password/reset", url.Values{"token": {token}, "password": {fresh + "x"}, "password_confirm": {fresh + "x"}}); res.Code != http.StatusNotFound {
		t.Fatalf("reset link used twice: %d", res.Code)
	}
	// An expired link is refused too.
	e.client().postForm("/password/forgot", url.Values{"email": {"owner@example.test"}})
	link, _ = url.Parse(e.lastMail().Link)
	storetest.Exec(t, e.db, "UPDATE password_reset_tokens SET expires_at = ? WHERE used_at IS NULL", e.db.Now().Add(-time.Second))
	if res := c.get("/password/reset?token=" + url.QueryEscape(link.Query().Get("token"))); res.Code != http.StatusNotFound {
		t.Fatalf("expired reset link: %d", res.Code)
	}
}

func TestTOTPReplayIsRefusedAndRecorded(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.user("me@example.test", auth.Operator)
		secret := enableTwoFactor(t, e, "me@example.test")
		code := totpCode(t, secret, e.db.Now())

		first := e.client()
		res := first.postForm("/login", url.Values{"email": {"me@example.test"}, "password": {testPassword}})
		if res.Code != http.StatusSeeOther || !strings.HasPrefix(res.Header().Get("Location"), "/login/two-factor") {
			t.Fatalf("password step: %d %s", res.Code, res.Header().Get("Location"))
		}
		pendingCookie := first.session()
		if res := first.get("/profile"); res.Code != http.StatusSeeOther || res.Header().Get("Location") != "/login/two-factor" {
			t.Fatalf("pending session reached the profile: %d", res.Code)
		}
		if res := first.postForm("/login/two-factor", url.Values{"code": {code}}); res.Code != http.StatusSeeOther {
			t.Fatalf("code step: %d %s", res.Code, res.Body)
		}
		if first.session() == pendingCookie {
			t.Fatal("the session id did not change at sign-in")
		}
		if res := first.get("/profile"); res.Code != 200 {
			t.Fatalf("signed in, profile: %d", res.Code)
		}

		before := countEvents(t, db, "two_factor_replayed")
		second := e.client()
		second.postForm("/login", url.Values{"email": {"me@example.test"}, "password": {testPassword}})
		res = second.postForm("/login/two-factor", url.Values{"code": {code}})
		if res.Code != http.StatusUnauthorized || !strings.Contains(res.Body.String(), "already used") {
			t.Fatalf("replayed code: %d %s", res.Code, res.Body)
		}
		if countEvents(t, db, "two_factor_replayed") != before+1 {
			t.Fatal("the replay was not recorded")
		}
		if res := second.get("/profile"); res.Code == 200 {
			t.Fatal("a replayed code signed in")
		}
	})
}

func TestRecoveryCodesWorkOnce(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("me@example.test", auth.Operator)
	c := e.loggedIn("me@example.test")
	p, _ := e.svc.Authenticate(context.Background(), c.session())
	en, _ := e.svc.StartTwoFactor(context.Background(), p, testPassword, auth.Meta{IP: "192.0.2.1"})
	codes, err := e.svc.ConfirmTwoFactor(context.Background(), p, totpCode(t, en.Secret, e.db.Now()), auth.Meta{IP: "192.0.2.1"})
	if err != nil || len(codes) != auth.RecoveryCodeCount {
		t.Fatalf("confirm: %d codes, %v", len(codes), err)
	}
	stored := ""
	e.db.QueryRowRaw(context.Background(), "SELECT recovery_codes FROM users WHERE id = ?", p.User.ID).Scan(&stored)
	for _, code := range codes {
		if strings.Contains(stored, code) || strings.Contains(stored, strings.ReplaceAll(code, "-", "")) {
			t.Fatal("a recovery code is stored in the clear")
		}
	}
	use := func(code string) int {
		x := e.client()
		x.postForm("/login", url.Values{"email": {"me@example.test"}, "password": {testPassword}})
		return x.postForm("/login/recovery", url.Values{"code": {strings.ToUpper(code)}}).Code
	}
	if got := use(codes[3]); got != http.StatusSeeOther {
		t.Fatalf("recovery code: %d", got)
	}
	if got := use(codes[3]); got != http.StatusUnauthorized {
		t.Fatalf("recovery code used twice: %d", got)
	}
	if countEvents(t, e.db, "recovery_code_used") != 1 {
		t.Fatal("recovery code use not recorded")
	}
}

func TestHundredAndFirstFailureInAnHourIsRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.user("target@example.test", auth.Admin)
		// 100 failures in the last hour, spread out so that no growing delay
		// is still running: only the hourly cap stands in the way now.
		now := db.Now()
		for i := range 100 {
			storetest.Exec(t, db, "INSERT INTO login_attempts (id, email, ip_address, kind, succeeded, created_at) VALUES (?, 'target@example.test', ?, 'password', FALSE, ?)",
				store.NewID(), "198.51.100."+itoa3(i), now.Add(-59*time.Minute+time.Duration(i)*20*time.Second))
		}
		res := e.client().postForm("/login", url.Values{"email": {"target@example.test"}, "password": {testPassword}})
		if res.Code != http.StatusTooManyRequests || !strings.Contains(res.Body.String(), "try again after") {
			t.Fatalf("the 101st attempt, with the right password: %d %s", res.Code, res.Body)
		}
	})
}

func itoa3(i int) string {
	return string(rune('0'+i/100)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}

func TestLockoutGrowsAndIsRecorded(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("target@example.test", auth.Admin)
	c := e.client()
	wrong := url.Values{"email": {"target@example.test"}, "password": {"not the password at all"}}
	for i := range 5 {
		res := c.postForm("/login", wrong)
		if res.Code != http.StatusUnauthorized || !strings.Contains(res.Body.String(), "Invalid email or password") {
			t.Fatalf("failure %d: %d", i+1, res.Code)
		}
	}
	res := c.postForm("/login", url.Values{"email": {"target@example.test"}, "password": {testPassword}})
	if res.Code != http.StatusTooManyRequests || !strings.Contains(res.Body.String(), "try again after") {
		t.Fatalf("after 5 failures the right password got %d", res.Code)
	}
	if countEvents(t, e.db, "lockout") != 1 {
		t.Fatal("no lockout event")
	}
	// The same message for an unknown account: no hint of which part was wrong.
	unknown := e.client().postForm("/login", url.Values{"email": {"nobody@example.test"}, "password": {"whatever whatever"}})
	if unknown.Code != http.StatusUnauthorized || !strings.Contains(unknown.Body.String(), "Invalid email or password") {
		t.Fatalf("unknown account: %d", unknown.Code)
	}
}

func TestSessionEndsWhenThePasswordChanges(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.user("me@example.test", auth.Operator)
		laptop, phone := e.loggedIn("me@example.test"), e.loggedIn("me@example.test")
		const fresh = "saffron kettle harbour 19"
		res := laptop.postForm("/profile/password", url.Values{"current_password": {testPassword}, "password": {fresh}, "password_confirm": {fresh}})
		if res.Code != http.StatusSeeOther {
			t.Fatalf("change password: %d %s", res.Code, res.Body)
		}
		if res := phone.get("/profile"); res.Code != http.StatusSeeOther || !strings.HasPrefix(res.Header().Get("Location"), "/login") {
			t.Fatalf("the other session still works: %d", res.Code)
		}
		if res := phone.api("GET", "/api/v1/me", nil); res.Code != http.StatusUnauthorized {
			t.Fatalf("the other session on the API: %d", res.Code)
		}
		if res := laptop.get("/profile"); res.Code != 200 {
			t.Fatalf("the session that changed it: %d", res.Code)
		}
		if countEvents(t, db, "password_changed") != 1 {
			t.Fatal("password change not recorded")
		}
	})
}

func TestCrossUserIDsLookMissing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.user("alice@example.test", auth.Operator)
		e.user("bob@example.test", auth.Operator)
		alice := e.loggedIn("alice@example.test")
		bob := e.loggedIn("bob@example.test")
		aliceSessions := decode[listJSON[sessionJSON]](t, alice.api("GET", "/api/v1/sessions", nil))
		created := decode[tokenJSON](t, alice.api("POST", "/api/v1/tokens", map[string]any{"name": "alice's"}))
		for _, path := range []string{"/api/v1/sessions/" + aliceSessions.Items[0].ID, "/api/v1/tokens/" + created.ID} {
			theirs := bob.api("DELETE", path, nil)
			missing := bob.api("DELETE", path[:strings.LastIndex(path, "/")+1]+store.NewID(), nil)
			if theirs.Code != http.StatusNotFound || theirs.Body.String() != missing.Body.String() {
				t.Errorf("DELETE %s as another user: %d %s; a missing id: %d %s", path, theirs.Code, theirs.Body, missing.Code, missing.Body)
			}
		}
		if res := bob.postForm("/profile/sessions/"+aliceSessions.Items[0].ID+"/revoke", nil); res.Code != http.StatusNotFound {
			t.Errorf("revoking another user's session in the UI: %d", res.Code)
		}
		if res := alice.get("/profile"); res.Code != 200 {
			t.Fatal("alice's session was touched")
		}
		if toks := decode[listJSON[tokenJSON]](t, alice.api("GET", "/api/v1/tokens", nil)); toks.Items[0].RevokedAt != nil {
			t.Fatal("alice's token was revoked by bob")
		}
	})
}

func TestSessionCookieFlags(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("me@example.test", auth.Viewer)
	c := e.client()
	res := c.postForm("/login", url.Values{"email": {"me@example.test"}, "password": {testPassword}})
	var ck *http.Cookie
	for _, x := range res.Result().Cookies() {
		if strings.HasSuffix(x.Name, auth.SessionCookie) {
			ck = x
		}
	}
	if ck == nil || ck.Name != "__Host-upanel_session" || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" {
		t.Fatalf("session cookie over https: %+v", ck)
	}
}

func newFormRequest(path string, form url.Values) *http.Request {
	req, _ := http.NewRequest("POST", "http://panel.example.test"+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

func flashOf(res interface{ Result() *http.Response }) string {
	for _, c := range res.Result().Cookies() {
		if strings.HasSuffix(c.Name, flashCookie) {
			return c.Value
		}
	}
	return ""
}
