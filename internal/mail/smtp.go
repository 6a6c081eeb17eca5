package mail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// TLSMode is how the connection to the SMTP server is protected.
type TLSMode int

const (
	// StartTLSRequired upgrades with STARTTLS and refuses a server that does
	// not offer it (smtp://...?starttls=required; the default with credentials).
	StartTLSRequired TLSMode = iota
	// StartTLSOpportunistic upgrades with STARTTLS when the server offers it,
	// and sends in plain text otherwise (?starttls=opportunistic; the default
	// without credentials). When it does upgrade, the certificate is verified
	// like any other: a server offering TLS with a certificate we cannot
	// verify is an error, not a reason to skip verification.
	StartTLSOpportunistic
	// NoTLS never upgrades (?starttls=off): for a local relay on 127.0.0.1.
	NoTLS
	// ImplicitTLS speaks TLS from the first byte (smtps://, usually port 465).
	ImplicitTLS
)

func (m TLSMode) String() string {
	switch m {
	case StartTLSRequired:
		return "starttls=required"
	case StartTLSOpportunistic:
		return "starttls=opportunistic"
	case NoTLS:
		return "starttls=off"
	case ImplicitTLS:
		return "implicit TLS"
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// SMTPConfig says how to reach the SMTP server. ParseSMTPURL makes one from
// UPANEL_SMTP_URL.
type SMTPConfig struct {
	Host string
	Port int
	// Username and Password authenticate with AUTH PLAIN; empty Username means
	// no authentication.
	Username string
	Password string
	TLS      TLSMode
	// RootCAs verifies the server's certificate; nil means the system roots.
	// UPANEL_SMTP_CA_FILE pins a private CA for a self-signed server.
	RootCAs *x509.CertPool
	// LocalName is what UPanel calls itself in EHLO; empty means "localhost".
	LocalName string
	// DialTimeout bounds connecting (default 10s); Timeout bounds a whole
	// delivery, from connecting to the server's reply after DATA (default 2m).
	DialTimeout time.Duration
	Timeout     time.Duration
}

// String shows the configuration without the password, for logs and errors.
func (c SMTPConfig) String() string {
	u := url.URL{Scheme: "smtp", Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port))}
	if c.TLS == ImplicitTLS {
		u.Scheme = "smtps"
	} else {
		u.RawQuery = c.TLS.String()
	}
	if c.Username != "" {
		u.User = url.UserPassword(c.Username, "xxxxx")
	}
	return u.String()
}

// Secrets returns the values a log redactor must scrub: the password as given
// and as it appears percent-encoded inside the URL.
func (c SMTPConfig) Secrets() []string {
	if c.Password == "" {
		return nil
	}
	enc := strings.TrimPrefix(url.UserPassword("", c.Password).String(), ":")
	if enc == c.Password {
		return []string{c.Password}
	}
	return []string{c.Password, enc}
}

// ParseSMTPURL reads an SMTP server URL:
//
//	smtp://user:pass@host:587?starttls=required   STARTTLS, then AUTH PLAIN
//	smtps://user:pass@host:465                    TLS from the start
//	smtp://host:25                                no authentication
//
// starttls is required, opportunistic or off; it defaults to required when
// credentials are given and to opportunistic otherwise. The port defaults to
// 465 for smtps, 587 for smtp with credentials and 25 without. Credentials over
// a connection that might not be encrypted are refused, unless the server is
// this machine (127.0.0.1, ::1 or localhost), where nothing crosses a network.
// Errors never repeat the URL, which holds the password.
func ParseSMTPURL(raw string) (SMTPConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL, password and all
		}
		return SMTPConfig{}, fmt.Errorf("not a valid URL: %v", err)
	}
	var c SMTPConfig
	switch u.Scheme {
	case "smtp":
	case "smtps":
		c.TLS = ImplicitTLS
	default:
		return SMTPConfig{}, errors.New("the scheme must be smtp:// or smtps://")
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return SMTPConfig{}, errors.New("want smtp://[user:password@]host[:port][?starttls=...], with no path or fragment")
	}
	c.Host = u.Hostname()
	if c.Host == "" {
		return SMTPConfig{}, errors.New("the URL has no host")
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
		if c.Username == "" || c.Password == "" {
			return SMTPConfig{}, errors.New("credentials need both a user name and a password")
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return SMTPConfig{}, errors.New("the query is not valid")
	}
	for k := range q {
		if k != "starttls" {
			return SMTPConfig{}, fmt.Errorf("unknown parameter %q (the only one is starttls)", k)
		}
	}
	if q.Has("starttls") {
		if c.TLS == ImplicitTLS {
			return SMTPConfig{}, errors.New("smtps:// is TLS from the start; starttls applies to smtp:// only")
		}
		switch q.Get("starttls") {
		case "required":
			c.TLS = StartTLSRequired
		case "opportunistic":
			c.TLS = StartTLSOpportunistic
		case "off":
			c.TLS = NoTLS
		default:
			return SMTPConfig{}, fmt.Errorf("starttls=%q: want required, opportunistic or off", q.Get("starttls"))
		}
	} else if c.TLS != ImplicitTLS && c.Username == "" {
		c.TLS = StartTLSOpportunistic
	}
	switch p := u.Port(); {
	case p != "":
		c.Port, err = strconv.Atoi(p)
		if err != nil || c.Port < 1 || c.Port > 65535 {
			return SMTPConfig{}, fmt.Errorf("port %q: want 1-65535", p)
		}
	case c.TLS == ImplicitTLS:
		c.Port = 465
	case c.Username != "":
		c.Port = 587
	default:
		c.Port = 25
	}
	if c.Username != "" && c.TLS != ImplicitTLS && c.TLS != StartTLSRequired && !isLoopback(c.Host) {
		return SMTPConfig{}, fmt.Errorf("credentials with %s could cross the network in plain text: use smtps:// or starttls=required (only 127.0.0.1 or localhost may take them without TLS)", c.TLS)
	}
	return c, nil
}

