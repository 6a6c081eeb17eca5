package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"upanel/internal/mail"
)

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

func TestDefaultsAndDerivedFields(t *testing.T) {
	c, err := FromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || !filepath.IsAbs(c.DataDir) || c.DatabaseURL != "sqlite:"+filepath.Join(c.DataDir, "upanel.db") {
		t.Fatalf("defaults: %+v", c)
	}
	if c.URL.String() != "http://127.0.0.1:8080" {
		t.Fatalf("default URL = %s", c.URL)
	}
	if src := c.KeySource(); !src.Create || src.File != filepath.Join(c.DataDir, "app.key") {
		t.Fatalf("default key source = %+v", src)
	}
}

func TestEnvAndFlags(t *testing.T) {
	c, err := FromEnv(env(map[string]string{
		"UPANEL_ADDR": "0.0.0.0:9000", "UPANEL_URL": "https://panel.example.com/", "UPANEL_JOB_LEASE": "45s",
		"UPANEL_JOB_WORKERS": "8", "UPANEL_LOG_LEVEL": "debug", "UPANEL_DATABASE_URL": "postgres://u@db/upanel",
	}))
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.ServeFlags(fs)
	if err := fs.Parse([]string{"--addr", "127.0.0.1:9001"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9001" || c.URL.String() != "https://panel.example.com" || c.JobLease != 45*time.Second || c.JobWorkers != 8 {
		t.Fatalf("config = %+v", c)
	}
	if !strings.HasPrefix(c.DatabaseURL, "postgres://") {
		t.Fatalf("database url = %s", c.DatabaseURL)
	}
}

func TestRejections(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"lease too short":      {"UPANEL_JOB_LEASE": "1s"},
		"zero workers":         {"UPANEL_JOB_WORKERS": "0"},
		"idle above absolute":  {"UPANEL_SESSION_IDLE_TIMEOUT": "10h", "UPANEL_SESSION_ABSOLUTE_TIMEOUT": "1h"},
		"log format":           {"UPANEL_LOG_FORMAT": "xml"},
		"previous without key": {"UPANEL_APP_PREVIOUS_KEYS": "base64:x"},
		"url with query":       {"UPANEL_URL": "https://x/?a=b"},
		"url not absolute":     {"UPANEL_URL": "panel.example.com"},
		"sqlite path query":    {"UPANEL_DATABASE_URL": "sqlite:/tmp/x.db?mode=ro"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := FromEnv(env(vars))
			if err == nil {
				err = c.Finish()
			}
			if err == nil {
				t.Fatalf("accepted %v", vars)
			}
		})
	}
}

