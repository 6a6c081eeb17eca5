package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/wire"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var errNotInstalled = &exec.Error{Name: "x", Err: exec.ErrNotFound}

// exitError is what runCommand returns for a command that exited non-zero.
func exitError(name, stderr string) error {
	return fmt.Errorf("%s: exit status 255: %s", name, stderr)
}

func TestCheckTable(t *testing.T) {
	sum := 0
	seen := map[string]bool{}
	for _, id := range checkOrder {
		info, ok := checkInfos[id]
		if !ok || info.title == "" || info.fix == "" || info.weight <= 0 {
			t.Errorf("check %s: %+v", id, info)
		}
		if seen[id] {
			t.Errorf("check %s twice", id)
		}
		seen[id] = true
		sum += info.weight
	}
	if sum != 100 || len(checkInfos) != len(checkOrder) {
		t.Errorf("weights sum to %d over %d checks (%d in the table), want 100", sum, len(checkOrder), len(checkInfos))
	}
}

type checkCase struct {
	name   string
	check  wire.Check
	passed bool
	detail string // a substring of the detail
}

func runCheckCases(t *testing.T, id string, cases []checkCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.check
			if c.ID != id || c.Weight != checkInfos[id].weight || c.Title == "" || c.Fix == "" {
				t.Errorf("check = %+v", c)
			}
			if c.Passed != tt.passed || !strings.Contains(c.Detail, tt.detail) {
				t.Errorf("passed %v, detail %q; want %v and %q", c.Passed, c.Detail, tt.passed, tt.detail)
			}
		})
	}
}

func TestSSHChecks(t *testing.T) {
	def := readTestdata(t, "cmd/sshd-T-debian12-default.txt")
	hard := readTestdata(t, "cmd/sshd-T-debian12-hardened.txt")
	old := readTestdata(t, "cmd/sshd-T-ubuntu2004.txt")
	fail := exitError("sshd", "Missing privilege separation directory: /run/sshd")
	runCheckCases(t, checkSSHRootLogin, []checkCase{
		{"debian default", sshRootLoginCheck(def, nil), false, "permitrootlogin without-password"},
		{"hardened", sshRootLoginCheck(hard, nil), true, "permitrootlogin no"},
		{"openssh 8.2", sshRootLoginCheck(old, nil), true, "permitrootlogin no"},
		{"prohibit-password", sshRootLoginCheck([]byte(strings.Replace(string(hard), "permitrootlogin no", "permitrootlogin prohibit-password", 1)), nil), false, "prohibit-password"},
		{"sshd fails", sshRootLoginCheck(nil, fail), false, "Missing privilege separation directory"},
		{"no sshd", sshRootLoginCheck(nil, errNotInstalled), false, "sshd not found"},
		{"no output", sshRootLoginCheck(nil, nil), false, "no settings"},
	})
	runCheckCases(t, checkSSHPasswordAuth, []checkCase{
		{"debian default", sshPasswordAuthCheck(def, nil), false, "passwordauthentication yes, kbdinteractiveauthentication no"},
		{"hardened", sshPasswordAuthCheck(hard, nil), true, "passwordauthentication no, kbdinteractiveauthentication no"},
		{"openssh 8.2 challenge-response", sshPasswordAuthCheck(old, nil), false, "challengeresponseauthentication yes"},
		{"keyboard-interactive on", sshPasswordAuthCheck([]byte(strings.Replace(string(hard), "kbdinteractiveauthentication no", "kbdinteractiveauthentication yes", 1)), nil), false, "kbdinteractiveauthentication yes"},
		{"sshd fails", sshPasswordAuthCheck(nil, fail), false, "sshd -T failed"},
	})
}

