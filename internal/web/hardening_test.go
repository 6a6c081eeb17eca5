package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// A burst of parallel guesses is counted like a sequence: from one address an
// account gets its free attempts and no more, however many arrive at once.
func TestParallelGuessesAreCountedOneByOne(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		e.user("target@example.test", auth.Admin)
		var wg sync.WaitGroup
		codes := make([]int, 40)
		for i := range codes {
			wg.Go(func() {
				codes[i] = e.client().postForm("/login", url.Values{"email": {"target@example.test"}, "password": {"wrong guess number " + itoa3(i)}}).Code
			})
		}
		wg.Wait()
		checked, limited := 0, 0
		for _, c := range codes {
			switch c {
			case http.StatusUnauthorized:
				checked++
			case http.StatusTooManyRequests:
				limited++
			default:
				t.Errorf("unexpected status %d", c)
			}
		}
		if checked != 5 || limited != 35 {
			t.Fatalf("%d guesses checked and %d refused; want 5 and 35", checked, limited)
		}
		var n int
		db.QueryRowRaw(context.Background(), "SELECT COUNT(*) FROM login_attempts WHERE email = 'target@example.test'").Scan(&n)
		if n != 5 {
			t.Fatalf("%d attempts recorded, want 5", n)
		}
		if got := countEvents(t, db, "lockout"); got != 1 {
			t.Fatalf("%d lockout events, want 1", got)
		}
	})
}

// Someone guessing from elsewhere cannot keep the owner out; and a reset
// clears the owner's own address.
func TestStrangersCannotLockTheOwnerOut(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("owner@example.test", auth.Operator)
	attacker := e.client()
	attacker.ip = "203.0.113.66"
	for range 12 {
		attacker.postForm("/login", url.Values{"email": {"owner@example.test"}, "password": {"not it at all"}})
	}
	if res := attacker.postForm("/login", url.Values{"email": {"owner@example.test"}, "password": {testPassword}}); res.Code != http.StatusTooManyRequests {
		t.Fatalf("the attacker's address is not slowed: %d", res.Code)
	}
	owner := e.client()
	owner.ip = "198.51.100.20"
	if res := owner.postForm("/login", url.Values{"email": {"owner@example.test"}, "password": {testPassword}}); res.Code != http.StatusSeeOther {
		t.Fatalf("the owner, from their own address, is locked out: %d %s", res.Code, res.Body)
	}
	// The owner fumbles their own password too; a reset clears their address.
	for range 6 {
		owner.postForm("/login", url.Values{"email": {"owner@example.test"}, "password": {"fumbled it again"}})
	}
	owner.postForm("/password/forgot", url.Values{"email": {"owner@example.test"}})
	link, _ := url.Parse(e.lastMail().Link)
	const fresh = "obsidian walrus tango 31"
	if res := owner.postForm("/password/reset", url.Values{"token": {link.Query().Get("token")}, "password": {fresh}, "password_confirm": {fresh}}); res.Code != http.StatusSeeOther {
		t.Fatalf("reset: %d", res.Code)
	}
	if res := owner.postForm("/login", url.Values{"email": {"owner@example.test"}, "password": {fresh}}); res.Code != http.StatusSeeOther {
		t.Fatalf("after a reset the owner is still held: %d %s", res.Code, res.Body)
	}
}

func TestNextCannotLeaveTheSite(t *testing.T) {
	for next, want := range map[string]string{
		"/profile": "/profile", "/admin/users?x=1": "/admin/users?x=1",
		"//evil.example": "/", "/\t/evil.example": "/", "/\\evil.example": "/", "https://evil.example": "/",
		"/\r\nLocation: x": "/", "": "/", "evil": "/", "/%2F%2Fevil.example": "/", "/\x00": "/",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

// Two admins demoting each other at once must leave one admin.
func TestLastAdminSurvivesConcurrentDemotions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		for round := range 10 {
			a := e.user("a"+itoa3(round)+"@example.test", auth.Admin)
			b := e.user("b"+itoa3(round)+"@example.test", auth.Admin)
			storetest.Exec(t, db, "UPDATE users SET role = 'viewer' WHERE role = 'admin' AND id NOT IN (?, ?)", a.ID, b.ID)
			pa := &auth.Principal{User: a, Role: auth.Admin}
			pb := &auth.Principal{User: b, Role: auth.Admin}
			var wg sync.WaitGroup
			wg.Go(func() { e.svc.ChangeRole(ctx, pa, b.ID, auth.Viewer, auth.Meta{}) })
			wg.Go(func() { e.svc.ChangeRole(ctx, pb, a.ID, auth.Viewer, auth.Meta{}) })
			wg.Wait()
			var admins int
			db.QueryRowRaw(ctx, "SELECT COUNT(*) FROM users WHERE role = 'admin'").Scan(&admins)
			if admins != 1 {
				t.Fatalf("round %d: %d admins left", round, admins)
			}
		}
	})
}

