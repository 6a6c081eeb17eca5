package deploy

import (
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"upanel/internal/apperr"
	"upanel/internal/fleet"
	"upanel/internal/wire"
)

// Every field of an app reaches the server: the agent runs git and docker
// compose with argv lists built from them and writes files where they say.
// So each is checked here against a strict pattern (DESIGN.md, decided 2),
// and the agent checks again.

// AppsRoot is where apps live on a server: the agent's DeployRoot, which
// fleet's provisioning sets to /srv/upanel, and "/apps". An app's
// deploy_path lies strictly under it.
const AppsRoot = "/srv/upanel/apps"

// Repository URL kinds.
const (
	RepoHTTPS = "https"
	RepoSSH   = "ssh"
)

// Limits of the fields, in bytes (the columns' sizes, or tighter).
const (
	maxRepoURL     = 500
	maxBranch      = wire.MaxBranchBytes
	maxDeployPath  = 255
	maxComposeFile = 100
	maxSlug        = 40
	maxKeep        = 50
	defaultKeep    = 5
	defaultBranch  = "main"
	defaultCompose = "docker-compose.yml"
)

// RepoURL is a checked repository URL.
type RepoURL struct {
	URL  string // as given, trimmed of surrounding spaces
	Kind string // RepoHTTPS or RepoSSH
	Host string // lower-cased; an IPv6 address without brackets
	Port int    // 0: the default (443 or 22)
}

var (
	hostLabel   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	gitUserRe   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$`)
	slugRe      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)
	composeRe   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*\.ya?ml$`)
	envKeyRe    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hexDigits   = "0123456789abcdefABCDEF"
	pathSegChar = func(c byte, pct bool) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '~' || c == '-' || c == '+' || (pct && c == '%')
	}
)

func invalid(format string, args ...any) error { return apperr.New(apperr.Invalid, format, args...) }

// ValidRepoURL checks a git repository URL. It accepts
//
//	https://host[:port]/path               (no user name or password: those go in a credential)
//	ssh://[user@]host[:port]/path
//	user@host:path                         (scp-like, as GitHub shows it)
//
// where host is a DNS name or an IP address, and path is made of letters,
// digits and . _ ~ + - (and %XX escapes in https), in segments that are not
// empty, not . or .., and do not start with '-'. Nothing may start with '-',
// hold spaces, control or non-ASCII characters, or be longer than 500
// characters. Every other form is refused: file://, git:// (no
// authentication), http:// (plain text), and git's transport syntax
// (ext::, fd::), which runs commands.
func ValidRepoURL(raw string) (RepoURL, error) {
	raw = strings.Trim(raw, " ")
	switch {
	case raw == "":
		return RepoURL{}, invalid("the repository URL is required")
	case len(raw) > maxRepoURL:
		return RepoURL{}, invalid("the repository URL must be at most %d characters", maxRepoURL)
	case strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0:
		return RepoURL{}, invalid("the repository URL must not contain spaces, control or non-ASCII characters (write a host name in punycode)")
	case raw[0] == '-':
		return RepoURL{}, invalid("the repository URL must not start with '-'")
	}
	lower := strings.ToLower(raw)
	switch {
	case strings.HasPrefix(lower, "https://"):
		return httpsRepo(raw)
	case strings.HasPrefix(lower, "ssh://"):
		return sshRepo(raw)
	case strings.HasPrefix(lower, "http://"):
		return RepoURL{}, invalid("the repository URL must use https:// (plain http:// would send credentials and code unencrypted)")
	case strings.HasPrefix(lower, "git://"):
		return RepoURL{}, invalid("the repository URL must use https:// or ssh:// (git:// is unauthenticated and unencrypted)")
	case strings.Contains(raw, "::") || strings.Contains(raw, "://"):
		return RepoURL{}, invalid("the repository URL must be https://host/path, ssh://[user@]host/path or user@host:path (other transports, such as file:// and ext::, are refused)")
	}
	return scpRepo(raw)
}

func httpsRepo(raw string) (RepoURL, error) {
	rest := raw[len("https://"):]
	authority, p, ok := strings.Cut(rest, "/")
	if !ok {
		return RepoURL{}, invalid("the repository URL must have a path, like https://git.example.com/org/repo.git")
	}
	if strings.ContainsAny(rest, "?#") {
		return RepoURL{}, invalid("the repository URL must not have a ?query or #fragment")
	}
	if strings.Contains(authority, "@") {
		return RepoURL{}, invalid("the repository URL must not contain a user name or password: put them in a git credential")
	}
	host, port, err := hostPort(authority)
	if err != nil {
		return RepoURL{}, err
	}
	if err := repoPath(p, true); err != nil {
		return RepoURL{}, err
	}
	return RepoURL{URL: raw, Kind: RepoHTTPS, Host: host, Port: port}, nil
}

