package fleet

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Hostile values in any server field are refused before they reach SSH, a
// script or a command line.
func TestServerInputRefusesHostileValues(t *testing.T) {
	good := ServerInput{Name: "web-1", Host: "web-1.example.com", Port: 22, Username: "upanel", AgentPort: 8443}
	if _, err := good.Normalize(); err != nil {
		t.Fatal(err)
	}
	hostile := []string{";", "$(id)", "`id`", "a\nb", "-oProxyCommand=id", "--upload-pack=id", "ext::sh", "../etc", "a b", "a'b", `a"b`, "a|b", "a&b", "\x00"}
	for _, h := range hostile {
		for field, mutate := range map[string]func(ServerInput) ServerInput{
			"host":     func(in ServerInput) ServerInput { in.Host = "web" + h; return in },
			"host2":    func(in ServerInput) ServerInput { in.Host = h; return in },
			"username": func(in ServerInput) ServerInput { in.Username = "up" + h; return in },
		} {
			if _, err := mutate(good).Normalize(); err == nil {
				t.Errorf("%s %q accepted", field, h)
			}
		}
	}
	for _, bad := range []ServerInput{
		{Name: "", Host: "a.example"}, {Name: strings.Repeat("n", 101), Host: "a.example"}, {Name: "x\x07", Host: "a.example"},
		{Name: "x", Host: "a.example", Port: 70000}, {Name: "x", Host: "a.example", Port: -1},
		{Name: "x", Host: "a.example", Port: 22, AgentPort: 22}, {Name: "x", Host: "a.example", Username: "root"},
		{Name: "x", Host: "0.0.0.0"}, {Name: "x", Host: "1.2.3"}, {Name: "x", Host: "-lead.example"}, {Name: "x", Host: "a..b"},
		{Name: "x", Host: strings.Repeat("a", 64) + ".example"}, {Name: "x", Host: "fe80::1%eth0"},
	} {
		if _, err := bad.Normalize(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	for _, ok := range []string{"192.0.2.10", "2001:db8::1", "a.b.example", "xn--bcher-kva.example", "localhost"} {
		if !ValidHost(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	n, _ := ServerInput{Name: " web ", Host: "WEB.Example.COM"}.Normalize()
	if n.Port != 22 || n.Username != "upanel" || n.AgentPort != 8443 || n.Host != "web.example.com" || n.Name != "web" {
		t.Fatalf("defaults: %+v", n)
	}
}

// The install script on a server with nothing installed: a golden test of the
// commands it would run, run by a real bash with a PATH that has none of the
// tools.
func TestPackagesPlanOnABareServer(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	cmd := exec.Command(bash, "-s", "--", "--plan")
	cmd.Stdin = strings.NewReader(string(script("packages.sh")))
	cmd.Env = []string{"PATH=" + empty}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	golden := filepath.Join("testdata", "packages-plan.golden")
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		os.WriteFile(golden, out, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(want) {
		t.Fatalf("plan on a bare server:\n%s\nwant:\n%s", out, want)
	}
}

func TestBootstrapScriptQuotesEverything(t *testing.T) {
	if got := shellQuote(`it's $(x)`); got != `'it'\''s $(x)'` {
		t.Fatalf("shellQuote = %s", got)
	}
	var b strings.Builder
	err := onboardScripts.ExecuteTemplate(&b, "bootstrap", map[string]string{"Username": "upanel",
		"PublicKey": "ssh-ed25519 AAAAC3 upanel", "ReportURL": "https://panel.example/bootstrap/ubt_x/host-keys"})
	if err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{"USERNAME='upanel'", "PUBKEY='ssh-ed25519 AAAAC3 upanel'", "REPORT_URL='https://panel.example/bootstrap/ubt_x/host-keys'", "visudo -cf"} {
		if !strings.Contains(s, want) {
			t.Errorf("bootstrap script lacks %q", want)
		}
	}
	bash, _ := exec.LookPath("bash")
	if out, err := exec.Command(bash, "-n", "-c", s).CombinedOutput(); err != nil {
		t.Fatalf("bootstrap script does not parse: %v %s", err, out)
	}
	for _, name := range []string{"inspect.sh", "packages.sh", "install-agent.sh", "harden.sh"} {
		if out, err := exec.Command(bash, "-n", "-c", string(script(name))).CombinedOutput(); err != nil {
			t.Errorf("%s does not parse: %v %s", name, err, out)
		}
	}
}

func TestParseHostKeys(t *testing.T) {
	_, pub, err := newKeyPair("test")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := parseHostKeys("\n" + pub + "\n")
	if err != nil || len(keys) != 1 || !strings.HasPrefix(keys[0], "ssh-ed25519 ") || strings.Contains(keys[0], "test") {
		t.Fatalf("parseHostKeys = %v, %v", keys, err)
	}
	if fps := Fingerprints(keys); len(fps) != 1 || !strings.HasPrefix(fps[0], "ssh-ed25519 SHA256:") {
		t.Fatalf("fingerprints = %v", fps)
	}
	for _, bad := range []string{"", "not a key", "ssh-ed25519 !!!", strings.Repeat(pub+"\n", 11)} {
		if _, err := parseHostKeys(bad); err == nil {
			t.Errorf("%.30q accepted", bad)
		}
	}
}
