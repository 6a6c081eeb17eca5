package deploy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// CredentialTypes lists the git credential types.
func CredentialTypes() []string { return []string{store.GitSSHKey, store.GitToken, store.GitBasic} }

// CredentialInput is what a user gives to add a git credential. Which secret
// fields count depends on Type:
//
//	ssh_key: Generate (UPanel makes an ed25519 key and shows its public key)
//	         or PrivateKey (pasted, without a passphrase); KnownHosts pins the
//	         git server's host keys and is needed before an ssh repository
//	         can use the credential
//	token:   Token, and an optional Username (the agent uses x-access-token)
//	basic:   Username and Password
//
// A token or basic credential also needs Host, the one https host it may be
// sent to (ValidCredentialHost): a repository on any other host is refused,
// so that nobody can have the secret sent to a server of their choice.
type CredentialInput struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Generate   bool   `json:"generate,omitempty"`
	PrivateKey string `json:"private_key,omitempty"`
	KnownHosts string `json:"known_hosts,omitempty"`
	Host       string `json:"host,omitempty"`
	Username   string `json:"username,omitempty"`
	Token      string `json:"token,omitempty"`
	Password   string `json:"password,omitempty"`
}

// CredentialPatch changes a credential: a nil field keeps its value. Any of
// Generate, PrivateKey, Token, Password or Username replaces the whole
// secret (rotation is replacement), and then the fields of the type are
// required as for a new credential. Changing Host (token and basic) is an
// admin's action: it decides which server receives the secret.
type CredentialPatch struct {
	Name       *string `json:"name,omitempty"`
	KnownHosts *string `json:"known_hosts,omitempty"`
	Host       *string `json:"host,omitempty"`
	Generate   bool    `json:"generate,omitempty"`
	PrivateKey *string `json:"private_key,omitempty"`
	Username   *string `json:"username,omitempty"`
	Token      *string `json:"token,omitempty"`
	Password   *string `json:"password,omitempty"`
}

func (p CredentialPatch) replacesSecret() bool {
	return p.Generate || p.PrivateKey != nil || p.Username != nil || p.Token != nil || p.Password != nil
}

const (
	maxPrivateKey  = 16 << 10
	maxKnownHosts  = 64 << 10
	maxKnownLines  = 50
	maxToken       = 1000
	maxGitUsername = 100
	keyComment     = "upanel-deploy-key"
)

// secretInput is the part of an input that makes the secret.
type secretInput struct {
	Generate                            bool
	PrivateKey, Username, Token, Passwd string
}

// makeSecret checks the secret fields of a credential type and returns the
// secret to seal and, for ssh_key, the public key line.
func makeSecret(typ string, in secretInput) (store.GitSecret, string, error) {
	switch typ {
	case store.GitSSHKey:
		if in.Username != "" || in.Token != "" || in.Passwd != "" {
			return store.GitSecret{}, "", invalid("an ssh_key credential takes a private key (or generate), not a user name, token or password")
		}
		if in.Generate {
			if in.PrivateKey != "" {
				return store.GitSecret{}, "", invalid("either generate a key or paste one, not both")
			}
			return generateKey()
		}
		if strings.TrimSpace(in.PrivateKey) == "" {
			return store.GitSecret{}, "", invalid("paste the private key, or let UPanel generate one")
		}
		return parsePrivateKey(in.PrivateKey)
	case store.GitToken:
		if in.Generate || in.PrivateKey != "" || in.Passwd != "" {
			return store.GitSecret{}, "", invalid("a token credential takes a token and an optional user name")
		}
		if err := validToken(in.Token); err != nil {
			return store.GitSecret{}, "", err
		}
		if in.Username != "" {
			if err := validGitUsername(in.Username); err != nil {
				return store.GitSecret{}, "", err
			}
		}
		return store.GitSecret{Username: in.Username, Secret: in.Token}, "", nil
	case store.GitBasic:
		if in.Generate || in.PrivateKey != "" || in.Token != "" {
			return store.GitSecret{}, "", invalid("a basic credential takes a user name and a password")
		}
		if in.Username == "" {
			return store.GitSecret{}, "", invalid("a basic credential needs a user name")
		}
		if err := validGitUsername(in.Username); err != nil {
			return store.GitSecret{}, "", err
		}
		if err := validPassword(in.Passwd); err != nil {
			return store.GitSecret{}, "", err
		}
		return store.GitSecret{Username: in.Username, Secret: in.Passwd}, "", nil
	}
	return store.GitSecret{}, "", invalid("the credential type must be one of %s", strings.Join(CredentialTypes(), ", "))
}

