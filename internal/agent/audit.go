package agent

// The security audit: the checks that make up a server's security score.
// Each check runs a fixed command (never a shell) or reads files, and its
// output goes through a pure parse function, so tests feed captured outputs.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"upanel/internal/wire"
)

// Check IDs. They are stable: the panel keys results and drift on them.
const (
	checkSSHRootLogin       = "ssh_root_login"
	checkSSHPasswordAuth    = "ssh_password_auth"
	checkFirewall           = "firewall"
	checkFail2ban           = "fail2ban"
	checkSecurityUpdates    = "security_updates"
	checkUnattendedUpgrades = "unattended_upgrades"
	checkListeningPorts     = "listening_ports"
	checkDockerPublished    = "docker_published_ports"
	checkWorldWritable      = "world_writable"
)

const (
	// commandTimeout bounds each command of the audit but apt-get's.
	commandTimeout = 10 * time.Second
	// aptTimeout bounds apt-get -s upgrade, which builds the whole
	// dependency tree: a few seconds on a small VPS, more on a slow disk.
	aptTimeout = 60 * time.Second
	// maxCommandOutput bounds what is kept of a command's output.
	maxCommandOutput = 8 << 20

	worldWritableLimit = 100_000 // entries walked at most
	worldWritableShown = 10      // paths named in the detail
	maxDetail          = 400     // characters of a check's detail

	sshdDropIn = "/etc/ssh/sshd_config.d/00-upanel.conf"
)

// checkInfo is what a check is, whatever its result.
type checkInfo struct {
	title  string
	weight int
	fix    string
}

// checkInfos holds every check, weights summing to 100. The fixes are what
// the hardening job does, as commands a person can run.
var checkInfos = map[string]checkInfo{
	checkSSHRootLogin: {"SSH refuses root logins", 15,
		`Run Harden, or add "PermitRootLogin no" to ` + sshdDropIn + ` (sshd keeps the first value it reads), then: systemctl reload ssh`},
	checkSSHPasswordAuth: {"SSH accepts keys only, no passwords", 15,
		`Run Harden, or add "PasswordAuthentication no" and "KbdInteractiveAuthentication no" to ` + sshdDropIn + `, then: systemctl reload ssh`},
	checkFirewall: {"Firewall on, denying incoming by default", 15,
		"ufw default deny incoming && ufw allow 22/tcp && ufw --force enable"}, // rewritten with the expected ports
	checkFail2ban: {"fail2ban guards SSH", 10,
		`apt-get install -y fail2ban python3-systemd && printf '[sshd]\nenabled = true\nbackend = systemd\n' > /etc/fail2ban/jail.d/upanel.local && systemctl restart fail2ban`},
	checkSecurityUpdates: {"No pending security updates", 10,
		"apt-get update && apt-get -y upgrade"},
	checkUnattendedUpgrades: {"Security updates install automatically", 10,
		`apt-get install -y unattended-upgrades && printf 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n' > /etc/apt/apt.conf.d/20auto-upgrades`},
	checkListeningPorts: {"No unexpected public ports", 10,
		"Stop the service or bind it to 127.0.0.1; if the port is meant to be public, add it to expected_ports in the agent config and allow it in ufw"},
	checkDockerPublished: {"No Docker ports published past the firewall", 10,
		`Docker's iptables rules bypass ufw: publish on loopback only (compose: ports: ["127.0.0.1:8080:80"]) and let Caddy proxy to it`},
	checkWorldWritable: {"No world-writable files in deploy paths", 5,
		"chmod -R o-w DEPLOY_ROOT"}, // rewritten with the deploy root
}

// checkOrder is the order Audit reports checks in.
var checkOrder = []string{
	checkSSHRootLogin, checkSSHPasswordAuth, checkFirewall, checkFail2ban, checkSecurityUpdates,
	checkUnattendedUpgrades, checkListeningPorts, checkDockerPublished, checkWorldWritable,
}

