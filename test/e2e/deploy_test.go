package e2e

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"upanel/internal/testhost"
)

// appView is an app as the API shows it.
type appView struct {
	ID               string `json:"id"`
	ServerID         string `json:"server_id"`
	Name             string `json:"name"`
	Slug             string `json:"slug"`
	GitRepository    string `json:"git_repository"`
	GitBranch        string `json:"git_branch"`
	GitCredentialsID string `json:"git_credentials_id"`
	DeployPath       string `json:"deploy_path"`
	Status           string `json:"status"`
	CurrentCommit    string `json:"current_commit"`
	KeepReleases     int    `json:"keep_releases"`
	HookURL          string `json:"hook_url"`
	HasHookSecret    bool   `json:"has_hook_secret"`
}

// credentialView is a git credential as the API shows it.
type credentialView struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	PublicKey  string `json:"public_key"`
	KnownHosts string `json:"known_hosts"`
}

// deploymentView is a deployment as the API shows it.
type deploymentView struct {
	ID              string     `json:"id"`
	AppID           string     `json:"app_id"`
	CommitHash      string     `json:"commit_hash"`
	CommitMessage   string     `json:"commit_message"`
	Branch          string     `json:"branch"`
	Environment     string     `json:"environment"`
	Status          string     `json:"status"`
	StartedAt       *time.Time `json:"started_at"`
	FinishedAt      *time.Time `json:"finished_at"`
	DurationSeconds *float64   `json:"duration_seconds"`
	ErrorMessage    string     `json:"error_message"`
	IsRollback      bool       `json:"is_rollback"`
	RollbackFromID  string     `json:"rollback_from_id"`
	TriggeredBy     string     `json:"triggered_by"`
	RequestedCommit string     `json:"requested_commit"`
}

func (d deploymentView) terminal() bool {
	switch d.Status {
	case "success", "failed", "cancelled":
		return true
	}
	return false
}