func sshRepo(raw string) (RepoURL, error) {
	rest := raw[len("ssh://"):]
	authority, p, ok := strings.Cut(rest, "/")
	if !ok {
		return RepoURL{}, invalid("the repository URL must have a path, like ssh://git@git.example.com/org/repo.git")
	}
	if strings.ContainsAny(rest, "?#%") {
		return RepoURL{}, invalid("the repository URL must not have a ?query, #fragment or %%-escape")
	}
	if user, hp, ok := strings.Cut(authority, "@"); ok {
		if !gitUserRe.MatchString(user) {
			return RepoURL{}, invalid("the repository URL's user name must be letters, digits, . _ and - (not first)")
		}
		authority = hp
	}
	host, port, err := hostPort(authority)
	if err != nil {
		return RepoURL{}, err
	}
	if err := repoPath(p, false); err != nil {
		return RepoURL{}, err
	}
	return RepoURL{URL: raw, Kind: RepoSSH, Host: host, Port: port}, nil
}

// scpRepo checks git's scp-like form, user@host:path.
func scpRepo(raw string) (RepoURL, error) {
	const form = "the repository URL must be https://host/path, ssh://[user@]host/path or user@host:path"
	user, rest, ok := strings.Cut(raw, "@")
	if !ok {
		return RepoURL{}, invalid(form)
	}
	host, p, ok := strings.Cut(rest, ":")
	if !ok || strings.Contains(host, "/") {
		return RepoURL{}, invalid(form)
	}
	if !gitUserRe.MatchString(user) {
		return RepoURL{}, invalid("the repository URL's user name must be letters, digits, . _ and - (not first)")
	}
	h := strings.ToLower(host)
	if !validHostName(h) && !validIPv4(h) {
		return RepoURL{}, invalid("the repository URL's host must be a DNS name or an IPv4 address (use ssh://user@[address]/path for IPv6)")
	}
	if p == "" {
		return RepoURL{}, invalid("the repository URL must have a path after the ':'")
	}
	if strings.ContainsAny(p, "%:@") {
		return RepoURL{}, invalid("the repository URL's path must be letters, digits, / and . _ ~ + -")
	}
	if err := repoPath(strings.TrimPrefix(p, "/"), false); err != nil {
		return RepoURL{}, err
	}
	return RepoURL{URL: raw, Kind: RepoSSH, Host: h}, nil
}

// hostPort checks host[:port] or [v6]:port.
func hostPort(authority string) (string, int, error) {
	host, portText := authority, ""
	if strings.HasPrefix(authority, "[") {
		end := strings.Index(authority, "]")
		if end < 0 {
			return "", 0, invalid("the repository URL has an invalid IPv6 address")
		}
		host, portText = authority[1:end], authority[end+1:]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return "", 0, invalid("the repository URL has an invalid IPv6 address")
		}
		if portText != "" && !strings.HasPrefix(portText, ":") {
			return "", 0, invalid("the repository URL has an invalid port")
		}
		portText = strings.TrimPrefix(portText, ":")
		if portText == "" && strings.HasSuffix(authority, ":") {
			return "", 0, invalid("the repository URL has an invalid port")
		}
	} else {
		if h, pt, ok := strings.Cut(authority, ":"); ok {
			host, portText = h, pt
			if pt == "" {
				return "", 0, invalid("the repository URL has an invalid port")
			}
		}
		host = strings.ToLower(host)
		if !validHostName(host) && !validIPv4(host) {
			return "", 0, invalid("the repository URL's host must be a DNS name (like git.example.com) or an IP address")
		}
	}
	port := 0
	if portText != "" {
		n, err := strconv.Atoi(portText)
		if err != nil || n < 1 || n > 65535 || portText[0] == '0' || portText[0] == '+' {
			return "", 0, invalid("the repository URL has an invalid port (1-65535)")
		}
		port = n
	}
	return strings.ToLower(host), port, nil
}

// repoPath checks the path of a repository URL (without its leading '/').
func repoPath(p string, pct bool) error {
	if p == "" {
		return invalid("the repository URL must have a path, like /org/repo.git")
	}
	for _, seg := range strings.Split(p, "/") {
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !pathSegChar(c, pct) {
				return invalid("the repository URL's path must be letters, digits, / and . _ ~ + -")
			}
			if c == '%' && (i+2 >= len(seg) || !strings.ContainsRune(hexDigits, rune(seg[i+1])) || !strings.ContainsRune(hexDigits, rune(seg[i+2]))) {
				return invalid("the repository URL has a broken %%-escape")
			}
		}
		dec := seg
		if pct {
			var err error
			if dec, err = url.PathUnescape(seg); err != nil {
				return invalid("the repository URL has a broken %%-escape")
			}
		}
		switch {
		case dec == "":
			return invalid("the repository URL's path must not have empty segments (// or a trailing /)")
		case dec == "." || dec == "..":
			return invalid("the repository URL's path must not have . or .. segments")
		case dec[0] == '-':
			return invalid("the repository URL's path segments must not start with '-'")
		case strings.ContainsAny(dec, "/\\") || strings.IndexFunc(dec, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0:
			return invalid("the repository URL's path must not escape /, \\ or control characters")
		}
	}
	return nil
}

