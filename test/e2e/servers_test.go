package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"upanel/internal/testhost"
)

// newVPS boots a host the way a provider hands one over: SSH also listens on
// a port of its owner's choice (published under the same number, so the
// panel reaches it at the port recorded for it), and the agent port is free.
func newVPS(t testing.TB, network *testhost.Network) (h *testhost.Host, sshPort, agentPort int) {
	t.Helper()
	sshPort, agentPort = testhost.FreePort(t), testhost.FreePort(t)
	for agentPort == sshPort {
		agentPort = testhost.FreePort(t)
	}
	h = testhost.Boot(t, network, testhost.Options{SamePorts: []int{sshPort, agentPort}})
	h.Root(t, fmt.Sprintf("printf 'Port 22\\nPort %d\\n' > /etc/ssh/sshd_config.d/05-ports.conf\nsystemctl restart ssh\n", sshPort))
	waitFor(t, "sshd on the chosen port", 30*time.Second, func() bool { return sshBanner(h.PortAddr(sshPort)) })
	return h, sshPort, agentPort
}

func sshBanner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 8)
	n, _ := c.Read(b)
	return strings.HasPrefix(string(b[:n]), "SSH-2.0-")
}

// TestServers is the servers issue end to end: two Debian hosts, one
// onboarded with the bootstrap command, one with a one-time root password;
// provisioning, the agent under systemd, status and metrics, hardening, the
// security score and drift, offline and recovery notifications, and a
// swapped host key.
func TestServers(t *testing.T) {
	testhost.Available(t)
	network := testhost.NewNetwork(t)
	p := startPanel(t, network)
	// A chat webhook for server outages, as an admin would add it.
	var hook struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	p.must(http.StatusCreated, "POST", "/api/v1/webhooks", map[string]any{"name": "ops chat", "url": p.hooks.url + "/hook",
		"format": "generic", "types": []string{"server_offline", "server_recovered"}}, &hook)

	hostA, sshA, agentA := newVPS(t, network)
	hostB, sshB, agentB := newVPS(t, network)

	// Path A: the bootstrap command, run as root on the server.
	var a serverView
	p.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": "alpha", "host": "127.0.0.1", "port": sshA, "agent_port": agentA}, &a)
	if !strings.HasPrefix(a.SSHPublicKey, "ssh-ed25519 ") || !strings.HasPrefix(a.BootstrapCommand, "curl -fsSL '"+p.url+"/bootstrap/") {
		t.Fatalf("created server: key %q, command %q", a.SSHPublicKey, a.BootstrapCommand)
	}
	if a.Status != "pending" {
		t.Fatalf("a new server is %q, want pending", a.Status)
	}
	out := hostA.Root(t, a.BootstrapCommand+"\n")
	if !strings.Contains(out, "the panel now provisions it") {
		t.Fatalf("bootstrap output: %s", out)
	}
	// The command is single-use: the second download is refused.
	if _, err := hostA.Exec(t, "", "bash", "-o", "pipefail", "-c", a.BootstrapCommand); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("the bootstrap command ran twice: %v", err)
	}

	// Path B: confirm the scanned fingerprint against the server's own
	// console, then a one-time root password.
	hostB.Root(t, "echo 'root:Tr0ub4dor-and-3-horses' | chpasswd\n"+
		"printf 'PermitRootLogin yes\\nPasswordAuthentication yes\\n' > /etc/ssh/sshd_config.d/50-cloud-init.conf\nsystemctl reload ssh\n")
	waitFor(t, "sshd after its reload", 30*time.Second, func() bool { return sshBanner(hostB.PortAddr(sshB)) })
	var b serverView
	p.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": "bravo", "host": "127.0.0.1", "port": sshB, "agent_port": agentB}, &b)
	if code := p.call("POST", "/api/v1/servers/"+b.ID+"/onboard", map[string]string{"password": "Tr0ub4dor-and-3-horses"}, nil); code != http.StatusConflict {
		t.Fatalf("onboarding before the host key is confirmed: %d, want 409", code)
	}
	var scan struct{ Fingerprint string }
	p.must(http.StatusOK, "POST", "/api/v1/servers/"+b.ID+"/host-key/scan", nil, &scan)
	console := hostB.Root(t, "for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf \"$f\"; done\n")
	fields := strings.Fields(scan.Fingerprint) // "ssh-ed25519 SHA256:…"
	if len(fields) != 2 || !strings.Contains(console, fields[1]) {
		t.Fatalf("scanned fingerprint %q is not among the server's keys:\n%s", scan.Fingerprint, console)
	}
	if code := p.call("POST", "/api/v1/servers/"+b.ID+"/host-key/confirm", map[string]string{"fingerprint": "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, nil); code != http.StatusBadRequest {
		t.Fatalf("confirming a wrong fingerprint: %d, want 400", code)
	}
	p.must(http.StatusOK, "POST", "/api/v1/servers/"+b.ID+"/host-key/confirm", map[string]string{"fingerprint": fields[1]}, nil)
	if code := p.call("POST", "/api/v1/servers/"+b.ID+"/onboard", map[string]string{"password": "wrong password"}, nil); code != http.StatusUnauthorized {
		t.Fatalf("onboarding with a wrong password: %d, want 401", code)
	}
	var onboard struct {
		JobID string `json:"job_id"`
	}
	p.must(http.StatusAccepted, "POST", "/api/v1/servers/"+b.ID+"/onboard", map[string]string{"password": "Tr0ub4dor-and-3-horses"}, &onboard)

	t.Run("provisioned and online", func(t *testing.T) {
		p := p.with(t)
		for _, s := range []struct {
			id   string
			host *testhost.Host
		}{{a.ID, hostA}, {b.ID, hostB}} {
			waitOnline(t, p, s.id, 4*time.Minute)
			v := p.server(s.id)
			if v.ProvisionedAt == nil || !v.AgentPinned || v.LastSeenAt == nil || v.Arch == "" || v.AgentVersion == "" ||
				!strings.Contains(v.OSVersion, "Debian") || v.CPUCores == nil || *v.CPUCores < 1 || v.RAMMB == nil || *v.RAMMB < 1 || v.DiskGB == nil {
				t.Errorf("%s inventory incomplete: %+v", v.Name, v)
			}
			if got, _ := s.host.Exec(t, "", "systemctl", "is-active", "upanel-agent"); strings.TrimSpace(got) != "active" {
				t.Errorf("%s: the agent unit is %q", v.Name, got)
			}
			if got, _ := s.host.Exec(t, "", "systemctl", "is-enabled", "upanel-agent"); strings.TrimSpace(got) != "enabled" {
				t.Errorf("%s: the agent unit is not enabled at boot: %q", v.Name, got)
			}
			// Installed by the provisioning, not by the test.
			if _, err := s.host.Exec(t, "", "sudo", "-n", "-u", "upanel", "sudo", "-n", "true"); err != nil {
				t.Errorf("%s: the upanel user has no sudo: %v", v.Name, err)
			}
			waitFor(t, v.Name+" metrics", time.Minute, func() bool {
				return p.countRows("SELECT COUNT(*) FROM server_metrics WHERE server_id = ?", s.id) >= 2
			})
			var m struct {
				Points []struct {
					CPUPercent float64 `json:"cpu_percent"`
					RAMTotalMB float64 `json:"ram_total_mb"`
				} `json:"points"`
			}
			p.must(http.StatusOK, "GET", "/api/v1/servers/"+s.id+"/metrics?range=1h", nil, &m)
			if len(m.Points) == 0 || m.Points[len(m.Points)-1].RAMTotalMB <= 0 {
				t.Errorf("%s: chart points %+v", v.Name, m.Points)
			}
		}
		// Prometheus scrapes the same figures, with a token only.
		req, _ := http.NewRequest("GET", p.url+"/metrics", nil)
		if resp, err := http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		} else if resp.Body.Close(); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("/metrics without a token: %d", resp.StatusCode)
		}
		req.Header.Set("Authorization", "Bearer "+p.operator)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`upanel_server_up{server_id="` + a.ID + `",server="alpha"} 1`,
			`upanel_server_up{server_id="` + b.ID + `",server="bravo"} 1`,
			`upanel_server_ram_total_bytes{server_id="` + a.ID + `",server="alpha"} `,
			`# TYPE upanel_server_cpu_percent gauge`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %q:\n%s", want, body)
			}
		}

		// The provisioning log shows its steps.
		j := p.waitJob(onboard.JobID, time.Minute)
		if log := strings.Join(j.Log, "\n"); j.Status != "succeeded" || !strings.Contains(log, "install and start the agent under systemd") ||
			!strings.Contains(log, "call the agent over mutual TLS") {
			t.Errorf("provisioning job %s:\n%s", j.Status, log)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("root password never stored", func(t *testing.T) {
		p := p.with(t)
		dir := p.dataDir
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err == nil && strings.Contains(string(b), "Tr0ub4dor-and-3-horses") {
				t.Errorf("the root password is in %s", e.Name())
			}
		}
		if strings.Contains(p.log.String(), "Tr0ub4dor-and-3-horses") {
			t.Error("the root password is in the panel's log")
		}
	})

	t.Run("re-provisioning is idempotent (the agent upgrade path)", func(t *testing.T) {
		p := p.with(t)
		var q struct {
			JobID string `json:"job_id"`
		}
		p.must(http.StatusAccepted, "POST", "/api/v1/servers/"+a.ID+"/provision", nil, &q)
		if j := p.waitJob(q.JobID, 3*time.Minute); j.Status != "succeeded" {
			t.Fatalf("second provisioning: %s %s\n%s", j.Status, j.LastError, strings.Join(j.Log, "\n"))
		}
		waitOnline(t, p, a.ID, time.Minute)
	})

	t.Run("hardening", func(t *testing.T) {
		p := p.with(t)
		for _, s := range []struct {
			id      string
			host    *testhost.Host
			sshPort int
			agent   int
		}{{a.ID, hostA, sshA, agentA}, {b.ID, hostB, sshB, agentB}} {
			var q struct {
				JobID string `json:"job_id"`
			}
			p.must(http.StatusAccepted, "POST", "/api/v1/servers/"+s.id+"/harden", nil, &q)
			if j := p.waitJob(q.JobID, 4*time.Minute); j.Status != "succeeded" {
				t.Fatalf("hardening: %s %s\n%s", j.Status, j.LastError, strings.Join(j.Log, "\n"))
			}
			sshd, err := s.host.Exec(t, "", "sshd", "-T")
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"permitrootlogin no", "passwordauthentication no", "kbdinteractiveauthentication no"} {
				if !containsLine(sshd, want) {
					t.Errorf("sshd -T lacks %q", want)
				}
			}
			ufw, err := s.host.Exec(t, "", "ufw", "status", "verbose")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(ufw, "Status: active") || !strings.Contains(ufw, "Default: deny (incoming)") {
				t.Errorf("ufw status:\n%s", ufw)
			}
			for _, port := range []int{22, 80, 443, s.sshPort, s.agent} {
				if !strings.Contains(ufw, strconv.Itoa(port)+"/tcp") {
					t.Errorf("ufw does not allow %d:\n%s", port, ufw)
				}
			}
			if f2b, err := s.host.Exec(t, "", "fail2ban-client", "status", "sshd"); err != nil || !strings.Contains(f2b, "Currently banned") {
				t.Errorf("fail2ban sshd jail: %v %s", err, f2b)
			}
			if v := p.server(s.id); v.HardenedAt == nil {
				t.Errorf("%s: hardened_at is not set", v.Name)
			}
		}
		if n := p.countRows("SELECT COUNT(*) FROM security_events WHERE event_type = 'server_hardened'"); n != 2 {
			t.Errorf("%d server_hardened events, want 2", n)
		}
		// The root password that onboarded bravo no longer opens it.
		cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.Password("Tr0ub4dor-and-3-horses")},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second} // only proving a refusal
		if c, err := ssh.Dial("tcp", hostB.PortAddr(sshB), cfg); err == nil {
			c.Close()
			t.Error("root can still sign in with a password after hardening")
		}
		// The panel still reaches both over SSH and the agent link.
		waitOnline(t, p, a.ID, 30*time.Second)
		waitOnline(t, p, b.ID, 30*time.Second)
	})

	t.Run("security score and drift", func(t *testing.T) {
		p := p.with(t)
		type audit struct {
			Score  int `json:"score"`
			At     time.Time
			Checks []struct {
				ID     string `json:"id"`
				Weight int    `json:"weight"`
				Passed bool   `json:"passed"`
				Fix    string `json:"fix"`
			} `json:"checks"`
		}
		var hardened audit
		waitFor(t, "a security audit after hardening", 2*time.Minute, func() bool {
			hardened = audit{}
			p.call("GET", "/api/v1/servers/"+a.ID+"/audit", nil, &hardened)
			v := p.server(a.ID)
			return len(hardened.Checks) > 0 && v.HardenedAt != nil && hardened.At.After(*v.HardenedAt) && v.SecurityScore != nil
		})
		passed := map[string]bool{}
		for _, c := range hardened.Checks {
			passed[c.ID] = c.Passed
			if c.Weight <= 0 || c.Fix == "" {
				t.Errorf("check %s has weight %d and fix %q", c.ID, c.Weight, c.Fix)
			}
		}
		for _, id := range []string{"ssh_root_login", "ssh_password_auth", "firewall", "fail2ban", "unattended_upgrades"} {
			if !passed[id] {
				t.Errorf("after hardening, check %s fails: %+v", id, hardened.Checks)
			}
		}
		if v := p.server(a.ID); *v.SecurityScore != hardened.Score || hardened.Score < 60 {
			t.Errorf("score %d (server says %v)", hardened.Score, *v.SecurityScore)
		}

		// Drift: someone turns the firewall off; an audit on demand sees it.
		hostA.Root(t, "ufw --force disable\n")
		p.must(http.StatusAccepted, "POST", "/api/v1/servers/"+a.ID+"/audit", nil, nil)
		var drifted audit
		waitFor(t, "the audit that sees the firewall off", time.Minute, func() bool {
			drifted = audit{}
			p.call("GET", "/api/v1/servers/"+a.ID+"/audit", nil, &drifted)
			return drifted.At.After(hardened.At)
		})
		t.Logf("security score: %d after hardening, %d with the firewall off", hardened.Score, drifted.Score)
		for _, c := range hardened.Checks {
			t.Logf("  %-24s weight %2d passed %v", c.ID, c.Weight, c.Passed)
		}
		if drifted.Score >= hardened.Score {
			t.Errorf("score %d after disabling the firewall, was %d", drifted.Score, hardened.Score)
		}
		if n := p.countRows("SELECT COUNT(*) FROM notifications WHERE type = 'security_drift' AND notifiable_id = ?", a.ID); n != 2 {
			t.Errorf("%d security_drift notifications, want 2 (the admin and the operator)", n)
		}
		hostA.Root(t, "ufw --force enable\n")
	})
	t.Run("server pages in a browser", func(t *testing.T) { browseServers(t, p.with(t), a.ID, b.ID) })

	t.Run("offline once, back once", func(t *testing.T) {
		p := p.with(t)
		hostB.Root(t, "systemctl stop upanel-agent\n")
		waitFor(t, "bravo offline", 30*time.Second, func() bool { return p.server(b.ID).Status == "offline" })
		// Several more intervals pass: still one notice per person.
		time.Sleep(4 * agentInterval)
		offline := "SELECT COUNT(*) FROM notifications WHERE type = 'server_offline' AND notifiable_id = ?"
		if n := p.countRows(offline, b.ID); n != 2 {
			t.Errorf("%d server_offline notifications, want 2 (the admin and the operator)", n)
		}
		if n := p.countRows("SELECT COUNT(*) FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.type = 'server_offline' AND u.role = 'viewer'"); n != 0 {
			t.Errorf("viewers were notified")
		}
		if v := p.server(a.ID); v.Status != "online" {
			t.Errorf("alpha is %s while only bravo stopped", v.Status)
		}
		// One mail per subscribed user, read back from the SMTP server, and
		// one signed webhook delivery.
		waitFor(t, "the outage mails", 30*time.Second, func() bool {
			return p.mailsTo("admin@example.com", "bravo is offline") >= 1 && p.mailsTo("operator@example.com", "bravo is offline") >= 1
		})
		waitFor(t, "the outage webhook", 30*time.Second, func() bool { return len(p.hooks.of("server_offline")) >= 1 })
		checkWebhook(t, p.hooks.of("server_offline"), hook.Secret, b.ID)

		hostB.Root(t, "systemctl start upanel-agent\n")
		waitOnline(t, p, b.ID, 30*time.Second)
		if n := p.countRows("SELECT COUNT(*) FROM notifications WHERE type = 'server_recovered' AND notifiable_id = ?", b.ID); n != 2 {
			t.Errorf("%d server_recovered notifications, want 2", n)
		}
		waitFor(t, "the recovery mails", 30*time.Second, func() bool {
			return p.mailsTo("admin@example.com", "bravo is back online") >= 1 && p.mailsTo("operator@example.com", "bravo is back online") >= 1
		})
		waitFor(t, "the recovery webhook", 30*time.Second, func() bool { return len(p.hooks.of("server_recovered")) >= 1 })
		checkWebhook(t, p.hooks.of("server_recovered"), hook.Secret, b.ID)
		// A flap soon after is the same incident: no new notices.
		hostB.Root(t, "systemctl stop upanel-agent\n")
		waitFor(t, "bravo offline again", 30*time.Second, func() bool { return p.server(b.ID).Status == "offline" })
		hostB.Root(t, "systemctl start upanel-agent\n")
		waitOnline(t, p, b.ID, 30*time.Second)
		if n := p.countRows(offline, b.ID); n != 2 {
			t.Errorf("a flap added notifications: %d server_offline", n)
		}
		// Time for any mail or webhook a bug would add to arrive.
		time.Sleep(5 * time.Second)
		for _, addr := range []string{"admin@example.com", "operator@example.com", "viewer@example.com"} {
			want := 1
			if addr == "viewer@example.com" {
				want = 0
			}
			if off, back := p.mailsTo(addr, "bravo is offline"), p.mailsTo(addr, "bravo is back online"); off != want || back != want {
				t.Errorf("%s got %d outage and %d recovery mails, want %d each", addr, off, back, want)
			}
		}
		if off, back := len(p.hooks.of("server_offline")), len(p.hooks.of("server_recovered")); off != 1 || back != 1 {
			t.Errorf("%d outage and %d recovery webhook deliveries, want 1 each", off, back)
		}
		if n := p.countRows("SELECT COUNT(*) FROM notifications WHERE notifiable_id = ? AND email_wanted = ? AND email_sent_at IS NULL", b.ID, true); n != 0 {
			t.Errorf("%d notifications wanted mail and have no email_sent_at", n)
		}
	})

	t.Run("maintenance mode raises nothing", func(t *testing.T) {
		p := p.with(t)
		var v serverView
		p.must(http.StatusOK, "POST", "/api/v1/servers/"+a.ID+"/maintenance", map[string]bool{"enabled": true}, &v)
		hostA.Root(t, "systemctl stop upanel-agent\n")
		waitFor(t, "alpha offline", 30*time.Second, func() bool { return p.server(a.ID).Status == "offline" })
		hostA.Root(t, "systemctl start upanel-agent\n")
		waitOnline(t, p, a.ID, 30*time.Second)
		p.must(http.StatusOK, "POST", "/api/v1/servers/"+a.ID+"/maintenance", map[string]bool{"enabled": false}, &v)
		time.Sleep(5 * time.Second)
		if n := p.countRows("SELECT COUNT(*) FROM notifications WHERE notifiable_id = ? AND type IN ('server_offline', 'server_recovered')", a.ID); n != 0 {
			t.Errorf("alpha in maintenance raised %d notifications", n)
		}
		if p.mailsTo("admin@example.com", "alpha is") != 0 || len(p.hooks.of("server_offline")) != 1 {
			t.Error("alpha in maintenance sent mail or a webhook")
		}
		if n := p.countRows("SELECT COUNT(*) FROM activity_log WHERE subject_id = ? AND description LIKE 'maintenance mode%'", a.ID); n != 2 {
			t.Errorf("%d maintenance entries in the activity log, want 2", n)
		}
	})

	t.Run("a swapped host key stops the next SSH job", func(t *testing.T) {
		p := p.with(t)
		hostA.ReplaceHostKeys(t)
		var q struct {
			JobID string `json:"job_id"`
		}
		p.must(http.StatusAccepted, "POST", "/api/v1/servers/"+a.ID+"/harden", nil, &q)
		j := p.waitJob(q.JobID, time.Minute)
		if j.Status == "succeeded" || j.Attempts != 1 || !strings.Contains(j.LastError, "host key") {
			t.Errorf("job after the key swap: %s after %d attempts: %s", j.Status, j.Attempts, j.LastError)
		}
		if n := p.countRows("SELECT COUNT(*) FROM security_events WHERE event_type = 'ssh_host_key_changed' AND severity = 'critical' AND server_id = ?", a.ID); n != 1 {
			t.Errorf("%d critical ssh_host_key_changed events, want 1", n)
		}
		v := p.server(a.ID)
		if v.Status != "error" || !strings.Contains(v.StatusReason, "host key") {
			t.Errorf("alpha after the key swap: %s %q", v.Status, v.StatusReason)
		}
		// A heartbeat does not clear an SSH alarm: the server stays in
		// error until someone deals with the key.
		time.Sleep(2 * agentInterval)
		if v := p.server(a.ID); v.Status != "error" {
			t.Errorf("a heartbeat cleared the host key alarm: %s", v.Status)
		}
	})
}

