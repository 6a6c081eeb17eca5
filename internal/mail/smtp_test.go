package mail_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	netmail "net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"upanel/internal/mail"
	"upanel/internal/mail/mailtest"
)

// wait bounds how long a test waits for mail to arrive; it is a limit, never
// a measurement.
const wait = 30 * time.Second

func sender(t *testing.T, srv *mailtest.Server, pin *mailtest.CA) *mail.Sender {
	t.Helper()
	return senderFor(t, srv.URL(), pin)
}

func senderFor(t *testing.T, rawURL string, pin *mailtest.CA) *mail.Sender {
	t.Helper()
	cfg, err := mail.ParseSMTPURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if pin != nil {
		cfg.RootCAs = pin.Pool
	}
	s, err := mail.NewSender(cfg, from)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func build(t *testing.T, to string, subject string) []byte {
	t.Helper()
	raw, err := mail.Message{
		From: from, To: netmail.Address{Address: to}, Subject: subject,
		Text: "Open https://panel.example.test/reset/tok-789 within 60 minutes.",
		HTML: `<p>Open <a href="https://panel.example.test/reset/tok-789">this link</a> within 60 minutes.</p>`,
	}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// checkArrived reads the message back from the server and checks it is the one
// build made.
func checkArrived(t *testing.T, srv *mailtest.Server, to, subject string) mailtest.Message {
	t.Helper()
	m := srv.WaitForMessage(t, to, wait)
	if m.Subject != subject || m.From != from.Address || len(m.To) != 1 || m.To[0] != to {
		t.Fatalf("received %+v", m)
	}
	if !strings.Contains(m.Text, "https://panel.example.test/reset/tok-789") || !strings.Contains(m.HTML, `href="https://panel.example.test/reset/tok-789"`) {
		t.Fatalf("bodies: text %q, html %q", m.Text, m.HTML)
	}
	if ct := strings.Join(m.Headers["Content-Type"], ""); !strings.HasPrefix(ct, "multipart/alternative;") {
		t.Fatalf("Content-Type %q", ct)
	}
	if len(m.Headers["Message-Id"]) != 1 || len(m.Headers["Date"]) != 1 || m.Headers["Mime-Version"][0] != "1.0" {
		t.Fatalf("headers %v", m.Headers)
	}
	return m
}

func TestSendPlain(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	// No credentials: STARTTLS is opportunistic, and this server offers none.
	s := senderFor(t, "smtp://"+srv.SMTPAddr, nil)
	subject := "Grüße aus dem Panel"
	if err := s.Send(context.Background(), "ana@example.test", build(t, "ana@example.test", subject)); err != nil {
		t.Fatal(err)
	}
	m := checkArrived(t, srv, "ana@example.test", subject)
	if m.Username != "" {
		t.Fatalf("authenticated as %q without credentials", m.Username)
	}
	if !strings.Contains(string(m.Raw), "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_dem_Panel?=") {
		t.Fatalf("raw message:\n%s", m.Raw)
	}

	// The default sender when UPANEL_URL is an IP address: a domain literal.
	cfg, _ := mail.ParseSMTPURL("smtp://" + srv.SMTPAddr)
	cfg.LocalName = "[127.0.0.1]"
	literal := netmail.Address{Name: "UPanel", Address: "upanel@[127.0.0.1]"}
	ls, err := mail.NewSender(cfg, literal)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := mail.Message{From: literal, To: netmail.Address{Address: "ana@example.test"}, Subject: "literal", Text: "hi"}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := ls.Send(context.Background(), "ana@example.test", raw); err != nil {
		t.Fatalf("send from %s: %v", literal.Address, err)
	}
	if msgs := srv.Messages(t); len(msgs) != 2 || msgs[1].From != literal.Address {
		t.Fatalf("stored %+v", msgs)
	}
}

func TestSendStartTLSWithPinnedCAAndAuth(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{TLS: mailtest.RequireStartTLS, Username: "upanel", Password: "mail-pass-42"})
	// The server refuses mail and AUTH before STARTTLS, so a delivery proves
	// the upgrade happened, with the certificate verified against the pin.
	s := sender(t, srv, srv.CA)
	if err := s.Send(context.Background(), "bo@example.test", build(t, "bo@example.test", "STARTTLS")); err != nil {
		t.Fatal(err)
	}
	if m := checkArrived(t, srv, "bo@example.test", "STARTTLS"); m.Username != "upanel" {
		t.Fatalf("authenticated as %q, want upanel", m.Username)
	}

	t.Run("wrong password is permanent", func(t *testing.T) {
		cfg, _ := mail.ParseSMTPURL(srv.URL())
		cfg.Password, cfg.RootCAs = "not-the-password", srv.CA.Pool
		s, _ := mail.NewSender(cfg, from)
		err := s.Send(context.Background(), "bo@example.test", build(t, "bo@example.test", "bad auth"))
		var te *textproto.Error
		if !errors.As(err, &te) || te.Code != 535 || !mail.IsPermanent(err) {
			t.Fatalf("Send with a wrong password = %v; want a permanent 535", err)
		}
		if strings.Contains(err.Error(), "not-the-password") {
			t.Fatalf("the error shows the password: %v", err)
		}
	})
	t.Run("wrong CA is refused", func(t *testing.T) {
		err := sender(t, srv, mailtest.NewCA(t)).Send(context.Background(), "bo@example.test", build(t, "bo@example.test", "wrong CA"))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("Send with another CA pinned = %v; want an unknown-authority error", err)
		}
		if mail.IsPermanent(err) {
			t.Fatal("a TLS failure is not an SMTP refusal")
		}
	})
	t.Run("system roots do not trust a private CA", func(t *testing.T) {
		err := sender(t, srv, nil).Send(context.Background(), "bo@example.test", build(t, "bo@example.test", "no pin"))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("Send without a pin = %v; want an unknown-authority error", err)
		}
	})
	if got := len(srv.Messages(t)); got != 1 {
		t.Fatalf("%d messages stored, want only the first", got)
	}
}

