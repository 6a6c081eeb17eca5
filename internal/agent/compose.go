package agent

// Docker compose for deployments and projects: which compose to run, the
// project's containers and their health, and the images of past releases.
//
// Releases: after a successful deployment, the image of every service's
// container is tagged upanel/<project>/<service>:<commit>, and a manifest in
// <state_dir>/releases/<project>.json remembers, per release, each service's
// image name (what its containers were created from: <project>_<service> for
// an image docker-compose v1 built, <project>-<service> for compose v2, the
// image: of the compose file otherwise) and its id. A deployment of a commit
// whose tags are all still there puts those images back under their names and
// starts them without a build. The tags of the releases past keep_releases
// are removed, which frees their images.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"upanel/internal/wire"
)

// composeCLI is how compose is run: the docker CLI plugin (v2) or the
// docker-compose program.
type composeCLI struct {
	name    string
	pre     []string
	version string
}

func (c composeCLI) String() string {
	s := strings.Join(append([]string{c.name}, c.pre...), " ")
	if c.version != "" {
		s += " " + c.version
	}
	return s
}

// detectCompose prefers `docker compose` and falls back to docker-compose.
func detectCompose(ctx context.Context) (composeCLI, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out, errOut cappedBuffer
	out.max, errOut.max = 4096, 4096
	if err := runProc(cctx, procSpec{name: "docker", args: []string{"compose", "version", "--short"}}, &out, &errOut); err == nil {
		return composeCLI{name: "docker", pre: []string{"compose"}, version: strings.TrimSpace(out.String())}, nil
	}
	if ctx.Err() != nil {
		return composeCLI{}, context.Cause(ctx)
	}
	if _, err := findCommand("docker-compose"); err == nil {
		out.Reset()
		var v string
		if runProc(cctx, procSpec{name: "docker-compose", args: []string{"version", "--short"}}, &out, &errOut) == nil {
			v = strings.TrimSpace(out.String())
		}
		return composeCLI{name: "docker-compose", version: v}, nil
	}
	return composeCLI{}, errors.New("neither the docker compose plugin nor docker-compose is installed")
}

// argv is a compose command for a project.
func (c composeCLI) argv(project, dir, file string, args ...string) []string {
	a := append(slices.Clone(c.pre), "-p", project, "-f", filepath.Join(dir, file), "--env-file", filepath.Join(dir, ".env"))
	return append(a, args...)
}

// compose runs a compose command of the deployment, its output in the log.
func (d *Deployer) compose(ctx context.Context, dep *deployment, c composeCLI, project, dir, file string, args ...string) error {
	show := append(append([]string{c.name}, c.pre...), args...)
	return d.runStep(ctx, dep, procSpec{name: c.name, args: c.argv(project, dir, file, args...), show: show, dir: dir,
		label: strings.Join(append(append([]string{c.name}, c.pre...), args[0]), " ")})
}

// composeCapture runs a compose command whose standard output is a value.
func (d *Deployer) composeCapture(ctx context.Context, dep *deployment, c composeCLI, project, dir, file string, args ...string) (string, error) {
	var out cappedBuffer
	out.max = 1 << 20
	show := append(append([]string{c.name}, c.pre...), args...)
	err := d.runStep(ctx, dep, procSpec{name: c.name, args: c.argv(project, dir, file, args...), show: show, dir: dir,
		label: strings.Join(append(append([]string{c.name}, c.pre...), args[0]), " ")}, &out)
	return out.String(), err
}

// --- containers ---

// containerInfo is one container of a compose project.
type containerInfo struct {
	ID       string
	Name     string
	Service  string
	Number   string
	OneOff   bool
	State    string // created, running, restarting, exited, ...
	Health   string // healthy, unhealthy, starting, or ""
	ExitCode int
	// StartedAt is when it last started; RestartCount how many times its
	// restart policy restarted it.
	StartedAt    time.Time
	RestartCount int
	// OneShot: restart: "no" and the label upanel.oneshot=true.
	OneShot  bool
	Status   string // docker's human status
	ImageRef string // the image name the container was created from
	ImageID  string
}

