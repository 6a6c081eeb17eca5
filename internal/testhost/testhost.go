// Package testhost boots real Debian servers for end-to-end tests: containers
// of the image that scripts/testhost-image.sh builds (systemd, OpenSSH, Docker
// with compose v1, Caddy, ufw, fail2ban, unattended-upgrades), each on a Docker
// bridge network of its test's own, as /work/shared/TESTHOSTS.md describes.
//
// The machine reaches a host only through its ports published on 127.0.0.1
// (Host.SSHAddr, Host.PortAddr); hosts reach the panel under test, and each
// other, over the Network, where the panel listens at Network.Gateway. Every
// network and container is removed at t.Cleanup, on failure too.
//
// "make test" starts a Docker daemon, builds the image and sets
// UPANEL_TEST_DOCKER=1. Without Docker or the image, tests skip, except under
// CI=true or UPANEL_TEST_DOCKER=1, where they fail.
//
// The package runs the docker CLI with argument lists, never through a shell.
package testhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Image is the test-host image; scripts/testhost-image.sh builds it under the
// same tag.
const Image = "upanel-testhost:bookworm-v2"

// Label marks every network and container this package creates, to find ones
// left behind by a test binary that was killed: docker ps -a --filter label=upanel.test
const Label = "upanel.test"

const (
	bootTimeout = 60 * time.Second // until systemd settles and sshd answers
	execTimeout = 10 * time.Minute // one docker exec
	cmdTimeout  = 2 * time.Minute  // any other docker command
	stopTimeout = 30               // seconds docker stop waits for systemd to halt
	pollEvery   = 250 * time.Millisecond
)

var probe = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("the docker command is not installed")
	}
	if _, err := docker(ctx, "", "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Errorf("no Docker daemon answers: %w", err)
	}
	if _, err := docker(ctx, "", "image", "inspect", "--format", "{{.Id}}", Image); err != nil {
		return fmt.Errorf("image %s is missing (scripts/testhost-image.sh builds it)", Image)
	}
	return nil
})

// Available skips the test when Docker or the test-host image is missing, or
// fails it under CI=true or UPANEL_TEST_DOCKER=1, where they must be there.
func Available(t testing.TB) {
	t.Helper()
	err := probe()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" || os.Getenv("UPANEL_TEST_DOCKER") == "1" {
		t.Fatalf("test hosts unavailable: %v; under CI=true (or UPANEL_TEST_DOCKER=1) they must be (run make test)", err)
	}
	t.Skipf("test hosts unavailable: %v; run make test to get them", err)
}

// Network is a Docker bridge network made for one test.
type Network struct {
	Name    string
	Subnet  string // CIDR, chosen by Docker to collide with no other network or route
	Gateway string // the machine's address on the network: the panel listens here
}

