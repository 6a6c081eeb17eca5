package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"upanel/internal/wire"
)

// newTestDeployer is a Deployer over a temporary deploy root and state dir.
func newTestDeployer(t *testing.T) *Deployer {
	t.Helper()
	base := t.TempDir()
	d, err := NewDeployer(filepath.Join(base, "srv"), filepath.Join(base, "state"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func validRequest(d *Deployer) wire.DeployRequest {
	return wire.DeployRequest{ID: testULID(1), Git: wire.GitSource{URL: "https://git.example.com/acme/app.git"},
		Branch: "main", Dir: filepath.Join(d.root, "apps", "shop", "production"), ComposeFile: "compose.yaml",
		Project: "upanel-shop-production", Env: map[string]string{"A": "1", "DB_URL": "postgres://u:p@db/x"}}
}

// The agent checks every field of a request again.
func TestValidateRequest(t *testing.T) {
	d := newTestDeployer(t)
	req := validRequest(d)
	dir, err := d.validate(&req)
	if err != nil {
		t.Fatal(err)
	}
	if dir != req.Dir || req.KeepReleases != defaultKeepReleases || req.TimeoutSeconds != 1800 {
		t.Fatalf("dir %s, defaults %+v", dir, req)
	}
	for name, tc := range map[string]struct {
		change func(*wire.DeployRequest)
		want   string
	}{
		"project":             {func(r *wire.DeployRequest) { r.Project = "shop" }, "project"},
		"project env":         {func(r *wire.DeployRequest) { r.Project = "upanel-shop-dev" }, "project"},
		"project case":        {func(r *wire.DeployRequest) { r.Project = "upanel-Shop-production" }, "project"},
		"compose path":        {func(r *wire.DeployRequest) { r.ComposeFile = "../compose.yaml" }, "compose_file"},
		"compose dir":         {func(r *wire.DeployRequest) { r.ComposeFile = "deploy/compose.yaml" }, "compose_file"},
		"compose option":      {func(r *wire.DeployRequest) { r.ComposeFile = "-f" }, "compose_file"},
		"compose env":         {func(r *wire.DeployRequest) { r.ComposeFile = ".env" }, "compose_file"},
		"branch option":       {func(r *wire.DeployRequest) { r.Branch = "--upload-pack=x" }, "branch"},
		"branch dots":         {func(r *wire.DeployRequest) { r.Branch = "a/../b" }, "branch"},
		"branch space":        {func(r *wire.DeployRequest) { r.Branch = "a b" }, "branch"},
		"branch empty":        {func(r *wire.DeployRequest) { r.Branch = "" }, "branch"},
		"branch lock":         {func(r *wire.DeployRequest) { r.Branch = "x.lock" }, "branch"},
		"commit short":        {func(r *wire.DeployRequest) { r.Commit = "abc123" }, "commit"},
		"commit option":       {func(r *wire.DeployRequest) { r.Commit = "-" + strings.Repeat("a", 39) }, "commit"},
		"url ext":             {func(r *wire.DeployRequest) { r.Git.URL = "ext::sh -c touch% /tmp/pwned" }, "git URL"},
		"url file":            {func(r *wire.DeployRequest) { r.Git.URL = "file:///etc" }, "git URL"},
		"url path":            {func(r *wire.DeployRequest) { r.Git.URL = "/srv/repo.git" }, "git URL"},
		"url http":            {func(r *wire.DeployRequest) { r.Git.URL = "http://git.example.com/a.git" }, "git URL"},
		"url option":          {func(r *wire.DeployRequest) { r.Git.URL = "-oProxyCommand=x" }, "git URL"},
		"url ssh option host": {func(r *wire.DeployRequest) { r.Git.URL = "ssh://-oProxyCommand=x/a.git" }, "git URL"},
		"url creds":           {func(r *wire.DeployRequest) { r.Git.URL = "https://u:tok@git.example.com/a.git" }, "credentials"},
		"url user":            {func(r *wire.DeployRequest) { r.Git.URL = "https://tok@git.example.com/a.git" }, "credentials"},
		"ssh without pin":     {func(r *wire.DeployRequest) { r.Git.URL = "git@github.com:acme/app.git" }, "host key"},
		"key over https": {func(r *wire.DeployRequest) {
			r.Git.CredentialType, r.Git.SSHPrivateKey = "ssh_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
		}, "SSH key"},
		"token over ssh": {func(r *wire.DeployRequest) {
			r.Git.URL, r.Git.KnownHosts, r.Git.CredentialType, r.Git.Secret = "git@github.com:a/b.git", "github.com ssh-ed25519 AAAA", "token", "t"
		}, "https"},
		"token newline":   {func(r *wire.DeployRequest) { r.Git.CredentialType, r.Git.Secret = "token", "abc\ndef" }, "line break"},
		"basic no user":   {func(r *wire.DeployRequest) { r.Git.CredentialType, r.Git.Secret = "basic", "pw" }, "username"},
		"unknown cred":    {func(r *wire.DeployRequest) { r.Git.CredentialType = "oauth" }, "credential_type"},
		"env key":         {func(r *wire.DeployRequest) { r.Env = map[string]string{"1A": "x"} }, "variable name"},
		"env key dash":    {func(r *wire.DeployRequest) { r.Env = map[string]string{"A-B": "x"} }, "variable name"},
		"env newline":     {func(r *wire.DeployRequest) { r.Env = map[string]string{"A": "x\ny"} }, "line break or NUL"},
		"env nul":         {func(r *wire.DeployRequest) { r.Env = map[string]string{"A": "x\x00"} }, "line break or NUL"},
		"env dollar":      {func(r *wire.DeployRequest) { r.Env = map[string]string{"A": "p@ss$word1"} }, "value of A contains $"},
		"env quoted":      {func(r *wire.DeployRequest) { r.Env = map[string]string{"PW": `"S3cret"`} }, "value of PW starts or ends with a quote"},
		"env spaced":      {func(r *wire.DeployRequest) { r.Env = map[string]string{"A": " x"} }, "whitespace"},
		"env comment":     {func(r *wire.DeployRequest) { r.Env = map[string]string{"A": "abc #tail"} }, "followed by #"},
		"env control":     {func(r *wire.DeployRequest) { r.Env = map[string]string{"A": "sec\x01ret"} }, "control character"},
		"branch shell":    {func(r *wire.DeployRequest) { r.Branch = "a;b" }, "branch"},
		"branch at":       {func(r *wire.DeployRequest) { r.Branch = "@" }, "branch"},
		"commit sha256":   {func(r *wire.DeployRequest) { r.Commit = strings.Repeat("a", 64) }, "commit"},
		"keep":            {func(r *wire.DeployRequest) { r.KeepReleases = 51 }, "keep_releases"},
		"timeout":         {func(r *wire.DeployRequest) { r.TimeoutSeconds = -1 }, "timeout_seconds"},
		"dir relative":    {func(r *wire.DeployRequest) { r.Dir = "apps/shop" }, "absolute"},
		"dir traversal":   {func(r *wire.DeployRequest) { r.Dir = d.root + "/apps/../etc" }, "clean"},
		"dir outside":     {func(r *wire.DeployRequest) { r.Dir = "/etc/cron.d" }, "under"},
		"dir apps itself": {func(r *wire.DeployRequest) { r.Dir = d.root + "/apps" }, "under"},
		"dir root":        {func(r *wire.DeployRequest) { r.Dir = d.root }, "under"},
		"id":              {func(r *wire.DeployRequest) { r.ID = "../../etc/passwd" }, "ULID"},
	} {
		t.Run(name, func(t *testing.T) {
			r := validRequest(d)
			tc.change(&r)
			_, err := d.validate(&r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one about %q", err, tc.want)
			}
		})
	}
	// Branches the panel accepts (wire.BranchProblem) are accepted here
	// too, and values with a TAB or a # not after a space.
	for _, br := range []string{"renovate/foo@2", "feature/é", "fix+1", "a,b=c!d%e#f"} {
		r := validRequest(d)
		r.Branch = br
		r.Env = map[string]string{"A": "a\tb", "B": "x#y", "C": "it's"}
		if _, err := d.validate(&r); err != nil {
			t.Errorf("branch %q: %v", br, err)
		}
	}
	// Accepted URL forms.
	for _, u := range []string{"https://github.com/acme/app.git", "https://git.example.com:8443/a/b", "ssh://git@github.com/acme/app.git",
		"ssh://git@[::1]:2222/a.git", "git@github.com:acme/app.git", "github.com:acme/app.git"} {
		kind, err := gitURLKind(u)
		if err != nil || (kind == "https") != strings.HasPrefix(u, "https") {
			t.Errorf("%s: %s %v", u, kind, err)
		}
	}
}

// The deployment's directory must stay under <root>/apps once symbolic
// links are followed.
func TestResolveAppDir(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "srv")
	outside := filepath.Join(base, "outside")
	for _, p := range []string{filepath.Join(root, "apps", "shop"), outside, filepath.Join(root, "apps", "real")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(outside, filepath.Join(root, "apps", "evil")))
	must(os.Symlink(filepath.Join(root, "apps", "real"), filepath.Join(root, "apps", "alias")))
	must(os.Symlink("../..", filepath.Join(root, "apps", "shop", "up")))
	must(os.WriteFile(filepath.Join(root, "apps", "file"), nil, 0o644))

	for dir, want := range map[string]string{
		filepath.Join(root, "apps", "shop", "production"):       filepath.Join(root, "apps", "shop", "production"),
		filepath.Join(root, "apps", "new", "staging"):           filepath.Join(root, "apps", "new", "staging"),
		filepath.Join(root, "apps", "alias", "production"):      filepath.Join(root, "apps", "real", "production"),
		filepath.Join(root, "apps", "evil", "production"):       "",
		filepath.Join(root, "apps", "evil"):                     "",
		filepath.Join(root, "apps", "shop", "up", "x"):          "",
		filepath.Join(root, "apps", "shop", "up", "apps", "ok"): filepath.Join(root, "apps", "ok"),
		filepath.Join(root, "apps", "file"):                     "",
		filepath.Join(root, "apps", "shop", "..", "..", "etc"):  "",
		filepath.Join(root, "apps"):                             "",
		filepath.Join(base, "srv2", "apps", "x"):                "",
		root + "/apps/x/../../../outside":                       "",
	} {
		got, err := resolveAppDir(root, dir)
		if want == "" {
			if err == nil {
				t.Errorf("%s: accepted as %s", dir, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", dir, got, err, want)
		}
	}
	if _, err := resolveAppDir("", filepath.Join(root, "apps", "x")); err == nil {
		t.Error("no deploy root: accepted")
	}
}

// Secrets are masked whole, the longest first; short values are left.
func TestMasker(t *testing.T) {
	m := newMasker([]string{"ab", "secret", "secret-longer", "", "pa$$"})
	for in, want := range map[string]string{
		"a secret-longer one": "a " + maskText + " one",
		"secret and secret":   maskText + " and " + maskText,
		"ab pa$$ x":           "ab " + maskText + " x",
	} {
		if got := m.mask(in); got != want {
			t.Errorf("mask(%q) = %q, want %q", in, got, want)
		}
	}
	if got := (*masker)(nil).mask("x"); got != "x" {
		t.Error(got)
	}
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQyNTUxOQAAACB\n-----END OPENSSH PRIVATE KEY-----\n"
	km := newMasker(gitSecrets(wire.GitSource{SSHPrivateKey: key, Secret: "tok123"}))
	if got := km.mask("error: b3BlbnNzaC1rZXktdjEAAAAA near QyNTUxOQAAACB tok123"); strings.Contains(got, "b3Blb") || strings.Contains(got, "QyNT") || strings.Contains(got, "tok123") {
		t.Errorf("key lines not masked: %q", got)
	}
}

// Output is split at LF and CR, with partial writes joined.
func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{emit: func(s string) { got = append(got, s) }}
	for _, p := range []string{"one\ntw", "o\r\nthree\rfour", "\n", "\n", "tail"} {
		w.Write([]byte(p))
	}
	w.Close()
	if strings.Join(got, "|") != "one|two|three|four|tail" {
		t.Fatalf("%q", got)
	}
	got = nil
	w = &lineWriter{emit: func(s string) { got = append(got, s) }}
	w.Write([]byte(strings.Repeat("x", maxLineBuffer+10)))
	w.Write([]byte("yyy\nnext\n"))
	if len(got) != 2 || len(got[0]) != maxLineBuffer+10 || got[1] != "next" {
		t.Fatalf("long line: %d lines", len(got))
	}
}

// A cancelled step is stopped with its whole process group: a child that
// ignores SIGTERM gets SIGKILL. A step that ends on its own reports its
// failure.
func TestRunProcKillsTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		// The child shell ignores TERM and sleeps; its parent waits.
		done <- runProc(ctx, procSpec{name: "sh", args: []string{"-c",
			`sh -c 'trap "" TERM; echo $$ > ` + pidFile + `; while :; do sleep 1; done' & wait`}}, io.Discard, io.Discard)
	}()
	var pid int
	for {
		b, err := os.ReadFile(pidFile)
		if err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel(errCancelled)
	if err := <-done; !errors.Is(err, errCancelled) {
		t.Fatalf("runProc = %v", err)
	}
	// The child is gone (or a zombie about to be reaped by init).
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	err := runProc(context.Background(), procSpec{name: "sh", args: []string{"-c", "exit 3"}}, io.Discard, io.Discard)
	var ee interface{ ExitCode() int }
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit 3: %v", err)
	}
	if err := runProc(context.Background(), procSpec{name: "no-such-command-here"}, io.Discard, io.Discard); err == nil {
		t.Fatal("a missing command ran")
	}
}

// The .env holds one KEY=value line per variable, sorted, 0600.
func TestWriteEnvFile(t *testing.T) {
	dir := t.TempDir()
	// A .env the repository made a link: replaced, not followed.
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	os.Symlink(target, filepath.Join(dir, ".env"))
	if err := writeEnvFile(dir, map[string]string{"B": "two words", "A": "x=y#z"}); err != nil {
		t.Fatal(err)
	}
	b, err := readEnvFile(dir)
	if err != nil || string(b) != "A=x=y#z\nB=two words\n" {
		t.Fatalf("%q %v", b, err)
	}
	fi, _ := os.Lstat(filepath.Join(dir, ".env"))
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatal("the link's target was written")
	}
	if v := envValues(b); len(v) != 2 || v[0] != "x=y#z" {
		t.Fatalf("values %q", v)
	}
}

