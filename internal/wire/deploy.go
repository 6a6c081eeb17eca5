package wire

import "time"

// Deployments (protocol 2). The panel starts a deployment on the agent and
// then pulls its log and state until it ends; the agent keeps a journal of
// each deployment on disk, so a panel that crashed picks up where it was, and
// an agent that restarted reports what became of the deployments it was
// running. Every call is idempotent by deployment id.
const (
	// AgentPathDeploy: POST a DeployRequest; 202 with its DeployState. A
	// second POST with the same id returns the existing state, whatever
	// the body.
	AgentPathDeploy = "/v1/deployments"
	// AgentPathDeployState: GET /v1/deployments/{id}?after=SEQ&wait=MS
	// returns a DeployLog: the lines after SEQ and the state, waiting up to
	// wait milliseconds (at most 10 s) for something new. 404 if the agent
	// never heard of the id.
	AgentPathDeployState = "/v1/deployments/" // + id
	// AgentPathDeployCancel: POST /v1/deployments/{id}/cancel.
	AgentPathDeployCancelSuffix = "/cancel"

	// AgentPathProject: per compose project (upanel-<app>-<env>):
	// GET  /v1/projects/{project}          → ProjectStatus
	// POST /v1/projects/{project}/{action} → start, stop, restart
	// GET  /v1/projects/{project}/logs?tail=N&service=S → ProjectLogs
	AgentPathProject = "/v1/projects/"

	// AgentPathGitCheck: POST a GitCheck; runs git ls-remote with the
	// credential and answers GitCheckResult.
	AgentPathGitCheck = "/v1/git/check"
)

// Deployment states on the agent; the panel's deployments.status uses the
// same words.
const (
	DeployRunning   = "running"
	DeploySuccess   = "success"
	DeployFailed    = "failed"
	DeployCancelled = "cancelled"
)

// GitSource is a repository and how to authenticate to it. Secrets travel
// only inside the mutually authenticated TLS connection; the agent writes
// them to 0600 files for the one git command that needs them and removes
// them afterwards. They never go into argv, a URL or a log line.
type GitSource struct {
	URL string `json:"url"` // https:// or ssh:// (or scp-like git@host:path)
	// Credential type: "" (public), ssh_key, token, basic.
	CredentialType string `json:"credential_type,omitempty"`
	SSHPrivateKey  string `json:"ssh_private_key,omitempty"` // PEM (OpenSSH)
	// KnownHosts pins the SSH host key(s) of the git server, known_hosts
	// lines; required for ssh remotes.
	KnownHosts string `json:"known_hosts,omitempty"`
	Username   string `json:"username,omitempty"` // basic; token defaults to "x-access-token"
	Secret     string `json:"secret,omitempty"`   // the token or password
}

// DeployRequest asks the agent to deploy a commit of an app.
type DeployRequest struct {
	ID  string    `json:"id"` // the deployment's id (a ULID)
	Git GitSource `json:"git"`
	// Branch to fetch; Commit, when set, is the exact commit to deploy (a
	// rollback), which must be reachable from the branch or already fetched.
	Branch string `json:"branch"`
	Commit string `json:"commit,omitempty"`
	// Dir is the absolute directory of this environment's checkout, under
	// the agent's deploy root (the agent checks it again).
	Dir         string `json:"dir"`
	ComposeFile string `json:"compose_file"` // a plain relative file name
	Project     string `json:"project"`      // compose project name: upanel-<app>-<env>
	// Env is the effective environment, written to Dir/.env (0600).
	Env map[string]string `json:"env,omitempty"`
	// KeepReleases is how many successful releases keep their images, so a
	// rollback to one of them needs no build.
	KeepReleases int `json:"keep_releases"`
	// Timeout bounds the whole deployment, in seconds (default 1800).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// DeployState is what the agent knows of a deployment.
type DeployState struct {
	ID            string     `json:"id"`
	Status        string     `json:"status"` // running, success, failed, cancelled
	Commit        string     `json:"commit,omitempty"`
	CommitMessage string     `json:"commit_message,omitempty"`
	Branch        string     `json:"branch,omitempty"`
	Error         string     `json:"error,omitempty"`
	StartedAt     time.Time  `json:"started_at"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
	// Rebuilt is false when the release's images were reused (a rollback).
	Rebuilt bool `json:"rebuilt"`
	// RestoreFailed is set on a failed or cancelled deployment that had
	// begun to change the containers when the agent could not put the
	// previous release back: what runs may be neither release. (Added to
	// protocol 2; older agents leave it out.)
	RestoreFailed bool `json:"restore_failed,omitempty"`
	// LastSeq is the sequence number of the newest log line.
	LastSeq int `json:"last_seq"`
}

// LogLine is one line of a deployment's output, with credentials and env
// values already masked by the agent.
type LogLine struct {
	Seq  int       `json:"seq"` // from 1, without gaps
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

// DeployLog is the answer to a state poll.
type DeployLog struct {
	State DeployState `json:"state"`
	Lines []LogLine   `json:"lines"`
}

// MaxLogLines bounds the lines of one DeployLog answer; MaxLineBytes one
// line (longer lines are cut).
const (
	MaxLogLines  = 1000
	MaxLineBytes = 4096
)

// ServiceStatus is one compose service's containers.
type ServiceStatus struct {
	Service string `json:"service"`
	State   string `json:"state"`  // running, exited, restarting, ...
	Health  string `json:"health"` // healthy, unhealthy, starting, or "" without a healthcheck
	Status  string `json:"status"` // docker's human status ("Up 3 minutes")
}

// ProjectStatus is a compose project's services.
type ProjectStatus struct {
	Project  string          `json:"project"`
	Services []ServiceStatus `json:"services"`
}

// ProjectLogs is a bounded tail of a project's container logs.
type ProjectLogs struct {
	Lines     []string `json:"lines"`
	Truncated bool     `json:"truncated"`
}

// GitCheck asks the agent to reach a repository (git ls-remote).
type GitCheck struct {
	Git    GitSource `json:"git"`
	Branch string    `json:"branch,omitempty"`
}

// GitCheckResult says whether it worked, and what the branch points at.
type GitCheckResult struct {
	OK     bool   `json:"ok"`
	Commit string `json:"commit,omitempty"` // the branch's head, when a branch was given
	Error  string `json:"error,omitempty"`  // masked
}
