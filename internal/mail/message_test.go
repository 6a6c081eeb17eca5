package mail_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"upanel/internal/mail"
)

var (
	from = netmail.Address{Name: "UPanel", Address: "upanel@panel.example.test"}
	ana  = netmail.Address{Address: "ana@example.test"}
)

// parsed is a message read back with the standard library alone.
type parsed struct {
	header      netmail.Header
	text, html  string
	contentType string
}

func parse(t *testing.T, raw []byte) parsed {
	t.Helper()
	for i, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line %d is %d characters long", i, len(line))
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("line %d has a bare CR or LF: %q", i, line)
		}
	}
	for _, c := range raw {
		if c >= 0x80 {
			t.Fatalf("the message is not 7-bit: byte %#x", c)
		}
	}
	m, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("ReadMessage: %v\n%s", err, raw)
	}
	p := parsed{header: m.Header}
	mediaType, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	p.contentType = mediaType
	decode := func(h interface{ Get(string) string }, r io.Reader) string {
		t.Helper()
		if h.Get("Content-Transfer-Encoding") != "quoted-printable" {
			t.Fatalf("transfer encoding %q, want quoted-printable", h.Get("Content-Transfer-Encoding"))
		}
		_, ps, err := mime.ParseMediaType(h.Get("Content-Type"))
		if err != nil || ps["charset"] != "utf-8" {
			t.Fatalf("content type %q: want charset=utf-8", h.Get("Content-Type"))
		}
		b, err := io.ReadAll(quotedprintable.NewReader(r))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	switch mediaType {
	case "text/plain":
		p.text = decode(m.Header, m.Body)
	case "multipart/alternative":
		mr := multipart.NewReader(m.Body, params["boundary"])
		var types []string
		for {
			part, err := mr.NextRawPart() // raw: keep the transfer encoding to check it
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			typ, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
			types = append(types, typ)
			body := decode(part.Header, part)
			switch typ {
			case "text/plain":
				p.text = body
			case "text/html":
				p.html = body
			}
		}
		if strings.Join(types, ",") != "text/plain,text/html" {
			t.Fatalf("parts %v, want text/plain then text/html", types)
		}
	default:
		t.Fatalf("content type %s", mediaType)
	}
	return p
}

func TestMessageHeadersAndMultipart(t *testing.T) {
	date := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	text := "Hello Ana,\n\nopen https://panel.example.test/reset?token=abc&x=1 — within 60 minutes.\r\nA line that is long enough to need a soft line break in quoted-printable, which caps lines at 76.\n.\nbye"
	html := `<p>Grüße, <a href="https://panel.example.test/reset?token=abc&amp;x=1">reset</a></p>`
	raw, err := mail.Message{
		From: from, To: netmail.Address{Name: "Ana Müller", Address: "ana@example.test"},
		Subject: "Reset your UPanel password", Text: text, HTML: html,
		Date: date, MessageID: "01JABCDEF@panel.example.test",
	}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	h := p.header
	if got, err := h.Date(); err != nil || !got.Equal(date) {
		t.Errorf("Date %q = %v, %v; want %v", h.Get("Date"), got, err, date)
	}
	if h.Get("Message-ID") != "<01JABCDEF@panel.example.test>" || h.Get("MIME-Version") != "1.0" || h.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("headers: %v", h)
	}
	if a, err := h.AddressList("From"); err != nil || len(a) != 1 || a[0].Address != from.Address || a[0].Name != "UPanel" {
		t.Errorf("From %q: %v, %v", h.Get("From"), a, err)
	}
	if a, err := h.AddressList("To"); err != nil || len(a) != 1 || a[0].Address != "ana@example.test" || a[0].Name != "Ana Müller" {
		t.Errorf("To %q: %v, %v", h.Get("To"), a, err)
	}
	if h.Get("Subject") != "Reset your UPanel password" {
		t.Errorf("Subject %q", h.Get("Subject"))
	}
	if p.contentType != "multipart/alternative" {
		t.Errorf("content type %s", p.contentType)
	}
	wantText := strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n") + "\r\n"
	if p.text != wantText {
		t.Errorf("text part = %q\nwant %q", p.text, wantText)
	}
	if p.html != html+"\r\n" {
		t.Errorf("html part = %q", p.html)
	}
}