func validToken(t string) error {
	switch {
	case t == "":
		return invalid("a token credential needs the token")
	case len(t) > maxToken:
		return invalid("the token must be at most %d characters", maxToken)
	case strings.IndexFunc(t, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0:
		return invalid("the token must be printable ASCII without spaces")
	}
	return nil
}

func validGitUsername(u string) error {
	if u == "" || len(u) > maxGitUsername || u[0] == '-' ||
		strings.IndexFunc(u, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == ':' }) >= 0 {
		return invalid("the user name must be at most %d printable ASCII characters, without spaces or ':', not starting with '-'", maxGitUsername)
	}
	return nil
}

func validPassword(p string) error {
	switch {
	case p == "":
		return invalid("a basic credential needs a password")
	case len(p) > maxToken:
		return invalid("the password must be at most %d characters", maxToken)
	case !utf8.ValidString(p) || strings.IndexFunc(p, unicode.IsControl) >= 0:
		return invalid("the password must be text without control characters or line breaks")
	}
	return nil
}

// generateKey makes an ed25519 deploy key.
func generateKey() (store.GitSecret, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return store.GitSecret{}, "", err
	}
	return marshalKey(priv)
}

// parsePrivateKey checks a pasted private key and returns it re-encoded as
// OpenSSH PEM, with its public key.
func parsePrivateKey(text string) (store.GitSecret, string, error) {
	text = strings.TrimSpace(strings.ReplaceAll(text, "\r\n", "\n")) + "\n"
	if len(text) > maxPrivateKey {
		return store.GitSecret{}, "", invalid("the private key is larger than %d bytes", maxPrivateKey)
	}
	k, err := ssh.ParseRawPrivateKey([]byte(text))
	var pme *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pme):
		return store.GitSecret{}, "", invalid("the private key is protected by a passphrase, which nobody could type during a deployment: " +
			"remove it from a copy of the key (ssh-keygen -p -N '' -f COPY) and paste that, or let UPanel generate a key")
	case err != nil:
		return store.GitSecret{}, "", invalid("the private key is not an OpenSSH or PEM private key (it starts with -----BEGIN OPENSSH PRIVATE KEY-----)")
	}
	switch key := k.(type) {
	case *ed25519.PrivateKey, ed25519.PrivateKey, *ecdsa.PrivateKey:
	case *rsa.PrivateKey:
		if key.N.BitLen() < 2048 {
			return store.GitSecret{}, "", invalid("the RSA key has %d bits; use at least 2048, or an ed25519 key", key.N.BitLen())
		}
	default:
		return store.GitSecret{}, "", invalid("the private key must be ed25519, ECDSA or RSA (DSA keys are refused by current git servers)")
	}
	return marshalKey(k)
}

func marshalKey(k any) (store.GitSecret, string, error) {
	block, err := ssh.MarshalPrivateKey(k, keyComment)
	if err != nil {
		return store.GitSecret{}, "", invalid("the private key cannot be stored in OpenSSH format")
	}
	signer, err := ssh.NewSignerFromKey(k)
	if err != nil {
		return store.GitSecret{}, "", invalid("the private key is not usable for SSH")
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + keyComment
	return store.GitSecret{PrivateKey: string(pem.EncodeToMemory(block))}, pub, nil
}

// ValidKnownHosts checks known_hosts text (as ssh-keyscan prints it): every
// line that is not blank or a # comment must be a known_hosts entry. It
// returns the entries, one a line.
func ValidKnownHosts(text string) (string, error) {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	if len(text) > maxKnownHosts {
		return "", invalid("known_hosts is larger than %d bytes", maxKnownHosts)
	}
	var out []string
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !utf8.ValidString(line) || strings.IndexFunc(line, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }) >= 0 {
			return "", invalid("known_hosts line %d has control characters", i+1)
		}
		_, hosts, _, _, rest, err := ssh.ParseKnownHosts([]byte(line))
		if err != nil || len(hosts) == 0 || strings.TrimSpace(string(rest)) != "" {
			return "", invalid("known_hosts line %d is not a known_hosts entry (HOST KEY-TYPE BASE64-KEY, as ssh-keyscan HOST prints)", i+1)
		}
		out = append(out, line)
		if len(out) > maxKnownLines {
			return "", invalid("known_hosts has more than %d entries", maxKnownLines)
		}
	}
	return strings.Join(out, "\n"), nil
}

