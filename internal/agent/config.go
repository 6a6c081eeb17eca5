// Package agent is the upanel-agent: a small daemon on every managed server that
// reports inventory, metrics and security audits to the panel and answers the
// panel's calls over mutual TLS. It has no database and no UI, and imports
// nothing of the panel but the wire types.
package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"

	"upanel/internal/wire"
)

// Config is the agent's configuration file, written by the panel at install.
type Config = wire.AgentConfig

var (
	hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)
	ulidRe    = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)
)

// LoadConfig reads and checks the config file, which must be readable only
// by its owner: it holds the agent's token.
func LoadConfig(path string) (*Config, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("agent config %s has mode %04o: it holds the agent token and must be 0600", path, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("agent config %s: %w", path, err)
	}
	return &c, validate(&c)
}

// validate checks every field.
func validate(c *Config) error {
	var errs []error
	if !ulidRe.MatchString(c.ServerID) {
		errs = append(errs, errors.New("server_id must be a ULID"))
	}
	u, err := url.Parse(c.PanelURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		errs = append(errs, errors.New("panel_url must be an absolute http(s) URL"))
	}
	if len(c.Token) < 32 {
		errs = append(errs, errors.New("token is missing or too short"))
	}
	if !hexSHA256.MatchString(c.PanelCertSHA256) {
		errs = append(errs, errors.New("panel_cert_sha256 must be 64 hex digits"))
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, errors.New("listen must be host:port"))
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		errs = append(errs, errors.New("listen port must be 1-65535"))
	}
	if c.CertFile == "" || c.KeyFile == "" || c.StateDir == "" {
		errs = append(errs, errors.New("cert_file, key_file and state_dir are required"))
	}
	if c.IntervalSeconds < 1 || c.IntervalSeconds > 3600 {
		errs = append(errs, errors.New("interval_seconds must be 1-3600"))
	}
	return errors.Join(errs...)
}
