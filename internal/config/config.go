// Package config is UPanel's typed configuration: defaults, UPANEL_* environment
// variables, flags on top, and Validate for the rules that span fields. It is
// loaded once in main and passed down, never read from globals.
package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	netmail "net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"upanel/internal/mail"
	"upanel/internal/secret"
	"upanel/internal/store"
)

// Config is everything the panel is configured with.
type Config struct {
	Addr        string   // UPANEL_ADDR, --addr
	DataDir     string   // UPANEL_DATA_DIR, --data-dir
	DatabaseURL string   // UPANEL_DATABASE_URL, --database-url; default sqlite in DataDir
	URL         *url.URL // UPANEL_URL, --url: the public base URL links are built from

	AppKey          string // UPANEL_APP_KEY
	AppPreviousKeys string // UPANEL_APP_PREVIOUS_KEYS
	AppKeyFile      string // UPANEL_APP_KEY_FILE

	LogLevel  slog.Level // UPANEL_LOG_LEVEL: debug, info, warn, error
	LogFormat string     // UPANEL_LOG_FORMAT: auto, json, text

	JobWorkers      int           // UPANEL_JOB_WORKERS
	JobLease        time.Duration // UPANEL_JOB_LEASE
	ShutdownTimeout time.Duration // UPANEL_SHUTDOWN_TIMEOUT

	SessionIdleTimeout     time.Duration // UPANEL_SESSION_IDLE_TIMEOUT
	SessionAbsoluteTimeout time.Duration // UPANEL_SESSION_ABSOLUTE_TIMEOUT

	// AgentDir holds the agent binaries (UPANEL_AGENT_DIR; default next to
	// the panel's executable), upanel-agent-linux-amd64 and -arm64.
	AgentDir string
	// AgentInterval is how often agents report (UPANEL_AGENT_INTERVAL, 10s);
	// a server is offline after three missed intervals.
	AgentInterval time.Duration
	// NotifySettle is how long a user's notifications must be quiet before
	// they are mailed, so a burst makes one digest (UPANEL_NOTIFY_SETTLE, 20s).
	NotifySettle time.Duration
	// WebhookAllowPrivate (UPANEL_WEBHOOK_ALLOW_PRIVATE, false) lets outgoing
	// webhooks use http and reach loopback, private and link-local
	// addresses. Off, those are refused, by URL and after DNS resolution.
	WebhookAllowPrivate bool

	// TrustedProxies (UPANEL_TRUSTED_PROXIES, comma-separated addresses or
	// CIDRs) are the reverse proxies in front of the panel whose
	// X-Forwarded-For is believed. Empty: the peer address is the client.
	TrustedProxies []netip.Prefix

	// SMTP is the outgoing mail server, from UPANEL_SMTP_URL or the file
	// UPANEL_SMTP_URL_FILE names; nil when neither is set, and then no mail can
	// be sent. It holds the SMTP password: register SMTP.Secrets() with the
	// log redactor. Finish loads UPANEL_SMTP_CA_FILE into SMTP.RootCAs and sets
	// SMTP.LocalName from URL.
	SMTP       *mail.SMTPConfig
	SMTPCAFile string // UPANEL_SMTP_CA_FILE: PEM CA to verify a self-signed SMTP server with
	// MailFrom is the sender of every mail (UPANEL_MAIL_FROM); Finish defaults
	// it to "UPanel <upanel@HOST>" with HOST from URL.
	MailFrom *netmail.Address
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		Addr:                   "127.0.0.1:8080",
		DataDir:                "./data",
		LogLevel:               slog.LevelInfo,
		LogFormat:              "auto",
		JobWorkers:             4,
		JobLease:               30 * time.Second,
		ShutdownTimeout:        20 * time.Second,
		SessionIdleTimeout:     2 * time.Hour,
		SessionAbsoluteTimeout: 7 * 24 * time.Hour,
		AgentInterval:          10 * time.Second,
		NotifySettle:           20 * time.Second,
	}
}