// KnownHost is a pinned host key as people compare it.
type KnownHost struct {
	Hosts       string // the host patterns ("|1|…" when hashed)
	Type        string
	Fingerprint string // SHA256:…
	Marker      string // "", cert-authority or revoked
}

// KnownHostKeys describes known_hosts text for display.
func KnownHostKeys(text string) []KnownHost {
	var out []KnownHost
	for _, line := range strings.Split(text, "\n") {
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
		if err != nil || key == nil {
			continue
		}
		out = append(out, KnownHost{Hosts: strings.Join(hosts, ","), Type: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), Marker: marker})
	}
	return out
}

// knownHostsCover reports whether known_hosts pins a key for host:port. It
// uses ssh's own matching (hashed names, [host]:port, patterns) through the
// knownhosts package, which reads files: the lines, which hold no secret,
// go to a temporary file for the check.
func knownHostsCover(text, host string, port int) bool {
	if strings.Contains(text, "@cert-authority") {
		return true // a CA signs host keys we cannot list; ssh will tell
	}
	if port == 0 {
		port = 22
	}
	f, err := os.CreateTemp("", "upanel-known-hosts-*")
	if err != nil {
		return true // cannot tell; the agent checks for real
	}
	defer os.Remove(f.Name())
	_, werr := f.WriteString(text + "\n")
	if cerr := f.Close(); werr != nil || cerr != nil {
		return true
	}
	cb, err := knownhosts.New(f.Name())
	if err != nil {
		return true
	}
	addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: port} // only the name is matched below
	hostport := net.JoinHostPort(host, strconv.Itoa(port))
	for _, line := range strings.Split(text, "\n") {
		marker, _, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
		if err != nil || key == nil || marker != "" {
			continue
		}
		if cb(hostport, addr, key) == nil {
			return true
		}
	}
	return false
}

// credentialFit checks that a credential suits a repository: ssh remotes
// need an ssh_key credential whose known_hosts pins the git server; https
// remotes take a token or basic credential bound to the repository's
// host[:port], or none (public). It runs wherever a credential meets a
// repository: a check (Test, TestApp), an app's creation and update, and
// every deployment just before the secret goes to the agent.
func credentialFit(c *store.GitCredential, repo RepoURL) error {
	if repo.Kind == RepoSSH {
		switch {
		case c == nil:
			return invalid("an ssh repository needs an ssh_key git credential (with the git server's host keys), or use its https:// URL")
		case c.Type != store.GitSSHKey:
			return invalid("the git credential %q is a %s credential, which works with https:// URLs; an ssh repository needs an ssh_key credential", c.Name, c.Type)
		case c.KnownHosts == "":
			return invalid("the git credential %q has no known_hosts yet: add the git server's host keys (ssh-keyscan %s) so that its identity is pinned", c.Name, repo.Host)
		case !knownHostsCover(c.KnownHosts, repo.Host, repo.Port):
			return invalid("the known_hosts of the git credential %q has no key for %s: add the output of ssh-keyscan %s", c.Name, repo.Host, repo.Host)
		}
		return nil
	}
	if c == nil {
		return nil
	}
	if c.Type == store.GitSSHKey {
		return invalid("the git credential %q is an SSH key, which works with ssh URLs (git@host:org/repo.git); an https:// URL needs a token or basic credential", c.Name)
	}
	host := repo.HTTPSHost()
	switch {
	case c.Host == "":
		return invalid("the git credential %q is not bound to a host yet (it was added before credentials were): "+
			"an admin must set the host it may be sent to (%s, for this repository) before an https repository can use it", c.Name, host)
	case c.Host != host:
		return invalid("the git credential %q may only be sent to %s, and this repository is on %s: "+
			"use a credential for %s (or none, for a public repository)", c.Name, c.Host, host, host)
	}
	return nil
}

