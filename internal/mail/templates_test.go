package mail_test

import (
	"strings"
	"testing"
	"time"

	"upanel/internal/mail"
)

const resetLink = "https://panel.example.test/reset/tok-123?next=%2F&x=1"

func TestPasswordResetEmail(t *testing.T) {
	m, err := mail.PasswordResetEmail("ana@example.test", mail.PasswordReset{Link: resetLink, IP: "203.0.113.7", ExpiresIn: 60 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != mail.KindPasswordReset || m.To != "ana@example.test" || m.Subject != "Reset your UPanel password" {
		t.Fatalf("mail = %+v", m)
	}
	for _, want := range []string{resetLink, "60 minutes", "203.0.113.7"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, m.Text)
		}
	}
	// html/template escapes the & of the query in the attribute and the text.
	for _, want := range []string{`href="https://panel.example.test/reset/tok-123?next=%2F&amp;x=1"`, "60 minutes", "203.0.113.7", "<title>Reset your UPanel password</title>"} {
		if !strings.Contains(m.HTML, want) {
			t.Errorf("HTML lacks %q:\n%s", want, m.HTML)
		}
	}
	// The result is a well-formed message.
	raw, err := mail.Message{From: from, To: ana, Subject: m.Subject, Text: m.Text, HTML: m.HTML}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if p := parse(t, raw); !strings.Contains(p.html, "&amp;x=1") {
		t.Fatalf("html part = %q", p.html)
	}
}

func TestInviteEmail(t *testing.T) {
	m, err := mail.InviteEmail("new@example.test", mail.Invite{
		Link: "https://panel.example.test/invite/tok-456", InviterEmail: "admin@example.test", Role: "operator", ExpiresIn: 7 * 24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != mail.KindInvite || m.Subject != "You are invited to UPanel" {
		t.Fatalf("mail = %+v", m)
	}
	for _, part := range []string{m.Text, m.HTML} {
		for _, want := range []string{"https://panel.example.test/invite/tok-456", "admin@example.test", "operator", "7 days"} {
			if !strings.Contains(part, want) {
				t.Errorf("a part lacks %q:\n%s", want, part)
			}
		}
	}
}

func TestTemplatesRefuseBadInput(t *testing.T) {
	good := mail.PasswordReset{Link: resetLink, IP: "2001:db8::1", ExpiresIn: time.Hour}
	if _, err := mail.PasswordResetEmail("ana@example.test", good); err != nil {
		t.Fatalf("an IPv6 address: %v", err)
	}
	for name, d := range map[string]mail.PasswordReset{
		"javascript link": {Link: "javascript:alert(1)", IP: "192.0.2.1", ExpiresIn: time.Hour},
		"relative link":   {Link: "/reset/tok", IP: "192.0.2.1", ExpiresIn: time.Hour},
		"link with user":  {Link: "https://u:p@panel.example.test/reset", IP: "192.0.2.1", ExpiresIn: time.Hour},
		// A spoofed X-Forwarded-For must not put words into the mail.
		"IP that is text": {Link: resetLink, IP: "192.0.2.1. Call +1 555 0100 to confirm", ExpiresIn: time.Hour},
		"no expiry":       {Link: resetLink, IP: "192.0.2.1"},
	} {
		if _, err := mail.PasswordResetEmail("ana@example.test", d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := mail.PasswordResetEmail("ana@example.test\r\nBcc: eve@example.test", good); err == nil {
		t.Error("a recipient with CRLF was accepted")
	}
	inv := mail.Invite{Link: resetLink, InviterEmail: "admin@example.test", Role: "viewer", ExpiresIn: time.Hour}
	for name, change := range map[string]func(*mail.Invite){
		"role with markup": func(i *mail.Invite) { i.Role = "<b>admin</b>" },
		"role sentence":    func(i *mail.Invite) { i.Role = "admin. Also click http://evil.example" },
		"inviter not mail": func(i *mail.Invite) { i.InviterEmail = "admin" },
		"inviter name":     func(i *mail.Invite) { i.InviterEmail = "Evil <admin@example.test>" },
	} {
		d := inv
		change(&d)
		if _, err := mail.InviteEmail("new@example.test", d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
