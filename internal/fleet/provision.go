package fleet

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"upanel/internal/apperr"
	"upanel/internal/audit"
	"upanel/internal/auth"
	"upanel/internal/jobs"
	"upanel/internal/pin"
	"upanel/internal/store"
	"upanel/internal/wire"
)

//go:embed scripts/*.sh
var scripts embed.FS

func script(name string) []byte {
	b, err := scripts.ReadFile("scripts/" + name)
	if err != nil {
		panic(err) // embedded at build time; a test covers every name
	}
	return b
}

// sudoScript runs a fixed script as root, its text on stdin. args are only
// ever integers formatted by the caller.
const sudoScript = "sudo -n /bin/bash -s"

// stageDir is where uploads wait for install-agent.sh, in the home of the
// user the panel signs in as (SFTP paths are relative to it).
const stageDir = ".upanel-stage"

// job wraps what a server job does with its log and its connection.
type job struct {
	s   *Service
	j   *jobs.Job
	srv *store.Server
	r   *remote
}

func (x *job) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if err := x.s.DB.AppendJobLog(context.Background(), x.j.ID, line); err != nil {
		x.s.Log.Warn("append job log", "job_id", x.j.ID, "err", err)
	}
}

func (x *job) step(name string) { x.logf("▸ %s", name) }

// connect signs in as the server's user with its key, checking the pinned
// host key. A mismatch is a critical security event and ends the job.
func (s *Service) connect(ctx context.Context, x *job) error {
	key, err := s.DB.ServerSSHKey(ctx, x.srv.ID)
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return fmt.Errorf("server key: %w", err)
	}
	var seen string
	c, err := dialSSH(ctx, x.srv, x.srv.Username, []ssh.AuthMethod{ssh.PublicKeys(signer)}, hostKeyCheck(x.srv.SSHHostKeys, &seen))
	if errors.Is(err, errHostKeyChanged) {
		reason := fmt.Sprintf("SSH host key changed: the server presented %s, which is not the pinned key. If the server was reinstalled, confirm the new key; otherwise someone may be intercepting the connection.", seen)
		x.logf("%s", reason)
		s.hostKeyAlarm(ctx, x.srv, seen, reason)
		return jobs.Permanent(errors.New(reason))
	}
	if err != nil {
		return fmt.Errorf("ssh to %s: %w", x.srv.Host, err)
	}
	x.r = &remote{client: c, log: func(l string) { x.logf("  %s", l) }}
	return nil
}

func (s *Service) hostKeyAlarm(ctx context.Context, srv *store.Server, seen, reason string) {
	s.security(ctx, store.SecurityEvent{EventType: audit.HostKeyChanged, Severity: store.SeverityCritical, ServerID: srv.ID,
		Details: map[string]any{"server": srv.Name, "host": srv.Host, "presented": seen, "pinned": Fingerprints(srv.SSHHostKeys)}})
	if err := s.DB.SetServerError(ctx, srv.ID, reason); err != nil {
		s.Log.Error("mark server error", "err", err)
	}
}

// run is the common frame of server jobs: load the server, connect, do the
// work, and on a final failure put the server in error with the reason.
func (s *Service) run(ctx context.Context, j *jobs.Job, work func(ctx context.Context, x *job) error) error {
	var p serverJob
	if err := j.Decode(&p); err != nil {
		return err
	}
	srv, err := s.DB.GetServer(ctx, p.ServerID)
	if apperr.Is(err, apperr.NotFound) {
		return jobs.Permanent(fmt.Errorf("server %s no longer exists", p.ServerID))
	}
	if err != nil {
		return err
	}
	x := &job{s: s, j: j, srv: srv}
	x.logf("attempt %d of %d on %s (%s:%d)", j.Attempts, j.MaxAttempts, srv.Name, srv.Host, srv.Port)
	x.step("connect over SSH (host key pinned)")
	err = s.connect(ctx, x)
	if err == nil {
		defer x.r.client.Close()
		err = work(ctx, x)
	}
	if err != nil {
		x.logf("✗ %v", err)
		if jobs.IsPermanent(err) || j.Attempts >= j.MaxAttempts {
			if serr := s.DB.SetServerError(ctx, srv.ID, j.Kind+" failed: "+err.Error()); serr != nil {
				s.Log.Error("mark server error", "err", serr)
			}
		}
		return err
	}
	x.logf("✓ done")
	return nil
}