// HTTPSHost is the host an https repository's credentials are sent to,
// written as a credential's host is: lower-cased, with :port when not 443,
// an IPv6 address in brackets. It is "" for other repositories.
func (r RepoURL) HTTPSHost() string {
	if r.Kind != RepoHTTPS {
		return ""
	}
	return joinCredentialHost(r.Host, r.Port)
}

func joinCredentialHost(host string, port int) string {
	host = strings.ToLower(host)
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + a.String() + "]"
	}
	if port != 0 && port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	return host
}

// maxCredentialHost is the size of git_credentials.host.
const maxCredentialHost = 255

// credentialHostForm is how the errors of ValidCredentialHost show a host.
const credentialHostForm = "a host name or IP address with an optional :port, like git.example.com, git.example.com:8443 or 192.0.2.10"

// ValidCredentialHost checks the host a token or basic credential is for,
// and returns it as stored (lower-cased, :443 dropped, an IPv6 address in
// brackets). It takes a host name or IP address with an optional :port, and
// nothing else: no scheme, user name, path, query or spaces. Or it takes the
// https:// URL of a repository on that host (as ValidRepoURL accepts it),
// from which the host is taken. "" stays "".
func ValidCredentialHost(raw string) (string, error) {
	raw = strings.Trim(raw, " ")
	switch {
	case raw == "":
		return "", nil
	case len(raw) > maxRepoURL:
		return "", invalid("the host (or the repository URL it is taken from) must be at most %d characters", maxRepoURL)
	case strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0:
		return "", invalid("the host must not contain spaces, control or non-ASCII characters (write a host name in punycode)")
	}
	if lower := strings.ToLower(raw); strings.HasPrefix(lower, "https://") {
		authority, p, _ := strings.Cut(raw[len("https://"):], "/")
		if p != "" {
			repo, err := ValidRepoURL(raw)
			if err != nil {
				return "", invalid("the host was given as a URL, so it must be the https:// URL of a repository on the git server, "+
					"from which the host is taken, and this one is not valid: %s", apperr.MessageOf(err))
			}
			return checkCredentialHostLength(repo.HTTPSHost())
		}
		if authority == "" || strings.ContainsAny(authority, "@?#") {
			return "", invalid("the host was given as a URL, so it must be the https:// URL of a repository on the git server "+
				"(like https://git.example.com/org/repo.git), from which the host is taken; or give just the host: %s", credentialHostForm)
		}
		raw = authority
	} else if scheme, _, ok := strings.Cut(raw, "://"); ok {
		return "", invalid("the host must be %s, or the https:// URL of a repository on it; a %s:// URL is not accepted "+
			"(token and basic credentials are sent over https only; ssh keys are bound by their known_hosts)", credentialHostForm, scheme)
	}
	switch {
	case strings.Contains(raw, "@"):
		return "", invalid("the host must not contain a user name or password (user@host): put them in the credential; the host is %s", credentialHostForm)
	case strings.ContainsAny(raw, "/\\?#"):
		return "", invalid("the host must be %s, without a path, ?query or #fragment; or give the https:// URL of a repository on it", credentialHostForm)
	}
	host, port, err := credentialHostPort(raw)
	if err != nil {
		return "", err
	}
	return checkCredentialHostLength(joinCredentialHost(host, port))
}

func checkCredentialHostLength(h string) (string, error) {
	if len(h) > maxCredentialHost {
		return "", invalid("the host must be at most %d characters", maxCredentialHost)
	}
	return h, nil
}