func newCheck(id string, passed bool, detail string) wire.Check {
	info := checkInfos[id]
	return wire.Check{ID: id, Title: info.title, Weight: info.weight, Passed: passed,
		Detail: truncateRunes(detail, maxDetail), Fix: info.fix}
}

// defaultExpectedPorts are the public ports of a hardened server: SSH, HTTP,
// HTTPS and the agent. Used when the config gives none (nil).
var defaultExpectedPorts = []int{22, 80, 443, 8443}

// Auditor runs the security checks.
type Auditor struct {
	// Root is where the files are read from: "/" (the default) in
	// production, a fake tree in tests.
	Root string
	// DeployRoot holds the apps (a path on the server, read under Root).
	DeployRoot string
	// ExpectedPorts may listen on public addresses. Nil means 22, 80, 443
	// and 8443; an empty, non-nil slice means none.
	ExpectedPorts []int
	// Run runs a command and returns its standard output. Nil means the
	// real thing: the binary is looked up in the system directories, run
	// with a fixed argv (no shell), a clean environment (LANG=C and a fixed
	// PATH), no stdin, and killed when ctx ends. A binary that is not
	// installed gives an error matching exec.ErrNotFound. Run must be safe
	// for concurrent use: Audit runs the checks in parallel.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)

	timeout time.Duration // tests shorten every command's timeout
}

// Audit runs every check and returns them in a fixed order. It never fails:
// a check whose command fails, times out or is missing fails with the reason
// in its detail. Each command has its own timeout (10 s, 60 s for apt-get);
// the checks run in parallel, so an audit takes about as long as its slowest
// check, and never longer than ctx allows.
func (a *Auditor) Audit(ctx context.Context) []wire.Check {
	run := a.Run
	if run == nil {
		run = runCommand
	}
	root := a.Root
	if root == "" {
		root = "/"
	}
	ports := a.ExpectedPorts
	if ports == nil {
		ports = defaultExpectedPorts
	}
	cmd := func(timeout time.Duration, name string, args ...string) ([]byte, error) {
		if a.timeout > 0 {
			timeout = a.timeout
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		out, err := run(cctx, name, args...)
		if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%s timed out after %s", name, timeout)
		}
		return out, err
	}

	results := map[string]wire.Check{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	// task runs f in parallel; a panic fails the checks it was to produce
	// instead of taking the agent down.
	task := func(ids []string, f func() []wire.Check) {
		wg.Go(func() {
			var got []wire.Check
			defer func() {
				if r := recover(); r != nil {
					got = nil
					for _, id := range ids {
						got = append(got, newCheck(id, false, fmt.Sprintf("internal error: %v", r)))
					}
				}
				mu.Lock()
				for _, c := range got {
					results[c.ID] = c
				}
				mu.Unlock()
			}()
			got = f()
		})
	}

	// sshd -T runs first: the ports sshd listens on are expected too, as the
	// hardening opens them in ufw (SSH may listen on 22 and on the port the
	// panel was given).
	sshdOut, sshdErr := func() (out []byte, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("internal error: %v", r)
			}
		}()
		return cmd(commandTimeout, "sshd", "-T")
	}()
	if sshdErr == nil {
		ports = append(slices.Clone(ports), sshdPorts(sshdOut)...)
	}
	task([]string{checkSSHRootLogin, checkSSHPasswordAuth}, func() []wire.Check {
		return []wire.Check{sshRootLoginCheck(sshdOut, sshdErr), sshPasswordAuthCheck(sshdOut, sshdErr)}
	})
	task([]string{checkFirewall}, func() []wire.Check {
		out, err := cmd(commandTimeout, "ufw", "status", "verbose")
		return []wire.Check{firewallCheck(out, err, ports)}
	})
	task([]string{checkFail2ban}, func() []wire.Check {
		out, err := cmd(commandTimeout, "fail2ban-client", "status", "sshd")
		return []wire.Check{fail2banCheck(out, err)}
	})
	task([]string{checkSecurityUpdates}, func() []wire.Check {
		out, err := cmd(aptTimeout, "apt-get", "-s", "-o", "Debug::NoLocking=true", "upgrade")
		return []wire.Check{securityUpdatesCheck(out, err)}
	})
	task([]string{checkUnattendedUpgrades}, func() []wire.Check {
		return []wire.Check{unattendedUpgradesCheck(root)}
	})
	task([]string{checkListeningPorts}, func() []wire.Check {
		tcp, err := os.ReadFile(filepath.Join(root, "proc/net/tcp"))
		tcp6, err6 := os.ReadFile(filepath.Join(root, "proc/net/tcp6"))
		if errors.Is(err6, fs.ErrNotExist) {
			err6 = nil // IPv6 disabled
		}
		return []wire.Check{listeningPortsCheck(tcp, tcp6, errors.Join(err, err6), ports)}
	})
	task([]string{checkDockerPublished}, func() []wire.Check {
		out, err := cmd(commandTimeout, "docker", "ps", "--format", "{{.Names}}\t{{.Ports}}")
		return []wire.Check{dockerPublishedCheck(out, err)}
	})
	task([]string{checkWorldWritable}, func() []wire.Check {
		return []wire.Check{worldWritableCheck(ctx, root, a.DeployRoot, worldWritableLimit)}
	})
	wg.Wait()

	checks := make([]wire.Check, 0, len(checkOrder))
	for _, id := range checkOrder {
		checks = append(checks, results[id])
	}
	return checks
}