// NewNetwork creates a network with a fresh random name, removed at cleanup
// (after the hosts booted on it, which are removed first).
func NewNetwork(t testing.TB) *Network {
	t.Helper()
	Available(t)
	n := &Network{Name: randomName(t)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		if _, err := docker(ctx, "", "network", "rm", n.Name); err != nil && !isNoSuch(err) {
			t.Errorf("testhost: remove network %s: %v", n.Name, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := docker(ctx, "", "network", "create", "--driver", "bridge", "--label", Label+"=1", n.Name); err != nil {
		t.Fatalf("testhost: create network: %v", err)
	}
	out, err := docker(ctx, "", "network", "inspect", "--format", "{{json .IPAM.Config}}", n.Name)
	if err != nil {
		t.Fatalf("testhost: inspect network: %v", err)
	}
	var cfg []struct{ Subnet, Gateway string }
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("testhost: network %s: IPAM config %q: %v", n.Name, out, err)
	}
	for _, c := range cfg {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil || !p.Addr().Is4() {
			continue
		}
		n.Subnet, n.Gateway = p.String(), c.Gateway
		if n.Gateway == "" { // Docker gives the bridge the first address
			n.Gateway = p.Masked().Addr().Next().String()
		}
		break
	}
	if n.Subnet == "" {
		t.Fatalf("testhost: network %s has no IPv4 subnet: %s", n.Name, out)
	}
	return n
}

// Options tune a booted host.
type Options struct {
	// ExtraPorts are container TCP ports to publish on 127.0.0.1 besides 22,
	// such as 8443 for the agent; Host.PortAddr gives their addresses.
	ExtraPorts []int
	// SamePorts are container TCP ports published on the same port number
	// of 127.0.0.1 (pick them with FreePort): a server the panel manages is
	// recorded with the ports it listens on, and its firewall opens those.
	SamePorts []int
	// Memory limits the container's memory, in docker run --memory syntax
	// ("1g"); empty means no limit.
	Memory string
}

// Host is a booted test host. Stop and Start change its addresses, so don't
// call them while other goroutines use it.
type Host struct {
	Name    string // container name, also its hostname
	IP      string // its address on the Network
	SSHAddr string // 127.0.0.1:PORT, published from port 22

	net   *Network
	ports []int          // published container ports, 22 first
	addrs map[int]string // container port → 127.0.0.1:PORT
}

// Boot starts a host on net and waits until systemd is up (running or
// degraded: fail2ban fails until hardening configures it) and sshd answers.
// The container is removed at cleanup; if the test failed, the end of the
// host's journal is logged first.
func Boot(t testing.TB, network *Network, opts Options) *Host {
	t.Helper()
	Available(t)
	h := &Host{Name: randomName(t), net: network, ports: append(append([]int{22}, opts.ExtraPorts...), opts.SamePorts...)}
	// Registered before docker run, which can fail after creating the container.
	t.Cleanup(func() { h.remove(t) })
	args := []string{"run", "-d", "--name", h.Name, "--hostname", h.Name,
		"--label", Label + "=1", "--network", network.Name,
		"--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
		"--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
		"--stop-signal", "SIGRTMIN+3", // systemd's clean shutdown
	}
	for i, p := range h.ports {
		if p <= 0 || p > 65535 {
			t.Fatalf("testhost: bad port %d", p)
		}
		host := ""
		if i > len(opts.ExtraPorts) {
			host = strconv.Itoa(p)
		}
		args = append(args, "-p", "127.0.0.1:"+host+":"+strconv.Itoa(p))
	}
	if opts.Memory != "" {
		args = append(args, "--memory", opts.Memory)
	}
	args = append(args, Image, "/sbin/init")
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := docker(ctx, "", args...); err != nil {
		t.Fatalf("testhost: boot: %v", err)
	}
	h.waitReady(t)
	return h
}

// FreePort returns a TCP port of 127.0.0.1 that is free now, for
// Options.SamePorts.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testhost: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// PortAddr returns 127.0.0.1:PORT where containerPort, one of 22,
// Options.ExtraPorts and Options.SamePorts, is published.
func (h *Host) PortAddr(containerPort int) string {
	a, ok := h.addrs[containerPort]
	if !ok {
		panic(fmt.Sprintf("testhost: port %d of %s is not published (add it to Options.ExtraPorts)", containerPort, h.Name))
	}
	return a
}

// Exec runs argv in the host as root (docker exec -i) with stdin as its input
// and returns its standard output. The error of a failed command carries its
// exit status and standard error.
func (h *Host) Exec(t testing.TB, stdin string, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	return h.exec(ctx, stdin, argv...)
}

func (h *Host) exec(ctx context.Context, stdin string, argv ...string) (string, error) {
	return docker(ctx, stdin, append([]string{"exec", "-i", h.Name}, argv...)...)
}

// Root runs a bash script as root on the host, passed on stdin to bash -s, as
// an admin would at a root shell on a new server (to run a bootstrap command,
// say). It returns standard output and fails the test if the script fails.
func (h *Host) Root(t testing.TB, script string) string {
	t.Helper()
	out, err := h.Exec(t, script, "bash", "-s")
	if err != nil {
		t.Fatalf("testhost: root script on %s: %v\nstdout:\n%s", h.Name, err, out)
	}
	return out
}

// HostKey returns the host's ed25519 public key, as in
// /etc/ssh/ssh_host_ed25519_key.pub ("ssh-ed25519 AAAA… root@host").
func (h *Host) HostKey(t testing.TB) string {
	t.Helper()
	out, err := h.Exec(t, "", "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		t.Fatalf("testhost: read host key of %s: %v", h.Name, err)
	}
	return strings.TrimSpace(out)
}

// ReplaceHostKeys gives the host new SSH host keys and restarts sshd, as if
// the server were swapped, and waits until sshd answers again.
func (h *Host) ReplaceHostKeys(t testing.TB) {
	t.Helper()
	h.Root(t, "set -e\nrm -f /etc/ssh/ssh_host_*\nssh-keygen -A >/dev/null\nsystemctl restart ssh\n")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := waitSSH(ctx, h.SSHAddr); err != nil {
		t.Fatalf("testhost: sshd on %s after new host keys: %v", h.Name, err)
	}
}

// Stop shuts the host down cleanly (systemd halts; docker stop).
func (h *Host) Stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := docker(ctx, "", "stop", "-t", strconv.Itoa(stopTimeout), h.Name); err != nil {
		t.Fatalf("testhost: stop %s: %v", h.Name, err)
	}
}

// Start boots a stopped host again and waits as Boot does. Docker may publish
// its ports on other host ports and give it another IP, so it updates SSHAddr,
// IP and PortAddr.
func (h *Host) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := docker(ctx, "", "start", h.Name); err != nil {
		t.Fatalf("testhost: start %s: %v", h.Name, err)
	}
	h.waitReady(t)
}

