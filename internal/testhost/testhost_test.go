package testhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestImageTagMatchesScript(t *testing.T) {
	b, err := os.ReadFile("../../scripts/testhost-image.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nTAG="+Image+"\n") {
		t.Fatalf("scripts/testhost-image.sh does not build %s; keep Image and TAG in step", Image)
	}
}

func TestHost(t *testing.T) {
	Available(t)
	var netName string
	var hostNames []string
	t.Run("boot", func(t *testing.T) {
		n := NewNetwork(t)
		netName = n.Name
		if !strings.HasPrefix(n.Name, "upanel-test-") {
			t.Errorf("network name %q", n.Name)
		}
		subnet := netip.MustParsePrefix(n.Subnet)
		if gw, err := netip.ParseAddr(n.Gateway); err != nil || !subnet.Contains(gw) {
			t.Fatalf("gateway %q is not in subnet %s", n.Gateway, n.Subnet)
		}

		// The panel under test listens at the gateway; hosts must reach it.
		l, err := net.Listen("tcp", net.JoinHostPort(n.Gateway, "0"))
		if err != nil {
			t.Fatal(err)
		}
		panel := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "panel here")
		}))
		panel.Listener = l
		panel.Start()
		t.Cleanup(panel.Close)

		start := time.Now()
		h := Boot(t, n, Options{ExtraPorts: []int{8443}, Memory: "1g"})
		t.Logf("booted %s in %v: ip %s, ssh %s, 8443 at %s", h.Name, time.Since(start).Round(time.Millisecond), h.IP, h.SSHAddr, h.PortAddr(8443))
		hostNames = append(hostNames, h.Name)
		if ip, err := netip.ParseAddr(h.IP); err != nil || !subnet.Contains(ip) {
			t.Errorf("host IP %q is not in %s", h.IP, n.Subnet)
		}
		if !strings.HasPrefix(h.SSHAddr, "127.0.0.1:") || h.PortAddr(22) != h.SSHAddr {
			t.Errorf("SSHAddr %q, PortAddr(22) %q", h.SSHAddr, h.PortAddr(22))
		}
		if out, _ := docker(context.Background(), "", "inspect", "--format", "{{.HostConfig.Memory}}", h.Name); strings.TrimSpace(out) != "1073741824" {
			t.Errorf("memory limit %q, want 1g", out)
		}

		if out, err := h.Exec(t, "", "systemctl", "is-active", "ssh", "docker"); err != nil || out != "active\nactive\n" {
			t.Errorf("ssh, docker: %q, %v", out, err)
		}
		if _, err := h.Exec(t, "", "which", "unattended-upgrade"); err != nil {
			t.Errorf("unattended-upgrade: %v", err)
		}
		if out, err := h.Exec(t, "line one\nline two\n", "cat"); err != nil || out != "line one\nline two\n" {
			t.Errorf("exec with stdin: %q, %v", out, err)
		}
		_, err = h.Exec(t, "", "sh", "-c", "echo oops >&2; exit 3")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(err.Error(), "oops") {
			t.Errorf("failing exec: %v", err)
		}
		if out := h.Root(t, "set -e\nid -un\nuseradd --create-home alice\nid -un alice\n"); out != "root\nalice\n" {
			t.Errorf("root script: %q", out)
		}

		if out, err := h.Exec(t, "", "curl", "-fsS", "--max-time", "10", panel.URL); err != nil || out != "panel here" {
			t.Errorf("host → panel at the gateway: %q, %v", out, err)
		}

		// An extra port is published: serve it from the host and fetch it.
		h.Root(t, "systemd-run --unit upanel-probe --working-directory /etc/ssh python3 -m http.server 8443 >/dev/null 2>&1\n")
		body := poll(t, "http://"+h.PortAddr(8443)+"/ssh_config")
		if !strings.Contains(body, "Host *") {
			t.Errorf("GET from port 8443: %q", body)
		}

		// A second host on the network reaches the first, and has its own
		// host keys and machine id.
		h2 := Boot(t, n, Options{})
		hostNames = append(hostNames, h2.Name)
		if out, err := h2.Exec(t, "", "curl", "-fsS", "--max-time", "10", "http://"+net.JoinHostPort(h.IP, "8443")+"/ssh_config"); err != nil || !strings.Contains(out, "Host *") {
			t.Errorf("host → host: %q, %v", out, err)
		}
		if h.HostKey(t) == h2.HostKey(t) {
			t.Error("two hosts share a host key")
		}
		if id1, id2 := h.Root(t, "cat /etc/machine-id"), h2.Root(t, "cat /etc/machine-id"); id1 == id2 || len(strings.TrimSpace(id1)) != 32 {
			t.Errorf("machine ids %q, %q", id1, id2)
		}

		before := h.HostKey(t)
		h.ReplaceHostKeys(t)
		after := h.HostKey(t)
		if !strings.HasPrefix(before, "ssh-ed25519 ") || !strings.HasPrefix(after, "ssh-ed25519 ") || before == after {
			t.Errorf("host key before %q, after %q", before, after)
		}

		start = time.Now()
		h.Stop(t)
		if out, _ := docker(context.Background(), "", "inspect", "--format", "{{.State.Running}}", h.Name); strings.TrimSpace(out) != "false" {
			t.Errorf("stopped host running: %q", out)
		}
		h.Start(t)
		t.Logf("stop and start took %v; ssh now at %s", time.Since(start).Round(time.Millisecond), h.SSHAddr)
		if k := h.HostKey(t); k != after {
			t.Errorf("host key changed across a restart: %q, then %q", after, k)
		}
		if out, err := h.Exec(t, "", "id", "-un", "alice"); err != nil || out != "alice\n" {
			t.Errorf("state lost across a restart: %q, %v", out, err)
		}
		if j := h.journal(context.Background()); !strings.Contains(j, "systemd") {
			t.Errorf("journal: %q", j)
		}
	})

	if netName == "" || len(hostNames) != 2 {
		t.Fatalf("boot subtest did not get far: network %q, hosts %q", netName, hostNames)
	}
	ctx := context.Background()
	for _, name := range hostNames {
		if _, err := docker(ctx, "", "inspect", "--type", "container", name); err == nil || !isNoSuch(err) {
			t.Errorf("container %s left behind (%v)", name, err)
		}
	}
	if _, err := docker(ctx, "", "network", "inspect", netName); err == nil || !isNoSuch(err) {
		t.Errorf("network %s left behind (%v)", netName, err)
	}
}

// poll GETs url until it answers 200, for up to 30 s, and returns the body.
func poll(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(b)
			}
			err = fmt.Errorf("%s: %v", resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