// rawCall makes an API request as the admin and returns the status and the
// body as it is. A failure to connect is returned, not fatal, so that it can
// run in other goroutines.
func (p *panelUnderTest) rawCall(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.url+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := p.client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// startDeploy asks for a deployment of an app.
func (p *panelUnderTest) startDeploy(appID string, body map[string]any) deploymentView {
	p.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	var d deploymentView
	p.must(http.StatusAccepted, "POST", "/api/v1/apps/"+appID+"/deployments", body, &d)
	if d.ID == "" || (d.Status != "queued" && d.Status != "running") {
		p.t.Fatalf("a new deployment: %+v", d)
	}
	return d
}

// deployment returns a deployment as the API shows it.
func (p *panelUnderTest) deployment(id string) deploymentView {
	p.t.Helper()
	var d deploymentView
	p.must(http.StatusOK, "GET", "/api/v1/deployments/"+id, nil, &d)
	return d
}

// deployLog returns a deployment's stored log.
func (p *panelUnderTest) deployLog(id string) string {
	p.t.Helper()
	code, b, err := p.rawCall("GET", "/api/v1/deployments/"+id+"/log", nil)
	if err != nil || code != http.StatusOK {
		p.t.Fatalf("the log of deployment %s: %d %v %s", id, code, err, b)
	}
	return string(b)
}

// waitDeploy waits for a deployment to end and returns it.
func (p *panelUnderTest) waitDeploy(id string, within time.Duration) deploymentView {
	p.t.Helper()
	var d deploymentView
	deadline := time.Now().Add(within)
	for {
		d = p.deployment(id)
		if d.terminal() {
			return d
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("deployment %s is still %s after %v; its log:\n%s", id, d.Status, within, p.deployLog(id))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// wantDeploy fails the test unless the deployment ended with status; it
// returns its log.
func (p *panelUnderTest) wantDeploy(d deploymentView, status string) string {
	p.t.Helper()
	log := p.deployLog(d.ID)
	if d.Status != status {
		p.t.Fatalf("deployment %s is %s (%s), want %s; its log:\n%s", d.ID, d.Status, d.ErrorMessage, status, log)
	}
	return log
}

// waitLogLine waits until a deployment's log has a line containing text.
func (p *panelUnderTest) waitLogLine(id, text string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		log := p.deployLog(id)
		if strings.Contains(log, text) {
			return
		}
		if d := p.deployment(id); d.terminal() || time.Now().After(deadline) {
			p.t.Fatalf("deployment %s is %s and its log has no %q after %v:\n%s", id, d.Status, text, within, log)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// githubPush delivers a push as GitHub does: the JSON payload signed with
// the hook's secret in X-Hub-Signature-256.
func (p *panelUnderTest) githubPush(hookURL, secret, branch, after, delivery string) (int, map[string]string) {
	p.t.Helper()
	body, err := json.Marshal(map[string]any{
		"ref": "refs/heads/" + branch, "before": strings.Repeat("0", 40), "after": after,
		"repository":  map[string]any{"full_name": "e2e/shop", "default_branch": "main"},
		"pusher":      map[string]any{"name": "dev", "email": "dev@example.com"},
		"sender":      map[string]any{"login": "dev"},
		"head_commit": map[string]any{"id": after, "message": "a new release"},
	})
	if err != nil {
		p.t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req, err := http.NewRequest("POST", hookURL, bytes.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/e2e")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	c := p.client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]string{}
	json.Unmarshal(b, &out)
	if _, ok := out["error"]; !ok && len(out) == 0 {
		out["raw"] = string(b)
	}
	return resp.StatusCode, out
}

// distinctPorts returns n free ports of 127.0.0.1, all different.
func distinctPorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		if p := testhost.FreePort(t); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// newAppServer boots a VPS with sshd also on sshPort and the other ports
// published under their own numbers (the agent's and the apps'), adds it to
// the panel and runs the bootstrap command on it, as its owner would. The
// panel then provisions it; waitOnline waits for that.
func newAppServer(t testing.TB, p *panelUnderTest, network *testhost.Network, name string, sshPort, agentPort int, appPorts ...int) (*testhost.Host, serverView) {
	t.Helper()
	h := testhost.Boot(t, network, testhost.Options{SamePorts: append([]int{sshPort, agentPort}, appPorts...)})
	h.Root(t, fmt.Sprintf("printf 'Port 22\\nPort %d\\n' > /etc/ssh/sshd_config.d/05-ports.conf\nsystemctl restart ssh\n", sshPort))
	waitFor(t, "sshd on the chosen port", 30*time.Second, func() bool { return sshBanner(h.PortAddr(sshPort)) })
	var s serverView
	p.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": name, "host": "127.0.0.1", "port": sshPort, "agent_port": agentPort}, &s)
	if out := h.Root(t, s.BootstrapCommand+"\n"); !strings.Contains(out, "the panel now provisions it") {
		t.Fatalf("bootstrap output: %s", out)
	}
	return h, s
}

// argvSampler runs `ps -ww -eo args` on a host every 100 ms, in one
// long-lived shell loop there, and looks for secrets in every command line.
type argvSampler struct {
	host     *testhost.Host
	secrets  []string
	stopFile string
	cmd      *exec.Cmd
	done     chan struct{}

	mu      sync.Mutex
	samples int
	seen    map[string]int // deployment commands seen running, by kind
	leaks   []string
	err     error
}

func startArgvSampler(t testing.TB, h *testhost.Host, secrets ...string) *argvSampler {
	t.Helper()
	s := &argvSampler{host: h, secrets: secrets, stopFile: "/run/e2e-argv-sampler-" + randomHex(4), done: make(chan struct{}), seen: map[string]int{}}
	loop := fmt.Sprintf("while [ ! -e %s ]; do ps -ww -eo args; echo '=== sample'; sleep 0.1; done", s.stopFile)
	s.cmd = exec.Command("docker", "exec", h.Name, "sh", "-c", loop)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			s.line(sc.Text())
		}
		s.mu.Lock()
		s.err = sc.Err()
		s.mu.Unlock()
		s.cmd.Wait()
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *argvSampler) line(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l == "=== sample" {
		s.samples++
		return
	}
	for _, sec := range s.secrets {
		if strings.Contains(l, sec) && len(s.leaks) < 20 {
			s.leaks = append(s.leaks, l)
		}
	}
	f := strings.Fields(l)
	switch {
	case len(f) == 0:
	case strings.HasSuffix(f[0], "git") && slices.Contains(f, "fetch"):
		s.seen["git fetch"]++
	case slices.ContainsFunc(f, func(a string) bool { return strings.HasSuffix(a, "docker-compose") }) && slices.Contains(f, "build"):
		s.seen["compose build"]++
	case slices.ContainsFunc(f, func(a string) bool { return strings.HasSuffix(a, "docker-compose") }) && slices.Contains(f, "up"):
		s.seen["compose up"]++
	}
}

// stop ends the loop on the host and waits for the last sample.
func (s *argvSampler) stop(t testing.TB) {
	select {
	case <-s.done:
		return
	default:
	}
	s.host.Exec(t, "", "touch", s.stopFile)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *argvSampler) result() (samples int, seen map[string]int, leaks []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, maps.Clone(s.seen), slices.Clone(s.leaks), s.err
}

// servingProbe asks an app for its answer every 200 ms until stopped, and
// keeps every answer that is not the expected one: it shows that a release
// kept serving all along, not only at the end.
type servingProbe struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	n     int
	bad   []string
}

func startServingProbe(addr, want string) *servingProbe {
	sp := &servingProbe{stopc: make(chan struct{}), done: make(chan struct{})}
	c := http.Client{Timeout: 15 * time.Second}
	go func() {
		defer close(sp.done)
		for {
			var got string
			resp, err := c.Get("http://" + addr + "/")
			if err != nil {
				got = err.Error()
			} else {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
				resp.Body.Close()
				if got = strings.TrimSpace(string(b)); resp.StatusCode != http.StatusOK {
					got = fmt.Sprintf("%d %s", resp.StatusCode, got)
				}
			}
			sp.mu.Lock()
			sp.n++
			if got != want && len(sp.bad) < 20 {
				sp.bad = append(sp.bad, time.Now().Format("15:04:05.000 ")+got)
			}
			sp.mu.Unlock()
			select {
			case <-sp.stopc:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return sp
}

// stop ends the probe and fails the test if any answer was not the one
// expected.
func (sp *servingProbe) stop(t testing.TB) {
	t.Helper()
	close(sp.stopc)
	<-sp.done
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.n < 2 {
		t.Errorf("the app was asked only %d times", sp.n)
	}
	for _, b := range sp.bad {
		t.Errorf("the app answered otherwise while it should have kept serving: %s", b)
	}
}

// runningContainers lists the names of the containers running on a host.
func runningContainers(t testing.TB, h *testhost.Host) []string {
	t.Helper()
	return strings.Fields(mustExec(t, h, "docker", "ps", "--format", "{{.Names}}"))
}

// TestDeployments is the apps-and-deployments issue end to end, on a
// provisioned Debian test host, through the real panel process and its API:
// an app deployed from an SSH git server with a generated deploy key and a
// pinned host key, another from an HTTPS git server with a token; env vars
// set through the API in the app's answer; a signed GitHub push deploying a
// new commit; a rollback without a build; a broken compose file failing while
// the old release serves; a cancel mid-build; two deploys at once running one
// after the other; the panel killed mid-deploy and restarted; and canaries (an
// env value, the token) that never show in deployment logs, API answers,
// command lines on the host or the panel's own log.
func TestDeployments(t *testing.T) {
	testhost.Available(t)
	needCommands(t, "git", "ssh")
	network := testhost.NewNetwork(t)
	pp := startPanelProcess(t, network)
	rec := &recordingTransport{}
	pp.client = &http.Client{Transport: rec}
	p := pp.panelUnderTest

	canaryEnv := "canary-env-" + randomHex(12)
	canaryToken := "canary-tok-" + randomHex(12)
	ports := distinctPorts(t, 5)
	shopPort, blogPort := ports[2], ports[3]
	shopStagingPort := ports[4] // shop's staging publishes here (APP_PORT in its .env)
	host, srv := newAppServer(t, p, network, "apps", ports[0], ports[1], shopPort, blogPort, shopStagingPort)

	// While the panel provisions the server: the git servers, as their
	// admins would set them up, and the two apps' repositories.
	gitHost := newSSHGitServer(t, network)
	web := newHTTPSGitServer(t, network.Gateway, canaryToken)
	shopRepo := newAppRepo(t, shopPort)
	blogRepo := newAppRepo(t, blogPort)
	sshURL := gitHost.serve(t, shopRepo)
	httpsURL := web.serve(t, blogRepo)
	trustCA(t, host, web.CAPEM) // a private git server's CA, trusted by its owner's servers
	v1 := shopRepo.head()
	waitOnline(t, p, srv.ID, 4*time.Minute)

	addrOf := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	shopAddr, blogAddr := addrOf(shopPort), addrOf(blogPort)
	greeting := "Grüß Gott " + randomHex(3)

	// Credentials: a deploy key that UPanel generates, whose public half the
	// git server's admin authorizes, pinned to the git server's host key;
	// and the canary token.
	var key, tok credentialView
	p.must(http.StatusCreated, "POST", "/api/v1/git-credentials", map[string]any{
		"name": "git host deploy key", "type": "ssh_key", "generate": true, "known_hosts": gitHost.KnownHosts}, &key)
	if !strings.HasPrefix(key.PublicKey, "ssh-ed25519 ") || key.Type != "ssh_key" {
		t.Fatalf("generated key credential: %+v", key)
	}
	gitHost.authorize(t, key.PublicKey)
	p.must(http.StatusCreated, "POST", "/api/v1/git-credentials", map[string]any{
		"name": "https token", "type": "token", "token": canaryToken, "host": httpsURL}, &tok)
	var check struct {
		OK     bool   `json:"ok"`
		Commit string `json:"commit"`
		Error  string `json:"error"`
	}
	p.must(http.StatusOK, "POST", "/api/v1/git-credentials/"+key.ID+"/test", map[string]any{
		"server_id": srv.ID, "git_repository": sshURL, "git_branch": "main"}, &check)
	if !check.OK || check.Commit != v1 {
		t.Fatalf("testing the deploy key from the server: %+v, want ok at %s", check, v1)
	}

	// The apps. Shop's env is set through the env API; Blog's comes with it.
	type created struct {
		App        appView `json:"app"`
		HookSecret string  `json:"hook_secret"`
	}
	var shop, blog created
	p.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"server_id": srv.ID, "name": "Shop", "slug": "shop", "git_repository": sshURL, "git_branch": "main",
		"git_credentials_id": key.ID}, &shop)
	if shop.HookSecret == "" || !strings.HasPrefix(shop.App.HookURL, p.url+"/hooks/deploy/") || shop.App.DeployPath != "/srv/upanel/apps/shop" {
		t.Fatalf("created app: %+v", shop)
	}
	p.must(http.StatusOK, "PATCH", "/api/v1/apps/"+shop.App.ID+"/env/base", map[string]any{"set": map[string]string{"GREETING": greeting}}, nil)
	p.must(http.StatusOK, "PATCH", "/api/v1/apps/"+shop.App.ID+"/env/production", map[string]any{"set": map[string]string{"CANARY_VALUE": canaryEnv}}, nil)
	p.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"server_id": srv.ID, "name": "Blog", "git_repository": httpsURL, "git_credentials_id": tok.ID,
		"env_vars": map[string]string{"GREETING": "Blog"}, "env_production": map[string]string{"CANARY_VALUE": canaryEnv}}, &blog)
	var env struct {
		Base       []struct{ Key, Value string } `json:"base"`
		Production []struct{ Key, Value string } `json:"production"`
	}
	p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID+"/env", nil, &env)
	if len(env.Base) != 1 || env.Base[0].Key != "GREETING" || env.Base[0].Value == greeting ||
		len(env.Production) != 1 || env.Production[0].Key != "CANARY_VALUE" {
		t.Fatalf("the env as the API shows it: %+v", env)
	}

	// From the first deployment on, command lines on the host are watched.
	argv := startArgvSampler(t, host, canaryEnv, canaryToken)

	// Each step builds on the ones before (the release that must keep
	// serving, the kept images): after a failure the rest are skipped, but
	// the canaries are still looked for in what happened so far.
	failed := false
	step := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			if failed {
				t.Skip("an earlier step failed")
			}
			f(t)
			failed = failed || t.Failed()
		})
	}

	var first deploymentView
	step("deploy over SSH and HTTPS", func(t *testing.T) {
		p := p.with(t)
		d := p.startDeploy(shop.App.ID, nil)
		b := p.startDeploy(blog.App.ID, map[string]any{"environment": "production"})
		d = p.waitDeploy(d.ID, 5*time.Minute)
		p.wantDeploy(d, "success")
		if d.CommitHash != v1 || d.CommitMessage != "sample app v1" || d.Branch != "main" || d.Environment != "production" ||
			d.TriggeredBy != "api" || d.StartedAt == nil || d.FinishedAt == nil || d.FinishedAt.Before(*d.StartedAt) || d.ErrorMessage != "" {
			t.Errorf("the first deployment: %+v", d)
		}
		first = d
		if got := appAnswer(t, shopAddr, "from v1", time.Minute); got != "hello "+greeting+" from v1" {
			t.Errorf("shop answered %q", got)
		}
		// The env value reached the container, so the canary checks below
		// look for something that was really there.
		if got := appEnv(t, shopAddr, "CANARY_VALUE"); got != canaryEnv {
			t.Errorf("CANARY_VALUE in the container: %q", got)
		}
		if mode := strings.TrimSpace(mustExec(t, host, "stat", "-c", "%a", "/srv/upanel/apps/shop/production/.env")); mode != "600" {
			t.Errorf(".env has mode %s, want 600", mode)
		}
		var a appView
		p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID, nil, &a)
		if a.CurrentCommit != v1 {
			t.Errorf("shop's current commit is %q, want %s", a.CurrentCommit, v1)
		}
		// The generated deploy key did the fetch, as the git server's
		// journal shows.
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		logins := gitHost.logins(t)
		if !slices.ContainsFunc(logins, func(l string) bool { return strings.Contains(l, ssh.FingerprintSHA256(pub)) }) {
			t.Errorf("no login with the deploy key %s on the git server: %q", ssh.FingerprintSHA256(pub), logins)
		}

		b = p.waitDeploy(b.ID, 5*time.Minute)
		p.wantDeploy(b, "success")
		if b.CommitHash != blogRepo.head() {
			t.Errorf("blog deployed %s, want %s", b.CommitHash, blogRepo.head())
		}
		if got := appAnswer(t, blogAddr, "from v1", time.Minute); got != "hello Blog from v1" {
			t.Errorf("blog answered %q", got)
		}
		web.checkTokenNotInURLs(t)
		if !slices.ContainsFunc(web.requests(), func(r gitRequest) bool { return r.Auth && r.User == "x-access-token" && r.Status == http.StatusOK }) {
			t.Errorf("no fetch with the token: %+v", web.requests())
		}
	})

	// Staging is a second compose project of the same app beside production,
	// with its own overrides, domain and directory: deploying, stopping and
	// starting it leaves production serving, and apps.status and
	// current_commit follow production only. Staging is stopped again at the
	// end, so that the later steps see only the production containers.
	step("staging runs beside production", func(t *testing.T) {
		p := p.with(t)
		stagingAddr := addrOf(shopStagingPort)
		stagingGreeting := "Servus " + randomHex(3)
		p.must(http.StatusOK, "PATCH", "/api/v1/apps/"+shop.App.ID+"/env/staging", map[string]any{
			"set": map[string]string{"GREETING": stagingGreeting, "APP_PORT": strconv.Itoa(shopStagingPort)}}, nil)
		var env struct {
			Production []struct{ Key, Value string } `json:"production"`
			Staging    []struct{ Key, Value string } `json:"staging"`
		}
		p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID+"/env", nil, &env)
		var stagingKeys []string
		for _, kv := range env.Staging {
			if kv.Value == stagingGreeting || kv.Value == strconv.Itoa(shopStagingPort) {
				t.Errorf("the env API shows the staging value of %s", kv.Key)
			}
			stagingKeys = append(stagingKeys, kv.Key)
		}
		if slices.Sort(stagingKeys); !slices.Equal(stagingKeys, []string{"APP_PORT", "GREETING"}) || len(env.Production) != 1 {
			t.Errorf("the env as the API shows it: %+v", env)
		}
		type domains struct {
			PrimaryDomain *string `json:"primary_domain"`
			StagingDomain *string `json:"staging_domain"`
		}
		var dom domains
		p.must(http.StatusOK, "PATCH", "/api/v1/apps/"+shop.App.ID, map[string]any{"staging_domain": "Staging.Shop.example.test"}, &dom)
		if dom.StagingDomain == nil || *dom.StagingDomain != "staging.shop.example.test" || dom.PrimaryDomain != nil {
			t.Errorf("after setting the staging domain: %+v", dom)
		}

		before := appView{}
		p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID, nil, &before)
		if before.Status != "running" || before.CurrentCommit != v1 {
			t.Fatalf("shop before the staging deployment: status %q at %q", before.Status, before.CurrentCommit)
		}
		// Staging tries out a newer commit than production runs, so that
		// the app's commit shows which one it follows.
		s1 := shopRepo.with(t).release("s1")
		d := p.startDeploy(shop.App.ID, map[string]any{"environment": "staging"})
		if d.Environment != "staging" {
			t.Errorf("the staging deployment: %+v", d)
		}
		// While staging deploys, production is not "deploying".
		waitFor(t, "the staging deployment to start", 2*time.Minute, func() bool {
			d = p.deployment(d.ID)
			return d.Status != "queued"
		})
		var during appView
		p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID, nil, &during)
		if during.Status != "running" || during.CurrentCommit != v1 {
			t.Errorf("shop while its staging deploys (%s): status %q at %q", d.Status, during.Status, during.CurrentCommit)
		}
		d = p.waitDeploy(d.ID, 5*time.Minute)
		log := p.wantDeploy(d, "success")
		if d.CommitHash != s1 || d.Branch != "main" || d.Environment != "staging" || !strings.Contains(log, "==> deployed "+s1[:12]) {
			t.Errorf("the staging deployment: %+v; log:\n%s", d, log)
		}

		// Both answer at once, each with its own release and env.
		if got := appAnswer(t, stagingAddr, "from s1", time.Minute); got != "hello "+stagingGreeting+" from s1" {
			t.Errorf("shop's staging answered %q", got)
		}
		if got := appAnswer(t, shopAddr, "from v1", time.Minute); got != "hello "+greeting+" from v1" {
			t.Errorf("shop's production answered %q during staging", got)
		}
		if got := appEnv(t, stagingAddr, "CANARY_VALUE"); got != "(404)" {
			t.Errorf("staging has production's override CANARY_VALUE: %q", got)
		}
		if got := appEnv(t, shopAddr, "APP_PORT"); got != "(404)" {
			t.Errorf("production has staging's override APP_PORT: %q", got)
		}

		// Two compose projects, two directories, two .env files.
		projects := func() []string {
			var ps []string
			for l := range strings.Lines(mustExec(t, host, "docker", "ps", "--format", `{{.Label "com.docker.compose.project"}}`)) {
				if l = strings.TrimSpace(l); strings.HasPrefix(l, "upanel-shop-") && !slices.Contains(ps, l) {
					ps = append(ps, l)
				}
			}
			slices.Sort(ps)
			return ps
		}
		if got := projects(); !slices.Equal(got, []string{"upanel-shop-production", "upanel-shop-staging"}) {
			t.Errorf("shop's compose projects running on the host: %q", got)
		}
		prodDir, stagingDir := shop.App.DeployPath+"/production", shop.App.DeployPath+"/staging"
		modes := strings.Fields(mustExec(t, host, "stat", "-c", "%a", prodDir+"/.env", stagingDir+"/.env"))
		if !slices.Equal(modes, []string{"600", "600"}) {
			t.Errorf("the modes of production's and staging's .env: %q, want 600 each", modes)
		}
		if out, err := host.Exec(t, "", "cmp", "-s", prodDir+"/.env", stagingDir+"/.env"); err == nil {
			t.Errorf("production and staging have the same .env %s", out)
		}
		mustExec(t, host, "test", "-f", stagingDir+"/docker-compose.yml")

		// The app's status and commit are production's.
		after := appView{}
		p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID, nil, &after)
		if after.Status != before.Status || after.CurrentCommit != before.CurrentCommit {
			t.Errorf("the staging deployment changed shop: status %q at %q, was %q at %q", after.Status, after.CurrentCommit, before.Status, before.CurrentCommit)
		}

		// The deployments of one environment.
		listOf := func(env string) []deploymentView {
			var list struct {
				Deployments []deploymentView `json:"deployments"`
			}
			p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID+"/deployments?environment="+env, nil, &list)
			return list.Deployments
		}
		if got := listOf("staging"); len(got) != 1 || got[0].ID != d.ID || got[0].Environment != "staging" {
			t.Errorf("shop's staging deployments: %+v, want only %s", got, d.ID)
		}
		for _, pd := range listOf("production") {
			if pd.ID == d.ID || pd.Environment != "production" {
				t.Errorf("shop's production deployments list %+v", pd)
			}
		}

		// Stopping staging (environment in the query) leaves production
		// serving, and the app running.
		type controlled struct {
			Environment string `json:"environment"`
			Action      string `json:"action"`
			Status      *struct {
				Project  string `json:"project"`
				Services []struct {
					Service, State string
				} `json:"services"`
			} `json:"status"`
		}
		var c controlled
		p.must(http.StatusOK, "POST", "/api/v1/apps/"+shop.App.ID+"/stop?environment=staging", nil, &c)
		if c.Environment != "staging" || c.Status == nil || c.Status.Project != "upanel-shop-staging" ||
			len(c.Status.Services) != 1 || c.Status.Services[0].State == "running" {
			t.Errorf("stopping staging: %+v", c)
		}
		if got := projects(); !slices.Equal(got, []string{"upanel-shop-production"}) {
			t.Errorf("shop's compose projects running after staging stopped: %q", got)
		}
		if got := appAnswer(t, shopAddr, "from v1", time.Minute); got != "hello "+greeting+" from v1" {
			t.Errorf("shop's production answered %q with staging stopped", got)
		}
		p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID, nil, &after)
		if after.Status != "running" || after.CurrentCommit != v1 {
			t.Errorf("stopping staging changed shop: status %q at %q", after.Status, after.CurrentCommit)
		}

		// Started again (environment in the body), it answers as before;
		// then it stops for the steps that follow.
		p.must(http.StatusOK, "POST", "/api/v1/apps/"+shop.App.ID+"/start", map[string]any{"environment": "staging"}, &c)
		if c.Environment != "staging" || c.Action != "start" {
			t.Errorf("starting staging: %+v", c)
		}
		if got := appAnswer(t, stagingAddr, "from s1", time.Minute); got != "hello "+stagingGreeting+" from s1" {
			t.Errorf("shop's staging answered %q once started again", got)
		}
		p.must(http.StatusOK, "POST", "/api/v1/apps/"+shop.App.ID+"/stop", map[string]any{"environment": "staging"}, nil)
		if got := projects(); !slices.Equal(got, []string{"upanel-shop-production"}) {
			t.Errorf("shop's compose projects running after staging stopped again: %q", got)
		}
		p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID, nil, &after)
		if after.Status != "running" || after.CurrentCommit != v1 {
			t.Errorf("starting and stopping staging changed shop: status %q at %q", after.Status, after.CurrentCommit)
		}
	})

	step("push-to-deploy with a signed GitHub push", func(t *testing.T) {
		p := p.with(t)
		v2 := shopRepo.with(t).release("v2")
		delivery := "e2e-" + randomHex(8)
		code, out := p.githubPush(shop.App.HookURL, shop.HookSecret, "main", v2, delivery)
		if code != http.StatusAccepted || out["deployment_id"] == "" {
			t.Fatalf("push delivery: %d %v", code, out)
		}
		// GitHub redelivers, or a burst of pushes names the same head:
		// they join the deployment still queued instead of queueing more.
		ids := []string{out["deployment_id"]}
		for range 2 {
			code, out := p.githubPush(shop.App.HookURL, shop.HookSecret, "main", v2, "e2e-"+randomHex(8))
			if code != http.StatusAccepted || out["deployment_id"] == "" {
				t.Fatalf("push delivery: %d %v", code, out)
			}
			ids = append(ids, out["deployment_id"])
		}
		if distinct := len(slices.Compact(slices.Clone(ids))); distinct > 2 {
			t.Errorf("a burst of three pushes queued %d deployments: %v", distinct, ids)
		}
		var d deploymentView
		for _, id := range slices.Compact(ids) {
			d = p.waitDeploy(id, 5*time.Minute)
			p.wantDeploy(d, "success")
			if d.CommitHash != v2 || d.TriggeredBy != "webhook" {
				t.Errorf("the pushed deployment: %+v", d)
			}
		}
		if got := appAnswer(t, shopAddr, "from v2", time.Minute); got != "hello "+greeting+" from v2" {
			t.Errorf("shop answered %q", got)
		}
		// A replayed delivery, and a forged one, deploy nothing.
		if code, out := p.githubPush(shop.App.HookURL, shop.HookSecret, "main", v2, delivery); code != http.StatusConflict {
			t.Errorf("a replayed delivery: %d %v", code, out)
		}
		if code, out := p.githubPush(shop.App.HookURL, "not-the-secret", "main", v2, "e2e-"+randomHex(8)); code != http.StatusUnauthorized {
			t.Errorf("a delivery signed with another secret: %d %v", code, out)
		}
	})

	step("rollback without a rebuild", func(t *testing.T) {
		p := p.with(t)
		var r deploymentView
		p.must(http.StatusAccepted, "POST", "/api/v1/deployments/"+first.ID+"/rollback", nil, &r)
		r = p.waitDeploy(r.ID, 5*time.Minute)
		log := p.wantDeploy(r, "success")
		if r.CommitHash != v1 || !r.IsRollback || r.RollbackFromID != first.ID || r.TriggeredBy != "rollback" {
			t.Errorf("the rollback: %+v", r)
		}
		// The engine put the kept images of v1 back instead of building.
		if !strings.Contains(log, "==> reusing images of release "+v1) {
			t.Errorf("the rollback's log does not say it reused v1's images:\n%s", log)
		}
		for l := range strings.Lines(log) {
			if strings.HasPrefix(l, "$ ") && strings.Contains(l, " build") {
				t.Errorf("the rollback ran a build: %s", l)
			}
		}
		if got := appAnswer(t, shopAddr, "from v1", time.Minute); got != "hello "+greeting+" from v1" {
			t.Errorf("shop answered %q", got)
		}
	})

	step("a broken compose file fails while the old release serves", func(t *testing.T) {
		p := p.with(t)
		broken := shopRepo.with(t).breakCompose()
		probe := startServingProbe(shopAddr, "hello "+greeting+" from v1")
		d := p.waitDeploy(p.startDeploy(shop.App.ID, nil).ID, 5*time.Minute)
		probe.stop(t)
		log := p.wantDeploy(d, "failed")
		if d.CommitHash != broken || !strings.Contains(d.ErrorMessage, "no_such_option") || !strings.Contains(log, brokenComposeError) {
			t.Errorf("the broken deployment: %+v; log:\n%s", d, log)
		}
		waitFor(t, "the deployment_failed notifications", 30*time.Second, func() bool {
			return p.countRows("SELECT COUNT(*) FROM notifications WHERE type = 'deployment_failed'") >= 2 // the admin and the operator
		})
	})

	step("cancel mid-build", func(t *testing.T) {
		p := p.with(t)
		shopRepo.with(t).slowRelease("v3", 300)
		probe := startServingProbe(shopAddr, "hello "+greeting+" from v1")
		d := p.startDeploy(shop.App.ID, nil)
		p.waitLogLine(d.ID, "slow build step 1/300", 3*time.Minute)
		var c deploymentView
		p.must(http.StatusOK, "POST", "/api/v1/deployments/"+d.ID+"/cancel", nil, &c)
		d = p.waitDeploy(d.ID, 2*time.Minute)
		probe.stop(t)
		log := p.wantDeploy(d, "cancelled")
		if strings.Contains(log, "slow build step 300/300") || d.CommitHash == "" {
			t.Errorf("the cancelled deployment: %+v; log:\n%s", d, log)
		}
		// The build itself stopped: no build container is left running
		// on the host, only the apps' own.
		waitFor(t, "the cancelled build's container to go", time.Minute, func() bool {
			for _, name := range runningContainers(t, host) {
				if !strings.HasPrefix(name, "upanel-shop-production") && !strings.HasPrefix(name, "upanel-blog-production") {
					return false
				}
			}
			return true
		})
	})

	step("two deploys at once run one after the other", func(t *testing.T) {
		p := p.with(t)
		v4 := shopRepo.with(t).release("v4")
		type result struct {
			code int
			body []byte
			err  error
		}
		results := make(chan result, 2)
		for range 2 {
			go func() {
				code, body, err := p.rawCall("POST", "/api/v1/apps/"+shop.App.ID+"/deployments", map[string]any{})
				results <- result{code, body, err}
			}()
		}
		var ds []deploymentView
		for range 2 {
			r := <-results
			var d deploymentView
			if r.err != nil || r.code != http.StatusAccepted || json.Unmarshal(r.body, &d) != nil {
				t.Fatalf("a deploy request: %d %v %s", r.code, r.err, r.body)
			}
			ds = append(ds, d)
		}
		if ds[0].ID == ds[1].ID {
			t.Fatalf("two requests made one deployment: %+v", ds)
		}
		for i := range ds {
			ds[i] = p.waitDeploy(ds[i].ID, 5*time.Minute)
			p.wantDeploy(ds[i], "success")
			if ds[i].CommitHash != v4 {
				t.Errorf("deployment %s deployed %s, want %s", ds[i].ID, ds[i].CommitHash, v4)
			}
		}
		slices.SortFunc(ds, func(a, b deploymentView) int { return a.StartedAt.Compare(*b.StartedAt) })
		if ds[1].StartedAt.Before(*ds[0].FinishedAt) {
			t.Errorf("the deployments overlapped: %s ran %v to %v, %s from %v", ds[0].ID, ds[0].StartedAt, ds[0].FinishedAt, ds[1].ID, ds[1].StartedAt)
		}
		if got := appAnswer(t, shopAddr, "from v4", time.Minute); got != "hello "+greeting+" from v4" {
			t.Errorf("shop answered %q", got)
		}
	})

	step("the panel killed mid-deploy", func(t *testing.T) {
		p := p.with(t)
		// checkEnd checks a deployment that the panel followed across its
		// crash: it succeeded, with the whole log, every line once.
		checkEnd := func(d deploymentView, commit string, steps int) {
			t.Helper()
			d = p.waitDeploy(d.ID, 3*time.Minute)
			log := p.wantDeploy(d, "success")
			if d.CommitHash != commit || d.FinishedAt == nil {
				t.Errorf("after the restart: %+v", d)
			}
			for i := 1; i <= steps; i++ {
				if n := strings.Count(log, fmt.Sprintf("slow build step %d/%d\n", i, steps)); n != 1 {
					t.Errorf("the log has %d lines of step %d/%d:\n%s", n, i, steps, log)
				}
			}
			if !strings.Contains(log, "==> deployed "+commit[:12]) {
				t.Errorf("the log lacks its end:\n%s", log)
			}
			var a appView
			p.must(http.StatusOK, "GET", "/api/v1/apps/"+shop.App.ID, nil, &a)
			if a.CurrentCommit != commit {
				t.Errorf("shop's current commit is %q, want %s", a.CurrentCommit, commit)
			}
			if n := p.countRows("SELECT COUNT(*) FROM deployments WHERE status IN ('queued', 'running')"); n != 0 {
				t.Errorf("%d deployments are still queued or running", n)
			}
		}

		// 1. The agent finishes the deployment while the panel is down:
		// the new release answers before the panel is back.
		v5 := shopRepo.with(t).slowRelease("v5", 15)
		d := p.startDeploy(shop.App.ID, nil)
		p.waitLogLine(d.ID, "slow build step 1/15", 3*time.Minute)
		pp.kill(t)
		if n := p.countRows("SELECT COUNT(*) FROM deployments WHERE id = ? AND status = 'running'", d.ID); n != 1 {
			t.Fatalf("the deployment is not running when the panel dies")
		}
		appAnswer(t, shopAddr, "from v5", 4*time.Minute)
		pp.start(t)
		checkEnd(d, v5, 15)

		// 2. The panel is back while the agent still builds: it follows
		// the deployment to its end.
		v6 := shopRepo.with(t).slowRelease("v6", 15)
		d = p.startDeploy(shop.App.ID, nil)
		p.waitLogLine(d.ID, "slow build step 2/15", 3*time.Minute)
		pp.kill(t)
		pp.start(t)
		checkEnd(d, v6, 15)
		appAnswer(t, shopAddr, "from v6", time.Minute)
	})

	step("the agent restarted mid-deploy", func(t *testing.T) {
		p := p.with(t)
		shopRepo.with(t).slowRelease("v7", 30)
		probe := startServingProbe(shopAddr, "hello "+greeting+" from v6")
		d := p.startDeploy(shop.App.ID, nil)
		p.waitLogLine(d.ID, "slow build step 2/30", 3*time.Minute)
		host.Root(t, "systemctl restart upanel-agent\n")
		d = p.waitDeploy(d.ID, 3*time.Minute)
		probe.stop(t)
		log := p.wantDeploy(d, "failed")
		if !strings.Contains(d.ErrorMessage, "agent") || strings.Contains(log, "slow build step 30/30") {
			t.Errorf("the deployment cut by the agent's restart: %+v\n%s", d, log)
		}
		// The project is not left locked or half-deployed: the next
		// deployment goes through.
		v8 := shopRepo.with(t).release("v8")
		d = p.waitDeploy(p.startDeploy(shop.App.ID, nil).ID, 5*time.Minute)
		p.wantDeploy(d, "success")
		if d.CommitHash != v8 {
			t.Errorf("deployed %s, want %s", d.CommitHash, v8)
		}
		if got := appAnswer(t, shopAddr, "from v8", time.Minute); got != "hello "+greeting+" from v8" {
			t.Errorf("shop answered %q", got)
		}
	})

	t.Run("canaries never show", func(t *testing.T) {
		p := p.with(t)
		argv.stop(t)
		samples, seen, leaks, err := argv.result()
		t.Logf("argv: %d samples of ps on the host; deployment commands seen: %v", samples, seen)
		if err != nil {
			t.Errorf("the argv sampler: %v", err)
		}
		for _, l := range leaks {
			t.Errorf("a canary is in a command line on the host: %s", l)
		}
		if !failed && (samples < 100 || seen["git fetch"] == 0 || seen["compose build"] == 0) {
			t.Errorf("the argv sampler saw too little to prove anything: %d samples, %v", samples, seen)
		}
		canaries := []string{canaryEnv, canaryToken}
		var logs int
		for _, app := range []string{shop.App.ID, blog.App.ID} {
			var list struct {
				Deployments []deploymentView `json:"deployments"`
			}
			p.must(http.StatusOK, "GET", "/api/v1/apps/"+app+"/deployments?limit=100", nil, &list)
			for _, d := range list.Deployments {
				d = p.deployment(d.ID)
				log := p.deployLog(d.ID)
				logs++
				if testing.Verbose() {
					var dur float64
					if d.DurationSeconds != nil {
						dur = *d.DurationSeconds
					}
					t.Logf("deployment %s %-9s %-8s %.12s %3.0fs %d log lines %s", d.ID, d.Status, d.TriggeredBy, d.CommitHash, dur, strings.Count(log, "\n"), d.ErrorMessage)
				}
			}
		}
		if logs < 12 && !failed {
			t.Errorf("%d deployments listed, want at least 12", logs)
		}
		for _, c := range canaries {
			if n := p.countRows("SELECT COUNT(*) FROM deployments WHERE log LIKE ? OR error_message LIKE ? OR commit_message LIKE ?", "%"+c+"%", "%"+c+"%", "%"+c+"%"); n != 0 {
				t.Errorf("a canary is in %d rows of deployments", n)
			}
			if n := p.countRows("SELECT COUNT(*) FROM activity_log WHERE description LIKE ? OR changes LIKE ?", "%"+c+"%", "%"+c+"%"); n != 0 {
				t.Errorf("a canary is in %d rows of activity_log", n)
			}
		}
		seenBodies, responses := rec.all()
		panelLog := p.log.String()
		for _, c := range canaries {
			if i := strings.Index(seenBodies, c); i >= 0 {
				t.Errorf("a canary is in an API response: …%s…", seenBodies[max(0, i-300):min(len(seenBodies), i+100)])
			}
			if i := strings.Index(panelLog, c); i >= 0 {
				t.Errorf("a canary is in the panel's log: …%s…", panelLog[max(0, i-300):min(len(panelLog), i+100)])
			}
		}
		t.Logf("%d API responses (%d bytes) and %d bytes of panel log checked", responses, len(seenBodies), len(panelLog))
		web.checkTokenNotInURLs(t)
	})
}

// appEnv returns the value of an env var in the sample app's container.
func appEnv(t testing.TB, addr, name string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/env/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("(%d)", resp.StatusCode)
	}
	return strings.TrimSpace(string(b))
}
