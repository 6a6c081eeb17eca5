package web

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/fleet"
	"upanel/internal/store"
	"upanel/internal/wire"
)

type serverJSON struct {
	ID                  string     `json:"id"`
	Name                string     `json:"name"`
	Host                string     `json:"host"`
	Port                int        `json:"port"`
	Username            string     `json:"username"`
	SSHPublicKey        string     `json:"ssh_public_key"`
	AgentPort           int        `json:"agent_port"`
	Status              string     `json:"status"`
	StatusReason        string     `json:"status_reason,omitempty"`
	LastSeenAt          *time.Time `json:"last_seen_at"`
	OSVersion           string     `json:"os_version,omitempty"`
	CPUCores            *int       `json:"cpu_cores"`
	RAMMB               *int       `json:"ram_mb"`
	DiskGB              *int       `json:"disk_gb"`
	HardenedAt          *time.Time `json:"hardened_at"`
	SecurityScore       *int       `json:"security_score"`
	AgentVersion        string     `json:"agent_version,omitempty"`
	Arch                string     `json:"arch,omitempty"`
	HostKeys            []string   `json:"host_key_fingerprints"`
	HostKeysUnconfirmed []string   `json:"host_key_fingerprints_unconfirmed,omitempty"`
	AgentPinned         bool       `json:"agent_certificate_pinned"`
	ProvisionedAt       *time.Time `json:"provisioned_at"`
	MaintenanceSince    *time.Time `json:"maintenance_since"`
	CreatedAt           time.Time  `json:"created_at"`
	UpdatedAt           time.Time  `json:"updated_at"`
	// BootstrapCommand is present only in the answers that create it.
	BootstrapCommand string `json:"bootstrap_command,omitempty"`
}