// credentialHostPort splits and checks host[:port], [IPv6][:port] or a bare
// IPv6 address.
func credentialHostPort(hp string) (string, int, error) {
	bad := func() (string, int, error) {
		return "", 0, invalid("the host %q is not %s (an IPv6 address in brackets: [2001:db8::1]:8443); or give the https:// URL of a repository on it", hp, credentialHostForm)
	}
	host, portText := hp, ""
	switch {
	case strings.HasPrefix(hp, "["):
		end := strings.Index(hp, "]")
		if end < 0 {
			return bad()
		}
		host, portText = hp[1:end], hp[end+1:]
		if portText != "" {
			if !strings.HasPrefix(portText, ":") || portText == ":" {
				return bad()
			}
			portText = portText[1:]
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return bad()
		}
	case strings.Count(hp, ":") > 1:
		// A bare IPv6 address: it cannot carry a port.
		if a, err := netip.ParseAddr(hp); err != nil || !a.Is6() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return bad()
		}
	default:
		if h, pt, ok := strings.Cut(hp, ":"); ok {
			if pt == "" {
				return bad()
			}
			host, portText = h, pt
		}
		host = strings.ToLower(host)
		if !validHostName(host) && !validIPv4(host) {
			return bad()
		}
	}
	port := 0
	if portText != "" {
		n, err := strconv.Atoi(portText)
		if err != nil || n < 1 || n > 65535 || portText[0] == '0' || portText[0] == '+' || portText[0] == '-' {
			return "", 0, invalid("the host %q has an invalid port (1-65535)", hp)
		}
		port = n
	}
	return host, port, nil
}

// credentialHost checks the host given for a credential of a type: token
// and basic credentials need one; ssh_key credentials take none.
func credentialHost(typ, raw string) (string, error) {
	host, err := ValidCredentialHost(raw)
	if err != nil {
		return "", err
	}
	switch {
	case typ == store.GitSSHKey && host != "":
		return "", invalid("the host belongs to token and basic credentials: an ssh_key credential is bound to its git server by known_hosts")
	case typ != store.GitSSHKey && host == "":
		return "", invalid("a %s credential needs the host of the git server it is for (%s), or the https:// URL of a repository there: "+
			"the secret is sent to that host and no other", typ, credentialHostForm)
	}
	return host, nil
}

// mayChangeCredentialHost reports whether p may change the host of an
// existing credential: admins, and the command line (p nil), which runs
// with the database itself. Anyone else could point a secret they cannot
// read at their own server.
func mayChangeCredentialHost(p *auth.Principal) error {
	if p == nil || p.Role.AtLeast(auth.Admin) {
		return nil
	}
	return apperr.New(apperr.Forbidden, "only an admin can change the host a git credential may be sent to, since it decides which server receives the secret; "+
		"add a new credential for another host instead")
}

func (s *Service) credentialActivity(ctx context.Context, tx *store.Tx, p *auth.Principal, m auth.Meta, action, id, desc string, changes map[string]store.Change) error {
	return s.record(ctx, tx, p, m, action, "GitCredential", id, desc, changes)
}

// record appends to the activity log; p says who (nil: the system).
func (s *Service) record(ctx context.Context, tx *store.Tx, p *auth.Principal, m auth.Meta, action, subjectType, id, desc string, changes map[string]store.Change) error {
	a := store.Activity{Action: action, SubjectType: subjectType, SubjectID: id, Description: desc, Changes: changes, IPAddress: m.IP}
	if p != nil && p.User != nil {
		a.UserID = p.User.ID
	}
	rec := s.Recorder
	if rec == nil {
		rec = audit.New(s.DB)
	}
	_, err := rec.Activity(ctx, tx, a)
	return err
}