// validHostName accepts a lower-case RFC 1123 host name (not an address).
func validHostName(h string) bool {
	if h == "" || len(h) > 253 || strings.HasSuffix(h, ".") {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !hostLabel.MatchString(l) {
			return false
		}
	}
	// Digits and dots only would be a mangled IP address.
	return strings.Trim(h, "0123456789.") != ""
}

func validIPv4(h string) bool {
	a, err := netip.ParseAddr(h)
	return err == nil && a.Is4() && fleet.ValidHost(h)
}

// checkRefFormatBranch is `git check-ref-format --branch NAME` run outside a
// repository; the rules live in wire, which the agent shares.
func checkRefFormatBranch(name string) bool { return wire.CheckRefFormatBranch(name) }

// ValidBranch checks a branch name: what `git check-ref-format --branch`
// accepts, no longer than 100 bytes, valid UTF-8, not "@" (which git would
// read as HEAD in some commands), and without shell metacharacters. The
// agent applies the same rules (wire.BranchProblem).
func ValidBranch(b string) error {
	if msg := wire.BranchProblem(b); msg != "" {
		return invalid("%s", msg)
	}
	return nil
}

// ValidDeployPath checks an app's directory on its server, lexically: an
// absolute, clean path of [A-Za-z0-9._/-] strictly under root, whose parts
// start with neither '.' nor '-'. The agent checks it again on the server,
// following symlinks.
func ValidDeployPath(p, root string) error {
	switch {
	case p == "":
		return invalid("the deploy path is required")
	case len(p) > maxDeployPath:
		return invalid("the deploy path must be at most %d characters", maxDeployPath)
	case strings.IndexFunc(p, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '/' || r == '-')
	}) >= 0:
		return invalid("the deploy path may contain only letters, digits, and . _ / -")
	case !strings.HasPrefix(p, "/"):
		return invalid("the deploy path must be absolute, under %s/", root)
	case strings.Contains(p, "//") || strings.HasSuffix(p, "/") || path.Clean(p) != p:
		return invalid("the deploy path must be clean: no //, no trailing /, no . or .. parts")
	case p == root || !strings.HasPrefix(p, root+"/"):
		return invalid("the deploy path must be a directory under %s/, such as %s/myapp", root, root)
	}
	for _, seg := range strings.Split(strings.TrimPrefix(p, root+"/"), "/") {
		if seg == "" || seg[0] == '.' || seg[0] == '-' {
			return invalid("the deploy path's parts must not start with '.' or '-'")
		}
	}
	return nil
}

// ValidComposeFile checks the compose file's name: a plain file name in the
// repository's top directory, ending .yml or .yaml, not starting with '.' or
// '-'.
func ValidComposeFile(f string) error {
	if len(f) > maxComposeFile || !composeRe.MatchString(f) {
		return invalid("the compose file must be a plain file name ending in .yml or .yaml, such as docker-compose.yml (letters, digits, . _ -; no directories; not starting with . or -)")
	}
	return nil
}

// ValidAppName checks and trims an app name: 1 to 100 printable characters.
func ValidAppName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 100 ||
		strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "", invalid("the name must be 1 to 100 printable characters")
	}
	return name, nil
}

// Slugify derives a slug from a name: lower case, every run of other
// characters than a-z and 0-9 one '-', trimmed, at most 40 characters. It
// may return "" (a name of no ASCII letters or digits).
func Slugify(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	s := b.String()
	if len(s) > maxSlug {
		s = strings.TrimRight(s[:maxSlug], "-")
	}
	return s
}

// ValidSlug checks a slug: 1 to 40 of a-z, 0-9 and '-', starting and ending
// with a letter or digit.
func ValidSlug(s string) error {
	if !slugRe.MatchString(s) {
		return invalid("the slug must be 1 to 40 lower-case letters, digits and '-', starting and ending with a letter or digit")
	}
	return nil
}

// ValidDomain checks and lower-cases an optional domain name (not an IP
// address): a DNS name of at least two labels. "" is no domain.
func ValidDomain(field, d string) (string, error) {
	d = strings.ToLower(strings.TrimSpace(d))
	if d == "" {
		return "", nil
	}
	if !validHostName(d) || !strings.Contains(d, ".") {
		return "", invalid("the %s must be a DNS name such as app.example.com (ASCII or punycode, no IP address, port or path)", field)
	}
	return d, nil
}

// ValidKeepReleases checks how many releases keep their images: 1 to 50, 0
// meaning the default (5).
func ValidKeepReleases(n int) (int, error) {
	if n == 0 {
		return defaultKeep, nil
	}
	if n < 1 || n > maxKeep {
		return 0, invalid("keep_releases must be 1 to %d", maxKeep)
	}
	return n, nil
}
