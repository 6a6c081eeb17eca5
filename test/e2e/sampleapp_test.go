package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/testhost"
)

// The sample app that deployment tests deploy: a git repository holding a
// docker-compose.yml with one service, "web", built from a FROM scratch
// Dockerfile around the static binary of testdata/sampleapp (test hosts
// cannot pull images). Its answer shows an env var and the release:
//
//	GET /         hello $GREETING from $VERSION
//	GET /healthz  200, or 503 with FAIL_HEALTH=1 (the compose healthcheck)
//	GET /env/X    the value of env var X
//
// The compose file publishes the container's port 8080 on the host's port
// ${APP_PORT:-<port>}, port being newAppRepo's parameter: boot the test host
// with that port in testhost.Options.SamePorts, and the machine reaches the
// app at 127.0.0.1:<port>. An environment's .env may set APP_PORT to publish
// elsewhere (so production and staging can run side by side); compose reads
// .env for interpolation and env_file passes it to the container as well.

// sampleAppService is the compose service of the sample app, and
// sampleAppPort the port its container listens on.
const (
	sampleAppService = "web"
	sampleAppPort    = 8080
)

// Errors that the broken commits cause, as docker-compose 1.29 and Docker's
// classic builder word them (in the deployment log).
const (
	brokenComposeError = "Unsupported config option for services.web: 'no_such_option'"
	brokenYAMLError    = "expected ',' or ']'"
	brokenBuildError   = "COPY failed"
)

// buildSampleApp builds testdata/sampleapp once per test binary: a static
// Linux binary for the machine's architecture, which is the test hosts'. It
// goes to a directory of the temporary directory named after the source and
// the toolchain, reused by later runs instead of piling up.
var buildSampleApp = sync.OnceValues(func() (string, error) {
	src, err := os.ReadFile(filepath.Join("testdata", "sampleapp", "main.go"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(fmt.Appendf(src, "\n%s %s", runtime.Version(), runtime.GOARCH))
	dir := filepath.Join(os.TempDir(), "upanel-e2e-sampleapp-"+hex.EncodeToString(sum[:8]))
	out := filepath.Join(dir, "app")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := out + ".tmp-" + randomHex(4)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, "./testdata/sampleapp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build the sample app: %v\n%s", err, b)
	}
	return out, os.Rename(tmp, out) // atomic: a concurrent run sees all or nothing
})

// appRepo is the sample app's repository: a bare repository (the origin,
// which httpsGitServer serves as it is and sshGitServer mirrors) and a working
// clone where the test commits. Every commit is pushed to the origin and to
// every mirror at once, so git servers always show the newest commit.
type appRepo struct {
	t testing.TB
	*repoState
}

type repoState struct {
	Name string // the bare repository's directory is Name+".git"
	Bare string // the origin, a bare repository
	Work string // the working clone
	Port int    // the host port the compose file publishes by default

	mu      sync.Mutex // serializes commits and pushes
	branch  string
	mirrors []gitMirror
}

// gitMirror is a remote that every commit is pushed to, with the
// environment its URL needs (GIT_SSH_COMMAND for an SSH remote).
type gitMirror struct {
	url string
	env []string
}

// newAppRepo creates the repository with a first commit on main, the good
// release "v1", whose app is published on the host's port.
func newAppRepo(t testing.TB, port int) *appRepo {
	t.Helper()
	needCommands(t, "git", "go")
	bin, err := buildSampleApp()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &appRepo{t: t, repoState: &repoState{Name: "app", Bare: filepath.Join(dir, "app.git"), Work: filepath.Join(dir, "work"), Port: port, branch: "main"}}
	r.git(dir, "init", "--quiet", "--bare", "--initial-branch=main", r.Bare)
	r.git(dir, "init", "--quiet", "--initial-branch=main", r.Work)
	r.git(r.Work, "remote", "add", "origin", r.Bare)
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, r.Work, "app", string(b), 0o755)
	writeFile(t, r.Work, ".dockerignore", ".git\n.env\n", 0o644)
	r.commit("sample app v1", func(dir string) { r.goodFiles(dir, "v1", 0) })
	return r
}

// with returns r reporting to t, for use inside a subtest.
func (r *appRepo) with(t testing.TB) *appRepo {
	return &appRepo{t: t, repoState: r.repoState}
}

// commit lets changes edit the working tree, commits everything (even when
// nothing changed) and pushes the branch to the origin and the mirrors. It
// returns the new commit's sha.
func (r *appRepo) commit(msg string, changes func(dir string)) string {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if changes != nil {
		changes(r.Work)
	}
	r.git(r.Work, "add", "--all")
	r.git(r.Work, "commit", "--quiet", "--allow-empty", "-m", msg)
	r.pushLocked()
	return r.headLocked()
}

