package web

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"upanel/internal/auth"
)

// totpCode asks Debian's oathtool for the code of secret at t, so the codes the
// tests use come from an implementation independent of UPanel's.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	bin, err := exec.LookPath("oathtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("oathtool is needed (apt install oathtool); make test installs it")
		}
		t.Skip("oathtool not installed: run make test")
	}
	out, err := exec.Command(bin, "--totp", "-b", "-N", at.UTC().Format("2006-01-02 15:04:05 UTC"), secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// enableTwoFactor turns two-factor on for a user through the service, confirming
// with the code of the previous time step, so the current and next steps stay
// free for the test. It returns the secret.
func enableTwoFactor(t *testing.T, e *env, email string) string {
	t.Helper()
	ctx := context.Background()
	c := e.loggedIn(email)
	p, err := e.svc.Authenticate(ctx, c.session())
	if err != nil || p == nil {
		t.Fatalf("authenticate: %v", err)
	}
	en, err := e.svc.StartTwoFactor(ctx, p, testPassword, auth.Meta{IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmTwoFactor(ctx, p, totpCode(t, en.Secret, e.db.Now().Add(-30*time.Second)), auth.Meta{IP: "192.0.2.1"}); err != nil {
		t.Fatalf("confirm two-factor: %v", err)
	}
	return en.Secret
}