// dockerOutput runs docker and returns its standard output; the error holds
// the end of its standard error.
func dockerOutput(ctx context.Context, args ...string) ([]byte, error) {
	var out, errOut cappedBuffer
	out.max, errOut.max = 16<<20, 16<<10
	err := runProc(ctx, procSpec{name: "docker", args: args}, &out, &errOut)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if msg := trimOutput(errOut.Bytes(), 400); msg != "" {
			return out.Bytes(), fmt.Errorf("docker %s: %w: %s", args[0], err, msg)
		}
		return out.Bytes(), fmt.Errorf("docker %s: %w", args[0], err)
	}
	return out.Bytes(), nil
}

// projectContainers lists a project's containers, by service and number.
func projectContainers(ctx context.Context, project string) ([]containerInfo, error) {
	out, err := dockerOutput(ctx, "ps", "-a", "--no-trunc", "--filter", "label=com.docker.compose.project="+project,
		"--format", "{{.ID}}\t{{.Status}}")
	if err != nil {
		return nil, err
	}
	status := map[string]string{}
	var ids []string
	for line := range strings.Lines(string(out)) {
		id, st, _ := strings.Cut(strings.TrimSpace(line), "\t")
		if id != "" {
			ids = append(ids, id)
			status[id] = st
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	out, err = dockerOutput(ctx, append([]string{"inspect", "--type", "container", "--"}, ids...)...)
	if err != nil && len(out) == 0 {
		return nil, err
	}
	var raw []struct {
		ID           string `json:"Id"`
		Name         string
		Image        string
		RestartCount int
		State        struct {
			Status    string
			ExitCode  int
			StartedAt time.Time
			Health    *struct{ Status string }
		}
		Config struct {
			Image  string
			Labels map[string]string
		}
		HostConfig struct {
			RestartPolicy struct{ Name string }
		}
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("docker inspect: %w", err)
	}
	cs := make([]containerInfo, 0, len(raw))
	for _, r := range raw {
		c := containerInfo{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"), Service: r.Config.Labels["com.docker.compose.service"],
			Number: r.Config.Labels["com.docker.compose.container-number"], OneOff: strings.EqualFold(r.Config.Labels["com.docker.compose.oneoff"], "true"),
			State: r.State.Status, ExitCode: r.State.ExitCode, Status: status[r.ID], ImageRef: r.Config.Image, ImageID: r.Image,
			StartedAt: r.State.StartedAt, RestartCount: r.RestartCount,
			OneShot: (r.HostConfig.RestartPolicy.Name == "" || r.HostConfig.RestartPolicy.Name == "no") &&
				strings.EqualFold(r.Config.Labels[oneShotLabel], "true")}
		if r.State.Health != nil {
			c.Health = r.State.Health.Status
		}
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Service != cs[j].Service {
			return cs[i].Service < cs[j].Service
		}
		if len(cs[i].Number) != len(cs[j].Number) {
			return len(cs[i].Number) < len(cs[j].Number)
		}
		return cs[i].Number < cs[j].Number
	})
	return cs, nil
}

// defaultStableWindow is how long a container without a healthcheck must
// have run, unchanged, before a deployment counts it as up: compose up
// returns as soon as the containers are started, and a service that fails
// to reach its database and exits a few seconds later must fail the
// deployment, not pass it.
const defaultStableWindow = 10 * time.Second

// oneShotLabel marks a service that is meant to run once and exit 0 (a
// migration, for example): with restart: "no" and this label set to true, a
// container that exited 0 is done. Any other container that exits fails the
// deployment, whatever its exit code: a web service that exits 0 at once
// serves nothing.
const oneShotLabel = "upanel.oneshot"

// containerState judges one container after compose up: done (up, or a
// one-shot that finished), failed (with why), or neither yet (with what it
// waits for). base is the same container (by service and number) when it
// was first seen.
func containerState(c, base containerInfo, now time.Time, window time.Duration) (done bool, failed, waiting string) {
	switch {
	case c.ID != base.ID:
		return false, "was replaced by another container", ""
	case c.State == "restarting":
		return false, "is restarting: it exited and its restart policy started it again", ""
	case c.RestartCount > base.RestartCount || !base.StartedAt.IsZero() && !c.StartedAt.Equal(base.StartedAt):
		return false, fmt.Sprintf("restarted (%d restarts)", c.RestartCount), ""
	case c.State == "running" && c.Health == "unhealthy":
		return false, "is unhealthy", ""
	case c.State == "exited" && c.ExitCode == 0 && c.OneShot:
		return true, "", ""
	case c.State == "exited" && c.ExitCode == 0:
		return false, fmt.Sprintf("exited with code 0 (only a service with restart: \"no\" and the label %s=true may exit)", oneShotLabel), ""
	case c.State == "exited" || c.State == "dead":
		return false, fmt.Sprintf("exited with code %d", c.ExitCode), ""
	case c.State == "running" && c.Health == "healthy":
		// A healthcheck stays the criterion of the services that have
		// one.
		return true, "", ""
	case c.State == "running" && c.Health == "":
		if up := now.Sub(c.StartedAt); up < window {
			return false, "", fmt.Sprintf("running for %s of %s", up.Truncate(time.Second), window)
		}
		return true, "", ""
	}
	w := c.State
	if c.Health != "" {
		w += ", " + c.Health
	}
	return false, "", w
}

// waitHealthy waits until every container of the project is up: healthy if
// it has a healthcheck, else running without a restart for the stability
// window (its State.StartedAt at least that long ago); a one-shot service may
// have exited 0. A container that restarts (its id, StartedAt or
// RestartCount changes, or it is restarting), exits, or turns unhealthy
// fails the deployment at once, with its last output in the log.
func (d *Deployer) waitHealthy(ctx context.Context, dep *deployment, project string) error {
	dep.addLine(fmt.Sprintf("==> waiting for the services to be running and healthy (running for %s without a restart, where there is no healthcheck)", d.stableWindow))
	dep.startStep()
	deadline := time.Now().Add(d.healthTimeout)
	base := map[string]containerInfo{}
	last := ""
	for {
		cs, err := projectContainers(ctx, project)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			return err
		}
		now := time.Now()
		var waiting, failed []string
		var failedIDs []containerInfo
		for _, c := range cs {
			if c.OneOff {
				continue
			}
			name := c.Service
			if c.Number != "" && c.Number != "1" {
				name += " #" + c.Number
			}
			b, seen := base[name]
			if !seen {
				base[name], b = c, c
			}
			done, bad, wait := containerState(c, b, now, d.stableWindow)
			switch {
			case bad != "":
				failed = append(failed, name+" "+bad)
				failedIDs = append(failedIDs, c)
			case !done:
				waiting = append(waiting, name+" ("+wait+")")
			}
		}
		if len(failed) > 0 {
			for _, c := range failedIDs {
				d.containerLogTail(ctx, dep, c)
			}
			return errors.New(strings.Join(failed, "; "))
		}
		if len(cs) == 0 {
			waiting = append(waiting, "no containers yet")
		}
		if len(waiting) == 0 {
			for _, c := range cs {
				if !c.OneOff {
					dep.addLine(fmt.Sprintf("    %s: %s", c.Service, c.Status))
				}
			}
			return nil
		}
		// The countdown of the stability window is not news.
		s := strings.Join(waiting, ", ")
		if key := stableKeyRe.ReplaceAllString(s, "running"); key != last {
			dep.addLine("    waiting for " + s)
			last = key
		}
		if now.After(deadline) {
			return fmt.Errorf("the services were not up after %s: waiting for %s", d.healthTimeout, s)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(d.pollInterval):
		}
	}
}