// head is the sha of the current branch's newest commit.
func (r *appRepo) head() string {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.headLocked()
}

func (r *appRepo) headLocked() string {
	return strings.TrimSpace(r.git(r.Work, "rev-parse", "HEAD"))
}

// checkout switches to branch, creating it at the current commit if it does
// not exist; commits then go to it.
func (r *appRepo) checkout(branch string) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.gitErr(r.Work, nil, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch); err == nil {
		r.git(r.Work, "checkout", "--quiet", branch)
	} else {
		r.git(r.Work, "checkout", "--quiet", "-b", branch)
	}
	r.branch = branch
	r.pushLocked()
}

// resetTo moves the current branch back to sha and force-pushes it, as a
// developer rewriting history would.
func (r *appRepo) resetTo(sha string) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.git(r.Work, "reset", "--quiet", "--hard", sha)
	r.pushLocked()
}

// release commits a good release: VERSION holds version (the app's answer
// shows it, and it makes the image differ from every other release's), with
// the normal Dockerfile and compose file, which repairs a broken commit.
func (r *appRepo) release(version string) string {
	r.t.Helper()
	return r.commit("release "+version, func(dir string) { r.goodFiles(dir, version, 0) })
}

// slowRelease is release with a build step that takes seconds, printing
// "slow build step i/N" into the build output once a second: a point
// where a deployment is reliably still building, to cancel it there.
//
// The step is a RUN of the app's own binary (exec form: FROM scratch has no
// shell) with a fresh nonce in its command line, so Docker's build cache
// never skips it. It pulls nothing, does not depend on the network's or the
// disk's speed, and its progress lines let a test wait for "the build is
// running" instead of guessing with a timer; a large file in the repository
// would slow the fetch instead, by an amount that depends on the machine.
func (r *appRepo) slowRelease(version string, seconds int) string {
	r.t.Helper()
	if seconds < 1 {
		r.t.Fatalf("slowRelease: %d seconds", seconds)
	}
	return r.commit(fmt.Sprintf("release %s, slow build (%ds)", version, seconds), func(dir string) { r.goodFiles(dir, version, seconds) })
}

// The break helpers break one thing each; the other files are the good ones,
// with the VERSION of the last release.

// breakCompose commits a compose file with an unsupported option:
// docker-compose refuses it (config, build, up) with brokenComposeError.
func (r *appRepo) breakCompose() string {
	r.t.Helper()
	return r.commit("compose: an option that does not exist", func(dir string) {
		c := strings.Replace(r.composeFile(), "    env_file: .env\n", "    env_file: .env\n    no_such_option: true\n", 1)
		writeFile(r.t, dir, "docker-compose.yml", c, 0o644)
		writeFile(r.t, dir, "Dockerfile", dockerfile(0), 0o644)
	})
}

// breakComposeYAML commits a compose file that is not YAML: docker-compose
// fails with brokenYAMLError.
func (r *appRepo) breakComposeYAML() string {
	r.t.Helper()
	return r.commit("compose: unbalanced bracket", func(dir string) {
		writeFile(r.t, dir, "docker-compose.yml", "version: \"3.8\"\nservices:\n  web:\n    build: [.\n", 0o644)
		writeFile(r.t, dir, "Dockerfile", dockerfile(0), 0o644)
	})
}

// breakBuild commits a valid compose file whose image cannot be built (the
// Dockerfile copies a file that does not exist): the build fails with
// brokenBuildError.
func (r *appRepo) breakBuild() string {
	r.t.Helper()
	return r.commit("Dockerfile: copy a missing file", func(dir string) {
		writeFile(r.t, dir, "Dockerfile", dockerfile(0)+"COPY no-such-file /no-such-file\n", 0o644)
		writeFile(r.t, dir, "docker-compose.yml", r.composeFile(), 0o644)
	})
}

// goodFiles writes the files of a good release into dir.
func (r *appRepo) goodFiles(dir, version string, slowSeconds int) {
	writeFile(r.t, dir, "VERSION", version+"\n", 0o644)
	writeFile(r.t, dir, "Dockerfile", dockerfile(slowSeconds), 0o644)
	writeFile(r.t, dir, "docker-compose.yml", r.composeFile(), 0o644)
}

// composeFile is the good compose file (version 3.8, which docker-compose
// v1.29 reads). The healthcheck runs the binary itself: there is no shell.
func (r *appRepo) composeFile() string {
	return fmt.Sprintf(`version: "3.8"
services:
  %s:
    build: .
    env_file: .env
    ports:
      - "${APP_PORT:-%d}:%d"
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "/app", "-healthcheck"]
      interval: 2s
      timeout: 2s
      retries: 5
      start_period: 2s
`, sampleAppService, r.Port, sampleAppPort)
}