func TestSendImplicitTLS(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{TLS: mailtest.ImplicitTLS, Username: "upanel", Password: "mail-pass-43"})
	if !strings.HasPrefix(srv.URL(), "smtps://") {
		t.Fatalf("URL %s", srv.URL())
	}
	if err := sender(t, srv, srv.CA).Send(context.Background(), "cy@example.test", build(t, "cy@example.test", "TLS")); err != nil {
		t.Fatal(err)
	}
	checkArrived(t, srv, "cy@example.test", "TLS")
	err := sender(t, srv, mailtest.NewCA(t)).Send(context.Background(), "cy@example.test", build(t, "cy@example.test", "wrong CA"))
	if !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Fatalf("implicit TLS with another CA pinned = %v", err)
	}
}

func TestSendOpportunisticUpgradesAndVerifies(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{TLS: mailtest.StartTLS})
	url := "smtp://" + srv.SMTPAddr + "?starttls=opportunistic"
	if err := senderFor(t, url, srv.CA).Send(context.Background(), "di@example.test", build(t, "di@example.test", "opportunistic")); err != nil {
		t.Fatal(err)
	}
	checkArrived(t, srv, "di@example.test", "opportunistic")
	// Offered TLS is verified: a certificate we cannot trust is an error, not
	// a quiet fall back to plain text.
	err := senderFor(t, url, mailtest.NewCA(t)).Send(context.Background(), "di@example.test", build(t, "di@example.test", "unverified"))
	if !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Fatalf("opportunistic STARTTLS with an untrusted certificate = %v", err)
	}
}

func TestSendRequiredStartTLSNotOffered(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	err := senderFor(t, "smtp://"+srv.SMTPAddr+"?starttls=required", nil).Send(context.Background(), "ed@example.test", build(t, "ed@example.test", "x"))
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("Send = %v; want a refusal to go on without STARTTLS", err)
	}
	if got := len(srv.Messages(t)); got != 0 {
		t.Fatalf("%d messages stored", got)
	}
}