// After compose up, a container counts as up only when it is healthy (with
// a healthcheck) or has run for the stability window without a restart; a
// restart, a restart loop, an exit (0 included, but for a one-shot service)
// or unhealthiness fails the deployment.
func TestContainerState(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	window := 10 * time.Second
	started := now.Add(-3 * time.Second)
	base := containerInfo{ID: "c1", State: "running", StartedAt: started}
	with := func(f func(c *containerInfo)) containerInfo {
		c := base
		f(&c)
		return c
	}
	for name, tc := range map[string]struct {
		c       containerInfo
		base    containerInfo
		done    bool
		failed  string
		waiting string
	}{
		"running, too recently":     {c: base, base: base, waiting: "running for 3s of 10s"},
		"running long enough":       {c: with(func(c *containerInfo) { c.StartedAt = now.Add(-11 * time.Second) }), base: with(func(c *containerInfo) { c.StartedAt = now.Add(-11 * time.Second) }), done: true},
		"healthy at once":           {c: with(func(c *containerInfo) { c.Health = "healthy" }), base: base, done: true},
		"health starting":           {c: with(func(c *containerInfo) { c.Health = "starting"; c.StartedAt = now.Add(-time.Minute) }), base: with(func(c *containerInfo) { c.StartedAt = now.Add(-time.Minute) }), waiting: "running, starting"},
		"unhealthy":                 {c: with(func(c *containerInfo) { c.Health = "unhealthy" }), base: base, failed: "unhealthy"},
		"restarting":                {c: with(func(c *containerInfo) { c.State = "restarting" }), base: base, failed: "restarting"},
		"restart count grew":        {c: with(func(c *containerInfo) { c.RestartCount = 1 }), base: base, failed: "restarted"},
		"started again":             {c: with(func(c *containerInfo) { c.StartedAt = now.Add(-time.Second) }), base: base, failed: "restarted"},
		"replaced":                  {c: with(func(c *containerInfo) { c.ID = "c2" }), base: base, failed: "replaced"},
		"exited 1":                  {c: with(func(c *containerInfo) { c.State, c.ExitCode = "exited", 1 }), base: base, failed: "exited with code 1"},
		"exited 0, not one-shot":    {c: with(func(c *containerInfo) { c.State = "exited" }), base: base, failed: "exited with code 0"},
		"exited 0, one-shot":        {c: with(func(c *containerInfo) { c.State, c.OneShot = "exited", true }), base: base, done: true},
		"one-shot exited 2":         {c: with(func(c *containerInfo) { c.State, c.ExitCode, c.OneShot = "exited", 2, true }), base: base, failed: "exited with code 2"},
		"created, then started":     {c: base, base: with(func(c *containerInfo) { c.State, c.StartedAt = "created", time.Time{} }), waiting: "running for"},
		"created":                   {c: with(func(c *containerInfo) { c.State, c.StartedAt = "created", time.Time{} }), base: with(func(c *containerInfo) { c.State, c.StartedAt = "created", time.Time{} }), waiting: "created"},
		"dead":                      {c: with(func(c *containerInfo) { c.State, c.ExitCode = "dead", 137 }), base: base, failed: "exited with code 137"},
		"running with old restarts": {c: with(func(c *containerInfo) { c.RestartCount = 2; c.StartedAt = now.Add(-time.Hour) }), base: with(func(c *containerInfo) { c.RestartCount = 2; c.StartedAt = now.Add(-time.Hour) }), done: true},
	} {
		done, failed, waiting := containerState(tc.c, tc.base, now, window)
		if done != tc.done || (tc.failed == "") != (failed == "") || !strings.Contains(failed, tc.failed) || !strings.Contains(waiting, tc.waiting) || (tc.waiting == "") != (waiting == "") {
			t.Errorf("%s: done %v, failed %q, waiting %q", name, done, failed, waiting)
		}
	}
}