// ProvisionHandler installs what the server needs and the agent, and pins
// the agent's certificate. Every step can run again safely.
func (s *Service) ProvisionHandler() jobs.Handler {
	return func(ctx context.Context, j *jobs.Job) error {
		return s.run(ctx, j, s.provision)
	}
}

func (s *Service) provision(ctx context.Context, x *job) error {
	x.step("inspect the system")
	out, err := x.r.run(ctx, "/bin/sh -s", script("inspect.sh"))
	if err != nil {
		return err
	}
	fields := strings.Fields(out)
	if len(fields) < 2 {
		return jobs.Permanent(fmt.Errorf("unexpected system description %q", out))
	}
	arch := map[string]string{"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[fields[0]]
	if distro := fields[1]; distro != "debian" && distro != "ubuntu" {
		return jobs.Permanent(fmt.Errorf("UPanel provisions Debian and Ubuntu; this server runs %q", distro))
	}
	bin, err := s.agentBinary(arch)
	if err != nil {
		return jobs.Permanent(err)
	}

	x.step("install Docker, compose, Caddy and git where missing")
	if _, err := x.r.run(ctx, sudoScript, script("packages.sh")); err != nil {
		return err
	}

	x.step("upload the agent (" + arch + ") and its configuration")
	_, panelPin, err := s.Identity(ctx)
	if err != nil {
		return err
	}
	token, tokenHash := auth.NewAgentToken()
	cfg := s.agentConfig(x.srv, token, panelPin)
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := x.r.mkdir(stageDir); err != nil {
		return fmt.Errorf("staging directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode uint32
	}{{"upanel-agent", bin, 0o700}, {"config.json", cfgJSON, 0o600}, {"upanel-agent.service", []byte(agentUnit), 0o600}} {
		if err := x.r.upload(stageDir+"/"+f.name, f.data, f.mode); err != nil {
			return err
		}
	}
	x.logf("  uploaded %d bytes of agent", len(bin))
	// The token is recorded before the agent starts, so its first
	// heartbeat is accepted.
	if err := s.DB.InTx(ctx, func(tx *store.Tx) error { return tx.SetAgentToken(ctx, x.srv.ID, tokenHash) }); err != nil {
		return err
	}

	x.step("install and start the agent under systemd")
	out, err = x.r.runQuiet(ctx, sudoScript, script("install-agent.sh"), "-----AGENT CERTIFICATE-----")
	if err != nil {
		return err
	}
	_, certPEM, ok := strings.Cut(out, "-----AGENT CERTIFICATE-----\n")
	if !ok {
		return errors.New("the install script printed no agent certificate")
	}
	fp, err := pin.FingerprintPEM([]byte(certPEM))
	if err != nil {
		return fmt.Errorf("agent certificate: %w", err)
	}
	x.step("pin the agent's certificate " + fp[:16] + "…")
	if err := s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetAgentCredentials(ctx, x.srv.ID, fp, tokenHash); err != nil {
			return err
		}
		return tx.MarkProvisioned(ctx, x.srv.ID, arch)
	}); err != nil {
		return err
	}
	x.srv.AgentCertSHA256 = fp

	x.step("call the agent over mutual TLS")
	// The agent was just (re)started: give it a moment to listen.
	var st *wire.Status
	for deadline := time.Now().Add(30 * time.Second); ; {
		if st, err = s.AgentStatus(ctx, x.srv); err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("agent at %s:%d: %w", x.srv.Host, x.srv.AgentPort, err)
	}
	x.logf("  agent %s answers: %s, %d cores, %d MB RAM", st.Host.AgentVersion, st.Host.OS, st.Host.CPUCores, st.Host.RAMMB)
	return nil
}