func toServerJSON(s *store.Server) serverJSON {
	return serverJSON{ID: s.ID, Name: s.Name, Host: s.Host, Port: s.Port, Username: s.Username, SSHPublicKey: s.SSHPublicKey,
		AgentPort: s.AgentPort, Status: s.Status, StatusReason: s.StatusReason, LastSeenAt: s.LastSeenAt, OSVersion: s.OSVersion,
		CPUCores: s.CPUCores, RAMMB: s.RAMMB, DiskGB: s.DiskGB, HardenedAt: s.HardenedAt, SecurityScore: s.SecurityScore,
		AgentVersion: s.AgentVersion, Arch: s.Arch, HostKeys: fleet.Fingerprints(s.SSHHostKeys),
		HostKeysUnconfirmed: fleet.Fingerprints(s.SSHHostKeysSeen), AgentPinned: s.AgentCertSHA256 != "",
		ProvisionedAt: s.ProvisionedAt, MaintenanceSince: s.MaintenanceSince, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

func (s *Server) apiServers(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	list, err := s.DB.ListServers(r.Context())
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := listJSON[serverJSON]{Items: []serverJSON{}}
	for _, x := range list {
		out.Items = append(out.Items, toServerJSON(x))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiServerCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var in fleet.ServerInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	srv, cmd, err := s.Fleet.Create(r.Context(), p, in, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := toServerJSON(srv)
	out.BootstrapCommand = cmd
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) apiServer(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	srv, err := s.DB.GetServer(r.Context(), r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toServerJSON(srv))
}

func (s *Server) apiServerUpdate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var in fleet.ServerInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	srv, err := s.Fleet.Update(r.Context(), p, r.PathValue("id"), in, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toServerJSON(srv))
}

func (s *Server) apiServerDelete(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Fleet.Delete(r.Context(), p, r.PathValue("id"), s.meta(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiServerBootstrap(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	cmd, err := s.Fleet.NewBootstrapCommand(r.Context(), p, r.PathValue("id"), s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"bootstrap_command": cmd})
}

func (s *Server) apiServerScan(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	fp, err := s.Fleet.ScanHostKey(r.Context(), p, r.PathValue("id"), s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"fingerprint": fp})
}

func (s *Server) apiServerConfirm(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var in struct {
		Fingerprint string `json:"fingerprint"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	if err := s.Fleet.ConfirmHostKey(r.Context(), p, r.PathValue("id"), in.Fingerprint, s.meta(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	s.apiServer(w, r, p)
}

func (s *Server) apiServerOnboard(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var in struct {
		User       string `json:"user"`
		Password   string `json:"password"`
		PrivateKey string `json:"private_key"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	jobID, err := s.Fleet.Onboard(r.Context(), p, r.PathValue("id"), fleet.RootLogin{User: in.User, Password: in.Password, PrivateKey: in.PrivateKey}, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"job_id": jobID})
}

// apiServerJob queues provisioning (which also upgrades the agent) or hardening.
func (s *Server) apiServerJob(kind string) func(http.ResponseWriter, *http.Request, *auth.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		jobID, err := s.Fleet.Enqueue(r.Context(), p, kind, r.PathValue("id"), s.meta(r))
		if err != nil {
			s.apiError(w, r, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"job_id": jobID})
	}
}

func (s *Server) apiServerMaintenance(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var in struct {
		Enabled *bool `json:"enabled"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	if in.Enabled == nil {
		s.apiError(w, r, apperr.New(apperr.Invalid, "give enabled: true or false"))
		return
	}
	if err := s.Fleet.SetMaintenance(r.Context(), p, r.PathValue("id"), *in.Enabled, s.meta(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	s.apiServer(w, r, p)
}

func (s *Server) apiServerAudit(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if err := s.Fleet.RequestAudit(r.Context(), r.PathValue("id")); err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]bool{"requested": true})
}

type auditJSON struct {
	Score  int          `json:"score"`
	At     time.Time    `json:"at"`
	Checks []wire.Check `json:"checks"`
}

func (s *Server) apiServerChecks(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	score, checks, at, err := s.DB.LatestAudit(r.Context(), r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := auditJSON{Score: score, At: at}
	json.Unmarshal(checks, &out.Checks)
	writeJSON(w, http.StatusOK, out)
}

// metricRanges are the chart windows and their bucket widths: about 360
// points each.
var metricRanges = map[string]struct{ span, bucket time.Duration }{
	"1h": {time.Hour, 10 * time.Second}, "24h": {24 * time.Hour, 4 * time.Minute}, "7d": {7 * 24 * time.Hour, 30 * time.Minute},
}

func (s *Server) apiServerMetrics(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	rg := r.URL.Query().Get("range")
	if rg == "" {
		rg = "1h"
	}
	win, ok := metricRanges[rg]
	if !ok {
		s.apiError(w, r, apperr.New(apperr.Invalid, "range must be 1h, 24h or 7d"))
		return
	}
	if _, err := s.DB.GetServer(r.Context(), r.PathValue("id")); err != nil {
		s.apiError(w, r, err)
		return
	}
	pts, err := s.DB.MetricSeries(r.Context(), r.PathValue("id"), s.DB.Now().Add(-win.span), win.bucket)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	type point struct {
		At          time.Time `json:"at"`
		CPUPercent  float64   `json:"cpu_percent"`
		RAMUsedMB   float64   `json:"ram_used_mb"`
		RAMTotalMB  float64   `json:"ram_total_mb"`
		DiskUsedGB  float64   `json:"disk_used_gb"`
		DiskTotalGB float64   `json:"disk_total_gb"`
		NetInBytes  int64     `json:"network_in_bytes"`
		NetOutBytes int64     `json:"network_out_bytes"`
	}
	out := struct {
		Range  string  `json:"range"`
		Bucket int     `json:"bucket_seconds"`
		Points []point `json:"points"`
	}{Range: rg, Bucket: int(win.bucket.Seconds()), Points: []point{}}
	for _, x := range pts {
		out.Points = append(out.Points, point(x))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiJob(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	j, err := s.DB.GetJob(r.Context(), r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	lines, err := s.DB.JobLog(r.Context(), j.ID)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	if lines == nil {
		lines = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": j.ID, "kind": j.Kind, "status": j.Status, "attempts": j.Attempts,
		"max_attempts": j.MaxAttempts, "last_error": j.LastError, "subject_type": j.SubjectType, "subject_id": j.SubjectID,
		"started_at": j.StartedAt, "finished_at": j.FinishedAt, "created_at": j.CreatedAt, "log": lines})
}

// Agent endpoints: the principal is the agent, which names its server.

// decodeAgent reads one JSON message of at most wire.MaxBody bytes. The body
// must end after it: the decoder would otherwise stop at the message's end,
// and an oversized body, or one with a second message after the first, would
// be taken.
func decodeAgent(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxBody))
	if err := dec.Decode(v); err != nil {
		return apperr.New(apperr.Invalid, "the message is malformed or larger than %d bytes", wire.MaxBody)
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return apperr.New(apperr.Invalid, "the message has data after it or is larger than %d bytes", wire.MaxBody)
	}
	return nil
}

func (s *Server) agentHeartbeat(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var hb wire.Heartbeat
	if err := decodeAgent(w, r, &hb); err != nil {
		s.apiError(w, r, err)
		return
	}
	reply, err := s.Fleet.Heartbeat(r.Context(), p.AgentServerID, hb, s.clientIP(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

func (s *Server) agentMetrics(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var m wire.Metrics
	if err := decodeAgent(w, r, &m); err != nil {
		s.apiError(w, r, err)
		return
	}
	if err := s.Fleet.Metrics(r.Context(), p.AgentServerID, m, s.clientIP(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) agentAudit(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var a wire.Audit
	if err := decodeAgent(w, r, &a); err != nil {
		s.apiError(w, r, err)
		return
	}
	if err := s.Fleet.Audit(r.Context(), p.AgentServerID, a, s.clientIP(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// bootstrapScript serves the script a bootstrap command pipes into bash.
func (s *Server) bootstrapScript(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	script, err := s.Fleet.BootstrapScript(r.Context(), r.PathValue("token"))
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(statusOf(err))
		// Whatever reaches bash must be a harmless script.
		io.WriteString(w, "echo 'upanel: "+strings.ReplaceAll(apperr.MessageOf(err), "'", "")+"' >&2; exit 1\n")
		return
	}
	w.Header().Set("Content-Type", "text/x-shellscript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, script)
}

func (s *Server) bootstrapReport(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		s.apiError(w, r, apperr.New(apperr.Invalid, "the report is too large"))
		return
	}
	if err := s.Fleet.ReportHostKeys(r.Context(), r.PathValue("token"), string(body), s.meta(r)); err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"pinned": true})
}
