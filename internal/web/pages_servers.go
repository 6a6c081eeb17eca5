package web

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/fleet"
	"upanel/internal/store"
	"upanel/internal/wire"
)

type serverRow struct {
	*store.Server
	Spark template.HTML
}

func (s *Server) serversPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Servers")
	pg.Nav = "servers"
	list, err := s.DB.ListServers(r.Context())
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	rows := make([]serverRow, 0, len(list))
	since := s.DB.Now().Add(-time.Hour)
	for _, x := range list {
		pts, err := s.DB.MetricSeries(r.Context(), x.ID, since, 2*time.Minute)
		if err != nil {
			s.fail(w, r, false, err)
			return
		}
		cpu := make([]float64, len(pts))
		for i, pt := range pts {
			cpu[i] = pt.CPUPercent
		}
		rows = append(rows, serverRow{Server: x, Spark: sparkline(cpu, 100, 120, 28)})
	}
	pg.Data = rows
	s.render(w, r, "servers", pg)
}

func (s *Server) serverNewPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pg := s.newPage(w, r, "Add a server")
	pg.Nav = "servers"
	pg.Form = map[string][]string{"port": {"22"}, "username": {"upanel"}, "agent_port": {"8443"}}
	s.render(w, r, "server_new", pg)
}

// formInt reads a number field; anything else becomes -1, which validation
// then refuses with its own message.
func formInt(v string) int {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return -1
	}
	return n
}

func (s *Server) serverCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	f := r.PostForm
	in := fleet.ServerInput{Name: f.Get("name"), Host: f.Get("host"), Port: formInt(f.Get("port")), Username: f.Get("username"), AgentPort: formInt(f.Get("agent_port"))}
	srv, cmd, err := s.Fleet.Create(r.Context(), p, in, s.meta(r))
	if err != nil {
		pg := s.newPage(w, r, "Add a server")
		pg.Nav = "servers"
		s.renderForm(w, r, "server_new", pg, err)
		return
	}
	s.renderServer(w, r, p, srv.ID, "Server added. Run the bootstrap command on it as root, or onboard it with a root login below.", cmd, nil)
}

// serverData is the server page.
type serverData struct {
	Server      *store.Server
	Bootstrap   string // a command just issued, shown this once
	Range       string
	CPU, RAM    template.HTML
	Disk, Net   template.HTML
	Score       *int
	AuditAt     time.Time
	Checks      []wire.Check
	Provision   *store.Job
	ProvisionLg []string
	Harden      *store.Job
	HardenLg    []string
	Fingerprint string // a scanned, unconfirmed host key
}

func (s *Server) serverPage(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.renderServer(w, r, p, r.PathValue("id"), "", "", nil)
}