func TestFirewallCheck(t *testing.T) {
	ports := []int{443, 22, 80, 8443}
	runCheckCases(t, checkFirewall, []checkCase{
		{"active, deny", firewallCheck(readTestdata(t, "cmd/ufw-status-active.txt"), nil, ports), true, "default: deny (incoming)"},
		{"active, reject", firewallCheck(readTestdata(t, "cmd/ufw-status-reject.txt"), nil, ports), true, "reject"},
		{"active, allow", firewallCheck(readTestdata(t, "cmd/ufw-status-allow.txt"), nil, ports), false, "allow (incoming)"},
		{"inactive", firewallCheck(readTestdata(t, "cmd/ufw-status-inactive.txt"), nil, ports), false, "inactive"},
		{"not installed", firewallCheck(nil, errNotInstalled, ports), false, "not installed"},
		{"fails", firewallCheck(nil, exitError("ufw", "ERROR: problem running iptables"), ports), false, "problem running iptables"},
	})
	c := firewallCheck(nil, nil, ports)
	if want := "ufw default deny incoming && ufw allow 22/tcp && ufw allow 80/tcp && ufw allow 443/tcp && ufw allow 8443/tcp && ufw --force enable"; c.Fix != want {
		t.Errorf("fix = %q", c.Fix)
	}
	if c := firewallCheck(nil, nil, []int{}); !strings.Contains(c.Fix, "ufw allow 22/tcp") {
		t.Errorf("a fix without ports locks SSH out: %q", c.Fix)
	}
}

func TestFail2banCheck(t *testing.T) {
	runCheckCases(t, checkFail2ban, []checkCase{
		{"running", fail2banCheck(readTestdata(t, "cmd/fail2ban-status-sshd.txt"), nil), true, "0 address(es) banned"},
		{"banning", fail2banCheck(readTestdata(t, "cmd/fail2ban-status-sshd-banned.txt"), nil), true, "2 address(es) banned"},
		{"not running", fail2banCheck(nil, exitError("fail2ban-client",
			"2026-11-26 18:31:19,983 fail2ban [173]: ERROR Failed to access socket path: /var/run/fail2ban/fail2ban.sock. Is fail2ban running?")), false, "not running"},
		{"no sshd jail", fail2banCheck(nil, exitError("fail2ban-client",
			"Sorry but the jail 'sshd' does not exist 2026-11-26 18:31:41,361 fail2ban [494]: ERROR NOK: ('sshd',)")), false, "no sshd jail"},
		{"not installed", fail2banCheck(nil, errNotInstalled), false, "not installed"},
		{"odd output", fail2banCheck([]byte("Status\n|- Number of jail: 0\n"), nil), false, "unexpected output"},
	})
}

func TestParseSecurityUpdates(t *testing.T) {
	all, sec := parseSecurityUpdates(readTestdata(t, "cmd/apt-get-upgrade-ubuntu2204.txt"))
	if all != 4 || !slices.Equal(sec, []string{"libssl3", "openssl"}) {
		t.Errorf("ubuntu: %d, %v", all, sec)
	}
	all, sec = parseSecurityUpdates(readTestdata(t, "cmd/apt-get-upgrade-debian12.txt"))
	if all != 80 || len(sec) != 20 || sec[0] != "libgnutls28-dev" || sec[19] != "python3-jwt" || slices.Contains(sec, "openssl") {
		t.Errorf("debian: %d, %v", all, sec)
	}
	// A package named like a security archive, from a normal one.
	all, sec = parseSecurityUpdates([]byte("Inst foo-security [1.0] (1.1 Debian:12.14/oldstable [amd64])\n"))
	if all != 1 || len(sec) != 0 {
		t.Errorf("name is not origin: %d, %v", all, sec)
	}
}