// agentUnit is the agent's systemd unit.
//
// MemoryMax bounds the whole unit: the agent and its children, which are
// git (fetch and index-pack, which with transfer.fsckObjects need memory in
// proportion to the repository) and the compose CLI. So it is 1G, not the
// agent's own needs (tens of MB). OOMScoreAdjust=-500 makes the agent the
// OOM killer's last choice: the agent sets its children back to 0, so a
// child that runs out of memory is killed (its deployment fails with
// "signal: killed") rather than the agent (which would end every deployment
// it runs, mid-step).
//
// KillMode=mixed sends SIGTERM to the agent alone: it stops its steps itself
// and puts the previous release back, for up to 5 minutes (recoverTimeout),
// before systemd kills what is left after TimeoutStopSec.
const agentUnit = `[Unit]
Description=UPanel agent
After=network-online.target docker.service
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/upanel-agent -config /etc/upanel-agent/config.json
Restart=always
RestartSec=5
NoNewPrivileges=yes
PrivateTmp=yes
# The limit covers git and docker compose too; see provision.go.
MemoryMax=1G
OOMScoreAdjust=-500
KillMode=mixed
TimeoutStopSec=7min

[Install]
WantedBy=multi-user.target
`

func (s *Service) agentConfig(srv *store.Server, token, panelPin string) wire.AgentConfig {
	return wire.AgentConfig{
		ServerID: srv.ID, PanelURL: strings.TrimRight(s.BaseURL.String(), "/"), Token: token, PanelCertSHA256: panelPin,
		Listen: fmt.Sprintf(":%d", srv.AgentPort), CertFile: "/etc/upanel-agent/cert.pem", KeyFile: "/etc/upanel-agent/key.pem",
		StateDir: "/var/lib/upanel-agent", DeployRoot: "/srv/upanel", IntervalSeconds: int(s.AgentInterval.Seconds()),
		ExpectedPorts: []int{srv.Port, 80, 443, srv.AgentPort},
	}
}

// HardenHandler applies the hardening and records it.
func (s *Service) HardenHandler() jobs.Handler {
	return func(ctx context.Context, j *jobs.Job) error {
		return s.run(ctx, j, func(ctx context.Context, x *job) error {
			// fail2ban must never ban the panel itself: the address the server
			// sees the panel's SSH connection come from is exempt.
			quiet := &remote{client: x.r.client}
			out, err := quiet.run(ctx, `printf '%s\n' "${SSH_CONNECTION%% *}"`, nil)
			if err != nil {
				return err
			}
			panelIP, err := netip.ParseAddr(strings.TrimSpace(out))
			if err != nil {
				return fmt.Errorf("the server did not report the panel's address: %q", out)
			}
			x.logf("  the server sees the panel at %s: fail2ban will never ban it", panelIP.Unmap())
			x.step("harden SSH, the firewall, fail2ban and upgrades")
			cmd := fmt.Sprintf("%s -- %d %d %s", sudoScript, x.srv.Port, x.srv.AgentPort, panelIP.Unmap())
			if _, err := x.r.run(ctx, cmd, script("harden.sh")); err != nil {
				return err
			}
			if err := s.DB.InTx(ctx, func(tx *store.Tx) error { return tx.MarkHardened(ctx, x.srv.ID) }); err != nil {
				return err
			}
			s.security(ctx, store.SecurityEvent{EventType: audit.ServerHardened, ServerID: x.srv.ID,
				Details: map[string]any{"server": x.srv.Name}})
			x.step("ask the agent for a new security audit")
			if err := s.askAudit(ctx, x.srv); err != nil {
				x.logf("  the agent could not be asked (it audits on its own within a day): %v", err)
			}
			return nil
		})
	}
}