// isLoopback is the same rule net/smtp's PlainAuth applies before it sends a
// password over a connection without TLS.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && (ip == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || ip == netip.IPv6Loopback())
}

// LoadCAFile reads PEM certificates to verify the SMTP server with instead of
// the system roots.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("SMTP CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("SMTP CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Sender delivers messages to one SMTP server, a new connection per message:
// UPanel sends little mail, and a fresh connection needs no keep-alive or
// reconnect logic.
type Sender struct {
	cfg  SMTPConfig
	from mail.Address
}

// NewSender returns a sender for the server, with from as the sender of every
// message (header From and envelope MAIL FROM).
func NewSender(cfg SMTPConfig, from mail.Address) (*Sender, error) {
	if err := checkAddress(from); err != nil {
		return nil, fmt.Errorf("mail from: %w", err)
	}
	if cfg.Host == "" || cfg.Port < 1 || cfg.Port > 65535 {
		return nil, errors.New("mail: SMTP host and port are required")
	}
	if cfg.LocalName == "" {
		cfg.LocalName = "localhost"
	}
	if hasControl(cfg.LocalName) {
		return nil, fmt.Errorf("mail: EHLO name: %w", ErrHeaderInjection)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	return &Sender{cfg: cfg, from: from}, nil
}

// From is the address messages are sent from.
func (s *Sender) From() mail.Address { return s.from }

// Server describes the SMTP server, without the password.
func (s *Sender) Server() string { return s.cfg.String() }

// IsPermanent reports whether err is an SMTP 5xx reply: the server refused, and
// sending the same message again will not change its mind. 4xx replies and
// network errors are worth retrying.
func IsPermanent(err error) bool {
	var te *textproto.Error
	return errors.As(err, &te) && te.Code >= 500 && te.Code <= 599
}

// Send delivers raw (a message from Message.Bytes) to one recipient. It
// returns nil only once the server has accepted the message with its reply to
// the end of DATA; that is the moment the caller may record it as sent. ctx
// cancels the delivery at any point, and the configured timeouts bound it.
func (s *Sender) Send(ctx context.Context, to string, raw []byte) (err error) {
	if hasControl(to) {
		return ErrHeaderInjection
	}
	c := s.cfg
	addr := net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()

	d := net.Dialer{Timeout: c.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp: connect to %s: %w", addr, err)
	}
	defer conn.Close()
	// net/smtp has no contexts: a deadline bounds every read and write, and
	// cancelling ctx moves it to the past, which fails the blocked call at once.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() {
		switch {
		case err == nil:
		case ctx.Err() != nil:
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The connection's deadline is the context's, but its timer can
			// fire a moment before the context's own: it is the same timeout.
			err = fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
		}
	}()

	tlsConfig := &tls.Config{ServerName: c.Host, RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12}
	if c.TLS == ImplicitTLS {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("smtp: TLS with %s: %w", addr, err)
		}
		conn = tc
	}
	client, err := smtp.NewClient(conn, c.Host)
	if err != nil {
		return fmt.Errorf("smtp: greeting from %s: %w", addr, err)
	}
	defer client.Close()
	if err := client.Hello(c.LocalName); err != nil {
		return fmt.Errorf("smtp: EHLO: %w", err)
	}
	if c.TLS == StartTLSRequired || c.TLS == StartTLSOpportunistic {
		if ok, _ := client.Extension("STARTTLS"); ok {
			if err := client.StartTLS(tlsConfig); err != nil {
				return fmt.Errorf("smtp: STARTTLS with %s: %w", addr, err)
			}
		} else if c.TLS == StartTLSRequired {
			return fmt.Errorf("smtp: %s does not offer STARTTLS, and starttls=required", addr)
		}
	}
	if c.Username != "" {
		if ok, _ := client.Extension("AUTH"); !ok {
			return fmt.Errorf("smtp: %s does not offer AUTH, but credentials are configured", addr)
		}
		// PlainAuth itself refuses to send the password without TLS unless the
		// server is this machine: a second guard behind ParseSMTPURL's.
		if err := client.Auth(smtp.PlainAuth("", c.Username, c.Password, c.Host)); err != nil {
			return fmt.Errorf("smtp: AUTH as %s: %w", c.Username, err)
		}
	}
	if err := client.Mail(s.from.Address); err != nil {
		return fmt.Errorf("smtp: MAIL FROM: %w", err)
	}
	if err := client.Rcpt(to); err != nil {
		return fmt.Errorf("smtp: RCPT TO: %w", err)
	}
	w, err := client.Data()
	if err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		w.Close()
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	// Close sends the final "." and reads the server's reply: nil here, and
	// only here, means the server took responsibility for the message.
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: message not accepted: %w", err)
	}
	// The message is accepted; a failing QUIT changes nothing about that.
	client.Quit()
	return nil
}