// A deployment that failed by itself stays failed when a cancel comes while
// the previous release is put back; one that was cancelled ends cancelled;
// either says so when the previous release could not be restored.
func TestFinishKeepsTheFailure(t *testing.T) {
	d := newTestDeployer(t)
	for i, tc := range []struct {
		err           error
		restoreFailed bool
		status, msg   string
	}{
		{&ownFailure{errors.New("docker-compose build failed")}, false, wire.DeployFailed, "docker-compose build failed"},
		{&ownFailure{errors.New("web exited with code 1")}, true, wire.DeployFailed, "web exited with code 1; " + restoreFailedMessage},
		{errCancelled, false, wire.DeployCancelled, errCancelled.Error()},
		{errCancelled, true, wire.DeployCancelled, errCancelled.Error() + "; " + restoreFailedMessage},
	} {
		id := testULID(50 + i)
		dep := &deployment{mask: newMasker(nil), done: make(chan struct{}), changed: make(chan struct{}),
			rec:  journalRecord{State: wire.DeployState{ID: id, Status: wire.DeployRunning, RestoreFailed: tc.restoreFailed}, Project: "upanel-x-production"},
			path: d.journal.logPath(id)}
		f, err := os.OpenFile(dep.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		dep.logf = f
		// The cancel came during the restore.
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(errCancelled)
		d.finish(ctx, dep, tc.err)
		st := dep.state()
		if st.Status != tc.status || st.Error != tc.msg {
			t.Errorf("%d: %s %q, want %s %q", i, st.Status, st.Error, tc.status, tc.msg)
		}
	}
}