// waitReady reads the host's addresses, then waits until systemd has finished
// booting and sshd sends its banner.
func (h *Host) waitReady(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := h.readAddrs(ctx); err != nil {
		t.Fatalf("testhost: %v", err)
	}
	state := ""
	for {
		out, _ := h.exec(ctx, "", "systemctl", "is-system-running") // exits 1 when degraded
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			break
		}
		if !sleep(ctx) {
			t.Fatalf("testhost: %s did not boot within %v: systemd is %q", h.Name, bootTimeout, state)
		}
	}
	if err := waitSSH(ctx, h.SSHAddr); err != nil {
		t.Fatalf("testhost: sshd on %s: %v", h.Name, err)
	}
}

func (h *Host) readAddrs(ctx context.Context) error {
	out, err := docker(ctx, "", "inspect", "--type", "container", "--format", "{{json .NetworkSettings.Networks}}", h.Name)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", h.Name, err)
	}
	var nets map[string]struct{ IPAddress string }
	if err := json.Unmarshal([]byte(out), &nets); err != nil {
		return fmt.Errorf("inspect %s: networks %q: %w", h.Name, out, err)
	}
	h.IP = nets[h.net.Name].IPAddress
	if h.IP == "" {
		return fmt.Errorf("%s has no address on %s: %s", h.Name, h.net.Name, out)
	}
	h.addrs = make(map[int]string, len(h.ports))
	for _, p := range h.ports {
		out, err := docker(ctx, "", "port", h.Name, strconv.Itoa(p)+"/tcp")
		if err != nil {
			return fmt.Errorf("published port %d of %s: %w", p, h.Name, err)
		}
		for line := range strings.Lines(out) {
			if ap, err := netip.ParseAddrPort(strings.TrimSpace(line)); err == nil && ap.Addr() == netip.AddrFrom4([4]byte{127, 0, 0, 1}) {
				h.addrs[p] = ap.String()
				break
			}
		}
		if h.addrs[p] == "" {
			return fmt.Errorf("port %d of %s is not published on 127.0.0.1: %q", p, h.Name, out)
		}
	}
	h.SSHAddr = h.addrs[22]
	return nil
}

// remove logs the journal if the test failed, then removes the container.
func (h *Host) remove(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if t.Failed() {
		t.Logf("testhost: journal of %s (last 200 lines):\n%s", h.Name, h.journal(ctx))
	}
	if _, err := docker(ctx, "", "rm", "-f", "-v", h.Name); err != nil && !isNoSuch(err) {
		t.Errorf("testhost: remove container %s: %v", h.Name, err)
	}
}

// journal returns the end of the host's journal of this boot, or why it can't.
func (h *Host) journal(ctx context.Context) string {
	out, err := h.exec(ctx, "", "journalctl", "-b", "--no-pager", "-n", "200")
	if err != nil {
		return fmt.Sprintf("(no journal: %v)\n%s", err, out)
	}
	return out
}

// waitSSH waits until addr sends an SSH banner. Docker's port proxy accepts
// connections before sshd listens, so a connection alone proves nothing.
func waitSSH(ctx context.Context, addr string) error {
	var last error
	for {
		last = sshBanner(ctx, addr)
		if last == nil {
			return nil
		}
		if !sleep(ctx) {
			return fmt.Errorf("no SSH banner on %s: %w", addr, last)
		}
	}
}

func sshBanner(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	buf := make([]byte, 8)
	n, err := c.Read(buf)
	if string(buf[:n]) != "SSH-2.0-" {
		return fmt.Errorf("read %q: %v", buf[:n], err)
	}
	return nil
}

func sleep(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(pollEvery):
		return true
	}
}

// docker runs the docker CLI with args and stdin, returning standard output.
func docker(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", summarize(args), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// summarize shortens a docker command line for error messages.
func summarize(args []string) string {
	s := strings.Join(args, " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func isNoSuch(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "no such") || strings.Contains(s, "not found")
}

func randomName(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "upanel-test-" + hex.EncodeToString(b)
}
