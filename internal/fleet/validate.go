// Package fleet is the servers UPanel manages: adding them, onboarding them
// (bootstrap command or a one-time root login), provisioning and hardening
// them over SSH with pinned host keys, and the link with their agents
// (heartbeats, metrics, audits, status).
package fleet

import (
	"net/netip"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"upanel/internal/apperr"
)

// ServerInput is what a user gives to add or edit a server.
type ServerInput struct {
	Name      string `json:"name"`
	Host      string `json:"host"`
	Port      int    `json:"port"`
	Username  string `json:"username"`
	AgentPort int    `json:"agent_port"`
}

var (
	hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	userRe    = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
)

// Normalize fills defaults and checks every field, so that nothing a user
// types reaches SSH, a script or a command line unless it matches a strict
// pattern.
func (in ServerInput) Normalize() (ServerInput, error) {
	in.Name = strings.TrimSpace(in.Name)
	in.Host = strings.ToLower(strings.TrimSpace(in.Host))
	in.Username = strings.TrimSpace(in.Username)
	if in.Port == 0 {
		in.Port = 22
	}
	if in.Username == "" {
		in.Username = "upanel"
	}
	if in.AgentPort == 0 {
		in.AgentPort = 8443
	}
	switch {
	case in.Name == "" || utf8.RuneCountInString(in.Name) > 100 || !utf8.ValidString(in.Name) || strings.IndexFunc(in.Name, unicode.IsControl) >= 0:
		return in, apperr.New(apperr.Invalid, "the name must be 1 to 100 printable characters")
	case !ValidHost(in.Host):
		return in, apperr.New(apperr.Invalid, "the host must be a DNS name (like web-1.example.com) or an IP address")
	case in.Port < 1 || in.Port > 65535:
		return in, apperr.New(apperr.Invalid, "the SSH port must be 1-65535")
	case in.AgentPort < 1 || in.AgentPort > 65535 || in.AgentPort == in.Port:
		return in, apperr.New(apperr.Invalid, "the agent port must be 1-65535 and differ from the SSH port")
	case !userRe.MatchString(in.Username) || in.Username == "root":
		return in, apperr.New(apperr.Invalid, "the username must be a Linux user name (lower-case letters, digits, - and _) other than root")
	}
	return in, nil
}

// ValidHost accepts an IP address or an RFC 1123 host name.
func ValidHost(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == "" && !a.IsUnspecified() && !a.IsMulticast()
	}
	if h == "" || len(h) > 253 || strings.HasSuffix(h, ".") {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !hostLabel.MatchString(l) {
			return false
		}
	}
	// A host name of digits and dots only would be a mangled IP address.
	return strings.Trim(h, "0123456789.") != ""
}
