package fleetbench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/store/storetest"
)

// BenchmarkFleet runs, per database and fleet size, one real panel with N
// simulated agents pushing to it, and reports over a fixed window:
//
//   - samples/s: samples taken in the window that are in server_metrics at
//     its end (counted in the database), and kept_up_%: that as a share of
//     what N agents offer (N / 10 s); rows_delta/s: the table's growth over
//     the window, which also counts a backlog left from before it;
//   - pushes/s, and p50_ms, p99_ms, max_ms: requests and their latency as the
//     agents saw it;
//   - errors: failed pushes (any makes the case fail);
//   - panel_rss_*_MB: the panel's VmRSS (MiB) before the agents start, and its
//     mean and peak, read every second;
//   - panel_cpu_%, client_cpu_% (the agents and the benchmark), db_cpu_%
//     (PostgreSQL's server processes) and machine_cpu_% (everything,
//     other processes included) and other_cpu_% (machine minus the rest:
//     processes that are not the benchmark's), in % of one core, and
//     panel_cpu_us/push, the panel's CPU time per request.
//
// scripts/bench.sh sets these against the bare driver's insert ceiling.
func BenchmarkFleet(b *testing.B) {
	window := envDuration(b, "FLEETBENCH_DURATION", 60*time.Second)
	sizes := envSizes(b, "FLEETBENCH_AGENTS", []int{100, 1000, 5000})
	for _, d := range storetest.Dialects {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/agents=%d", d, n), func(b *testing.B) {
				if b.N > 1 {
					b.Fatalf("a case is one window of %s, whatever b.N: run with -benchtime 1x", window)
				}
				benchFleet(b, d, n, window)
			})
		}
	}
}

// reading is the state of the machine at one end of the window.
type reading struct {
	at                  time.Time
	rows                int64
	panel, client, db   time.Duration
	machBusy, machTotal int64
}

func read(b *testing.B, env storetest.Env, panelPID, pgPID int) reading {
	b.Helper()
	var r reading
	if err := env.DB.QueryRowRaw(context.Background(), "SELECT COUNT(*) FROM server_metrics").Scan(&r.rows); err != nil {
		b.Fatalf("count metrics: %v", err)
	}
	r.at = time.Now()
	var err error
	if r.panel, err = processCPU(panelPID); err != nil {
		b.Fatalf("panel CPU: %v", err)
	}
	r.client = ownCPU()
	if pgPID != 0 {
		if r.db, err = treeCPU(pgPID); err != nil {
			b.Fatalf("PostgreSQL CPU: %v", err)
		}
	}
	if r.machBusy, r.machTotal, err = machineCPU(); err != nil {
		b.Fatal(err)
	}
	return r
}