// stableKeyRe matches the countdown in a waiting line.
var stableKeyRe = regexp.MustCompile(`running for [^)]* of [^)]*`)

// containerLogTail puts the last lines of a failed container's output in the
// deployment's log.
func (d *Deployer) containerLogTail(ctx context.Context, dep *deployment, c containerInfo) {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	dep.addLine(fmt.Sprintf("==> last output of %s:", c.Name))
	lw := &lineWriter{emit: func(s string) { dep.addLine("    " + s) }}
	runProc(cctx, procSpec{name: "docker", args: []string{"logs", "--tail", "20", "--", c.ID}}, lw, lw)
	lw.Close()
}

// --- releases ---

type releaseImage struct {
	Ref string `json:"ref"` // the name compose uses for the service's image
	ID  string `json:"id"`
	Tag string `json:"tag"` // upanel/<project>/<service>:<commit>
}

type release struct {
	Commit   string                  `json:"commit"`
	At       time.Time               `json:"at"`
	Services map[string]releaseImage `json:"services"`
}

type releaseFile struct {
	Releases []release `json:"releases"` // oldest first
}

func (d *Deployer) releasePath(project string) string {
	return filepath.Join(d.stateDir, "releases", project+".json")
}

func (d *Deployer) loadReleases(project string) releaseFile {
	var rf releaseFile
	if b, err := os.ReadFile(d.releasePath(project)); err == nil {
		json.Unmarshal(b, &rf)
	}
	return rf
}

