package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"upanel/internal/testhost"
)

// BenchmarkDeploy compares, on one Debian test host in one run, the panel's
// deployment of the small sample app with the same work done by hand:
//
//   - panel-ms/op: from the API request to the deployment's success (the
//     agent fetches the new commit over HTTPS with a token, writes .env,
//     builds, starts and waits for the healthcheck), as a client polling
//     the API every 100 ms sees it;
//   - first-log-ms/op: from that request to the first line of the
//     deployment's log, read from GET /api/v1/deployments/{id}/log?follow=1;
//   - hand-ms/op: `git clone` of the same repository (the same token, through
//     an askpass helper) and `docker-compose up -d --build`, run as root on
//     the host in one shell, timed there;
//   - hand-healthy-ms/op: the same until the container's healthcheck passes,
//     which the panel's figure includes.
//
// Every iteration commits a new release before each side, so both really
// build (the VERSION layer changes; the binary's layer is cached for both
// after the warm-up). Run it with -benchtime Nx (make bench does, N=5).
func BenchmarkDeploy(b *testing.B) {
	testhost.Available(b)
	needCommands(b, "git")
	network := testhost.NewNetwork(b)
	pp := startPanelProcess(b, network)
	p := pp.panelUnderTest
	ports := distinctPorts(b, 4)
	appPort, handPort := ports[2], ports[3]
	host, srv := newAppServer(b, p, network, "bench", ports[0], ports[1], appPort)
	token := "tok-" + randomHex(16)
	web := newHTTPSGitServer(b, network.Gateway, token)
	repo := newAppRepo(b, appPort)
	url := web.serve(b, repo)
	trustCA(b, host, web.CAPEM)
	waitOnline(b, p, srv.ID, 4*time.Minute)

	var tok credentialView
	p.must(http.StatusCreated, "POST", "/api/v1/git-credentials", map[string]any{"name": "bench token", "type": "token", "token": token, "host": url}, &tok)
	var app struct {
		App appView `json:"app"`
	}
	p.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"server_id": srv.ID, "name": "bench", "git_repository": url,
		"git_credentials_id": tok.ID, "env_vars": map[string]string{"GREETING": "bench"}}, &app)
	// By hand, with the same token, handed to git as the agent does it.
	if out, err := host.Exec(b, token+"\n", "sh", "-c", `set -e
umask 077
mkdir -p /root/bench
cat > /root/bench/token
printf '#!/bin/sh\ncase "$1" in Username*) echo x-access-token ;; *) cat /root/bench/token ;; esac\n' > /root/bench/askpass
chmod 700 /root/bench/askpass`); err != nil {
		b.Fatalf("set up the by-hand deploy: %v\n%s", err, out)
	}

	deployByPanel := func(version string) (total, firstLine time.Duration, firstText string) {
		b.Helper()
		repo.release(version)
		start := time.Now()
		var d deploymentView
		p.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app.App.ID+"/deployments", map[string]any{}, &d)
		type line struct {
			at   time.Duration
			text string
		}
		first := make(chan line, 1)
		req, _ := http.NewRequest("GET", p.url+"/api/v1/deployments/"+d.ID+"/log?follow=1", nil)
		req.Header.Set("Authorization", "Bearer "+p.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			if sc.Scan() {
				first <- line{time.Since(start), sc.Text()}
			}
			close(first)
			for sc.Scan() {
			}
		}()
		for {
			d = p.deployment(d.ID)
			if d.terminal() {
				total = time.Since(start)
				break
			}
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("deployment %s still %s after 5 minutes", d.ID, d.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if d.Status != "success" {
			b.Fatalf("deployment %s: %s %s\n%s", d.ID, d.Status, d.ErrorMessage, p.deployLog(d.ID))
		}
		if !strings.Contains(p.deployLog(d.ID), "$ docker-compose build") {
			b.Fatalf("deployment %s did not build:\n%s", d.ID, p.deployLog(d.ID))
		}
		l, ok := <-first
		if !ok {
			b.Fatalf("the log of deployment %s had no line", d.ID)
		}
		return total, l.at, l.text
	}

	run := 0
	deployByHand := func(version string) (up, healthy time.Duration) {
		b.Helper()
		repo.release(version)
		run++
		script := fmt.Sprintf(`set -e
cd /root/bench
rm -rf run-%[1]d
export GIT_ASKPASS=/root/bench/askpass GIT_TERMINAL_PROMPT=0
t0=$(date +%%s%%N)
git clone --quiet --depth 50 --branch main %[2]s run-%[1]d
cd run-%[1]d
printf 'GREETING=bench\nAPP_PORT=%[3]d\n' > .env
docker-compose -p bench-hand up -d --build >build.log 2>&1 || { cat build.log >&2; exit 1; }
t1=$(date +%%s%%N)
c=$(docker-compose -p bench-hand ps -q web)
until [ "$(docker inspect --format '{{.State.Health.Status}}' "$c")" = healthy ]; do
	[ $(( $(date +%%s%%N) - t0 )) -lt 300000000000 ] || { echo "not healthy after 5 minutes" >&2; exit 1; }
	sleep 0.1
done
t2=$(date +%%s%%N)
grep -q 'Successfully built' build.log || { echo "no build:" >&2; cat build.log >&2; exit 1; }
echo "$t0 $t1 $t2"
`, run, url, handPort)
		out, err := host.Exec(b, script, "bash", "-s")
		if err != nil {
			b.Fatalf("deploy by hand: %v\n%s", err, out)
		}
		f := strings.Fields(out)
		if len(f) != 3 {
			b.Fatalf("deploy by hand printed %q", out)
		}
		var ns [3]int64
		for i := range f {
			if ns[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
				b.Fatalf("deploy by hand printed %q", out)
			}
		}
		return time.Duration(ns[1] - ns[0]), time.Duration(ns[2] - ns[0])
	}

	// Warm-up: the first deployment of each side creates its network and
	// caches the binary's layer.
	deployByPanel("warm-up-panel")
	deployByHand("warm-up-hand")

	var panel, first, hand, handHealthy []time.Duration
	b.ResetTimer()
	for i := range b.N {
		t, f, text := deployByPanel(fmt.Sprintf("bench-%d-panel", i))
		u, h := deployByHand(fmt.Sprintf("bench-%d-hand", i))
		panel, first, hand, handHealthy = append(panel, t), append(first, f), append(hand, u), append(handHealthy, h)
		if i > 0 {
			text = ""
		}
		b.Logf("iteration %d: panel %v (first log line %v %q), by hand %v (healthy %v)", i, t.Round(time.Millisecond), f.Round(time.Millisecond), text, u.Round(time.Millisecond), h.Round(time.Millisecond))
	}
	b.StopTimer()
	ms := func(ds []time.Duration) float64 {
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return float64(sum) / float64(len(ds)) / float64(time.Millisecond)
	}
	median := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	b.Logf("medians: panel %v, first log line %v, by hand %v, by hand until healthy %v",
		median(panel).Round(time.Millisecond), median(first).Round(time.Millisecond), median(hand).Round(time.Millisecond), median(handHealthy).Round(time.Millisecond))
	b.ReportMetric(ms(panel), "panel-ms/op")
	b.ReportMetric(ms(first), "first-log-ms/op")
	b.ReportMetric(ms(hand), "hand-ms/op")
	b.ReportMetric(ms(handHealthy), "hand-healthy-ms/op")
	b.ReportMetric(0, "ns/op")
}
