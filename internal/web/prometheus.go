package web

import (
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"time"

	"upanel/internal/auth"
)

// prometheus serves the Prometheus text exposition: per-server gauges and the
// panel's own health. It sits behind the policy like everything else: scrape
// it with an API token (a viewer token is enough).
func (s *Server) prometheus(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	ctx := r.Context()
	servers, err := s.DB.ListServers(ctx)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	latest, err := s.DB.LatestMetrics(ctx)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	jobCounts, err := s.DB.CountJobsByStatus(ctx)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	mailFailed, err := s.DB.MailFailures(ctx, s.DB.Now().Add(-24*time.Hour))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	mailQueued, err := s.DB.MailPending(ctx)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var b strings.Builder
	gauge := func(name, help string) { fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name) }
	labels := func(id, name string) string {
		return fmt.Sprintf(`{server_id="%s",server="%s"}`, id, promEscape(name))
	}
	gauge("upanel_server_up", "1 when the server's agent reports, 0 otherwise.")
	for _, x := range servers {
		up := 0
		if x.Status == "online" {
			up = 1
		}
		fmt.Fprintf(&b, "upanel_server_up%s %d\n", labels(x.ID, x.Name), up)
	}
	gauge("upanel_server_security_score", "Security score 0-100 of the latest audit.")
	for _, x := range servers {
		if x.SecurityScore != nil {
			fmt.Fprintf(&b, "upanel_server_security_score%s %d\n", labels(x.ID, x.Name), *x.SecurityScore)
		}
	}
	gauge("upanel_server_last_seen_timestamp_seconds", "When the agent last reported, Unix time.")
	for _, x := range servers {
		if x.LastSeenAt != nil {
			fmt.Fprintf(&b, "upanel_server_last_seen_timestamp_seconds%s %d\n", labels(x.ID, x.Name), x.LastSeenAt.Unix())
		}
	}
	type series struct {
		name, help string
		value      func(id string) (float64, bool)
	}
	for _, m := range []series{
		{"upanel_server_cpu_percent", "CPU use in percent, latest sample.", func(id string) (float64, bool) { v, ok := latest[id]; return v.CPUPercent, ok }},
		{"upanel_server_ram_used_bytes", "Memory in use, latest sample.", func(id string) (float64, bool) { v, ok := latest[id]; return float64(v.RAMUsedMB) * (1 << 20), ok }},
		{"upanel_server_ram_total_bytes", "Memory in total.", func(id string) (float64, bool) { v, ok := latest[id]; return float64(v.RAMTotalMB) * (1 << 20), ok }},
		{"upanel_server_disk_used_bytes", "Disk in use on /, latest sample.", func(id string) (float64, bool) { v, ok := latest[id]; return float64(v.DiskUsedGB) * (1 << 30), ok }},
		{"upanel_server_disk_total_bytes", "Disk size of /.", func(id string) (float64, bool) { v, ok := latest[id]; return float64(v.DiskTotalGB) * (1 << 30), ok }},
	} {
		gauge(m.name, m.help)
		for _, x := range servers {
			if v, ok := m.value(x.ID); ok {
				fmt.Fprintf(&b, "%s%s %g\n", m.name, labels(x.ID, x.Name), v)
			}
		}
	}
	gauge("upanel_jobs", "Jobs by status.")
	statuses := make([]string, 0, len(jobCounts))
	for st := range jobCounts {
		statuses = append(statuses, st)
	}
	sort.Strings(statuses)
	for _, st := range statuses {
		fmt.Fprintf(&b, "upanel_jobs{status=\"%s\"} %d\n", promEscape(st), jobCounts[st])
	}
	gauge("upanel_mail_failed", "Outgoing mails that failed for good in the last 24 hours.")
	fmt.Fprintf(&b, "upanel_mail_failed %d\n", mailFailed)
	gauge("upanel_mail_queued", "Outgoing mails not yet accepted by the SMTP server, retries included.")
	fmt.Fprintf(&b, "upanel_mail_queued %d\n", mailQueued)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gauge("upanel_panel_heap_bytes", "Go heap in use by the panel.")
	fmt.Fprintf(&b, "upanel_panel_heap_bytes %d\n", ms.HeapInuse)
	gauge("upanel_panel_goroutines", "Goroutines of the panel.")
	fmt.Fprintf(&b, "upanel_panel_goroutines %d\n", runtime.NumGoroutine())
	gauge("upanel_panel_database_up", "1 when the panel's database answers.")
	dbUp := 1
	if err := s.DB.Ping(ctx); err != nil {
		dbUp = 0
	}
	fmt.Fprintf(&b, "upanel_panel_database_up %d\n", dbUp)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(b.String()))
}

// promEscape escapes a label value.
func promEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
