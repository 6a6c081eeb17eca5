package e2e

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"upanel/internal/testhost"
)

// BenchmarkAgentFootprint measures the real agent on a Debian test host: it
// is onboarded and provisioned like any server, then its memory and CPU are
// sampled from /proc every 10 s for UPANEL_AGENT_BENCH_DURATION (default
// 10m) while it reports to the panel at the production interval of 10 s and
// runs one security audit. Run it with -benchtime 1x (make bench does).
func BenchmarkAgentFootprint(b *testing.B) {
	window := 10 * time.Minute
	if v := os.Getenv("UPANEL_AGENT_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second {
			b.Fatalf("UPANEL_AGENT_BENCH_DURATION=%q: want a duration of at least 10s", v)
		}
		window = d
	}
	testhost.Available(b)
	network := testhost.NewNetwork(b)
	p := startPanelInterval(b, network, 10*time.Second)
	host, sshPort, agentPort := newVPS(b, network)
	var s serverView
	p.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": "bench", "host": "127.0.0.1", "port": sshPort, "agent_port": agentPort}, &s)
	host.Root(b, s.BootstrapCommand+"\n")
	waitOnline(b, p, s.ID, 3*time.Minute)
	size, err := host.Exec(b, "", "stat", "-c", "%s", "/usr/local/bin/upanel-agent")
	if err != nil {
		b.Fatal(err)
	}

	pid := strings.TrimSpace(mustExec(b, host, "systemctl", "show", "-p", "MainPID", "--value", "upanel-agent"))
	ticks := clockTicks(b, host)
	cpu0 := procCPU(b, host, pid)
	start := time.Now()
	b.ResetTimer()
	var rssSum, rssMax, samples float64
	for i := 0; i < b.N; i++ {
		// One audit in the window, as the daily one would be.
		p.must(http.StatusAccepted, "POST", "/api/v1/servers/"+s.ID+"/audit", nil, nil)
		for time.Since(start) < window {
			time.Sleep(10 * time.Second)
			rss := procRSSKiB(b, host, pid) / 1024
			rssSum += rss
			rssMax = max(rssMax, rss)
			samples++
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := (procCPU(b, host, pid) - cpu0) / ticks
	if now := strings.TrimSpace(mustExec(b, host, "systemctl", "show", "-p", "MainPID", "--value", "upanel-agent")); now != pid {
		b.Fatalf("the agent restarted during the benchmark (pid %s, then %s)", pid, now)
	}
	n, _ := strconv.ParseFloat(strings.TrimSpace(size), 64)
	b.ReportMetric(rssSum/samples, "rss_MiB_mean")
	b.ReportMetric(rssMax, "rss_MiB_max")
	b.ReportMetric(100*cpu/elapsed.Seconds(), "cpu_%")
	b.ReportMetric(n/(1<<20), "binary_MiB")
	b.ReportMetric(0, "ns/op")
}

func mustExec(b testing.TB, h *testhost.Host, argv ...string) string {
	b.Helper()
	out, err := h.Exec(b, "", argv...)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// procRSSKiB reads VmRSS of a process on the host.
func procRSSKiB(b testing.TB, h *testhost.Host, pid string) float64 {
	b.Helper()
	for line := range strings.Lines(mustExec(b, h, "cat", "/proc/"+pid+"/status")) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				b.Fatal(err)
			}
			return v
		}
	}
	b.Fatalf("no VmRSS for pid %s", pid)
	return 0
}

// procCPU returns the user and system clock ticks a process has used.
func procCPU(b testing.TB, h *testhost.Host, pid string) float64 {
	b.Helper()
	stat := mustExec(b, h, "cat", "/proc/"+pid+"/stat")
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
	if len(f) < 13 {
		b.Fatalf("unexpected /proc/%s/stat: %q", pid, stat)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("unexpected /proc/%s/stat: %q", pid, stat)
	}
	return utime + stime
}

func clockTicks(b testing.TB, h *testhost.Host) float64 {
	b.Helper()
	v, err := strconv.ParseFloat(strings.TrimSpace(mustExec(b, h, "getconf", "CLK_TCK")), 64)
	if err != nil || v <= 0 {
		b.Fatalf("CLK_TCK: %v", err)
	}
	return v
}