// CreateCredential adds a git credential. Its secret is write-only from now
// on; the public key of an ssh_key credential is in the answer, to add as a
// deploy key.
func (s *Service) CreateCredential(ctx context.Context, p *auth.Principal, in CredentialInput, m auth.Meta) (*store.GitCredential, error) {
	name, err := ValidAppName(in.Name)
	if err != nil {
		return nil, err
	}
	typ := strings.TrimSpace(in.Type)
	sec, pub, err := makeSecret(typ, secretInput{Generate: in.Generate, PrivateKey: in.PrivateKey, Username: in.Username, Token: in.Token, Passwd: in.Password})
	if err != nil {
		return nil, err
	}
	kh, err := ValidKnownHosts(in.KnownHosts)
	if err != nil {
		return nil, err
	}
	if kh != "" && typ != store.GitSSHKey {
		return nil, invalid("known_hosts belongs to ssh_key credentials")
	}
	host, err := credentialHost(typ, in.Host)
	if err != nil {
		return nil, err
	}
	var c *store.GitCredential
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if c, err = tx.CreateGitCredential(ctx, store.NewGitCredential{Name: name, Type: typ, Secret: sec, PublicKey: pub, KnownHosts: kh, Host: host}); err != nil {
			return err
		}
		desc := "git credential " + name + " (" + typ + ") added"
		if host != "" {
			desc += " for " + host
		}
		return s.credentialActivity(ctx, tx, p, m, "created", c.ID, desc,
			audit.Diff(nil, map[string]any{"name": name, "type": typ, "public_key": pub, "known_hosts": len(KnownHostKeys(kh)), "host": host, "credentials": "new"}, "credentials"))
	})
	return c, err
}

// UpdateCredential renames a credential, replaces its known_hosts, replaces
// its secret, or (admins only) changes the host a token or basic credential
// may be sent to; a host change is recorded with the old and new host.
func (s *Service) UpdateCredential(ctx context.Context, p *auth.Principal, id string, in CredentialPatch, m auth.Meta) (*store.GitCredential, error) {
	var c *store.GitCredential
	err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		old, err := tx.GetGitCredential(ctx, id)
		if err != nil {
			return err
		}
		name, kh := old.Name, old.KnownHosts
		if in.Name != nil {
			if name, err = ValidAppName(*in.Name); err != nil {
				return err
			}
		}
		if in.KnownHosts != nil {
			if kh, err = ValidKnownHosts(*in.KnownHosts); err != nil {
				return err
			}
			if kh != "" && old.Type != store.GitSSHKey {
				return invalid("known_hosts belongs to ssh_key credentials")
			}
		}
		host := old.Host
		if in.Host != nil && (old.Type != store.GitSSHKey || strings.TrimSpace(*in.Host) != "") {
			if host, err = credentialHost(old.Type, *in.Host); err != nil {
				return err
			}
			if host != old.Host {
				if err := mayChangeCredentialHost(p); err != nil {
					return err
				}
				if err := tx.SetGitCredentialHost(ctx, id, host); err != nil {
					return err
				}
			}
		}
		if err := tx.UpdateGitCredential(ctx, id, name, kh); err != nil {
			return err
		}
		pub := old.PublicKey
		if in.replacesSecret() {
			si := secretInput{Generate: in.Generate}
			for _, f := range []struct {
				dst *string
				src *string
			}{{&si.PrivateKey, in.PrivateKey}, {&si.Username, in.Username}, {&si.Token, in.Token}, {&si.Passwd, in.Password}} {
				if f.src != nil {
					*f.dst = *f.src
				}
			}
			var sec store.GitSecret
			if sec, pub, err = makeSecret(old.Type, si); err != nil {
				return err
			}
			if err := tx.SetGitCredentialSecret(ctx, id, sec, pub); err != nil {
				return err
			}
		}
		// Apps must stay usable: their git server stays pinned, and an https
		// app's host stays the credential's.
		if kh != old.KnownHosts || host != old.Host {
			if err := s.checkCredentialApps(ctx, tx, id); err != nil {
				return err
			}
		}
		if c, err = tx.GetGitCredential(ctx, id); err != nil {
			return err
		}
		before := map[string]any{"name": old.Name, "known_hosts": fingerprintList(old.KnownHosts), "public_key": old.PublicKey, "host": old.Host}
		after := map[string]any{"name": name, "known_hosts": fingerprintList(kh), "public_key": pub, "host": host}
		if in.replacesSecret() {
			before["credentials"], after["credentials"] = "old", "new"
		}
		changes := audit.Diff(before, after, "credentials")
		if len(changes) == 0 {
			return nil
		}
		desc := "git credential " + name + " updated"
		if in.replacesSecret() {
			desc = "git credential " + name + ": secret replaced"
		}
		if host != old.Host {
			from := old.Host
			if from == "" {
				from = "no host"
			}
			desc += "; the host it may be sent to changed from " + from + " to " + host
		}
		return s.credentialActivity(ctx, tx, p, m, "updated", id, desc, changes)
	})
	return c, err
}