func TestSecurityUpdatesCheck(t *testing.T) {
	runCheckCases(t, checkSecurityUpdates, []checkCase{
		{"debian, 20 pending", securityUpdatesCheck(readTestdata(t, "cmd/apt-get-upgrade-debian12.txt"), nil), false, "20 security updates pending: "},
		{"more than ten named", securityUpdatesCheck(readTestdata(t, "cmd/apt-get-upgrade-debian12.txt"), nil), false, " and 10 more"},
		{"ubuntu, 2 pending", securityUpdatesCheck(readTestdata(t, "cmd/apt-get-upgrade-ubuntu2204.txt"), nil), false, "2 security updates pending: libssl3, openssl"},
		{"up to date", securityUpdatesCheck(readTestdata(t, "cmd/apt-get-upgrade-uptodate.txt"), nil), true, "0 security updates pending (0 other"},
		{"apt fails", securityUpdatesCheck(nil, exitError("apt-get", "E: The package lists or status file could not be parsed or opened.")), false, "could not be parsed"},
		{"no apt", securityUpdatesCheck(nil, errNotInstalled), false, "not a Debian"},
	})
}

func TestParseAptConf(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
	}{
		{"flat", "APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n",
			map[string]string{"apt::periodic::update-package-lists": "1", "apt::periodic::unattended-upgrade": "1"}},
		{"scoped", "APT {\n  Periodic {\n    Unattended-Upgrade \"1\";\n  };\n};\nAPT::Periodic { Update-Package-Lists \"always\"; };",
			map[string]string{"apt::periodic::unattended-upgrade": "1", "apt::periodic::update-package-lists": "always"}},
		{"comments", "// APT::Periodic::Unattended-Upgrade \"1\";\n# APT::Periodic::Update-Package-Lists \"1\";\n/* Dpkg::X \"1\";\n*/ A::B \"//not a comment\"; // c\n",
			map[string]string{"a::b": "//not a comment"}},
		{"lists and unquoted", "Unattended-Upgrade::Origins-Pattern {\n \"origin=Debian,codename=${distro_codename},label=Debian\";\n};\nAPT::Keep-Downloaded-Packages false;",
			map[string]string{"apt::keep-downloaded-packages": "false"}},
		{"later wins", "A::B \"1\";\nA::B \"0\";\n", map[string]string{"a::b": "0"}},
		{"directives", "#clear APT::Periodic;\n#include \"/etc/x.conf\";\nA \"1\";", map[string]string{"a": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			parseAptConf([]byte(tt.in), got)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	// The package's real files.
	got := map[string]string{}
	parseAptConf(readTestdata(t, "host/etc/apt/apt.conf.d/50unattended-upgrades"), got)
	parseAptConf(readTestdata(t, "host/etc/apt/apt.conf.d/20auto-upgrades"), got)
	if got["apt::periodic::unattended-upgrade"] != "1" || got["apt::periodic::update-package-lists"] != "1" {
		t.Errorf("real files: %v", got)
	}
}

func TestUnattendedUpgradesCheck(t *testing.T) {
	enabled := "APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n"
	disabled := "APT::Periodic::Update-Package-Lists \"0\";\nAPT::Periodic::Unattended-Upgrade \"0\";\n"
	root := func(files map[string]string) string {
		r := t.TempDir()
		for name, content := range files {
			writeFile(t, r, name, content)
		}
		return r
	}
	const bin, conf = "usr/bin/unattended-upgrade", "etc/apt/apt.conf.d/"
	runCheckCases(t, checkUnattendedUpgrades, []checkCase{
		{"package defaults", unattendedUpgradesCheck("testdata/host"), true, `Update-Package-Lists "1", Unattended-Upgrade "1"`},
		{"not installed", unattendedUpgradesCheck(root(map[string]string{conf + "20auto-upgrades": enabled})), false, "not installed"},
		{"disabled", unattendedUpgradesCheck(root(map[string]string{bin: "", conf + "20auto-upgrades": disabled})), false, `Unattended-Upgrade is "0"`},
		{"not set", unattendedUpgradesCheck(root(map[string]string{bin: "", conf + "70debconf": "DPkg::Pre-Install-Pkgs {\"x\";};"})), false, "Unattended-Upgrade is not set"},
		{"lists never updated", unattendedUpgradesCheck(root(map[string]string{bin: "", conf + "20auto-upgrades": "APT::Periodic::Unattended-Upgrade \"1\";"})), false, "Update-Package-Lists is not set"},
		{"a later part disables it", unattendedUpgradesCheck(root(map[string]string{bin: "", conf + "20auto-upgrades": enabled,
			conf + "99local": "APT::Periodic::Unattended-Upgrade \"0\";"})), false, `Unattended-Upgrade is "0"`},
		{"apt.conf wins over the parts", unattendedUpgradesCheck(root(map[string]string{bin: "", conf + "20auto-upgrades": enabled,
			"etc/apt/apt.conf": "APT::Periodic::Unattended-Upgrade \"0\";"})), false, `Unattended-Upgrade is "0"`},
		{"apt ignores dpkg leftovers", unattendedUpgradesCheck(root(map[string]string{bin: "", conf + "20auto-upgrades": enabled,
			conf + "20auto-upgrades.dpkg-old": disabled, conf + "99x.disabled": disabled, conf + "99y.conf": "A::B \"1\";"})), true, ""},
		{"always", unattendedUpgradesCheck(root(map[string]string{bin: "", conf + "10periodic": "APT::Periodic { Update-Package-Lists \"always\"; Unattended-Upgrade \"always\"; };"})), true, "always"},
	})
}

func TestParseProcNetTCP(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the test data is of a little-endian machine")
	}
	tests := []struct {
		file string
		want []string
	}{
		{"host/proc/net/tcp", []string{"127.0.0.1:37313", "127.0.0.1:2019", "0.0.0.0:22"}},
		{"host/proc/net/tcp6", []string{"[::]:80", "[::]:22"}},
		{"proc/tcp6-mixed", []string{"[::1]:631", "[::ffff:127.0.0.1]:8080", "[2001:db8::1]:3306", "[::]:22"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ls, err := parseProcNetTCP(readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range ls {
				got = append(got, netip.AddrPortFrom(l.addr, uint16(l.port)).String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := parseProcNetTCP([]byte("   0: 0100ZZ7F:91C1 00000000:0000 0A 0\n")); err == nil {
		t.Error("no error for a bad address")
	}
}

func TestListeningPortsCheck(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the test data is of a little-endian machine")
	}
	expected := []int{22, 80, 443, 8443}
	tcp, tcp6 := readTestdata(t, "host/proc/net/tcp"), readTestdata(t, "host/proc/net/tcp6")
	runCheckCases(t, checkListeningPorts, []checkCase{
		{"sshd and caddy", listeningPortsCheck(tcp, tcp6, nil, expected), true, "public ports, all expected: 22, 80"},
		{"docker-proxy on 8080", listeningPortsCheck(readTestdata(t, "proc/tcp-docker"), readTestdata(t, "proc/tcp6-docker"), nil, expected),
			false, "unexpected public ports: 8080 on 0.0.0.0"},
		{"public mysql on v6", listeningPortsCheck(nil, readTestdata(t, "proc/tcp6-mixed"), nil, expected), false, "3306 on 2001:db8::1"},
		{"only loopback", listeningPortsCheck([]byte("  sl\n   0: 0100007F:0899 00000000:0000 0A 0\n"), nil, nil, nil), true, "nothing listens"},
		{"no port expected", listeningPortsCheck(tcp, tcp6, nil, []int{}), false, "22 on 0.0.0.0, ::; 80 on ::"},
		{"unreadable", listeningPortsCheck(nil, nil, os.ErrPermission, expected), false, "cannot read"},
	})
}

func TestDockerPublishedCheck(t *testing.T) {
	runCheckCases(t, checkDockerPublished, []checkCase{
		{"docker 20", dockerPublishedCheck(readTestdata(t, "cmd/docker-ps-docker20.txt"), nil), false,
			"published past ufw: range 0.0.0.0:7000-7001->7000-7001/udp; web 0.0.0.0:8080->80/tcp"},
		{"docker 27", dockerPublishedCheck(readTestdata(t, "cmd/docker-ps-docker27.txt"), nil), false,
			"shop-web-1 0.0.0.0:8080->80/tcp; shop-web-1 [::]:8080->80/tcp; exporter :::9100->9100/tcp"},
		{"loopback only", dockerPublishedCheck(readTestdata(t, "cmd/docker-ps-loopback.txt"), nil), true, "no container publishes"},
		{"no containers", dockerPublishedCheck(nil, nil), true, "no container publishes"},
		{"ports column only", dockerPublishedCheck([]byte("0.0.0.0:80->80/tcp\n"), nil), false, "0.0.0.0:80->80/tcp"},
		{"not installed", dockerPublishedCheck(nil, errNotInstalled), true, "docker not installed"},
		{"daemon down", dockerPublishedCheck(nil, fmt.Errorf("docker: exit status 1: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")),
			false, "Cannot connect to the Docker daemon"},
	})
	c := dockerPublishedCheck(readTestdata(t, "cmd/docker-ps-docker27.txt"), nil)
	if strings.Contains(c.Detail, "5432") || strings.Contains(c.Detail, "6379") {
		t.Errorf("loopback or unpublished ports reported: %q", c.Detail)
	}
}

func TestWorldWritableCheck(t *testing.T) {
	root := t.TempDir()
	deploy := "/srv/upanel"
	mk := func(name string, mode os.FileMode) {
		p := filepath.Join(root, deploy, name)
		if mode.IsDir() {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		} else {
			writeFile(t, root, filepath.Join(deploy, name), "x")
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	mk("apps", os.ModeDir|0o755)
	mk("apps/shop", os.ModeDir|0o755)
	mk("apps/shop/compose.yaml", 0o644)
	mk("apps/shop/.env", 0o600)
	mk("apps/shop/tmp", os.ModeDir|os.ModeSticky|0o777) // like /tmp: fine
	// Outside the deploy root, reached only through symlinks: not followed.
	writeFile(t, root, "elsewhere/open.txt", "x")
	os.Chmod(filepath.Join(root, "elsewhere/open.txt"), 0o666)
	os.Chmod(filepath.Join(root, "elsewhere"), 0o777)
	if err := os.Symlink(filepath.Join(root, "elsewhere"), filepath.Join(root, deploy, "apps/shop/link")); err != nil {
		t.Fatal(err)
	}
	check := func() wire.Check { return worldWritableCheck(context.Background(), root, deploy, 1000) }

	runCheckCases(t, checkWorldWritable, []checkCase{{"clean", check(), true, "none in 7 entries under /srv/upanel"}})

	mk("apps/shop/uploads", os.ModeDir|0o777)
	mk("apps/shop/compose.override.yaml", 0o666)
	c := check()
	runCheckCases(t, checkWorldWritable, []checkCase{
		{"open file and dir", c, false, "2 world-writable: /srv/upanel/apps/shop/compose.override.yaml, /srv/upanel/apps/shop/uploads"},
		{"missing", worldWritableCheck(context.Background(), root, "/srv/none", 1000), true, "does not exist"},
		{"not configured", worldWritableCheck(context.Background(), root, "", 1000), true, "no deploy root"},
		{"bounded", worldWritableCheck(context.Background(), root, deploy, 3), true, "stopped after 3 entries"},
	})
	if c.Fix != "chmod -R o-w /srv/upanel" {
		t.Errorf("fix = %q", c.Fix)
	}
	for i := range 12 {
		mk(fmt.Sprintf("apps/shop/f%02d", i), 0o646)
	}
	runCheckCases(t, checkWorldWritable, []checkCase{{"many", check(), false, "14 world-writable: "}, {"named", check(), false, " and 4 more"}})

	// A deploy root that is itself a symlink is followed.
	if err := os.Symlink(filepath.Join(root, deploy), filepath.Join(root, "deploy-link")); err != nil {
		t.Fatal(err)
	}
	runCheckCases(t, checkWorldWritable, []checkCase{{"symlinked root", worldWritableCheck(context.Background(), root, "/deploy-link", 1000), false, "14 world-writable: /deploy-link/apps/shop/"}})

	if c := worldWritableCheck(context.Background(), root, "/srv/it's mine", 10); c.Fix != `chmod -R o-w '/srv/it'\''s mine'` {
		t.Errorf("fix not quoted: %q", c.Fix)
	}
}

// fakeCommands answers Auditor.Run from captured outputs.
type fakeCommands map[string]struct {
	out string
	err error
}

func (f fakeCommands) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	r, ok := f[name+" "+strings.Join(args, " ")]
	if !ok {
		return nil, fmt.Errorf("unexpected command %s %q", name, args)
	}
	return []byte(r.out), r.err
}

func auditRoot(t *testing.T) string {
	root := copyTree(t, "testdata/host")
	if err := os.MkdirAll(filepath.Join(root, "srv/upanel/apps/shop"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "srv/upanel/apps/shop/compose.yaml", "services: {}\n")
	return root
}

func TestAudit(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the test data is of a little-endian machine")
	}
	out := func(name string) string { return string(readTestdata(t, "cmd/"+name)) }
	const (
		sshd    = "sshd -T"
		ufw     = "ufw status verbose"
		f2b     = "fail2ban-client status sshd"
		apt     = "apt-get -s -o Debug::NoLocking=true upgrade"
		dockerP = "docker ps --format {{.Names}}\t{{.Ports}}"
	)
	hardened := fakeCommands{
		sshd: {out: out("sshd-T-debian12-hardened.txt")}, ufw: {out: out("ufw-status-active.txt")},
		f2b: {out: out("fail2ban-status-sshd.txt")}, apt: {out: out("apt-get-upgrade-uptodate.txt")},
		dockerP: {out: out("docker-ps-loopback.txt")},
	}
	fresh := fakeCommands{
		sshd: {out: out("sshd-T-debian12-default.txt")}, ufw: {out: out("ufw-status-inactive.txt")},
		f2b: {err: exitError("fail2ban-client", "ERROR Failed to access socket path: /var/run/fail2ban/fail2ban.sock. Is fail2ban running?")},
		apt: {out: out("apt-get-upgrade-debian12.txt")}, dockerP: {out: out("docker-ps-docker20.txt")},
	}
	tests := []struct {
		name   string
		run    fakeCommands
		passed []string
	}{
		{"hardened", hardened, checkOrder},
		// A fresh Debian 12 VPS: only the files and ports pass.
		{"fresh", fresh, []string{checkUnattendedUpgrades, checkListeningPorts, checkWorldWritable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Auditor{Root: auditRoot(t), DeployRoot: "/srv/upanel", Run: tt.run.run}
			checks := a.Audit(context.Background())
			var ids, passed []string
			for _, c := range checks {
				ids = append(ids, c.ID)
				if c.Passed {
					passed = append(passed, c.ID)
				}
				if c.Detail == "" || c.Fix == "" || c.Title == "" {
					t.Errorf("incomplete check %+v", c)
				}
			}
			if !slices.Equal(ids, checkOrder) {
				t.Errorf("checks %v, want %v", ids, checkOrder)
			}
			if !slices.Equal(passed, tt.passed) {
				t.Errorf("passed %v, want %v", passed, tt.passed)
				for _, c := range checks {
					t.Logf("%s %v: %s", c.ID, c.Passed, c.Detail)
				}
			}
			score := wire.Audit{Checks: checks}.Score()
			want := 0
			for _, id := range tt.passed {
				want += checkInfos[id].weight
			}
			if score != want {
				t.Errorf("score %d, want %d", score, want)
			}
		})
	}
}

func TestAuditFailures(t *testing.T) {
	root := auditRoot(t)
	background := func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		run    func(ctx context.Context, name string, args ...string) ([]byte, error)
		detail string // in every failed command check
	}{
		{"nothing installed", background,
			func(context.Context, string, ...string) ([]byte, error) { return nil, errNotInstalled }, "not"},
		{"commands hang", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		},
			func(ctx context.Context, name string, _ ...string) ([]byte, error) {
				<-ctx.Done()
				return nil, fmt.Errorf("%s: %w", name, ctx.Err())
			}, "deadline exceeded"},
		{"commands panic", background,
			func(context.Context, string, ...string) ([]byte, error) { panic("boom") }, "internal error: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			a := &Auditor{Root: root, DeployRoot: "/srv/upanel", Run: tt.run}
			checks := a.Audit(ctx)
			if len(checks) != len(checkOrder) {
				t.Fatalf("%d checks", len(checks))
			}
			for _, c := range checks {
				switch c.ID {
				case checkUnattendedUpgrades, checkListeningPorts, checkWorldWritable: // no command
					continue
				case checkDockerPublished:
					if tt.name == "nothing installed" {
						if !c.Passed || c.Detail != "docker not installed" {
							t.Errorf("docker: %+v", c)
						}
						continue
					}
				}
				if c.Passed || !strings.Contains(c.Detail, tt.detail) {
					t.Errorf("%s: passed %v, detail %q", c.ID, c.Passed, c.Detail)
				}
			}
		})
	}
}

func TestAuditTimeoutMessage(t *testing.T) {
	// A command running past its own timeout (not the caller's) is named.
	a := &Auditor{Root: auditRoot(t), timeout: 20 * time.Millisecond, Run: func(ctx context.Context, name string, _ ...string) ([]byte, error) {
		if name != "ufw" {
			return nil, errNotInstalled
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	for _, c := range a.Audit(context.Background()) {
		if c.ID == checkFirewall && (c.Passed || c.Detail != "ufw status failed: ufw timed out after 20ms") {
			t.Errorf("firewall: %+v", c)
		}
	}
}

func TestAuditConcurrentRuns(t *testing.T) {
	root := auditRoot(t)
	a := &Auditor{Root: root, DeployRoot: "/srv/upanel", Run: func(context.Context, string, ...string) ([]byte, error) { return nil, errNotInstalled }}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { a.Audit(context.Background()) })
	}
	wg.Wait()
}

func TestRunCommand(t *testing.T) {
	t.Setenv("UPANEL_TEST_SECRET", "leak")
	out, err := runCommand(context.Background(), "sh", "-c", `echo "$LANG $PATH ${UPANEL_TEST_SECRET:-clean}"; pwd`)
	if err != nil {
		t.Fatal(err)
	}
	if want := "C " + strings.Join(commandDirs, ":") + " clean\n/\n"; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}

	out, err = runCommand(context.Background(), "sh", "-c", "echo partial; echo 'it broke' >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "exit status 3: it broke") || string(out) != "partial\n" {
		t.Errorf("failing command: %q, %v", out, err)
	}

	if _, err := runCommand(context.Background(), "upanel-no-such-command"); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("missing command: %v", err)
	}
	if _, err := runCommand(context.Background(), "/bin/sh", "-c", "true"); err == nil {
		t.Error("a path instead of a command name was run")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := runCommand(ctx, "sleep", "30"); err == nil {
		t.Error("a command outliving its context did not fail")
	}
}

func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{max: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if b.String() != "abcde" {
		t.Errorf("kept %q", b.String())
	}
}

func TestSSHDPorts(t *testing.T) {
	out := []byte("port 22\nport 2222\naddressfamily any\nport junk\nport 70000\nlistenaddress 0.0.0.0:22\n")
	if got := sshdPorts(out); !slices.Equal(got, []int{22, 2222}) {
		t.Errorf("sshdPorts = %v, want [22 2222]", got)
	}
}