func (d *Deployer) saveReleases(project string, rf releaseFile) error {
	b, err := json.Marshal(rf)
	if err != nil {
		return err
	}
	return writeFileAtomic(d.releasePath(project), b, 0o600)
}

// newestRelease is the release deployed last, or nil.
func (d *Deployer) newestRelease(project string) *release {
	rf := d.loadReleases(project)
	if len(rf.Releases) == 0 {
		return nil
	}
	return &rf.Releases[len(rf.Releases)-1]
}

// findRelease returns the kept release of commit if all its images are
// still there.
func (d *Deployer) findRelease(ctx context.Context, project, commit string) *release {
	for _, r := range d.loadReleases(project).Releases {
		if r.Commit == commit && d.releasePresent(ctx, &r) {
			return &r
		}
	}
	return nil
}

// releasePresent says whether every image of r is still tagged as kept.
func (d *Deployer) releasePresent(ctx context.Context, r *release) bool {
	if len(r.Services) == 0 {
		return false
	}
	var tags, ids []string
	for _, img := range r.Services {
		tags, ids = append(tags, img.Tag), append(ids, img.ID)
	}
	out, err := dockerOutput(ctx, append([]string{"image", "inspect", "--format", "{{.Id}}", "--"}, tags...)...)
	if err != nil {
		return false
	}
	got := strings.Fields(string(out))
	return slices.Equal(got, ids)
}

// releaseTag names a kept image.
func releaseTag(project, service, commit string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(service) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if s == "" {
		s = "service"
	}
	return "upanel/" + project + "/" + s + ":" + commit
}

// composeImageNames are the names compose gives the image it builds for a
// service without image: v1 <project>_<service>, v2 <project>-<service>.
func composeImageNames(project, service string) []string {
	return []string{project + "_" + service, project + "-" + service}
}

// errImageMoved: a release's image name that the project does not own
// points at another image now.
var errImageMoved = errors.New("an image name the release used points at another image now")