// --- running commands ---

// commandDirs are searched for commands, in order: systemd's default PATH,
// all root-owned. /usr/local is included so that a Docker CLI installed
// from static binaries is not taken for "docker not installed".
var commandDirs = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// commandEnv is the whole environment of a command.
var commandEnv = []string{"LANG=C", "LC_ALL=C", "PATH=" + strings.Join(commandDirs, ":")}

// findCommand looks name up in commandDirs, not in the agent's own PATH.
func findCommand(name string) (string, error) {
	if strings.ContainsRune(name, '/') {
		return "", &exec.Error{Name: name, Err: errors.New("not a bare command name")}
	}
	for _, dir := range commandDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}

// runCommand is the default Auditor.Run.
func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	path, err := findCommand(name)
	if err != nil {
		return nil, err
	}
	c := exec.CommandContext(ctx, path, args...)
	c.Env = commandEnv
	c.Dir = "/"
	// If the command leaves a child holding its output open, stop waiting
	// for it soon after the kill.
	c.WaitDelay = 2 * time.Second
	stdout := &cappedBuffer{max: maxCommandOutput}
	stderr := &cappedBuffer{max: 64 << 10}
	c.Stdout, c.Stderr = stdout, stderr
	if err := c.Run(); err != nil {
		msg := trimOutput(stderr.Bytes(), 200)
		if msg == "" {
			return stdout.Bytes(), fmt.Errorf("%s: %w", name, err)
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return stdout.Bytes(), nil
}

// cappedBuffer keeps the first max bytes written to it and discards the rest.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// trimOutput shortens command output or an error message for a detail.
func trimOutput(b []byte, n int) string {
	return truncateRunes(strings.Join(strings.Fields(string(b)), " "), n)
}

func errDetail(err error) string {
	return trimOutput([]byte(err.Error()), 300)
}

// --- sshd ---

// parseSSHDConfig reads `sshd -T`: one lowercase "keyword value" a line.
// For a keyword given more than once, the first one is kept.
func parseSSHDConfig(out []byte) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(string(out)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		k = strings.ToLower(k)
		if _, seen := m[k]; k != "" && !seen {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// sshdPorts returns the ports of the "port" lines of `sshd -T`.
func sshdPorts(out []byte) []int {
	var ports []int
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "port" {
			if n, err := strconv.Atoi(f[1]); err == nil && n > 0 && n < 65536 {
				ports = append(ports, n)
			}
		}
	}
	return ports
}

func sshdError(id string, out []byte, err error) (wire.Check, bool) {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return newCheck(id, false, "sshd not found, so its settings cannot be read"), true
	case err != nil:
		return newCheck(id, false, "sshd -T failed: "+errDetail(err)), true
	case len(parseSSHDConfig(out)) < 5:
		return newCheck(id, false, "sshd -T printed no settings"), true
	}
	return wire.Check{}, false
}

func sshRootLoginCheck(out []byte, err error) wire.Check {
	if c, failed := sshdError(checkSSHRootLogin, out, err); failed {
		return c
	}
	v, ok := parseSSHDConfig(out)["permitrootlogin"]
	if !ok {
		return newCheck(checkSSHRootLogin, false, "sshd -T does not show permitrootlogin")
	}
	return newCheck(checkSSHRootLogin, strings.EqualFold(v, "no"), "permitrootlogin "+v)
}

func sshPasswordAuthCheck(out []byte, err error) wire.Check {
	if c, failed := sshdError(checkSSHPasswordAuth, out, err); failed {
		return c
	}
	cfg := parseSSHDConfig(out)
	pw, okPW := cfg["passwordauthentication"]
	// OpenSSH before 8.7 names keyboard-interactive authentication
	// challengeresponseauthentication.
	kbdKey := "kbdinteractiveauthentication"
	kbd, okKbd := cfg[kbdKey]
	if !okKbd {
		kbdKey = "challengeresponseauthentication"
		kbd, okKbd = cfg[kbdKey]
	}
	if !okPW || !okKbd {
		return newCheck(checkSSHPasswordAuth, false, "sshd -T does not show passwordauthentication and kbdinteractiveauthentication")
	}
	passed := strings.EqualFold(pw, "no") && strings.EqualFold(kbd, "no")
	return newCheck(checkSSHPasswordAuth, passed, fmt.Sprintf("passwordauthentication %s, %s %s", pw, kbdKey, kbd))
}

// --- ufw ---

// parseUFWStatus reads `ufw status verbose`: whether it is active, and the
// default incoming policy ("deny", "reject", "allow"; "" if not shown).
func parseUFWStatus(out []byte) (active bool, incoming string) {
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Status:"); ok {
			active = strings.TrimSpace(v) == "active"
		}
		if v, ok := strings.CutPrefix(line, "Default:"); ok {
			for part := range strings.SplitSeq(v, ",") {
				if f := strings.Fields(part); len(f) == 2 && f[1] == "(incoming)" {
					incoming = f[0]
				}
			}
		}
	}
	return active, incoming
}

