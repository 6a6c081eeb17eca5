package web

import (
	"encoding/json"
	"fmt"
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
	Spark  template.HTML
	CPUNow string // the latest minute's CPU use, "" without metrics
}

// ScoreClass names the colour of the server's score.
func (r serverRow) ScoreClass() string { return scoreClass(r.SecurityScore) }

// scoreClass sorts a security score into good (90 and up: at most a minor
// check fails), fair (70 and up) and poor, for its colour.
func scoreClass(score *int) string {
	switch {
	case score == nil:
		return ""
	case *score >= 90:
		return "score-good"
	case *score >= 70:
		return "score-fair"
	}
	return "score-poor"
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
		pts, err := s.DB.MetricSeries(r.Context(), x.ID, since, time.Minute)
		if err != nil {
			s.fail(w, r, false, err)
			return
		}
		cpu := make([]float64, len(pts))
		for i, pt := range pts {
			cpu[i] = pt.CPUPercent
		}
		row := serverRow{Server: x, Spark: sparkline(cpu, 100, 120, 28)}
		if len(cpu) > 0 {
			row.CPUNow = fmt.Sprintf("%.0f%%", cpu[len(cpu)-1])
		}
		rows = append(rows, row)
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
	Hardware    string // "2 cores · 23.6 GB RAM · 252 GB disk"
	HostKeys    []hostKey
	Range       string
	Bucket      string      // how long each point of the charts averages
	Since       time.Time   // the first point, when it is later than the range's start
	Charts      []chartView // none without metrics in the range
	Score       *int
	ScoreClass  string
	AuditAt     time.Time
	Checks      []wire.Check
	Provision   *store.Job
	ProvisionLg []string
	Harden      *store.Job
	HardenLg    []string
	Fingerprint string // a scanned, unconfirmed host key
}

