package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"upanel/internal/wire"
)

// testAppSource is a tiny program for the test image (FROM scratch): it
// prints a line and then runs forever, or exits with a code after a delay.
const testAppSource = `package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	fmt.Println("test app " + os.Getenv("RELEASE") + " starting")
	if len(os.Args) == 3 {
		d, _ := time.ParseDuration(os.Args[1])
		code, _ := strconv.Atoi(os.Args[2])
		time.Sleep(d)
		fmt.Println("test app giving up: cannot reach the database")
		os.Exit(code)
	}
	for {
		time.Sleep(time.Hour)
	}
}
`

// needDocker skips without Docker and compose, unless they must be there:
// under CI=true, or when UPANEL_TEST_DOCKER=1 says so.
func needDocker(t *testing.T) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("UPANEL_TEST_DOCKER") != "" || os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	for _, c := range []string{"docker", "go"} {
		if _, err := exec.LookPath(c); err != nil {
			missing("%s is needed: %v", c, err)
		}
	}
	if _, err := detectCompose(context.Background()); err != nil {
		missing("%v", err)
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		missing("no Docker engine: docker info: %v", err)
	}
}

// buildTestApp builds the static test program.
func buildTestApp(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(testAppSource), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module testapp\n\ngo 1.21\n"), 0o644)
	c := exec.Command("go", "build", "-o", "app", ".")
	c.Dir = dir
	c.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("build the test app: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "app"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// removeProject removes a compose project's containers, networks and images.
func removeProject(project string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := dockerOutput(ctx, "ps", "-aq", "--filter", "label=com.docker.compose.project="+project); err == nil && len(out) > 0 {
		dockerOutput(ctx, append([]string{"rm", "-f", "--"}, strings.Fields(string(out))...)...)
	}
	if out, err := dockerOutput(ctx, "network", "ls", "-q", "--filter", "label=com.docker.compose.project="+project); err == nil && len(out) > 0 {
		dockerOutput(ctx, append([]string{"network", "rm", "--"}, strings.Fields(string(out))...)...)
	}
	if out, err := dockerOutput(ctx, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"); err == nil {
		for _, ref := range strings.Fields(string(out)) {
			if strings.HasPrefix(ref, project+"_") || strings.HasPrefix(ref, project+"-") || strings.HasPrefix(ref, "upanel/"+project+"/") {
				dockerOutput(ctx, "image", "rm", "-f", ref)
			}
		}
	}
}

// Deployments with the real Docker engine and compose: a service that dies
// a few seconds after compose up fails the deployment (and the previous
// release comes back); a deployment of the branch head builds even when the
// commit's images are kept, a rollback (a named commit) reuses them; and a
// failure whose previous release cannot come back says so.
func TestDeployStabilityAndRestore(t *testing.T) {
	needDocker(t)
	app := buildTestApp(t)
	srv := newTestGitServer(t, "")
	repo := srv.newRepo(t, "app")
	dockerfile := "FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n"
	compose := func(command string) string {
		return "version: \"2.4\"\nservices:\n  web:\n    build: .\n    environment:\n      RELEASE: ${RELEASE}\n" + command
	}
	c1 := repo.commit(t, map[string]string{"Dockerfile": dockerfile, "app": string(app), "docker-compose.yml": compose("")})

	d := newTestDeployer(t)
	d.gitEnv = []string{"GIT_SSL_CAINFO=" + srv.CAFile}
	d.stableWindow = 3 * time.Second
	d.pollInterval = 200 * time.Millisecond
	req := validRequest(d)
	req.Project = fmt.Sprintf("upanel-agenttest%d-production", os.Getpid())
	req.Git.URL, req.ComposeFile, req.Env = repo.URL, "docker-compose.yml", map[string]string{"RELEASE": "r1"}
	t.Cleanup(func() { removeProject(req.Project) })
	n := 0
	deploy := func(commit string) (wire.DeployState, string) {
		t.Helper()
		n++
		r := req
		r.ID, r.Commit = testULID(100+n), commit
		if _, _, err := d.start(r); err != nil {
			t.Fatal(err)
		}
		return waitDeployment(t, d, r.ID)
	}

	st, log := deploy("")
	if st.Status != wire.DeploySuccess || st.Commit != c1 || !st.Rebuilt {
		t.Fatalf("first deployment: %+v\n%s", st, log)
	}
	// The branch head again: built, although its images are kept.
	if st, log = deploy(""); st.Status != wire.DeploySuccess || !st.Rebuilt {
		t.Fatalf("redeploy of the head: %+v\n%s", st, log)
	}

	// A release whose service exits 1 a second after it started: compose
	// up succeeds, the stability window catches it.
	c2 := repo.commit(t, map[string]string{"docker-compose.yml": compose("    command: [\"1s\", \"1\"]\n")})
	st, log = deploy("")
	if st.Status != wire.DeployFailed || st.Commit != c2 || !strings.Contains(st.Error, "web exited with code 1") {
		t.Fatalf("dying service: %+v\n%s", st, log)
	}
	if !strings.Contains(log, "test app giving up") {
		t.Errorf("the log lacks the container's last output:\n%s", log)
	}
	if st.RestoreFailed || !strings.Contains(log, "is running again") {
		t.Fatalf("the previous release did not come back: %+v\n%s", st, log)
	}
	cs, err := projectContainers(context.Background(), req.Project)
	if err != nil || len(cs) != 1 || cs[0].State != "running" {
		t.Fatalf("containers after the restore: %+v %v", cs, err)
	}

	// A restart loop fails too.
	repo.commit(t, map[string]string{"docker-compose.yml": compose("    restart: always\n    command: [\"1s\", \"3\"]\n")})
	st, log = deploy("")
	if st.Status != wire.DeployFailed || !(strings.Contains(st.Error, "restart") || strings.Contains(st.Error, "exited")) || st.RestoreFailed {
		t.Fatalf("restart loop: %+v\n%s", st, log)
	}

	// A web service that exits 0 is a failure, unless it is a one-shot.
	repo.commit(t, map[string]string{"docker-compose.yml": compose("    command: [\"0s\", \"0\"]\n")})
	if st, log = deploy(""); st.Status != wire.DeployFailed || !strings.Contains(st.Error, "exited with code 0") {
		t.Fatalf("exit 0: %+v\n%s", st, log)
	}
	// api's image has a name of its own (image:), which other projects
	// could share: UPanel never moves it.
	shared := req.Project + "-shared:latest"
	c5 := repo.commit(t, map[string]string{"docker-compose.yml": compose("    command: [\"0s\", \"0\"]\n    restart: \"no\"\n    labels:\n      upanel.oneshot: \"true\"\n  api:\n    build: .\n    image: " + shared + "\n")})
	if st, log = deploy(""); st.Status != wire.DeploySuccess || st.Commit != c5 {
		t.Fatalf("one-shot: %+v\n%s", st, log)
	}
	imageID := func(ref string) string {
		out, err := dockerOutput(context.Background(), "image", "inspect", "--format", "{{.Id}}", "--", ref)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	if st, log = deploy(c5); st.Status != wire.DeploySuccess || st.Rebuilt {
		t.Fatalf("rollback to c5 with its shared name unchanged: %+v\n%s", st, log)
	}
	// Another project re-points the shared name: a rollback cannot reuse
	// that image as kept, and builds instead of moving the name back.
	before := imageID(shared)
	build := exec.Command("docker", "build", "-q", "-t", shared, "-")
	build.Stdin = strings.NewReader("FROM scratch\nLABEL other.project=yes\n")
	if out, err := build.CombinedOutput(); err != nil || imageID(shared) == before {
		t.Fatalf("re-point %s: %v %s", shared, err, out)
	}
	st, log = deploy(c5)
	if st.Status != wire.DeploySuccess || !st.Rebuilt || !strings.Contains(log, "not this project's to move") {
		t.Fatalf("rollback to c5 with its shared name moved: %+v\n%s", st, log)
	}

	// A rollback (a named, kept commit) reuses the images.
	if st, log = deploy(c1); st.Status != wire.DeploySuccess || st.Rebuilt || st.Commit != c1 {
		t.Fatalf("rollback: %+v\n%s", st, log)
	}

	// The kept images of the previous release are gone: a failure says the
	// previous release could not be restored.
	for _, r := range d.loadReleases(req.Project).Releases {
		for _, img := range r.Services {
			dockerOutput(context.Background(), "image", "rm", img.Tag)
		}
	}
	st, log = deploy(c2)
	if st.Status != wire.DeployFailed || !st.RestoreFailed || !strings.Contains(st.Error, restoreFailedMessage) {
		t.Fatalf("failure without the previous images: %+v\n%s", st, log)
	}
}