func firewallCheck(out []byte, err error, expectedPorts []int) wire.Check {
	c := func(passed bool, detail string) wire.Check {
		ch := newCheck(checkFirewall, passed, detail)
		ch.Fix = ufwFix(expectedPorts)
		return ch
	}
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return c(false, "ufw is not installed")
	case err != nil:
		return c(false, "ufw status failed: "+errDetail(err))
	}
	active, incoming := parseUFWStatus(out)
	switch {
	case !active:
		return c(false, "ufw is inactive")
	case incoming == "":
		return c(false, "ufw is active, but its default incoming policy is not shown")
	case incoming == "deny" || incoming == "reject":
		return c(true, "ufw is active, default: "+incoming+" (incoming)")
	default:
		return c(false, "ufw is active, but the default is "+incoming+" (incoming)")
	}
}

func ufwFix(expectedPorts []int) string {
	ports := slices.Clone(expectedPorts)
	if len(ports) == 0 {
		ports = []int{22} // never lock SSH out
	}
	slices.Sort(ports)
	parts := []string{"ufw default deny incoming"}
	for _, p := range slices.Compact(ports) {
		parts = append(parts, fmt.Sprintf("ufw allow %d/tcp", p))
	}
	return strings.Join(append(parts, "ufw --force enable"), " && ")
}