// dockerfile is the sample app's Dockerfile; slowSeconds > 0 adds the slow
// build step (see slowRelease).
func dockerfile(slowSeconds int) string {
	s := "FROM scratch\nCOPY app /app\nCOPY VERSION /VERSION\n"
	if slowSeconds > 0 {
		s += fmt.Sprintf("RUN [\"/app\", \"-slow-build\", \"%d\", \"-nonce\", \"%s\"]\n", slowSeconds, randomHex(8))
	}
	return s + "EXPOSE " + strconv.Itoa(sampleAppPort) + "\nENTRYPOINT [\"/app\"]\n"
}

// pushLocked pushes the current branch to the origin, then mirrors the
// origin to every mirror.
func (r *appRepo) pushLocked() {
	r.t.Helper()
	r.git(r.Work, "push", "--quiet", "--force", "origin", "HEAD:refs/heads/"+r.branch)
	for _, m := range r.mirrors {
		r.pushMirror(m)
	}
}

func (r *appRepo) pushMirror(m gitMirror) {
	r.t.Helper()
	if out, err := r.gitErr(r.Bare, m.env, "push", "--quiet", "--mirror", m.url); err != nil {
		r.t.Fatalf("push %s to %s: %v\n%s", r.Name, m.url, err, out)
	}
}

// addMirror pushes the origin to url now and after every commit.
func (r *appRepo) addMirror(url string, env []string) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	m := gitMirror{url: url, env: env}
	r.pushMirror(m)
	r.mirrors = append(r.mirrors, m)
}

// git runs git in dir and returns its standard output; a failure fails the
// test.
func (r *appRepo) git(dir string, args ...string) string {
	r.t.Helper()
	out, err := r.gitErr(dir, nil, args...)
	if err != nil {
		r.t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (r *appRepo) gitErr(dir string, env []string, args ...string) (string, error) {
	return runGit(dir, env, args...)
}

// runGit runs the machine's git with no user or system configuration, so
// that nobody's ~/.gitconfig changes what the tests do.
func runGit(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=UPanel Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=UPanel Test", "GIT_COMMITTER_EMAIL=test@example.com")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func writeFile(t testing.TB, dir, name, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile keeps an existing file's mode
		t.Fatal(err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// needCommands skips the test when a command it runs on the machine is
// missing, or fails it where the test hosts must be available (CI=true or
// UPANEL_TEST_DOCKER=1), as testhost.Available does.
func needCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" || os.Getenv("UPANEL_TEST_DOCKER") == "1" {
				t.Fatalf("the %s command is missing on this machine; it must be there under CI=true (or UPANEL_TEST_DOCKER=1)", n)
			}
			t.Skipf("the %s command is missing on this machine", n)
		}
	}
}

