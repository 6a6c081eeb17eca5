package fleet

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"text/template"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/store"
)

func newBootstrapToken() (raw, hash string) { return auth.NewSecret("ubt_") }

// bootstrapCommand is the one line a user runs as root on the new server.
// The token is URL-safe base64, so it needs no quoting beyond the single
// quotes around the URL.
func (s *Service) bootstrapCommand(token string) string {
	return "curl -fsSL '" + s.link("/bootstrap/"+token) + "' | bash"
}

func (s *Service) link(path string) string {
	u := *s.BaseURL
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = ""
	return u.String()
}

// NewBootstrapCommand replaces a server's bootstrap token (the old command
// stops working) and returns the new command.
func (s *Service) NewBootstrapCommand(ctx context.Context, p *auth.Principal, id string, m auth.Meta) (string, error) {
	token, hash := newBootstrapToken()
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetBootstrapToken(ctx, id, hash, tx.Now().Add(bootstrapTTL)); err != nil {
			return err
		}
		return s.activity(ctx, tx, p, m, "updated", id, "new bootstrap command issued", nil)
	})
	if err != nil {
		return "", err
	}
	return s.bootstrapCommand(token), nil
}

// onboardScripts: "user" creates the user UPanel signs in as, with its public
// key and sudo; "bootstrap" is what the bootstrap command runs as root on the
// server: "user", then a report of the SSH host keys to the panel, which pins
// them. The values come from the panel and match strict patterns; they are
// still quoted.
var onboardScripts = template.Must(template.New("").Funcs(template.FuncMap{"q": shellQuote}).Parse(`
{{define "bootstrap"}}#!/bin/bash
# UPanel bootstrap: creates the user UPanel signs in as, then reports this
# server's SSH host keys to the panel, which pins them.
{{template "user" .}}REPORT_URL={{q .ReportURL}}
cat /etc/ssh/ssh_host_*_key.pub | curl -fsS --data-binary @- -H 'Content-Type: text/plain' "$REPORT_URL" >/dev/null
echo "upanel: this server is ready; the panel now provisions it"
{{end}}
{{define "user"}}set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "upanel: run this as root" >&2; exit 1; fi
USERNAME={{q .Username}}
PUBKEY={{q .PublicKey}}
if ! id -u "$USERNAME" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$USERNAME"
fi
HOME_DIR=$(getent passwd "$USERNAME" | cut -d: -f6)
install -d -m 700 -o "$USERNAME" -g "$USERNAME" "$HOME_DIR/.ssh"
touch "$HOME_DIR/.ssh/authorized_keys"
grep -qxF "$PUBKEY" "$HOME_DIR/.ssh/authorized_keys" || printf '%s\n' "$PUBKEY" >> "$HOME_DIR/.ssh/authorized_keys"
chown "$USERNAME:$USERNAME" "$HOME_DIR/.ssh/authorized_keys"
chmod 600 "$HOME_DIR/.ssh/authorized_keys"
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$USERNAME" > /etc/sudoers.d/90-upanel.tmp
chmod 440 /etc/sudoers.d/90-upanel.tmp
visudo -cf /etc/sudoers.d/90-upanel.tmp >/dev/null
mv /etc/sudoers.d/90-upanel.tmp /etc/sudoers.d/90-upanel
{{end}}`))

// shellQuote quotes s for POSIX sh. The values it quotes are made by the panel
// and already match strict patterns; quoting is the second line of defence.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// BootstrapScript returns the script a bootstrap command downloads.
func (s *Service) BootstrapScript(ctx context.Context, token string) (string, error) {
	if len(token) > 100 {
		return "", errBootstrap
	}
	srv, err := s.DB.ServerByBootstrapToken(ctx, auth.HashToken(token))
	if err != nil {
		return "", errBootstrap
	}
	var b bytes.Buffer
	err = onboardScripts.ExecuteTemplate(&b, "bootstrap", map[string]string{"Username": srv.Username, "PublicKey": srv.SSHPublicKey,
		"ReportURL": s.link("/bootstrap/" + url.PathEscape(token) + "/host-keys")})
	return b.String(), err
}

var errBootstrap = apperr.New(apperr.NotFound, "this bootstrap command is invalid, used or expired: get a new one from the server's page")

// ReportHostKeys pins the host keys a bootstrap script reports, ends its
// token and starts provisioning. Keys reach the panel from the server itself,
// right after the user ran the command as root there, so there is no window
// in which a first SSH contact has to be trusted blindly.
func (s *Service) ReportHostKeys(ctx context.Context, token, body string, m auth.Meta) error {
	if len(token) > 100 {
		return errBootstrap
	}
	keys, err := parseHostKeys(body)
	if err != nil {
		return apperr.Wrap(err, apperr.Invalid, "the report is not a list of SSH host keys")
	}
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		id, ok, err := tx.ConsumeBootstrap(ctx, auth.HashToken(token), keys)
		if err != nil {
			return err
		}
		if !ok {
			return errBootstrap
		}
		if _, err := s.enqueue(ctx, tx, ProvisionKind, id); err != nil {
			return err
		}
		return s.activity(ctx, tx, nil, m, "updated", id, "bootstrap ran: host keys pinned, provisioning queued",
			audit.Diff(nil, map[string]any{"ssh_host_keys": strings.Join(Fingerprints(keys), ", ")}))
	})
	if err == nil {
		s.Wake()
	}
	return err
}
