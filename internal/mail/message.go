// Package mail sends UPanel's outgoing email: it renders messages from small
// templates, builds them as RFC 5322 text (plain text plus HTML, quoted-printable,
// RFC 2047 subjects), and delivers them over SMTP with net/smtp. Mail is never
// sent inside an HTTP request: callers write it to the outbox with
// store.Tx.EnqueueMail, and SendHandler delivers it from a job, with retries,
// recording sent_at only once the SMTP server has accepted the message.
package mail

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrHeaderInjection is returned for a header value that carries a line break
// or another control character: it could end the header and start another
// (a Bcc, say), which is how contact forms become spam relays.
var ErrHeaderInjection = errors.New("mail: header value contains a line break or control character")

// Message is one email to one recipient.
type Message struct {
	From    mail.Address
	To      mail.Address
	Subject string
	Text    string // the plain-text part; required
	HTML    string // the HTML alternative; optional
	// Date is when the message was composed; zero means now.
	Date time.Time
	// MessageID is "local@domain", without angle brackets. Empty means a random
	// one in the From domain. The outbox passes a fixed one per row, so that if a
	// crash makes it send a message twice, both copies carry the same id and
	// mail clients show one.
	MessageID string
}

// msgIDPattern is RFC 5322 msg-id narrowed to what UPanel produces: a
// dot-atom, @, and a domain name or an address literal such as [192.0.2.1]
// (the default sender's domain when UPANEL_URL names an IP address).
var msgIDPattern = regexp.MustCompile(`^[A-Za-z0-9._+-]{1,128}@([A-Za-z0-9.-]{1,253}|\[[A-Za-z0-9.:]{1,60}\])$`)

// ParseAddress parses one address, such as `UPanel <upanel@example.com>`, and
// refuses what cannot be put in a header safely: line breaks, control
// characters, and non-ASCII addresses (which need SMTPUTF8; a non-ASCII display
// name is fine and is RFC 2047-encoded).
func ParseAddress(s string) (*mail.Address, error) {
	if hasControl(s) {
		return nil, ErrHeaderInjection
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("mail: %q is not an email address: %w", s, err)
	}
	if err := checkAddress(*a); err != nil {
		return nil, err
	}
	return a, nil
}

func checkAddress(a mail.Address) error {
	if hasControl(a.Name) || hasControl(a.Address) {
		return ErrHeaderInjection
	}
	p, err := mail.ParseAddress(a.Address)
	if err != nil || p.Address != a.Address || p.Name != "" {
		return fmt.Errorf("mail: %q is not a bare email address", a.Address)
	}
	if !isASCII(a.Address) {
		return fmt.Errorf("mail: %q: non-ASCII addresses are not supported", a.Address)
	}
	return nil
}

// domainOf returns the part of an address after the last @.
func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

// Bytes renders the message as RFC 5322 text with CRLF line endings, ready for
// SMTP DATA. Every header value is checked for injection, and every address
// with net/mail.
func (m Message) Bytes() ([]byte, error) {
	if err := checkAddress(m.From); err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	if err := checkAddress(m.To); err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	if strings.TrimSpace(m.Subject) == "" {
		return nil, errors.New("mail: empty subject")
	}
	if hasControl(m.Subject) {
		return nil, fmt.Errorf("subject: %w", ErrHeaderInjection)
	}
	if strings.TrimSpace(m.Text) == "" {
		return nil, errors.New("mail: empty text body")
	}
	if !utf8.ValidString(m.Subject) || !utf8.ValidString(m.Text) || !utf8.ValidString(m.HTML) {
		return nil, errors.New("mail: subject and bodies must be UTF-8")
	}
	date := m.Date
	if date.IsZero() {
		date = time.Now()
	}
	msgID := m.MessageID
	if msgID == "" {
		var r [16]byte
		rand.Read(r[:])
		msgID = hex.EncodeToString(r[:]) + "@" + domainOf(m.From.Address)
	}
	if !msgIDPattern.MatchString(msgID) {
		return nil, fmt.Errorf("mail: message id %q is not local@domain", msgID)
	}

	var b bytes.Buffer
	writeHeader(&b, "Date", date.UTC().Format(time.RFC1123Z))
	writeHeader(&b, "From", m.From.String())
	writeHeader(&b, "To", m.To.String())
	writeHeader(&b, "Subject", encodeHeaderText(m.Subject))
	writeHeader(&b, "Message-ID", "<"+msgID+">")
	// RFC 3834: tells vacation responders not to answer a machine.
	writeHeader(&b, "Auto-Submitted", "auto-generated")
	writeHeader(&b, "MIME-Version", "1.0")

	if m.HTML == "" {
		writeHeader(&b, "Content-Type", "text/plain; charset=utf-8")
		writeHeader(&b, "Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQP(&b, m.Text); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}

	mw := multipart.NewWriter(&b)
	writeHeader(&b, "Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\n")
	// Least preferred first (RFC 2046 5.1.4): clients that render HTML pick the
	// last part they understand.
	for _, part := range []struct{ typ, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", part.typ+"; charset=utf-8")
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, fmt.Errorf("mail: %w", err)
		}
		if err := writeQP(w, part.body); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("mail: %w", err)
	}
	return b.Bytes(), nil
}

// writeQP writes body quoted-printable, with its line breaks normalised, so
// that no line exceeds 76 characters and only 7-bit text goes over the wire.
func writeQP(w interface{ Write([]byte) (int, error) }, body string) error {
	body = strings.ReplaceAll(body, "\r\n", "\n")
	body = strings.ReplaceAll(body, "\r", "\n")
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(body)); err != nil {
		return fmt.Errorf("mail: encode body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return fmt.Errorf("mail: encode body: %w", err)
	}
	return nil
}

// encodeHeaderText encodes unstructured header text per RFC 2047 when it is not
// plain ASCII.
func encodeHeaderText(s string) string {
	if isASCII(s) {
		return s
	}
	return mime.QEncoding.Encode("utf-8", s)
}

// writeHeader writes "Name: value" folded at spaces so that lines stay within
// 78 characters where the value allows (RFC 5322 2.1.1); an encoded word of
// 75 characters then gets a line of its own, as RFC 2047 asks. Values were
// checked for line breaks before they get here.
func writeHeader(b *bytes.Buffer, name, value string) {
	line := name + ":"
	for _, word := range strings.Split(value, " ") {
		if len(line)+1+len(word) > 78 && strings.TrimSpace(line) != "" {
			b.WriteString(line)
			b.WriteString("\r\n")
			line = ""
		}
		line += " " + word
	}
	b.WriteString(line)
	b.WriteString("\r\n")
}

// hasControl reports a character that has no place in a header value: CR, LF,
// NUL and the other C0 controls but tab, and DEL.
func hasControl(s string) bool {
	for _, r := range s {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