func TestSMTP(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "smtp-url")
	if err := os.WriteFile(urlFile, []byte("smtps://mailer:file-pass-123@mail.example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	writeTestCA(t, caFile)

	t.Run("off by default", func(t *testing.T) {
		c, err := FromEnv(env(map[string]string{"UPANEL_URL": "https://panel.example.com"}))
		if err == nil {
			err = c.Finish()
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.SMTP != nil {
			t.Fatalf("SMTP = %v without UPANEL_SMTP_URL", c.SMTP)
		}
		if c.MailFrom.String() != `"UPanel" <upanel@panel.example.com>` {
			t.Fatalf("default mail from = %s", c.MailFrom)
		}
	})
	t.Run("url with starttls, CA and from", func(t *testing.T) {
		c, err := FromEnv(env(map[string]string{
			"UPANEL_URL":          "https://panel.example.com:8443",
			"UPANEL_SMTP_URL":     "smtp://mailer:p%40ss-word-1@mail.example.com:2525?starttls=required",
			"UPANEL_SMTP_CA_FILE": caFile,
			"UPANEL_MAIL_FROM":    "Ops Panel <ops@example.com>",
		}))
		if err == nil {
			err = c.Finish()
		}
		if err != nil {
			t.Fatal(err)
		}
		s := c.SMTP
		if s.Host != "mail.example.com" || s.Port != 2525 || s.Username != "mailer" || s.Password != "p@ss-word-1" ||
			s.TLS != mail.StartTLSRequired || s.RootCAs == nil || s.LocalName != "panel.example.com" {
			t.Fatalf("SMTP = %+v", *s)
		}
		if c.MailFrom.Address != "ops@example.com" || c.MailFrom.Name != "Ops Panel" {
			t.Fatalf("mail from = %v", c.MailFrom)
		}
		// The redactor gets the password as given and as written in the URL.
		if got := s.Secrets(); len(got) != 2 || got[0] != "p@ss-word-1" || got[1] != "p%40ss-word-1" {
			t.Fatalf("Secrets() = %q", got)
		}
		if strings.Contains(s.String(), "p@ss") || strings.Contains(fmt.Sprintf("%v %+v", s, c), "p@ss") {
			t.Fatalf("the password shows when printing the config: %v", s)
		}
	})
	t.Run("url from a file", func(t *testing.T) {
		c, err := FromEnv(env(map[string]string{"UPANEL_SMTP_URL_FILE": urlFile}))
		if err == nil {
			err = c.Finish()
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.SMTP.TLS != mail.ImplicitTLS || c.SMTP.Port != 465 || c.SMTP.Password != "file-pass-123" {
			t.Fatalf("SMTP = %+v", *c.SMTP)
		}
		// The default URL is http://127.0.0.1:8080: an IP becomes a domain literal.
		if c.MailFrom.Address != "upanel@[127.0.0.1]" || c.SMTP.LocalName != "[127.0.0.1]" {
			t.Fatalf("mail from = %v, EHLO name = %q", c.MailFrom, c.SMTP.LocalName)
		}
	})
	t.Run("defaults by credentials", func(t *testing.T) {
		for raw, want := range map[string]struct {
			tls  mail.TLSMode
			port int
		}{
			"smtp://relay.example.com":                               {mail.StartTLSOpportunistic, 25},
			"smtp://u:longpassword@relay.example.com":                {mail.StartTLSRequired, 587},
			"smtp://u:longpassword@127.0.0.1:1025?starttls=off":      {mail.NoTLS, 1025},
			"smtp://u:longpassword@localhost?starttls=opportunistic": {mail.StartTLSOpportunistic, 587},
		} {
			c, err := FromEnv(env(map[string]string{"UPANEL_SMTP_URL": raw}))
			if err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			if c.SMTP.TLS != want.tls || c.SMTP.Port != want.port {
				t.Errorf("%s: TLS %v port %d, want %v %d", raw, c.SMTP.TLS, c.SMTP.Port, want.tls, want.port)
			}
		}
	})
	for name, vars := range map[string]map[string]string{
		"credentials in plain text":   {"UPANEL_SMTP_URL": "smtp://u:secret-pass-9@mail.example.com?starttls=off"},
		"credentials opportunistic":   {"UPANEL_SMTP_URL": "smtp://u:secret-pass-9@mail.example.com?starttls=opportunistic"},
		"starttls on smtps":           {"UPANEL_SMTP_URL": "smtps://u:secret-pass-9@mail.example.com?starttls=required"},
		"unknown starttls":            {"UPANEL_SMTP_URL": "smtp://mail.example.com?starttls=maybe"},
		"unknown parameter":           {"UPANEL_SMTP_URL": "smtp://mail.example.com?insecure=1"},
		"wrong scheme":                {"UPANEL_SMTP_URL": "http://u:secret-pass-9@mail.example.com"},
		"path":                        {"UPANEL_SMTP_URL": "smtp://mail.example.com/x"},
		"user without password":       {"UPANEL_SMTP_URL": "smtp://u@mail.example.com"},
		"bad port":                    {"UPANEL_SMTP_URL": "smtp://u:secret-pass-9@mail.example.com:99999"},
		"no host":                     {"UPANEL_SMTP_URL": "smtp://u:secret-pass-9@:25"},
		"url and file":                {"UPANEL_SMTP_URL": "smtp://mail.example.com", "UPANEL_SMTP_URL_FILE": urlFile},
		"missing file":                {"UPANEL_SMTP_URL_FILE": filepath.Join(dir, "nope")},
		"CA without URL":              {"UPANEL_SMTP_CA_FILE": caFile},
		"CA not PEM":                  {"UPANEL_SMTP_URL": "smtp://mail.example.com", "UPANEL_SMTP_CA_FILE": urlFile},
		"from with a line break":      {"UPANEL_MAIL_FROM": "UPanel <upanel@example.com>\r\nBcc: victim@example.com"},
		"from not an address":         {"UPANEL_MAIL_FROM": "upanel"},
		"from non-ASCII address":      {"UPANEL_MAIL_FROM": "panel@exämple.com"},
		"url not parseable, password": {"UPANEL_SMTP_URL": "smtp://u:secret-pass-9@mail.example.com:x"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := FromEnv(env(vars))
			if err == nil {
				err = c.Finish()
			}
			if err == nil {
				t.Fatalf("accepted %v", vars)
			}
			if strings.Contains(err.Error(), "secret-pass-9") || strings.Contains(err.Error(), "file-pass-123") {
				t.Fatalf("the error shows the SMTP password: %v", err)
			}
		})
	}
}

// writeTestCA writes a self-signed CA certificate as PEM.
func writeTestCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSecretFileVariants(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "db-url")
	if err := os.WriteFile(f, []byte("postgres://u:pw@db.internal/upanel\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := FromEnv(env(map[string]string{"UPANEL_DATABASE_URL_FILE": f}))
	if err != nil || c.DatabaseURL != "postgres://u:pw@db.internal/upanel" {
		t.Fatalf("from file: %q, %v", c.DatabaseURL, err)
	}
	if _, err := FromEnv(env(map[string]string{"UPANEL_DATABASE_URL_FILE": f, "UPANEL_DATABASE_URL": "sqlite:/x"})); err == nil {
		t.Fatal("both set accepted")
	}
	if _, err := FromEnv(env(map[string]string{"UPANEL_DATABASE_URL_FILE": filepath.Join(dir, "missing")})); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestTrustedProxies(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"UPANEL_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"}))
	if err != nil || len(c.TrustedProxies) != 3 || c.TrustedProxies[1].String() != "10.0.0.0/8" || c.TrustedProxies[0].Bits() != 32 {
		t.Fatalf("trusted proxies: %v, %v", c.TrustedProxies, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.com", "1.2.3"} {
		if _, err := FromEnv(env(map[string]string{"UPANEL_TRUSTED_PROXIES": bad})); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