func waitOnline(t testing.TB, p *panelUnderTest, id string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := p.server(id)
		if v.Status == "online" {
			return
		}
		if v.Status == "error" || time.Now().After(deadline) {
			var jobs []string
			for _, kind := range []string{"fleet.provision", "fleet.harden"} {
				if j, err := p.db.LatestJobFor(context.Background(), "server", id, kind); err == nil {
					log, _ := p.db.JobLog(context.Background(), j.ID)
					jobs = append(jobs, fmt.Sprintf("job %s %s %s: %s\n%s", j.ID, j.Kind, j.Status, j.LastError, strings.Join(log, "\n")))
				}
			}
			t.Fatalf("server %s is %s (%s), not online:\n%s", v.Name, v.Status, v.StatusReason, strings.Join(jobs, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func containsLine(text, line string) bool {
	for l := range strings.Lines(text) {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

// checkWebhook checks the one delivery of an event: signed with the secret the
// panel showed once, and about the server.
func checkWebhook(t *testing.T, got []delivery, secret, serverID string) {
	t.Helper()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	d := got[0]
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(d.header.Get("X-UPanel-Timestamp") + "."))
	mac.Write(d.body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(d.header.Get("X-UPanel-Signature")), []byte(want)) {
		t.Errorf("signature %q does not verify", d.header.Get("X-UPanel-Signature"))
	}
	var body struct {
		Type    string `json:"type"`
		Subject struct {
			ID  string `json:"id"`
			URL string `json:"url"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(d.body, &body); err != nil || body.Subject.ID != serverID || !strings.HasSuffix(body.Subject.URL, "/servers/"+serverID) {
		t.Errorf("webhook body %s: %v", d.body, err)
	}
}