func fingerprintList(kh string) []string {
	out := []string{}
	for _, k := range KnownHostKeys(kh) {
		out = append(out, k.Type+" "+k.Fingerprint)
	}
	return out
}

// checkCredentialApps checks that every app using a credential still fits it.
func (s *Service) checkCredentialApps(ctx context.Context, tx *store.Tx, credID string) error {
	c, err := tx.GetGitCredential(ctx, credID)
	if err != nil {
		return err
	}
	if c.Apps == 0 {
		return nil
	}
	apps, err := s.DB.ListApps(ctx, "")
	if err != nil {
		return err
	}
	for _, a := range apps {
		if a.GitCredentialsID != credID {
			continue
		}
		repo, err := ValidRepoURL(a.GitRepository)
		if err != nil {
			continue
		}
		if err := credentialFit(c, repo); err != nil {
			return apperr.New(apperr.Conflict, "the app %s uses this credential: %s", a.Name, apperr.MessageOf(err))
		}
	}
	return nil
}

// DeleteCredential deletes a credential no app uses.
func (s *Service) DeleteCredential(ctx context.Context, p *auth.Principal, id string, m auth.Meta) error {
	return s.DB.InTx(ctx, func(tx *store.Tx) error {
		c, err := tx.GetGitCredential(ctx, id)
		if err != nil {
			return err
		}
		users, err := tx.GitCredentialApps(ctx, id)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return apperr.New(apperr.Conflict, "the git credential %s is used by %s: give them another credential first", c.Name, strings.Join(users, ", "))
		}
		if err := tx.DeleteGitCredential(ctx, id); err != nil {
			return err
		}
		return s.credentialActivity(ctx, tx, p, m, "deleted", id, "git credential "+c.Name+" deleted",
			audit.Diff(map[string]any{"name": c.Name, "type": c.Type}, nil))
	})
}

// gitSource builds what the agent needs to reach a repository with a
// credential (credID "" for none), and the secret values to mask in
// anything that comes back.
func (s *Service) gitSource(ctx context.Context, credID string, repo RepoURL) (wire.GitSource, []string, error) {
	src := wire.GitSource{URL: repo.URL}
	var c *store.GitCredential
	if credID != "" {
		var err error
		if c, err = s.DB.GetGitCredential(ctx, credID); err != nil {
			if apperr.Is(err, apperr.NotFound) {
				return src, nil, invalid("the git credential does not exist")
			}
			return src, nil, err
		}
	}
	if err := credentialFit(c, repo); err != nil {
		return src, nil, err
	}
	if c == nil {
		return src, nil, nil
	}
	sec, err := s.DB.GitCredentialSecret(ctx, c.ID)
	if err != nil {
		return src, nil, err
	}
	src.CredentialType = c.Type
	switch c.Type {
	case store.GitSSHKey:
		src.SSHPrivateKey, src.KnownHosts = sec.PrivateKey, c.KnownHosts
	default:
		src.Username, src.Secret = sec.Username, sec.Secret
	}
	return src, secretValues(sec), nil
}

// AppGitSource is what the agent needs to fetch an app's repository, and the
// secret values to mask in what it reports.
func (s *Service) AppGitSource(ctx context.Context, a *store.App) (wire.GitSource, []string, error) {
	repo, err := ValidRepoURL(a.GitRepository)
	if err != nil {
		return wire.GitSource{}, nil, err
	}
	return s.gitSource(ctx, a.GitCredentialsID, repo)
}

// secretValues lists the forms a credential's secret could take in a
// message: as is, escaped in a URL, in a basic Authorization header, and
// each line of a private key.
func secretValues(sec store.GitSecret) []string {
	var out []string
	if sec.Secret != "" {
		out = append(out, sec.Secret, url.QueryEscape(sec.Secret), url.PathEscape(sec.Secret))
		user := sec.Username
		if user == "" {
			user = "x-access-token"
		}
		out = append(out, base64.StdEncoding.EncodeToString([]byte(user+":"+sec.Secret)))
	}
	if sec.PrivateKey != "" {
		out = append(out, sec.PrivateKey)
		for _, l := range strings.Split(sec.PrivateKey, "\n") {
			if l = strings.TrimSpace(l); len(l) >= 16 && !strings.HasPrefix(l, "-----") {
				out = append(out, l)
			}
		}
	}
	return out
}