// --- fail2ban ---

func fail2banCheck(out []byte, err error) wire.Check {
	if err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, exec.ErrNotFound):
			return newCheck(checkFail2ban, false, "fail2ban is not installed")
		case strings.Contains(msg, "does not exist"):
			return newCheck(checkFail2ban, false, "fail2ban runs, but it has no sshd jail")
		case strings.Contains(msg, "Failed to access socket") || strings.Contains(msg, "Is fail2ban running"):
			return newCheck(checkFail2ban, false, "fail2ban is not running")
		}
		return newCheck(checkFail2ban, false, "fail2ban-client status sshd failed: "+errDetail(err))
	}
	if !bytes.Contains(out, []byte("Status for the jail: sshd")) {
		return newCheck(checkFail2ban, false, "unexpected output from fail2ban-client: "+trimOutput(out, 200))
	}
	detail := "the sshd jail is running"
	if n, ok := fail2banField(out, "Currently banned:"); ok {
		detail += ", " + n + " address(es) banned now"
	}
	return newCheck(checkFail2ban, true, detail)
}

// fail2banField finds "|- Currently banned:\t3" in fail2ban-client's tree.
func fail2banField(out []byte, label string) (string, bool) {
	for line := range strings.Lines(string(out)) {
		if _, v, ok := strings.Cut(line, label); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// --- apt ---

// parseSecurityUpdates reads `apt-get -s upgrade`: the packages of its
// "Inst" lines, and those among them that come from a security archive.
// A line looks like
//
//	Inst libssl3 [3.0.15-1~deb12u1] (3.0.16-1~deb12u1 Debian-Security:12/stable-security [amd64])
//
// where the parenthesized part names the candidate's archives.
func parseSecurityUpdates(out []byte) (all int, security []string) {
	for line := range strings.Lines(string(out)) {
		rest, ok := strings.CutPrefix(line, "Inst ")
		if !ok {
			continue
		}
		all++
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		_, origin, ok := strings.Cut(rest, "(")
		if !ok {
			continue
		}
		origin, _, _ = strings.Cut(origin, ")")
		if strings.Contains(strings.ToLower(origin), "-security") {
			security = append(security, f[0])
		}
	}
	return all, security
}

func securityUpdatesCheck(out []byte, err error) wire.Check {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return newCheck(checkSecurityUpdates, false, "apt-get not found: not a Debian or Ubuntu server")
	case err != nil:
		return newCheck(checkSecurityUpdates, false, "apt-get -s upgrade failed: "+errDetail(err))
	}
	all, sec := parseSecurityUpdates(out)
	if len(sec) == 0 {
		return newCheck(checkSecurityUpdates, true, fmt.Sprintf("0 security updates pending (%d other upgrades), as of the last apt-get update", all))
	}
	shown := sec[:min(len(sec), 10)]
	detail := fmt.Sprintf("%d security updates pending: %s", len(sec), strings.Join(shown, ", "))
	if len(sec) > len(shown) {
		detail += fmt.Sprintf(" and %d more", len(sec)-len(shown))
	}
	return newCheck(checkSecurityUpdates, false, detail)
}

// --- unattended-upgrades ---

// aptConfPartName is what apt reads in apt.conf.d: names made of letters,
// digits, '_', '-' and '.', with no extension or ".conf".
var aptConfPartName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func isAptConfPart(name string) bool {
	if !aptConfPartName.MatchString(name) {
		return false
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:] == "conf"
	}
	return true
}

