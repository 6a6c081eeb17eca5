package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretsNeverReachTheLog(t *testing.T) {
	const canary = "base64:CANARYcanaryCANARYcanary="
	r := NewRedactor()
	r.Add(canary, "short")
	for _, format := range []Format{"json", "text"} {
		var buf bytes.Buffer
		log := New(&buf, format, slog.LevelDebug, r)
		log.Info("loaded "+canary, "key", canary, "password", "hunter2hunter2", "db_password", "x",
			"Authorization", "Bearer abc", "err", errors.New("bad key "+canary))
		log.With("api_token", "tok_123456789").WithGroup("g").Info("grouped", "value", "prefix-"+canary)
		type conf struct{ URL, Key string }
		log.Info("structured", "conf", conf{URL: "x", Key: canary}, "list", []string{"a", canary}, "stringer", stringer(canary))
		out := buf.String()
		for _, leak := range []string{canary, "hunter2hunter2", "Bearer abc", "tok_123456789"} {
			if strings.Contains(out, leak) {
				t.Errorf("%s log leaks %q:\n%s", format, leak, out)
			}
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("%s log shows no redaction marker:\n%s", format, out)
		}
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "new_password": true, "agent_token": true, "Cookie": true, "credentials": true,
		"ssh_private_key": true, "request_id": false, "key_id": false, "tokens_total": false, "path": false,
	} {
		if got := SecretName(name); got != want {
			t.Errorf("SecretName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestShortValuesAreNotScrubbed(t *testing.T) {
	r := NewRedactor()
	r.Add("abc")
	if got := r.Scrub("abc def"); got != "abc def" {
		t.Fatalf("Scrub = %q", got)
	}
}

type stringer string

func (s stringer) String() string { return "wrapped " + string(s) }