func benchFleet(b *testing.B, dialect string, n int, window time.Duration) {
	b.StopTimer()
	env := storetest.New(b, dialect)
	agents := enrol(b, env, n)
	p := startPanel(b, env)
	pg := 0
	if dialect == "postgres" {
		if pg = postgresServer(env); pg == 0 {
			b.Log("PostgreSQL is not a local process: db_cpu_% is not reported")
		}
	}
	idleKB, err := residentKB(p.pid)
	if err != nil {
		b.Fatal(err)
	}

	// Each agent starts at a random point of the interval, as a fleet whose
	// agents started at different times does. The window starts after two
	// intervals: in the first every agent connects and its server turns
	// online, which on its own takes the panel seconds at 5,000 agents; the
	// second lets that backlog drain.
	r := &fleetRun{base: p.url}
	r.from = time.Now().Add(warmup)
	r.to = r.from.Add(window)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	rng := mrand.New(mrand.NewPCG(uint64(n), 1))
	for _, a := range agents {
		first := time.Duration(rng.Int64N(int64(interval)))
		wg.Go(func() { a.run(ctx, r, first) })
	}
	time.Sleep(time.Until(r.from))

	r0 := read(b, env, p.pid, pg)
	b.StartTimer()
	var maxKB, sumKB, nKB int64
	tick := time.NewTicker(time.Second)
	end := time.NewTimer(time.Until(r.to))
	for done := false; !done; {
		select {
		case <-tick.C:
			if kb, err := residentKB(p.pid); err == nil {
				maxKB, sumKB, nKB = max(maxKB, kb), sumKB+kb, nKB+1
			}
		case <-end.C:
			done = true
		}
	}
	tick.Stop()
	b.StopTimer()
	r1 := read(b, env, p.pid, pg)
	// The samples taken in the window and stored by its end: a panel that
	// falls behind shows as fewer, and a backlog left from the warm-up does
	// not count as the window's.
	var stored int64
	if err := env.DB.QueryRowRaw(context.Background(), "SELECT COUNT(*) FROM server_metrics WHERE recorded_at >= ? AND recorded_at < ?",
		r.from.UTC(), r.to.UTC()).Scan(&stored); err != nil {
		b.Fatalf("count metrics: %v", err)
	}
	stop()
	wg.Wait()

	var lat []time.Duration
	for _, a := range agents {
		lat = append(lat, a.lat...)
	}
	slices.Sort(lat)
	secs := r1.at.Sub(r0.at).Seconds()
	samples := float64(stored) / window.Seconds()
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / secs }
	ms := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	var report []string
	metric := func(v float64, unit string) {
		b.ReportMetric(v, unit)
		report = append(report, fmt.Sprintf("%.4g %s", v, unit))
	}
	metric(samples, "samples/s")
	metric(float64(r1.rows-r0.rows)/secs, "rows_delta/s")
	metric(100*samples/(float64(n)/interval.Seconds()), "kept_up_%")
	metric(float64(len(lat))/window.Seconds(), "pushes/s")
	metric(ms(0.50), "p50_ms")
	metric(ms(0.99), "p99_ms")
	metric(ms(1), "max_ms")
	metric(float64(r.errors.Load()), "errors")
	metric(float64(idleKB)/1024, "panel_rss_idle_MB")
	if nKB > 0 {
		metric(float64(sumKB)/float64(nKB)/1024, "panel_rss_mean_MB")
		metric(float64(maxKB)/1024, "panel_rss_max_MB")
	}
	metric(pct(r1.panel-r0.panel), "panel_cpu_%")
	metric(pct(r1.client-r0.client), "client_cpu_%")
	if pg != 0 {
		metric(pct(r1.db-r0.db), "db_cpu_%")
	}
	if len(lat) > 0 {
		metric(float64((r1.panel-r0.panel).Microseconds())/float64(len(lat)), "panel_cpu_us/push")
	}
	if total := r1.machTotal - r0.machTotal; total > 0 {
		machine := 100 * float64(runtime.NumCPU()) * float64(r1.machBusy-r0.machBusy) / float64(total)
		metric(machine, "machine_cpu_%")
		// What is left is other processes: with it high, the panel shared
		// the cores with work that is not the benchmark's.
		metric(max(0, machine-pct(r1.panel-r0.panel)-pct(r1.client-r0.client)-pct(r1.db-r0.db)), "other_cpu_%")
	}
	if failed := r.errors.Load(); failed > 0 {
		// A failed benchmark prints no metrics: say what was measured.
		b.Errorf("%d pushes failed; the first:\n%s\nmeasured: %s\nthe panel's first errors:\n%s",
			failed, strings.Join(r.first, "\n"), strings.Join(report, ", "), firstErrors(p.log, 5))
	}
}

// enrol creates n servers, each with a fresh SSH key pair and agent token, as
// onboarding and provisioning leave them, and returns an agent for each.
func enrol(b *testing.B, env storetest.Env, n int) []*simAgent {
	b.Helper()
	ctx := context.Background()
	agents := make([]*simAgent, n)
	err := env.DB.InTx(ctx, func(tx *store.Tx) error {
		for i := range n {
			name := fmt.Sprintf("fleet-%05d", i)
			priv, pub, err := keyPair(name)
			if err != nil {
				return err
			}
			srv, err := tx.CreateServer(ctx, store.NewServer{Name: name, Host: name + ".invalid", Port: 22, Username: "upanel",
				AgentPort: 8443, SSHPrivateKey: priv, SSHPublicKey: pub})
			if err != nil {
				return err
			}
			token, hash := auth.NewAgentToken()
			if err := tx.SetAgentToken(ctx, srv.ID, hash); err != nil {
				return err
			}
			agents[i] = newSimAgent(srv.ID, token, i)
		}
		return nil
	})
	if err != nil {
		b.Fatalf("enrol %d servers: %v", n, err)
	}
	return agents
}

// keyPair is an ed25519 key pair as the panel makes for a server.
func keyPair(comment string) ([]byte, string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, "", err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment, nil
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		b.Fatalf("%s=%q: want a duration of at least 1s, such as 60s", name, v)
	}
	return d
}

func envSizes(b *testing.B, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want agent counts such as 100,1000,5000", name, v)
		}
		out = append(out, n)
	}
	return out
}