// FromEnv applies UPANEL_* variables over the defaults. A malformed value is an
// error naming the variable.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Default()
	var errs []error
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	str("UPANEL_ADDR", &c.Addr)
	str("UPANEL_DATA_DIR", &c.DataDir)
	str("UPANEL_APP_KEY", &c.AppKey)
	str("UPANEL_APP_PREVIOUS_KEYS", &c.AppPreviousKeys)
	str("UPANEL_APP_KEY_FILE", &c.AppKeyFile)
	str("UPANEL_LOG_FORMAT", &c.LogFormat)
	if v := getenv("UPANEL_URL"); v != "" {
		u, err := ParsePublicURL(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("UPANEL_URL: %w", err))
		}
		c.URL = u
	}
	if v := getenv("UPANEL_LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("UPANEL_LOG_LEVEL: %q is not one of debug, info, warn, error", v))
		}
	}
	if v := getenv("UPANEL_JOB_WORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("UPANEL_JOB_WORKERS: %q is not a whole number", v))
		}
		c.JobWorkers = n
	}
	dur := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration such as 30s or 2h", name, v))
			}
			*dst = d
		}
	}
	if v := getenv("UPANEL_TRUSTED_PROXIES"); v != "" {
		ps, err := ParsePrefixes(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("UPANEL_TRUSTED_PROXIES: %w", err))
		}
		c.TrustedProxies = ps
	}
	str("UPANEL_AGENT_DIR", &c.AgentDir)
	dur("UPANEL_AGENT_INTERVAL", &c.AgentInterval)
	dur("UPANEL_NOTIFY_SETTLE", &c.NotifySettle)
	if v := getenv("UPANEL_WEBHOOK_ALLOW_PRIVATE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("UPANEL_WEBHOOK_ALLOW_PRIVATE: %q is not true or false", v))
		}
		c.WebhookAllowPrivate = b
	}
	dur("UPANEL_JOB_LEASE", &c.JobLease)
	dur("UPANEL_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	dur("UPANEL_SESSION_IDLE_TIMEOUT", &c.SessionIdleTimeout)
	dur("UPANEL_SESSION_ABSOLUTE_TIMEOUT", &c.SessionAbsoluteTimeout)

	if v, _, err := secretVar(getenv, "UPANEL_DATABASE_URL"); err != nil {
		errs = append(errs, err)
	} else if v != "" {
		c.DatabaseURL = v
	}
	smtpURL, smtpVar, err := secretVar(getenv, "UPANEL_SMTP_URL")
	if err != nil {
		errs = append(errs, err)
	}
	if smtpURL != "" {
		// ParseSMTPURL's errors never quote the URL, which holds the password.
		sc, err := mail.ParseSMTPURL(smtpURL)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", smtpVar, err))
		} else {
			c.SMTP = &sc
		}
	}
	str("UPANEL_SMTP_CA_FILE", &c.SMTPCAFile)
	if v := getenv("UPANEL_MAIL_FROM"); v != "" {
		a, err := mail.ParseAddress(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("UPANEL_MAIL_FROM: want an address such as \"UPanel <upanel@example.com>\": %w", err))
		}
		c.MailFrom = a
	}
	return c, errors.Join(errs...)
}

// secretVar reads a setting that may hold a password from NAME or from the
// file NAME_FILE names (Docker and systemd secrets), and says which it used.
func secretVar(getenv func(string) string, name string) (value, from string, err error) {
	value, from = getenv(name), name
	file := getenv(name + "_FILE")
	if file == "" {
		return value, from, nil
	}
	from = name + "_FILE"
	if value != "" {
		return "", from, fmt.Errorf("set %s or %s_FILE, not both", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", from, fmt.Errorf("%s: %w", from, err)
	}
	if value = strings.TrimSpace(string(b)); value == "" {
		return "", from, fmt.Errorf("%s: %s is empty", from, file)
	}
	return value, from, nil
}

// StorageFlags binds the flags every database-touching command takes.
func (c *Config) StorageFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "data directory: SQLite database and app key (env UPANEL_DATA_DIR)")
	fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "sqlite:PATH or postgres://... (env UPANEL_DATABASE_URL; default SQLite in the data dir)")
}

// ServeFlags binds the flags of serve.
func (c *Config) ServeFlags(fs *flag.FlagSet) {
	c.StorageFlags(fs)
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address host:port (env UPANEL_ADDR)")
	fs.Func("url", "public base URL, e.g. https://panel.example.com (env UPANEL_URL; default http://ADDR)", func(v string) error {
		u, err := ParsePublicURL(v)
		if err != nil {
			return err
		}
		c.URL = u
		return nil
	})
}

// Finish fills in the defaults that depend on other fields and validates.
func (c *Config) Finish() error {
	if c.DataDir == "" {
		return errors.New("the data dir must not be empty")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	c.DataDir = abs
	if c.DatabaseURL == "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "upanel.db")
	}
	if c.URL == nil && c.Addr != "" {
		host, port, err := net.SplitHostPort(c.Addr)
		if err == nil {
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			c.URL = &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}
		}
	}
	var errs []error
	if c.URL != nil {
		domain := mailDomain(c.URL.Hostname())
		if c.MailFrom == nil {
			c.MailFrom = &netmail.Address{Name: "UPanel", Address: "upanel@" + domain}
		}
		if c.SMTP != nil && c.SMTP.LocalName == "" {
			c.SMTP.LocalName = domain
		}
	}
	if c.SMTP != nil && c.SMTPCAFile != "" {
		pool, err := mail.LoadCAFile(c.SMTPCAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("UPANEL_SMTP_CA_FILE: %w", err))
		}
		c.SMTP.RootCAs = pool
	}
	return errors.Join(append(errs, c.Validate())...)
}

