package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"upanel/internal/wire"
)

// interrupted is a deployment the agent died in the middle of.
type interrupted struct {
	id, project, dir string
	prevHead         string
	prevEnv          []byte // nil: there was no .env
	prev             *release
	upStarted        bool
}

// write puts in the journal what the deployment had written when its agent
// died after its checkout: the record, running, with what it found before
// it changed anything, the copy of the previous .env, and its log so far.
func (in interrupted) write(t *testing.T, j *journal) {
	t.Helper()
	info := &restoreInfo{PrevHead: in.prevHead, HadEnv: in.prevEnv != nil, PrevRelease: in.prev, CheckedOut: true}
	if info.HadEnv {
		info.EnvBackup = j.envBackupPath(in.id)
		if err := writeFileAtomic(info.EnvBackup, in.prevEnv, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeRecord(t, j, journalRecord{State: wire.DeployState{ID: in.id, Status: wire.DeployRunning, Branch: "main", StartedAt: time.Now().UTC()},
		Project: in.project, Dir: in.dir, ComposeFile: "docker-compose.yml", UpStarted: in.upStarted, Restore: info},
		"==> fetching branch main", "$ git checkout --force --detach", "==> wrote .env (1 variables)")
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// treeHead is the commit checked out in dir from the project's repository.
func treeHead(t *testing.T, d *Deployer, project, dir string) string {
	t.Helper()
	return runTestGit(t, dir, "--git-dir="+d.repoDir(project), "--work-tree="+dir, "rev-parse", "HEAD")
}

// I7: the agent died after it had checked out a new commit and written its
// .env, before it touched the containers. The next agent process puts the
// previous checkout and .env back, and only then does the deployment end:
// failed, with the previous release running (restore_failed unset). A
// restart in the middle of that restore does it again.
func TestRestartPutsTheCheckoutBack(t *testing.T) {
	base := t.TempDir()
	root, state := filepath.Join(base, "srv"), filepath.Join(base, "state")
	d1, err := NewDeployer(root, state, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	project := "upanel-shop-production"
	dir := filepath.Join(root, "apps", "shop", "production")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}

	// The source, and the agent's repository with both commits fetched.
	work := t.TempDir()
	runTestGit(t, work, "init", "-q", ".")
	os.WriteFile(filepath.Join(work, "app.txt"), []byte("one\n"), 0o644)
	runTestGit(t, work, "add", "-A")
	runTestGit(t, work, "commit", "-q", "-m", "one")
	c1 := runTestGit(t, work, "rev-parse", "HEAD")
	os.WriteFile(filepath.Join(work, "app.txt"), []byte("two\n"), 0o644)
	os.WriteFile(filepath.Join(work, "new.txt"), []byte("new\n"), 0o644)
	runTestGit(t, work, "add", "-A")
	runTestGit(t, work, "commit", "-q", "-m", "two")
	c2 := runTestGit(t, work, "rev-parse", "HEAD")
	repo := d1.repoDir(project)
	runTestGit(t, work, "init", "-q", "--bare", "--", repo)
	runTestGit(t, work, "--git-dir="+repo, "fetch", "-q", work, "+refs/heads/main:refs/remotes/origin/main")
	checkout := func(commit string) {
		runTestGit(t, dir, "--git-dir="+repo, "--work-tree="+dir, "checkout", "-q", "--force", "--detach", commit, "--")
	}

	// The release that runs: c1 with its .env.
	checkout(c1)
	oldEnv := []byte("SECRET=old-secret-value\n")
	if err := writeFileAtomic(filepath.Join(dir, ".env"), oldEnv, 0o600); err != nil {
		t.Fatal(err)
	}
	// The deployment of c2 got as far as its checkout and .env.
	in := interrupted{id: testULID(7), project: project, dir: dir, prevHead: c1, prevEnv: oldEnv}
	in.write(t, d1.journal)
	checkout(c2)
	if err := writeEnvFile(dir, map[string]string{"SECRET": "new-secret-value"}); err != nil {
		t.Fatal(err)
	}
	// The agent dies: nothing of d1 runs any more.
	d1.Close()

	check := func(d *Deployer, round string) {
		t.Helper()
		st, log := waitDeployment(t, d, in.id)
		if st.Status != wire.DeployFailed || st.RestoreFailed || st.Error != restartedMessage || st.FinishedAt == nil {
			t.Fatalf("%s: state %+v\n%s", round, st, log)
		}
		if !strings.HasPrefix(log, "==> fetching branch main\n") || !strings.Contains(log, "restored its checkout ("+wire.ShortCommit(c1)+") and .env") {
			t.Fatalf("%s: log:\n%s", round, log)
		}
		if strings.Contains(log, "secret-value") {
			t.Fatalf("%s: a value of .env is in the log:\n%s", round, log)
		}
		if got := treeHead(t, d, project, dir); got != c1 {
			t.Fatalf("%s: the tree is at %s, want %s", round, got, c1)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "app.txt")); err != nil || string(b) != "one\n" {
			t.Fatalf("%s: app.txt %q %v", round, b, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "new.txt")); !os.IsNotExist(err) {
			t.Fatalf("%s: new.txt of the new commit is still there: %v", round, err)
		}
		fi, err := os.Stat(filepath.Join(dir, ".env"))
		if b, _ := os.ReadFile(filepath.Join(dir, ".env")); err != nil || string(b) != string(oldEnv) || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: .env %q %v", round, b, err)
		}
		if _, err := os.Stat(d.journal.envBackupPath(in.id)); !os.IsNotExist(err) {
			t.Fatalf("%s: the copy of the previous .env is still there: %v", round, err)
		}
		// Its line numbers follow on from the previous process's.
		out, _, err := d.poll(context.Background(), in.id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range out.Lines {
			if l.Seq != i+1 {
				t.Fatalf("%s: line %d has seq %d", round, i+1, l.Seq)
			}
		}
		if len(out.Lines) != st.LastSeq {
			t.Fatalf("%s: %d lines, last_seq %d", round, len(out.Lines), st.LastSeq)
		}
		// The project is free again.
		release, ok := d.tryLockProject(project)
		if !ok {
			t.Fatalf("%s: the project is still locked", round)
		}
		release()
	}

	d2, err := NewDeployer(root, state, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	check(d2, "restart")
	d2.Close()

	// The next agent dies too, before it ends the deployment, with the
	// restore half done: .env is still the new one. The one after puts
	// things back again.
	if err := writeEnvFile(dir, map[string]string{"SECRET": "new-secret-value"}); err != nil {
		t.Fatal(err)
	}
	os.Remove(d2.journal.statePath(in.id))
	os.Remove(d2.journal.logPath(in.id))
	in.write(t, d2.journal)
	d3, err := NewDeployer(root, state, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d3.Close)
	check(d3, "second restart")
}

// I7 with the real Docker engine: the agent died while compose up was
// replacing the containers with the new release's. The next agent process
// starts the previous release's kept images again.
func TestRestartPutsThePreviousReleaseBack(t *testing.T) {
	needDocker(t)
	app := buildTestApp(t)
	srv := newTestGitServer(t, "")
	repo := srv.newRepo(t, "app")
	dockerfile := "FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n"
	compose := "version: \"2.4\"\nservices:\n  web:\n    build: .\n    environment:\n      RELEASE: ${RELEASE}\n"
	c1 := repo.commit(t, map[string]string{"Dockerfile": dockerfile, "app": string(app), "docker-compose.yml": compose})

	base := t.TempDir()
	root, state := filepath.Join(base, "srv"), filepath.Join(base, "state")
	d1, err := NewDeployer(root, state, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	d1.gitEnv = []string{"GIT_SSL_CAINFO=" + srv.CAFile}
	d1.stableWindow = 3 * time.Second
	d1.pollInterval = 200 * time.Millisecond
	req := validRequest(d1)
	req.Project = fmt.Sprintf("upanel-agentresume%d-production", os.Getpid())
	req.Git.URL, req.ComposeFile, req.Env = repo.URL, "docker-compose.yml", map[string]string{"RELEASE": "r1"}
	t.Cleanup(func() { removeProject(req.Project) })
	if _, _, err := d1.start(req); err != nil {
		t.Fatal(err)
	}
	if st, log := waitDeployment(t, d1, req.ID); st.Status != wire.DeploySuccess || st.Commit != c1 {
		t.Fatalf("first deployment: %+v\n%s", st, log)
	}
	prev := d1.newestRelease(req.Project)
	if prev == nil || prev.Commit != c1 {
		t.Fatalf("kept release: %+v", prev)
	}
	oldEnv, err := os.ReadFile(filepath.Join(req.Dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}

	// The deployment of c2 (another image) had checked it out, written its
	// .env and begun compose up when the agent died; the new release's
	// containers run.
	c2 := repo.commit(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY app /app\nLABEL release=2\nENTRYPOINT [\"/app\"]\n"})
	in := interrupted{id: testULID(50), project: req.Project, dir: req.Dir, prevHead: c1, prevEnv: oldEnv, prev: prev, upStarted: true}
	in.write(t, d1.journal)
	gitRepo := d1.repoDir(req.Project)
	runTestGit(t, repo.work, "--git-dir="+gitRepo, "fetch", "-q", repo.bare, "+refs/heads/main:refs/remotes/origin/main")
	runTestGit(t, req.Dir, "--git-dir="+gitRepo, "--work-tree="+req.Dir, "checkout", "-q", "--force", "--detach", c2, "--")
	if err := writeEnvFile(req.Dir, map[string]string{"RELEASE": "r2"}); err != nil {
		t.Fatal(err)
	}
	cc, err := detectCompose(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"build"}, {"up", "-d", "--remove-orphans", "--no-build"}} {
		c := exec.Command(cc.name, cc.argv(req.Project, req.Dir, req.ComposeFile, args...)...)
		c.Dir = req.Dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("compose %s: %v\n%s", args[0], err, out)
		}
	}
	cs, err := projectContainers(context.Background(), req.Project)
	if err != nil || len(cs) != 1 || cs[0].ImageID == prev.Services["web"].ID {
		t.Fatalf("the new release's containers: %+v %v", cs, err)
	}
	d1.Close()

	d2, err := NewDeployer(root, state, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d2.Close)
	st, log := waitDeployment(t, d2, in.id)
	if st.Status != wire.DeployFailed || st.RestoreFailed || st.Error != restartedMessage {
		t.Fatalf("state %+v\n%s", st, log)
	}
	if !strings.Contains(log, "the previous release "+wire.ShortCommit(c1)+" is running again") {
		t.Fatalf("log:\n%s", log)
	}
	cs, err = projectContainers(context.Background(), req.Project)
	if err != nil || len(cs) != 1 || cs[0].State != "running" || cs[0].ImageID != prev.Services["web"].ID {
		t.Fatalf("containers after the restore: %+v %v\n%s", cs, err, log)
	}
	if got := treeHead(t, d2, req.Project, req.Dir); got != c1 {
		t.Fatalf("the tree is at %s, want %s", got, c1)
	}
	if b, err := os.ReadFile(filepath.Join(req.Dir, ".env")); err != nil || string(b) != string(oldEnv) {
		t.Fatalf(".env %q %v", b, err)
	}
	// The project takes deployments again: the next one goes through.
	d2.gitEnv, d2.stableWindow, d2.pollInterval = d1.gitEnv, d1.stableWindow, d1.pollInterval
	req.ID = testULID(51)
	if _, _, err := d2.start(req); err != nil {
		t.Fatal(err)
	}
	if st, log := waitDeployment(t, d2, req.ID); st.Status != wire.DeploySuccess || st.Commit != c2 {
		t.Fatalf("the deployment after the restore: %+v\n%s", st, log)
	}
}

// The agent died during compose up, and the previous release kept no
// images: the next agent process cannot start it again, and the deployment
// ends with restore_failed set (the panel then marks the app failed).
func TestRestartWithoutThePreviousImages(t *testing.T) {
	base := t.TempDir()
	root, state := filepath.Join(base, "srv"), filepath.Join(base, "state")
	d1, err := NewDeployer(root, state, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "apps", "shop", "production")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	in := interrupted{id: testULID(9), project: "upanel-shop-production", dir: dir, prevHead: strings.Repeat("a", 40), upStarted: true}
	in.write(t, d1.journal)
	d1.Close()

	d2, err := NewDeployer(root, state, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d2.Close)
	st, log := waitDeployment(t, d2, in.id)
	if st.Status != wire.DeployFailed || !st.RestoreFailed || st.Error != restartedMessage+"; "+restoreFailedMessage {
		t.Fatalf("state %+v\n%s", st, log)
	}
}
