package auth

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestHasherRoundTripAndRejections(t *testing.T) {
	h := NewHasher(2)
	ctx := context.Background()
	enc, err := h.Hash(ctx, "granite lantern meadow 7")
	if err != nil || !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("Hash = %q, %v", enc, err)
	}
	if ok, _ := h.Verify(ctx, enc, "granite lantern meadow 7"); !ok {
		t.Fatal("the right password did not verify")
	}
	other, _ := h.Hash(ctx, "granite lantern meadow 7")
	if other == enc {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, bad := range []string{"granite lantern meadow 8", "", "Granite lantern meadow 7"} {
		if ok, _ := h.Verify(ctx, enc, bad); ok {
			t.Errorf("%q verified", bad)
		}
	}
	for _, broken := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=0,t=1,p=1$AA$AA",
		"$argon2id$v=19$m=999999999,t=1,p=1$AA$AA", "$argon2id$v=19$m=64,t=1,p=1$!!$AA", enc + "x"} {
		if ok, _ := h.Verify(ctx, broken, "granite lantern meadow 7"); ok {
			t.Errorf("broken encoding %q verified", broken)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	full := NewHasher(1)
	full.sem <- struct{}{} // the one slot is busy
	if _, err := full.Hash(canceled, "x"); err == nil {
		t.Fatal("Hash waited past its context")
	}
}

func TestPasswordRules(t *testing.T) {
	for pw, want := range map[string]string{
		"short":                             "at least 12 characters",
		strings.Repeat("a", 257):            "at most 256",
		"aaaaaaaaaaaaaaaa":                  "repeated or sequential",
		"abcabcabcabcabc":                   "repeated or sequential",
		"123456789012":                      "repeated or sequential",
		"password1234":                      "commonly used",
		"Password1234!!":                    "commonly used",
		"qwertyuiop123":                     "commonly used",
		"jane.doe.example2":                 "close to your email",
		"ctrl\x00characters here":           "control characters",
		"correct horse battery staple":      "",
		"çà et là, une phrase française ok": "",
	} {
		err := CheckPassword(pw, "jane.doe@example.test")
		switch {
		case want == "" && err != nil:
			t.Errorf("%q refused: %v", pw, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v, want %q", pw, err, want)
		}
	}
}

func TestDelayGrowsAndIsCapped(t *testing.T) {
	for failures, want := range map[int]time.Duration{0: 0, 4: 0, 5: 30 * time.Second, 6: time.Minute, 8: 4 * time.Minute, 10: 15 * time.Minute, 60: 15 * time.Minute} {
		if got := delayAfter(failures, freeFailures); got != want {
			t.Errorf("delayAfter(%d) = %s, want %s", failures, got, want)
		}
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes, hashes := newRecoveryCodes()
	if len(codes) != RecoveryCodeCount || len(hashes) != RecoveryCodeCount {
		t.Fatalf("%d codes, %d hashes", len(codes), len(hashes))
	}
	seen := map[string]bool{}
	for i, c := range codes {
		if len(c) != 11 || c[5] != '-' || seen[c] {
			t.Errorf("code %q malformed or repeated", c)
		}
		seen[c] = true
		for _, typed := range []string{c, strings.ToUpper(c), " " + strings.ReplaceAll(c, "-", "") + " "} {
			if hashRecoveryCode(typed) != hashes[i] {
				t.Errorf("%q typed as %q does not match its hash", c, typed)
			}
		}
	}
}

func TestRoles(t *testing.T) {
	if !Admin.AtLeast(Operator) || Operator.AtLeast(Admin) || !Viewer.AtLeast(Viewer) || Role("root").AtLeast(Viewer) {
		t.Fatal("role order wrong")
	}
	if Lower(Admin, Viewer) != Viewer || Lower(Operator, Admin) != Operator {
		t.Fatal("Lower wrong")
	}
	if _, err := ParseRole("superuser"); err == nil {
		t.Fatal("unknown role parsed")
	}
}

func TestNormalizeEmail(t *testing.T) {
	for in, want := range map[string]string{" Jane@Example.TEST ": "jane@example.test", "a@b.c": "a@b.c"} {
		if got, err := NormalizeEmail(in); err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "jane", "Jane <jane@example.test>", "a@b.c\r\nBcc: x@y.z", strings.Repeat("a", 250) + "@b.cc", "a b@c.d"} {
		if _, err := NormalizeEmail(bad); err == nil {
			t.Errorf("NormalizeEmail(%q) accepted", bad)
		}
	}
}
