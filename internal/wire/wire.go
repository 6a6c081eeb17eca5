// Package wire is the protocol between the panel and its agents: plain structs
// with JSON tags, shared by both binaries and nothing else. Changes are
// additive: a new field is ignored by an older peer, so panel and agents can
// be upgraded one at a time.
//
// ProtocolVersion history:
//
//	1: heartbeat (inventory), metrics batches, security audit reports;
//	   panel → agent status and audit-now.
//	2: deployments (start, poll log and state, cancel), compose project
//	   status/start/stop/restart/logs, git checks (deploy.go).
package wire

import "time"

// ProtocolVersion is the newest version this build speaks.
const ProtocolVersion = 2

// MaxBody bounds every request body either side accepts.
const MaxBody = 1 << 20

// Paths the panel serves to agents (with the agent token as a bearer) and the
// agent serves to the panel (over mutual TLS).
const (
	PathHeartbeat = "/api/agent/v1/heartbeat"
	PathMetrics   = "/api/agent/v1/metrics"
	PathAudit     = "/api/agent/v1/audit"

	AgentPathStatus = "/v1/status"
	AgentPathAudit  = "/v1/audit"
)

// Message is what every agent → panel message starts with. Seq grows by one
// with every message an agent sends, across restarts; the panel refuses a seq
// it has seen, so a captured request cannot be replayed.
type Message struct {
	Protocol int       `json:"protocol"`
	Seq      uint64    `json:"seq"`
	SentAt   time.Time `json:"sent_at"`
}

// Host is the inventory an agent reports.
type Host struct {
	Hostname     string    `json:"hostname"`
	OS           string    `json:"os"` // PRETTY_NAME of os-release
	Kernel       string    `json:"kernel"`
	Arch         string    `json:"arch"` // GOARCH: amd64, arm64
	CPUCores     int       `json:"cpu_cores"`
	RAMMB        int       `json:"ram_mb"`
	DiskGB       int       `json:"disk_gb"`
	AgentVersion string    `json:"agent_version"`
	BootTime     time.Time `json:"boot_time"`
}

// Heartbeat says the agent is alive, with its inventory.
type Heartbeat struct {
	Message
	Host Host `json:"host"`
}

// HeartbeatReply tells the agent how to behave.
type HeartbeatReply struct {
	// IntervalSeconds is how often to send heartbeats and metrics.
	IntervalSeconds int `json:"interval_seconds"`
	// AuditNow asks for a security audit at once.
	AuditNow bool `json:"audit_now"`
}

// Sample is one metrics reading. Network counters are the bytes since the
// previous sample, so restarts and counter wraps do not show as spikes.
type Sample struct {
	At          time.Time `json:"at"`
	CPUPercent  float64   `json:"cpu_percent"`
	RAMUsedMB   int       `json:"ram_used_mb"`
	RAMTotalMB  int       `json:"ram_total_mb"`
	DiskUsedGB  int       `json:"disk_used_gb"`
	DiskTotalGB int       `json:"disk_total_gb"`
	NetInBytes  *int64    `json:"net_in_bytes,omitempty"`
	NetOutBytes *int64    `json:"net_out_bytes,omitempty"`
}

// MaxSamples bounds a metrics batch.
const MaxSamples = 2000

// Metrics is a batch of samples, oldest first.
type Metrics struct {
	Message
	Samples []Sample `json:"samples"`
}

// Check is one security check of an audit.
type Check struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Weight int    `json:"weight"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// Audit is a security audit of the server.
type Audit struct {
	Message
	Checks []Check `json:"checks"`
}

// Score is 0–100: the share of the checks' weight that passed.
func (a Audit) Score() int {
	total, passed := 0, 0
	for _, c := range a.Checks {
		total += c.Weight
		if c.Passed {
			passed += c.Weight
		}
	}
	if total == 0 {
		return 0
	}
	return passed * 100 / total
}

// Status is the agent's answer to the panel's status call.
type Status struct {
	Protocol int       `json:"protocol"`
	ServerID string    `json:"server_id"`
	Host     Host      `json:"host"`
	Started  time.Time `json:"started"`
}

// Error is how either side reports a refused request.
type Error struct {
	Error string `json:"error"`
}

// AgentConfig is the agent's configuration file: the panel writes it at
// install, the agent reads it. It holds the agent token, so it is 0600.
type AgentConfig struct {
	ServerID string `json:"server_id"`
	// PanelURL is UPANEL_URL; the agent pushes to it with Token as a bearer.
	PanelURL string `json:"panel_url"`
	Token    string `json:"token"`
	// PanelCertSHA256 pins the certificate the panel presents when it calls
	// the agent (mutual TLS): hex SHA-256 of its DER.
	PanelCertSHA256 string `json:"panel_cert_sha256"`
	// PanelCAFile, if set, is a PEM bundle that verifies an https PanelURL
	// instead of the system roots (a panel with a private CA).
	PanelCAFile string `json:"panel_ca_file,omitempty"`
	Listen      string `json:"listen"` // ":8443"
	CertFile    string `json:"cert_file"`
	KeyFile     string `json:"key_file"`
	StateDir    string `json:"state_dir"`
	// DeployRoot holds the apps; the audit checks it for world-writable files.
	DeployRoot      string `json:"deploy_root"`
	IntervalSeconds int    `json:"interval_seconds"`
	// ExpectedPorts are the ports that may listen on public addresses.
	ExpectedPorts []int `json:"expected_ports"`
}