// Masked replaces every secret value in s with "••••"; values shorter than
// four bytes are left, since masking them would garble ordinary text.
func Masked(s string, secrets []string) string {
	// Longest first, so that a value containing another is masked whole.
	sorted := slices.Clone(secrets)
	slices.SortFunc(sorted, func(a, b string) int { return len(b) - len(a) })
	for _, v := range sorted {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "••••")
		}
	}
	return s
}

// GitCheck is the outcome of a repository check, for people.
type GitCheck struct {
	OK     bool   `json:"ok"`
	Commit string `json:"commit,omitempty"` // the branch's head
	Error  string `json:"error,omitempty"`  // with secrets masked
}

// Test asks the agent of a server to reach a repository with a credential
// (git ls-remote), so a user knows before deploying that the server can
// fetch it. credID "" tests without a credential (a public repository). The
// check is recorded in the activity log of the credential.
func (s *Service) Test(ctx context.Context, p *auth.Principal, credID, serverID, repoURL, branch string, m auth.Meta) (*GitCheck, error) {
	if credID != "" {
		if _, err := s.DB.GetGitCredential(ctx, credID); err != nil {
			return nil, err
		}
	}
	return s.test(ctx, p, credID, serverID, repoURL, branch, m, "GitCredential", credID)
}

// TestApp checks that an app's server can reach its repository and branch
// with its credential.
func (s *Service) TestApp(ctx context.Context, p *auth.Principal, appID string, m auth.Meta) (*GitCheck, error) {
	a, err := s.DB.GetApp(ctx, appID)
	if err != nil {
		return nil, err
	}
	return s.test(ctx, p, a.GitCredentialsID, a.ServerID, a.GitRepository, a.GitBranch, m, "App", a.ID)
}

func (s *Service) test(ctx context.Context, p *auth.Principal, credID, serverID, repoURL, branch string, m auth.Meta, subjectType, subjectID string) (*GitCheck, error) {
	repo, err := ValidRepoURL(repoURL)
	if err != nil {
		return nil, err
	}
	if branch != "" {
		if err := ValidBranch(branch); err != nil {
			return nil, err
		}
	}
	srv, err := s.DB.GetServer(ctx, serverID)
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return nil, invalid("the server does not exist")
		}
		return nil, err
	}
	src, secrets, err := s.gitSource(ctx, credID, repo)
	if err != nil {
		return nil, err
	}
	if s.Fleet == nil {
		return nil, apperr.New(apperr.Unavailable, "the panel cannot reach agents here")
	}
	var res wire.GitCheckResult
	out := &GitCheck{}
	if err := s.Fleet.AgentCall(ctx, srv.ID, http.MethodPost, wire.AgentPathGitCheck, wire.GitCheck{Git: src, Branch: branch}, &res); err != nil {
		out.Error = Masked(apperr.MessageOf(err), secrets)
		if apperr.CodeOf(err) == apperr.Internal {
			s.Log.Warn("git check: agent call failed", "server_id", srv.ID, "err", Masked(err.Error(), secrets))
			out.Error = "the agent of " + srv.Name + " could not be asked"
		}
	} else {
		out.OK, out.Commit, out.Error = res.OK, res.Commit, Masked(res.Error, secrets)
		if !out.OK && out.Error == "" {
			out.Error = "the agent could not reach the repository"
		}
	}
	if subjectID == "" {
		return out, nil // a public repository, tested before any app exists
	}
	result := "ok"
	if !out.OK {
		result = "failed"
	}
	desc := fmt.Sprintf("repository %s (branch %q) checked from server %s: %s", repo.URL, branch, srv.Name, result)
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		return s.record(ctx, tx, p, m, "tested", subjectType, subjectID, desc, nil)
	})
	return out, err
}