// readAptConfig reads the apt configuration under root as apt does: the
// parts of /etc/apt/apt.conf.d in name order, then /etc/apt/apt.conf, a
// later setting winning. Keys are lowercased.
func readAptConfig(root string) (map[string]string, error) {
	dir := filepath.Join(root, "etc/apt/apt.conf.d")
	ents, err := os.ReadDir(dir) // sorted by name
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var files []string
	for _, e := range ents {
		if e.Type().IsRegular() && isAptConfPart(e.Name()) {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	files = append(files, filepath.Join(root, "etc/apt/apt.conf"))
	cfg := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		parseAptConf(b, cfg)
	}
	return cfg, nil
}

// parseAptConf reads apt.conf syntax into cfg: `A::B "v";` and the scoped
// form `A { B "v"; };`, with //, # and /* */ comments. List items (a value
// with no name) and #include/#clear directives are ignored.
func parseAptConf(b []byte, cfg map[string]string) {
	toks := aptConfTokens(string(b))
	var scope []string
	var stmt []string // the words and strings of the statement so far
	for _, t := range toks {
		switch t {
		case ";":
			if len(stmt) >= 2 && !strings.HasPrefix(stmt[0], "\"") {
				key := strings.ToLower(strings.Join(append(slices.Clone(scope), stmt[0]), "::"))
				cfg[key] = strings.Trim(stmt[1], "\"")
			}
			stmt = stmt[:0]
		case "{":
			name := ""
			if len(stmt) > 0 {
				name = stmt[0]
			}
			scope = append(scope, name)
			stmt = stmt[:0]
		case "}":
			if len(scope) > 0 {
				scope = scope[:len(scope)-1]
			}
			stmt = stmt[:0]
		default:
			stmt = append(stmt, t)
		}
	}
}

// aptConfTokens splits apt.conf text into words, quoted strings (kept with
// their quotes), and the punctuation { } ;.
func aptConfTokens(s string) []string {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.HasPrefix(s[i:], "//") || c == '#':
			if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(s)
			}
		case strings.HasPrefix(s[i:], "/*"):
			if j := strings.Index(s[i+2:], "*/"); j >= 0 {
				i += j + 4
			} else {
				i = len(s)
			}
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, string(c))
			i++
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return toks
			}
			toks = append(toks, s[i:i+j+2])
			i += j + 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n{};\"", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks
}

// aptPeriodicOn says whether an APT::Periodic interval enables the job:
// "always", or a number of days above zero.
func aptPeriodicOn(v string) bool {
	if v == "always" {
		return true
	}
	n, err := strconv.Atoi(v)
	return err == nil && n > 0
}

func unattendedUpgradesCheck(root string) wire.Check {
	cfg, err := readAptConfig(root)
	if err != nil {
		return newCheck(checkUnattendedUpgrades, false, "cannot read the apt configuration: "+errDetail(err))
	}
	_, binErr := os.Stat(filepath.Join(root, "usr/bin/unattended-upgrade"))
	installed := binErr == nil
	upgrade, okUpgrade := cfg["apt::periodic::unattended-upgrade"]
	lists, okLists := cfg["apt::periodic::update-package-lists"]
	var problems []string
	if !installed {
		problems = append(problems, "the unattended-upgrades package is not installed")
	}
	if !okUpgrade {
		problems = append(problems, "APT::Periodic::Unattended-Upgrade is not set")
	} else if !aptPeriodicOn(upgrade) {
		problems = append(problems, fmt.Sprintf("APT::Periodic::Unattended-Upgrade is %q", upgrade))
	}
	if !okLists {
		problems = append(problems, "APT::Periodic::Update-Package-Lists is not set")
	} else if !aptPeriodicOn(lists) {
		problems = append(problems, fmt.Sprintf("APT::Periodic::Update-Package-Lists is %q", lists))
	}
	if len(problems) > 0 {
		return newCheck(checkUnattendedUpgrades, false, strings.Join(problems, "; "))
	}
	return newCheck(checkUnattendedUpgrades, true,
		fmt.Sprintf("unattended-upgrades installed; Update-Package-Lists %q, Unattended-Upgrade %q", lists, upgrade))
}

// --- listening ports ---

// listener is a TCP socket in the LISTEN state.
type listener struct {
	addr netip.Addr
	port int
}