// mailDomain turns the host of UPANEL_URL into the domain of the default
// sender address and of EHLO: a name as it is, an IP address as a domain
// literal ("[192.0.2.1]", "[IPv6:2001:db8::1]", RFC 5321 4.1.3).
func mailDomain(host string) string {
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return host
	case ip.Is4() || ip.Is4In6():
		return "[" + ip.Unmap().String() + "]"
	default:
		return "[IPv6:" + ip.WithZone("").String() + "]"
	}
}

// Validate checks every field and the rules between them.
func (c *Config) Validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: want host:port, e.g. 127.0.0.1:8080", c.Addr))
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		errs = append(errs, fmt.Errorf("addr %q: port must be 0-65535", c.Addr))
	}
	switch {
	case strings.HasPrefix(c.DatabaseURL, "postgres://"), strings.HasPrefix(c.DatabaseURL, "postgresql://"):
		if _, err := url.Parse(c.DatabaseURL); err != nil {
			errs = append(errs, errors.New("database url: not a valid postgres:// URL"))
		}
	case store.SQLitePath(c.DatabaseURL) != "" && !strings.ContainsAny(store.SQLitePath(c.DatabaseURL), "?#"):
	default:
		errs = append(errs, errors.New("database url: use sqlite:/path/to/upanel.db or postgres://user@host/db"))
	}
	if c.LogFormat != "auto" && c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("log format %q: want auto, json or text", c.LogFormat))
	}
	if c.JobWorkers < 1 || c.JobWorkers > 64 {
		errs = append(errs, fmt.Errorf("job workers %d: want 1-64", c.JobWorkers))
	}
	if c.JobLease < 3*time.Second {
		errs = append(errs, fmt.Errorf("job lease %s: want at least 3s", c.JobLease))
	}
	if c.AgentInterval < time.Second || c.AgentInterval > time.Hour {
		errs = append(errs, fmt.Errorf("agent interval %s: want 1s to 1h", c.AgentInterval))
	}
	if c.NotifySettle < time.Second || c.NotifySettle > 10*time.Minute {
		errs = append(errs, fmt.Errorf("notification settle time %s: want 1s to 10m", c.NotifySettle))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown timeout must be positive"))
	}
	if c.SessionIdleTimeout < time.Minute || c.SessionAbsoluteTimeout < c.SessionIdleTimeout {
		errs = append(errs, errors.New("session timeouts: idle must be at least 1m and no longer than absolute"))
	}
	if c.AppKey != "" && c.AppKeyFile != "" {
		errs = append(errs, errors.New("set UPANEL_APP_KEY or UPANEL_APP_KEY_FILE, not both"))
	}
	if c.AppKey == "" && c.AppPreviousKeys != "" {
		errs = append(errs, errors.New("UPANEL_APP_PREVIOUS_KEYS needs UPANEL_APP_KEY; a key file lists previous keys itself"))
	}
	if c.SMTPCAFile != "" && c.SMTP == nil {
		errs = append(errs, errors.New("UPANEL_SMTP_CA_FILE needs UPANEL_SMTP_URL"))
	}
	if c.MailFrom != nil {
		if _, err := mail.ParseAddress(c.MailFrom.String()); err != nil {
			errs = append(errs, fmt.Errorf("mail from: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ParsePublicURL accepts an absolute http(s) URL with a host and nothing a base
// URL should not carry (credentials, query, fragment).
func ParsePublicURL(v string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(v, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q must be an absolute http:// or https:// URL", v)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("%q must not carry credentials, a query or a fragment", v)
	}
	return u, nil
}

// KeySource says where the app keys come from.
func (c *Config) KeySource() secret.Source {
	switch {
	case c.AppKey != "":
		return secret.Source{Key: c.AppKey, PreviousKeys: c.AppPreviousKeys}
	case c.AppKeyFile != "":
		return secret.Source{File: c.AppKeyFile}
	default:
		return secret.Source{File: filepath.Join(c.DataDir, "app.key"), Create: true}
	}
}

// EnsureDataDir creates the data dir with owner-only access.
func (c *Config) EnsureDataDir() error {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return nil
}

// ParsePrefixes reads comma-separated IP addresses and CIDR prefixes.
func ParsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