// retag puts a kept release's images back under the names compose gives the
// images it builds, <project>_<service> (v1) and <project>-<service> (v2),
// which belong to the project. Other names (image: postgres:16, or the
// image: name of a built service) may be shared with other projects on the
// engine, so they are never moved: if one no longer points at the release's
// image, retag returns errImageMoved and the release cannot be used as kept.
func (d *Deployer) retag(ctx context.Context, dep *deployment, project string, r *release) error {
	for _, svc := range slices.Sorted(maps.Keys(r.Services)) {
		img := r.Services[svc]
		if img.Ref == "" || strings.HasPrefix(img.Ref, "sha256:") || strings.Contains(img.Ref, "@") {
			continue // by id or digest: the image is there as it is
		}
		names := composeImageNames(project, svc)
		if !slices.Contains(names, strings.TrimSuffix(img.Ref, ":latest")) {
			out, err := dockerOutput(ctx, "image", "inspect", "--format", "{{.Id}}", "--", img.Ref)
			if err != nil || strings.TrimSpace(string(out)) != img.ID {
				dep.addLine(fmt.Sprintf("    %s: %s is not the image release %s used, and it is not this project's to move", svc, img.Ref, wire.ShortCommit(r.Commit)))
				return fmt.Errorf("%s: %w", svc, errImageMoved)
			}
			dep.addLine(fmt.Sprintf("    %s: %s is still the release's image", svc, img.Ref))
			continue
		}
		// A built image's name depends on the compose version; give it
		// both, in case compose changed since.
		for _, ref := range names {
			if _, err := dockerOutput(ctx, "image", "tag", img.Tag, ref); err != nil {
				return fmt.Errorf("retag %s: %s", svc, err)
			}
		}
		dep.addLine(fmt.Sprintf("    %s: %s → %s", svc, img.Tag, strings.Join(names, ", ")))
	}
	return nil
}

// recordRelease tags the images of the running release and drops the tags
// of the releases past keep.
func (d *Deployer) recordRelease(ctx context.Context, dep *deployment, project, commit string, keep int) error {
	cs, err := projectContainers(ctx, project)
	if err != nil {
		return err
	}
	r := release{Commit: commit, At: time.Now().UTC(), Services: map[string]releaseImage{}}
	for _, c := range cs {
		if c.OneOff || c.Service == "" || c.ImageID == "" {
			continue
		}
		if _, done := r.Services[c.Service]; done {
			continue
		}
		img := releaseImage{Ref: c.ImageRef, ID: c.ImageID, Tag: releaseTag(project, c.Service, commit)}
		if _, err := dockerOutput(ctx, "image", "tag", img.ID, img.Tag); err != nil {
			return err
		}
		r.Services[c.Service] = img
	}
	if len(r.Services) == 0 {
		return errors.New("the project has no containers")
	}
	rf := d.loadReleases(project)
	rf.Releases = slices.DeleteFunc(rf.Releases, func(x release) bool { return x.Commit == commit })
	rf.Releases = append(rf.Releases, r)
	var dropped []release
	if n := len(rf.Releases) - keep; n > 0 {
		dropped, rf.Releases = rf.Releases[:n], rf.Releases[n:]
	}
	if err := d.saveReleases(project, rf); err != nil {
		return err
	}
	dep.addLine(fmt.Sprintf("==> kept the images of release %s (%d releases kept)", wire.ShortCommit(commit), len(rf.Releases)))
	for _, old := range dropped {
		for _, svc := range slices.Sorted(maps.Keys(old.Services)) {
			if _, err := dockerOutput(ctx, "image", "rm", old.Services[svc].Tag); err != nil {
				dep.addLine("    could not remove " + old.Services[svc].Tag + ": " + err.Error())
			}
		}
		dep.addLine("    dropped the images of release " + wire.ShortCommit(old.Commit))
	}
	return nil
}

// --- status ---

func serviceStatuses(cs []containerInfo) []wire.ServiceStatus {
	out := []wire.ServiceStatus{}
	for _, c := range cs {
		if c.OneOff {
			continue
		}
		out = append(out, wire.ServiceStatus{Service: c.Service, State: c.State, Health: c.Health, Status: c.Status})
	}
	return out
}