func TestMessageTextOnlyAndEncodedSubject(t *testing.T) {
	subject := "Passwort zurücksetzen: ein recht langer Betreff, der in mehrere kodierte Wörter zerfallen muss 🔑"
	raw, err := mail.Message{From: from, To: ana, Subject: subject, Text: "nur Text"}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	if p.contentType != "text/plain" || p.text != "nur Text\r\n" || p.html != "" {
		t.Fatalf("text-only message: %s %q %q", p.contentType, p.text, p.html)
	}
	encoded := p.header.Get("Subject")
	if !strings.HasPrefix(encoded, "=?utf-8?") {
		t.Fatalf("a non-ASCII subject is not RFC 2047-encoded: %q", encoded)
	}
	got, err := new(mime.WordDecoder).DecodeHeader(encoded)
	if err != nil || got != subject {
		t.Fatalf("subject decodes to %q, %v", got, err)
	}
	// Header lines are folded to stay within 78 characters.
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() && sc.Text() != "" {
		if len(sc.Text()) > 78 {
			t.Errorf("header line of %d characters: %q", len(sc.Text()), sc.Text())
		}
	}
	// Without a date or id, both are filled in.
	if _, err := p.header.Date(); err != nil || !strings.HasSuffix(p.header.Get("Message-ID"), "@panel.example.test>") {
		t.Fatalf("Date %q, Message-ID %q", p.header.Get("Date"), p.header.Get("Message-ID"))
	}
}

func TestMessageRefusesHeaderInjection(t *testing.T) {
	ok := mail.Message{From: from, To: ana, Subject: "Hi", Text: "body"}
	cases := map[string]func(m *mail.Message){
		"subject CRLF":       func(m *mail.Message) { m.Subject = "Hi\r\nBcc: eve@example.test" },
		"subject LF":         func(m *mail.Message) { m.Subject = "Hi\nBcc: eve@example.test" },
		"subject NUL":        func(m *mail.Message) { m.Subject = "Hi\x00" },
		"to address CRLF":    func(m *mail.Message) { m.To.Address = "ana@example.test\r\nBcc: eve@example.test" },
		"to name LF":         func(m *mail.Message) { m.To.Name = "Ana\nBcc: eve@example.test" },
		"from name CR":       func(m *mail.Message) { m.From.Name = "UPanel\rX-Evil: 1" },
		"message id CRLF":    func(m *mail.Message) { m.MessageID = "x@y\r\nBcc: eve@example.test" },
		"to two addresses":   func(m *mail.Message) { m.To.Address = "ana@example.test, eve@example.test" },
		"to with a name":     func(m *mail.Message) { m.To.Address = "Ana <ana@example.test>" },
		"to not an address":  func(m *mail.Message) { m.To.Address = "ana" },
		"to non-ASCII":       func(m *mail.Message) { m.To.Address = "anä@example.test" },
		"empty subject":      func(m *mail.Message) { m.Subject = " " },
		"empty text":         func(m *mail.Message) { m.Text = "" },
		"message id no host": func(m *mail.Message) { m.MessageID = "abc" },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			m := ok
			change(&m)
			if raw, err := m.Bytes(); err == nil {
				t.Fatalf("built a message:\n%s", raw)
			}
		})
	}
	if _, err := ok.Bytes(); err != nil {
		t.Fatalf("the unchanged message: %v", err)
	}
	// With UPANEL_URL on an IP address, the default sender's domain is an
	// address literal; its message ids must build too.
	literal := ok
	literal.From = netmail.Address{Name: "UPanel", Address: "upanel@[127.0.0.1]"}
	for _, id := range []string{"", "01JABC@[127.0.0.1]", "01JABC@[IPv6:2001:db8::1]"} {
		literal.MessageID = id
		raw, err := literal.Bytes()
		if err != nil {
			t.Fatalf("message id %q from an address literal: %v", id, err)
		}
		if p := parse(t, raw); !strings.HasSuffix(p.header.Get("Message-ID"), "]>") {
			t.Fatalf("Message-ID %q", p.header.Get("Message-ID"))
		}
	}
	m := ok
	m.Subject = "Hi\r\nBcc: eve@example.test"
	if _, err := m.Bytes(); !errors.Is(err, mail.ErrHeaderInjection) {
		t.Fatalf("subject with CRLF: %v, want ErrHeaderInjection", err)
	}
	if _, err := mail.ParseAddress("ana@example.test\r\nBcc: eve@example.test"); !errors.Is(err, mail.ErrHeaderInjection) {
		t.Fatalf("ParseAddress with CRLF: %v", err)
	}
	if a, err := mail.ParseAddress("Ana Müller <ana@example.test>"); err != nil || a.Name != "Ana Müller" {
		t.Fatalf("ParseAddress = %v, %v", a, err)
	}
}