// appAnswer waits until the app answers GET / at addr (127.0.0.1:PORT) with
// 200 and a body containing want, and returns that body, trimmed. Docker's
// port proxy accepts connections before the app listens, so failures are
// retried until within.
func appAnswer(t testing.TB, addr, want string, within time.Duration) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(within)
	for {
		var last string
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			last = err.Error()
		} else {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			body := strings.TrimSpace(string(b))
			if resp.StatusCode == http.StatusOK && strings.Contains(body, want) {
				return body
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app at %s did not answer %q within %v; last answer: %s", addr, want, within, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestSampleApp checks the sample app's binary on the machine and the
// repository builder, without Docker.
func TestSampleApp(t *testing.T) {
	port := testhost.FreePort(t)
	r := newAppRepo(t, port)
	v1 := r.head()

	// The repository: a bare origin holding the first release.
	if got := strings.TrimSpace(r.git(r.Bare, "rev-parse", "refs/heads/main")); got != v1 {
		t.Fatalf("origin main is %s, want %s", got, v1)
	}
	files := r.git(r.Work, "ls-tree", "-r", "--name-only", "HEAD")
	for _, f := range []string{".dockerignore", "Dockerfile", "VERSION", "app", "docker-compose.yml"} {
		if !containsLine(files, f) {
			t.Errorf("the first commit lacks %s:\n%s", f, files)
		}
	}
	if mode := r.git(r.Work, "ls-tree", "HEAD", "app"); !strings.HasPrefix(mode, "100755 ") {
		t.Errorf("app is not executable in git: %s", mode)
	}
	compose := r.git(r.Work, "show", "HEAD:docker-compose.yml")
	if !strings.Contains(compose, fmt.Sprintf(`"${APP_PORT:-%d}:8080"`, port)) || !strings.Contains(compose, "env_file: .env") {
		t.Errorf("compose file:\n%s", compose)
	}

	// Each helper makes one commit, pushed to the origin.
	v2 := r.slowRelease("v2", 3)
	df := r.git(r.Work, "show", "HEAD:Dockerfile")
	if !strings.Contains(df, `RUN ["/app", "-slow-build", "3", "-nonce", "`) {
		t.Errorf("slow Dockerfile:\n%s", df)
	}
	if r.slowRelease("v2", 3); r.git(r.Work, "show", "HEAD:Dockerfile") == df {
		t.Error("two slow builds have the same RUN line: Docker's cache would skip the second")
	}
	broken := r.breakCompose()
	if c := r.git(r.Work, "show", "HEAD:docker-compose.yml"); !strings.Contains(c, "no_such_option") {
		t.Errorf("broken compose file:\n%s", c)
	}
	v3 := r.release("v3")
	if c := r.git(r.Work, "show", "HEAD:docker-compose.yml"); c != compose {
		t.Errorf("a release does not repair the compose file:\n%s", c)
	}
	if got := strings.TrimSpace(r.git(r.Bare, "rev-parse", "refs/heads/main")); got != v3 {
		t.Errorf("origin main is %s, want %s", got, v3)
	}
	if log := r.git(r.Bare, "rev-list", "main"); !containsLine(log, v1) || !containsLine(log, v2) || !containsLine(log, broken) {
		t.Errorf("history lacks a commit:\n%s", log)
	}
	r.checkout("staging")
	st := r.release("staging-1")
	if got := strings.TrimSpace(r.git(r.Bare, "rev-parse", "refs/heads/staging")); got != st {
		t.Errorf("origin staging is %s, want %s", got, st)
	}
	r.checkout("main")
	r.resetTo(v2)
	if got := strings.TrimSpace(r.git(r.Bare, "rev-parse", "refs/heads/main")); got != v2 {
		t.Errorf("after the reset, origin main is %s, want %s", got, v2)
	}

	// docker-compose, when the machine has it, finds the broken files
	// broken with the errors the tests look for, and the good one good.
	if _, err := exec.LookPath("docker-compose"); err == nil {
		check := func(sha, wantErr string) {
			t.Helper()
			dir := t.TempDir()
			r.git(r.Work, "worktree", "add", "--quiet", "--detach", dir, sha)
			writeFile(t, dir, ".env", "GREETING=hi\n", 0o600)
			cmd := exec.Command("docker-compose", "config", "--quiet")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if wantErr == "" && err != nil {
				t.Errorf("docker-compose config of %s: %v\n%s", sha, err, out)
			}
			if wantErr != "" && (err == nil || !strings.Contains(string(out), wantErr)) {
				t.Errorf("docker-compose config of %s: %v, want an error with %q:\n%s", sha, err, wantErr, out)
			}
		}
		check(v3, "")
		check(broken, brokenComposeError)
		check(r.breakComposeYAML(), brokenYAMLError)
		check(r.breakBuild(), "") // valid compose: only the build fails
	}

	// The binary, run on the machine.
	bin, _ := buildSampleApp()
	appPort := testhost.FreePort(t)
	if runtime.GOOS == "linux" {
		cmd := exec.Command(bin)
		cmd.Env = []string{"PORT=" + strconv.Itoa(appPort), "GREETING=Grüß Gott", "APP_COMMIT=abc123", "FAIL_HEALTH=1"}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(appPort))
		// No /VERSION on the machine: "unknown".
		if got := appAnswer(t, addr, "hello", 10*time.Second); got != "hello Grüß Gott from unknown commit abc123" {
			t.Errorf("GET / = %q", got)
		}
		get := func(path string) (int, string) {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, strings.TrimSpace(string(b))
		}
		if code, body := get("/healthz"); code != http.StatusServiceUnavailable {
			t.Errorf("/healthz with FAIL_HEALTH=1: %d %s", code, body)
		}
		if code, body := get("/env/GREETING"); code != http.StatusOK || body != "Grüß Gott" {
			t.Errorf("/env/GREETING: %d %q", code, body)
		}
		if code, _ := get("/env/NOT_SET"); code != http.StatusNotFound {
			t.Errorf("/env/NOT_SET: %d", code)
		}
		probe := exec.Command(bin, "-healthcheck")
		probe.Env = []string{"PORT=" + strconv.Itoa(appPort)}
		if out, err := probe.CombinedOutput(); err == nil || !strings.Contains(string(out), "503") {
			t.Errorf("-healthcheck of an unhealthy app: %v %s", err, out)
		}
		slow := exec.Command(bin, "-slow-build", "2", "-nonce", "x")
		out, err := slow.Output()
		if err != nil || string(out) != "slow build step 1/2\nslow build step 2/2\n" {
			t.Errorf("-slow-build 2: %v %q", err, out)
		}
	}
}