// chartView is one chart of the server page: its title, the latest values
// in words, a key to its lines when it has several, and the SVG.
type chartView struct {
	Title  string
	Latest string
	Key    []chartSeries
	SVG    template.HTML
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
	d := &serverData{Server: srv, Bootstrap: bootstrap, Range: r.URL.Query().Get("range"),
		Hardware: hardware(srv), HostKeys: hostKeys(srv.SSHHostKeys)}
	if _, ok := metricRanges[d.Range]; !ok {
		d.Range = "1h"
	}
	win := metricRanges[d.Range]
	now := s.DB.Now()
	pts, err := s.DB.MetricSeries(ctx, id, now.Add(-win.span), win.bucket)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	d.Bucket = durationWords(win.bucket)
	if len(pts) > 0 {
		// Where the server's metrics begin inside the first wide bucket, the
		// traffic rate of that bucket is over the time since then, not over
		// the whole bucket; a recent start is found with fine buckets.
		dataStart := pts[0].At
		if fine := 10 * time.Second; win.bucket > fine && now.Sub(pts[0].At) <= time.Hour+win.bucket {
			if f, err := s.DB.MetricSeries(ctx, id, pts[0].At, fine); err == nil && len(f) > 0 {
				dataStart = f[0].At
			}
		}
		if pts[0].At.After(now.Add(-win.span + win.bucket)) {
			d.Since = dataStart
		}
		d.Charts = serverCharts(pts, win.bucket, s.Fleet.AgentInterval, now, dataStart, pg.loc)
	}
	if score, checks, at, err := s.DB.LatestAudit(ctx, id); err == nil {
		d.Score, d.AuditAt = &score, at
		d.ScoreClass = scoreClass(d.Score)
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

// hostKey is a pinned host key as people compare it: its type and its
// SHA256 fingerprint.
type hostKey struct{ Type, Fingerprint string }

func hostKeys(lines []string) []hostKey {
	var out []hostKey
	for _, fp := range fleet.Fingerprints(lines) {
		typ, sum, _ := strings.Cut(fp, " ")
		out = append(out, hostKey{typ, sum})
	}
	return out
}

// hardware is a server's inventory in words, with units.
func hardware(srv *store.Server) string {
	var parts []string
	if c := srv.CPUCores; c != nil {
		if *c == 1 {
			parts = append(parts, "1 core")
		} else {
			parts = append(parts, fmt.Sprintf("%d cores", *c))
		}
	}
	if srv.RAMMB != nil {
		parts = append(parts, megabytes(float64(*srv.RAMMB))+" RAM")
	}
	if srv.DiskGB != nil {
		parts = append(parts, fmt.Sprintf("%d GB disk", *srv.DiskGB))
	}
	return strings.Join(parts, " · ")
}

// serverCharts draws the four charts of the server page.
func serverCharts(pts []store.MetricPoint, bucket, interval time.Duration, now, dataStart time.Time, loc *time.Location) []chartView {
	n := len(pts)
	times := make([]time.Time, n)
	cpu, ram, disk := make([]float64, n), make([]float64, n), make([]float64, n)
	ramTotal, diskTotal := 0.0, 0.0
	for i, x := range pts {
		times[i], cpu[i], ram[i], disk[i] = x.At, x.CPUPercent, x.RAMUsedMB, x.DiskUsedGB
		ramTotal, diskTotal = max(ramTotal, x.RAMTotalMB), max(diskTotal, x.DiskTotalGB)
	}
	w := rateWindow{bucket: bucket, interval: interval, now: now, dataStart: dataStart}
	netIn := w.perSecond(pts, func(x store.MetricPoint) int64 { return x.NetInBytes })
	netOut := w.perSecond(pts, func(x store.MetricPoint) int64 { return x.NetOutBytes })
	netTop := 1.0
	for i := range pts {
		netTop = max(netTop, netIn[i], netOut[i])
	}
	sc := axisScaleFor(netTop, "B/s")
	netTop = niceCeil(netTop/sc.div) * sc.div

	cpuS := []chartSeries{{Name: "CPU used", Values: cpu, Class: "s1"}}
	ramS := []chartSeries{{Name: "memory used", Values: ram, Class: "s2"}}
	diskS := []chartSeries{{Name: "disk used", Values: disk, Class: "s3"}}
	netS := []chartSeries{{Name: "received", Values: netIn, Class: "s1"}, {Name: "sent", Values: netOut, Class: "s4"}}
	charts := []chartView{
		{Title: "CPU", SVG: lineChart("CPU use, percent", "%", times, 100, cpuS, loc)},
		{Title: "Memory", SVG: lineChart("Memory used", "MB", times, ramTotal, ramS, loc)},
		{Title: "Disk", SVG: lineChart("Disk space used", "GB", times, diskTotal, diskS, loc)},
		{Title: "Network", Key: netS, SVG: lineChart("Network traffic per second", "B/s", times, netTop, netS, loc)},
	}
	if n > 0 {
		l := n - 1
		charts[0].Latest = fmt.Sprintf("%.0f%%", cpu[l])
		charts[1].Latest = megabytes(ram[l]) + " of " + megabytes(ramTotal)
		charts[2].Latest = fmt.Sprintf("%.0f GB of %.0f GB", disk[l], diskTotal)
		charts[3].Latest = byteSize(netIn[l]) + "/s in, " + byteSize(netOut[l]) + "/s out"
	}
	return charts
}

// rateWindow is what perSecond needs to know of a metric series.
type rateWindow struct {
	bucket, interval time.Duration // of the series; of the agent's samples
	now, dataStart   time.Time     // the first sample, where known
}

// perSecond turns the bytes counted in each bucket into a rate: the bytes
// over the time the bucket's samples cover. That is the bucket's width, cut
// at dataStart for the first bucket and at now for the one still filling;
// but at least the time one sample counts (the agent's interval, or less
// where the next point is nearer), since a sample carries the bytes since the
// sample before it, which may lie in an earlier bucket.
func (w rateWindow) perSecond(pts []store.MetricPoint, bytes func(store.MetricPoint) int64) []float64 {
	out := make([]float64, len(pts))
	for i, x := range pts {
		from, to := x.At, x.At.Add(w.bucket)
		if i == 0 && w.dataStart.After(from) && w.dataStart.Before(to) {
			from = w.dataStart
		}
		if i == len(pts)-1 && w.now.Before(to) {
			to = w.now
		}
		sample := w.interval
		switch {
		case i > 0:
			sample = min(sample, x.At.Sub(pts[i-1].At))
		case len(pts) > 1:
			sample = min(sample, pts[1].At.Sub(x.At))
		}
		span := max(to.Sub(from), sample, time.Second)
		out[i] = float64(bytes(x)) / span.Seconds()
	}
	return out
}

// durationWords says how long a chart bucket is: "10 s", "4 min".
func durationWords(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d h", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return fmt.Sprintf("%d s", d/time.Second)
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
	case "maintenance-on":
		err = s.Fleet.SetMaintenance(ctx, p, id, true, m)
		flash = "Maintenance mode is on: this server raises no notifications until you turn it off."
	case "maintenance-off":
		err = s.Fleet.SetMaintenance(ctx, p, id, false, m)
		flash = "Maintenance mode is off: notifications resume."
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