func TestHostileFormsAndIDs(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("me@example.test", auth.Admin)
	c := e.client()
	big := url.Values{"email": {strings.Repeat("a", 100<<10)}, "password": {"x"}}
	if res := c.postForm("/login", big); res.Code != http.StatusBadRequest {
		t.Errorf("100 KiB form: %d", res.Code)
	}
	req := httptest.NewRequest("POST", "/login", strings.NewReader("--x\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na\r\n--x--\r\n"))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	if res := c.do(req); res.Code != http.StatusBadRequest {
		t.Errorf("multipart form: %d", res.Code)
	}
	for _, email := range []string{"nul\x00@example.test", "bad\xffutf8@example.test", "ünïcode@example.test"} {
		if res := c.postForm("/login", url.Values{"email": {email}, "password": {"whatever it is"}}); res.Code != http.StatusUnauthorized {
			t.Errorf("login with email %q: %d", email, res.Code)
		}
	}
	ua := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"email": {"me@example.test"}, "password": {testPassword}, "csrf_token": {c.csrf()}}.Encode()))
	ua.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ua.Header.Set("User-Agent", "broken \xff\xfe agent\x00")
	if res := c.do(ua); res.Code != http.StatusSeeOther {
		t.Errorf("login with a broken user agent: %d", res.Code)
	}
	admin := e.withToken("me@example.test", auth.Admin)
	for _, path := range []string{"/api/v1/users/%ff", "/api/v1/users/" + strings.Repeat("Z", 26), "/api/v1/users/short"} {
		if res := admin.api("GET", path, nil); res.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d", path, res.Code)
		}
	}
	if res := admin.api("POST", "/api/v1/invites", map[string]any{"email": "ok@example.test", "role": "viewer\xff"}); res.Code != http.StatusBadRequest {
		t.Errorf("invite with a broken role: %d", res.Code)
	}
}

// A session still owing its second factor can sign out.
func TestPendingSessionCanSignOut(t *testing.T) {
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("me@example.test", auth.Viewer)
	enableTwoFactor(t, e, "me@example.test")
	c := e.client()
	c.postForm("/login", url.Values{"email": {"me@example.test"}, "password": {testPassword}})
	if res := c.postForm("/logout", nil); res.Code != http.StatusSeeOther {
		t.Fatalf("logout of a pending session: %d", res.Code)
	}
	if c.session() != "" {
		t.Fatal("the session cookie is still set")
	}
}

// An invitation dies with its sender's admin rights; a reset revokes tokens.
func TestInvitesAndTokensDoNotOutliveTrust(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("boss@example.test", auth.Admin)
	rogue := e.user("rogue@example.test", auth.Admin)
	r := e.loggedIn("rogue@example.test")
	r.postForm("/admin/invites", url.Values{"email": {"crony@example.test"}, "role": {"admin"}})
	link, _ := url.Parse(e.lastMail().Link)
	boss, _ := e.db.GetUserByEmail(ctx, "boss@example.test")
	if _, err := e.svc.ChangeRole(ctx, &auth.Principal{User: boss, Role: auth.Admin}, rogue.ID, auth.Viewer, auth.Meta{}); err != nil {
		t.Fatal(err)
	}
	if res := e.client().get("/invite/accept?token=" + url.QueryEscape(link.Query().Get("token"))); res.Code != http.StatusNotFound {
		t.Fatalf("an invite from a demoted admin still works: %d", res.Code)
	}

	tok := e.withToken("boss@example.test", auth.Admin)
	e.client().postForm("/password/forgot", url.Values{"email": {"boss@example.test"}})
	link, _ = url.Parse(e.lastMail().Link)
	const fresh = "copper lagoon vesper 56"
	e.client().postForm("/password/reset", url.Values{"token": {link.Query().Get("token")}, "password": {fresh}, "password_confirm": {fresh}})
	if res := tok.api("GET", "/api/v1/me", nil); res.Code != http.StatusUnauthorized {
		t.Fatalf("a token survived the password reset: %d", res.Code)
	}
}

// Enrolment in two tabs: neither can undo or hijack the other.
func TestTwoFactorEnrolmentRaces(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, storetest.Open(t, "sqlite"))
	e.user("me@example.test", auth.Viewer)
	c := e.loggedIn("me@example.test")
	stale, _ := e.svc.Authenticate(ctx, c.session()) // loaded before enrolment finished
	first, err := e.svc.StartTwoFactor(ctx, stale, testPassword, auth.Meta{IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.svc.StartTwoFactor(ctx, stale, testPassword, auth.Meta{IP: "192.0.2.1"}) // the other tab restarts
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmTwoFactor(ctx, stale, totpCode(t, first.Secret, e.db.Now()), auth.Meta{IP: "192.0.2.1"}); err == nil {
		t.Fatal("confirmed with the secret the other tab replaced")
	}
	if _, err := e.svc.ConfirmTwoFactor(ctx, stale, totpCode(t, second.Secret, e.db.Now()), auth.Meta{IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.StartTwoFactor(ctx, stale, testPassword, auth.Meta{IP: "192.0.2.1"}); err == nil {
		t.Fatal("a stale tab restarted enrolment and turned two-factor off")
	}
	u, _ := e.db.GetUserByEmail(ctx, "me@example.test")
	if !u.TwoFactorEnabled() {
		t.Fatal("two-factor is off")
	}
}