func (s *Server) renderServer(w http.ResponseWriter, r *http.Request, p *auth.Principal, id, flash, bootstrap string, formErr error) {
	ctx := r.Context()
	srv, err := s.DB.GetServer(ctx, id)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	pg := s.newPage(w, r, srv.Name)
	pg.Nav = "servers"
	if flash != "" {
		pg.Flash = flash
	}
	d := &serverData{Server: srv, Bootstrap: bootstrap, Range: r.URL.Query().Get("range")}
	if _, ok := metricRanges[d.Range]; !ok {
		d.Range = "1h"
	}
	win := metricRanges[d.Range]
	pts, err := s.DB.MetricSeries(ctx, id, s.DB.Now().Add(-win.span), win.bucket)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	times := make([]time.Time, len(pts))
	cpu, ram, ramTotal, disk, diskTotal, netIn, netOut := make([]float64, len(pts)), make([]float64, len(pts)), 0.0, make([]float64, len(pts)), 0.0, make([]float64, len(pts)), make([]float64, len(pts))
	netTop := 1.0
	for i, x := range pts {
		times[i], cpu[i], ram[i], disk[i] = x.At, x.CPUPercent, x.RAMUsedMB, x.DiskUsedGB
		ramTotal, diskTotal = max(ramTotal, x.RAMTotalMB), max(diskTotal, x.DiskTotalGB)
		netIn[i], netOut[i] = float64(x.NetInBytes), float64(x.NetOutBytes)
		netTop = max(netTop, netIn[i], netOut[i])
	}
	d.CPU = lineChart("CPU", "%", times, 100, []chartSeries{{Name: "CPU %", Values: cpu, Class: "s1"}}, pg.loc)
	d.RAM = lineChart("Memory", "MB", times, ramTotal, []chartSeries{{Name: "memory used", Values: ram, Class: "s2"}}, pg.loc)
	d.Disk = lineChart("Disk", "GB", times, diskTotal, []chartSeries{{Name: "disk used", Values: disk, Class: "s3"}}, pg.loc)
	d.Net = lineChart("Network per bucket", "B", times, netTop, []chartSeries{{Name: "in", Values: netIn, Class: "s1"}, {Name: "out", Values: netOut, Class: "s4"}}, pg.loc)
	if score, checks, at, err := s.DB.LatestAudit(ctx, id); err == nil {
		d.Score, d.AuditAt = &score, at
		json.Unmarshal(checks, &d.Checks)
	}
	if j, err := s.DB.LatestJobFor(ctx, "server", id, fleet.ProvisionKind); err == nil {
		d.Provision = j
		d.ProvisionLg, _ = s.DB.JobLog(ctx, j.ID)
	}
	if j, err := s.DB.LatestJobFor(ctx, "server", id, fleet.HardenKind); err == nil {
		d.Harden = j
		d.HardenLg, _ = s.DB.JobLog(ctx, j.ID)
	}
	if fps := fleet.Fingerprints(srv.SSHHostKeysSeen); len(fps) > 0 {
		d.Fingerprint = fps[0]
	}
	pg.Data = d
	if formErr != nil {
		s.renderForm(w, r, "server", pg, formErr)
		return
	}
	s.render(w, r, "server", pg)
}

// serverAction runs one of the server page's buttons and comes back to it.
func (s *Server) serverAction(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	ctx, id, m := r.Context(), r.PathValue("id"), s.meta(r)
	var err error
	var flash, bootstrap string
	switch r.PathValue("action") {
	case "provision":
		_, err = s.Fleet.Enqueue(ctx, p, fleet.ProvisionKind, id, m)
		flash = "Provisioning queued. Its steps appear below."
	case "upgrade-agent":
		_, err = s.Fleet.Enqueue(ctx, p, fleet.ProvisionKind, id, m)
		flash = "Agent upgrade queued (a provisioning run installs the panel's agent)."
	case "harden":
		_, err = s.Fleet.Enqueue(ctx, p, fleet.HardenKind, id, m)
		flash = "Hardening queued."
	case "audit":
		err = s.Fleet.RequestAudit(ctx, id)
		flash = "The agent is auditing the server; the score updates in a moment."
	case "bootstrap":
		bootstrap, err = s.Fleet.NewBootstrapCommand(ctx, p, id, m)
		flash = "A new bootstrap command; the old one no longer works."
	case "scan":
		var fp string
		fp, err = s.Fleet.ScanHostKey(ctx, p, id, m)
		flash = "The server presents " + fp + ". Compare it with the server's console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before confirming."
	case "confirm":
		err = s.Fleet.ConfirmHostKey(ctx, p, id, r.PostFormValue("fingerprint"), m)
		flash = "Host key pinned."
	case "onboard":
		_, err = s.Fleet.Onboard(ctx, p, id, fleet.RootLogin{User: r.PostFormValue("user"), Password: r.PostFormValue("password"), PrivateKey: r.PostFormValue("private_key")}, m)
		flash = "Signed in once, created the upanel user, and queued provisioning. The root credential was not kept."
	case "delete":
		if err = s.Fleet.Delete(ctx, p, id, m); err == nil {
			s.redirect(w, r, "/servers", "Server removed from the panel.")
			return
		}
	default:
		err = apperr.New(apperr.NotFound, "no such action")
	}
	if err != nil {
		if apperr.Is(err, apperr.NotFound) {
			s.fail(w, r, false, err)
			return
		}
		s.renderServer(w, r, p, id, "", "", err)
		return
	}
	if bootstrap != "" {
		s.renderServer(w, r, p, id, flash, bootstrap, nil)
		return
	}
	s.redirect(w, r, "/servers/"+id, flash)
}