func TestSendSMTPReplies(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	s := sender(t, srv, nil)
	for _, tc := range []struct {
		chaos     mailtest.Chaos
		code      int
		permanent bool
	}{
		{mailtest.Chaos{Recipient: 550}, 550, true},
		{mailtest.Chaos{Sender: 553}, 553, true},
		{mailtest.Chaos{Recipient: 451}, 451, false},
		{mailtest.Chaos{Sender: 421}, 421, false},
	} {
		srv.SetChaos(t, tc.chaos)
		err := s.Send(context.Background(), "fay@example.test", build(t, "fay@example.test", "chaos"))
		var te *textproto.Error
		if !errors.As(err, &te) || te.Code != tc.code || mail.IsPermanent(err) != tc.permanent {
			t.Errorf("with %+v: Send = %v; want %d, permanent %v", tc.chaos, err, tc.code, tc.permanent)
		}
	}
	srv.SetChaos(t, mailtest.Chaos{})
	if err := s.Send(context.Background(), "fay@example.test", build(t, "fay@example.test", "calm")); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.Messages(t); len(msgs) != 1 || msgs[0].Subject != "calm" {
		t.Fatalf("stored %+v, want only the calm one", msgs)
	}
}

func TestSendServerDown(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	s := sender(t, srv, nil)
	srv.Stop(t)
	err := s.Send(context.Background(), "gus@example.test", build(t, "gus@example.test", "down"))
	if err == nil || mail.IsPermanent(err) || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("Send to a stopped server = %v; want a retryable connect error", err)
	}
}

// silentServer accepts connections and never says a word, like a server
// behind a black-holing firewall; accepted receives each connection.
func silentServer(t *testing.T) (addr string, accepted <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 4)
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept() // fails once the cleanup closes ln
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case ch <- c:
			default:
			}
		}
	}()
	return ln.Addr().String(), ch
}

func TestSendStopsOnCancelAndTimeout(t *testing.T) {
	addr, accepted := silentServer(t)
	s := senderFor(t, "smtp://"+addr+"?starttls=off", nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, "hal@example.test", build(t, "hal@example.test", "x")) }()
	<-accepted // Send is now waiting for a greeting that never comes
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Send after cancel = %v; want context.Canceled", err)
	}

	cfg, _ := mail.ParseSMTPURL("smtp://" + addr + "?starttls=off")
	cfg.Timeout = 100 * time.Millisecond
	quick, _ := mail.NewSender(cfg, from)
	if err := quick.Send(context.Background(), "hal@example.test", build(t, "hal@example.test", "x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send past its timeout = %v; want context.DeadlineExceeded", err)
	}
}

func TestParseSMTPURLKeepsPasswordOutOfErrors(t *testing.T) {
	for _, raw := range []string{
		"smtp://u:hunter2-secret@mail.example.com?starttls=off",
		"smtp://u:hunter2-secret@mail.example.com:notaport",
		"smtp://u:hunter2-secret@mail.example.com/path",
		"ftp://u:hunter2-secret@mail.example.com",
		"smtp://u:hunter2-secret@mail.example.com?starttls=sometimes",
		"smtp://u:hunter2-secret@mail.example.com?x=1",
		"smtp://u:hunter2-secret@[::1",
	} {
		_, err := mail.ParseSMTPURL(raw)
		if err == nil {
			t.Errorf("%s: accepted", raw)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", raw, err)
		}
	}
	cfg, err := mail.ParseSMTPURL("smtp://u:hunter2-secret@localhost:2525?starttls=off")
	if err != nil || cfg.TLS != mail.NoTLS {
		t.Fatalf("credentials to localhost without TLS: %+v, %v", cfg, err)
	}
	if s := cfg.String(); strings.Contains(s, "hunter2") || s != "smtp://u:xxxxx@localhost:2525?starttls=off" {
		t.Fatalf("String() = %s", s)
	}
}