// parseProcNetTCP reads /proc/net/tcp or /proc/net/tcp6 and returns the
// LISTEN sockets (state 0A). Addresses are hex, in 32-bit words of host
// byte order: 127.0.0.1 is 0100007F on a little-endian machine.
func parseProcNetTCP(b []byte) ([]listener, error) {
	var ls []listener
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] == "sl" || f[3] != "0A" {
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			return nil, fmt.Errorf("bad local address %q", f[1])
		}
		raw, err := hex.DecodeString(hexAddr)
		if err != nil || (len(raw) != 4 && len(raw) != 16) {
			return nil, fmt.Errorf("bad local address %q", f[1])
		}
		for i := 0; i < len(raw); i += 4 { // big-endian words → host order
			binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
		}
		addr, _ := netip.AddrFromSlice(raw)
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("bad local port %q", f[1])
		}
		ls = append(ls, listener{addr: addr, port: int(port)})
	}
	return ls, nil
}

func listeningPortsCheck(tcp, tcp6 []byte, readErr error, expected []int) wire.Check {
	if readErr != nil {
		return newCheck(checkListeningPorts, false, "cannot read the sockets: "+errDetail(readErr))
	}
	l4, err := parseProcNetTCP(tcp)
	l6, err6 := parseProcNetTCP(tcp6)
	if err := errors.Join(err, err6); err != nil {
		return newCheck(checkListeningPorts, false, "cannot parse /proc/net/tcp: "+errDetail(err))
	}
	public := map[int][]string{} // port → addresses
	for _, l := range append(l4, l6...) {
		if l.addr.Unmap().IsLoopback() {
			continue
		}
		a := l.addr.Unmap().String()
		if !slices.Contains(public[l.port], a) {
			public[l.port] = append(public[l.port], a)
		}
	}
	var ok, bad []int
	for p := range public {
		if slices.Contains(expected, p) {
			ok = append(ok, p)
		} else {
			bad = append(bad, p)
		}
	}
	slices.Sort(ok)
	slices.Sort(bad)
	if len(bad) == 0 {
		if len(ok) == 0 {
			return newCheck(checkListeningPorts, true, "nothing listens on a public address")
		}
		return newCheck(checkListeningPorts, true, "public ports, all expected: "+joinInts(ok))
	}
	var parts []string
	for _, p := range bad {
		parts = append(parts, fmt.Sprintf("%d on %s", p, strings.Join(public[p], ", ")))
	}
	return newCheck(checkListeningPorts, false, "unexpected public ports: "+strings.Join(parts, "; "))
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// --- docker ---

// publishedPort is one port mapping of a running container.
type publishedPort struct {
	container string
	mapping   string // as docker prints it: 0.0.0.0:8080->80/tcp
	hostIP    string
}

// parseDockerPorts reads `docker ps --format "{{.Names}}\t{{.Ports}}"`, a
// container a line; a line without a tab is taken as Ports alone. Ports is
// a comma-separated list of "HOSTIP:HOSTPORT->PORT/PROTO" (published) or
// "PORT/PROTO" (exposed only). IPv6 host addresses show as ":::8080" (Docker
// before 25) or "[::]:8080".
func parseDockerPorts(out []byte) []publishedPort {
	var ps []publishedPort
	for line := range strings.Lines(string(out)) {
		line = strings.TrimRight(line, "\r\n")
		name, ports, ok := strings.Cut(line, "\t")
		if !ok {
			name, ports = "", line
		}
		for m := range strings.SplitSeq(ports, ",") {
			m = strings.TrimSpace(m)
			host, _, ok := strings.Cut(m, "->")
			if !ok {
				continue // exposed, not published
			}
			i := strings.LastIndexByte(host, ':')
			if i < 0 {
				continue
			}
			ip := strings.TrimSuffix(strings.TrimPrefix(host[:i], "["), "]")
			ps = append(ps, publishedPort{container: strings.TrimSpace(name), mapping: m, hostIP: ip})
		}
	}
	return ps
}

// bypassesFirewall says whether a port published on hostIP is reachable
// from outside: Docker's own iptables rules accept it before ufw's. Only a
// loopback address is safe; an unparsable one is taken as public.
func bypassesFirewall(hostIP string) bool {
	a, err := netip.ParseAddr(hostIP)
	return err != nil || !a.Unmap().IsLoopback()
}

func dockerPublishedCheck(out []byte, err error) wire.Check {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return newCheck(checkDockerPublished, true, "docker not installed")
	case err != nil:
		return newCheck(checkDockerPublished, false, "docker ps failed: "+errDetail(err))
	}
	var bad []string
	for _, p := range parseDockerPorts(out) {
		if !bypassesFirewall(p.hostIP) {
			continue
		}
		if p.container != "" {
			bad = append(bad, p.container+" "+p.mapping)
		} else {
			bad = append(bad, p.mapping)
		}
	}
	if len(bad) == 0 {
		return newCheck(checkDockerPublished, true, "no container publishes a port beyond loopback")
	}
	return newCheck(checkDockerPublished, false, "published past ufw: "+strings.Join(bad, "; "))
}

// --- world-writable files ---

// findWorldWritable walks dir, not following symlinks, and returns up to
// show regular files that anyone may write, and directories that anyone may
// write without the sticky bit. It stops after limit entries.
func findWorldWritable(ctx context.Context, dir string, limit, show int) (found []string, total, scanned int, truncated bool, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, werr error) error {
		if werr != nil {
			if path == dir {
				return werr
			}
			return nil // unreadable entry: skip it
		}
		scanned++
		if scanned > limit {
			truncated = true
			return fs.SkipAll
		}
		if scanned%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil // symlinks, sockets, pipes, devices
		}
		info, ierr := d.Info()
		if ierr != nil {
			return nil
		}
		mode := info.Mode()
		if mode.Perm()&0o002 == 0 || (mode.IsDir() && mode&fs.ModeSticky != 0) {
			return nil
		}
		total++
		if len(found) < show {
			found = append(found, path)
		}
		return nil
	})
	return found, total, min(scanned, limit), truncated, err
}

func worldWritableCheck(ctx context.Context, root, deployRoot string, limit int) wire.Check {
	if deployRoot == "" {
		return newCheck(checkWorldWritable, true, "no deploy root configured")
	}
	c := func(passed bool, detail string) wire.Check {
		ch := newCheck(checkWorldWritable, passed, detail)
		ch.Fix = "chmod -R o-w " + shellQuote(deployRoot)
		return ch
	}
	// The trailing separator makes the walk follow a deploy root that is
	// itself a symlink; links below it are not followed.
	dir := filepath.Join(root, deployRoot) + string(filepath.Separator)
	found, total, scanned, truncated, err := findWorldWritable(ctx, dir, limit, worldWritableShown)
	if errors.Is(err, fs.ErrNotExist) {
		return c(true, deployRoot+" does not exist yet")
	}
	if err != nil {
		return c(false, "cannot walk "+deployRoot+": "+errDetail(err))
	}
	note := ""
	if truncated {
		note = fmt.Sprintf(" (stopped after %d entries)", scanned)
	}
	if total == 0 {
		return c(true, fmt.Sprintf("none in %d entries under %s%s", scanned, deployRoot, note))
	}
	shown := make([]string, len(found))
	for i, p := range found {
		rel, _ := filepath.Rel(root, p)
		shown[i] = "/" + rel
	}
	detail := fmt.Sprintf("%d world-writable: %s", total, strings.Join(shown, ", "))
	if total > len(shown) {
		detail += fmt.Sprintf(" and %d more", total-len(shown))
	}
	return c(false, detail+note)
}

// shellQuote quotes s for a POSIX shell, for fixes a person may paste.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
