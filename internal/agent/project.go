package agent

// Compose projects after their deployment: status, start, stop and restart,
// and a bounded tail of their containers' output, masked with the project's
// .env. A project's directory and compose file are those of its newest
// deployment in the journal.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"upanel/internal/wire"
)

const (
	maxLogTail         = 1000
	defaultLogTail     = 100
	maxProjectLogBytes = 256 << 10

	// projectActionTimeout stays under the server's write timeout.
	projectActionTimeout = 50 * time.Second
	projectLogsTimeout   = 30 * time.Second
	projectStatusTimeout = 20 * time.Second
)

var serviceRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// resolveAppDir checks that dir lies under <root>/apps once the symbolic
// links of its existing part are resolved, and returns it resolved. The part
// that does not exist yet holds no link.
func resolveAppDir(root, dir string) (string, error) {
	if root == "" {
		return "", errors.New("the agent has no deploy_root in its config")
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || strings.ContainsRune(dir, 0) {
		return "", errors.New("dir must be an absolute, clean path")
	}
	apps := filepath.Join(root, "apps")
	if !within(apps, dir) {
		return "", fmt.Errorf("dir must be under %s/", apps)
	}
	if err := os.MkdirAll(apps, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", apps, err)
	}
	realApps, err := filepath.EvalSymlinks(apps)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", apps, err)
	}
	existing, rest := dir, []string{}
	for {
		if _, err := os.Lstat(existing); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("dir: %w", err)
		}
		rest = append([]string{filepath.Base(existing)}, rest...)
		existing = filepath.Dir(existing)
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", fmt.Errorf("dir: %w", err)
	}
	real = filepath.Join(append([]string{real}, rest...)...)
	if !within(realApps, real) {
		return "", fmt.Errorf("dir resolves to %s, outside %s/ (a symbolic link leads out)", real, apps)
	}
	if fi, err := os.Stat(real); err == nil && !fi.IsDir() {
		return "", fmt.Errorf("dir %s is not a directory", dir)
	}
	return real, nil
}

// within says whether p is strictly below dir.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// projectHome is where a project was last deployed.
func (d *Deployer) projectHome(project string) (dir, file string, err error) {
	rec, ok := d.journal.newest(project)
	if !ok {
		return "", "", errNoProject
	}
	dir, err = resolveAppDir(d.root, rec.Dir)
	if err != nil {
		return "", "", err
	}
	return dir, rec.ComposeFile, nil
}

var errNoProject = errors.New("this agent has not deployed that project")

func (d *Deployer) tryLockProject(project string) (func(), bool) {
	l := d.projectLock(project)
	select {
	case l <- struct{}{}:
		return func() { <-l }, true
	default:
		return nil, false
	}
}

func projectFromPath(w http.ResponseWriter, r *http.Request) (string, bool) {
	p := r.PathValue("project")
	if !projectRe.MatchString(p) {
		writeJSON(w, http.StatusBadRequest, wire.Error{Error: "project must be upanel-<app>-production or upanel-<app>-staging"})
		return "", false
	}
	return p, true
}

func (d *Deployer) handleProjectStatus(w http.ResponseWriter, r *http.Request) {
	project, ok := projectFromPath(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), projectStatusTimeout)
	defer cancel()
	cs, err := projectContainers(ctx, project)
	if err != nil {
		d.log.Warn("project status", "project", project, "err", err)
		writeJSON(w, http.StatusInternalServerError, wire.Error{Error: "docker did not list the project's containers: " + truncateRunes(err.Error(), 300)})
		return
	}
	writeJSON(w, http.StatusOK, wire.ProjectStatus{Project: project, Services: serviceStatuses(cs)})
}

func (d *Deployer) handleProjectAction(w http.ResponseWriter, r *http.Request) {
	project, ok := projectFromPath(w, r)
	if !ok {
		return
	}
	action := r.PathValue("action")
	if action != "start" && action != "stop" && action != "restart" {
		writeJSON(w, http.StatusNotFound, wire.Error{Error: "the action must be start, stop or restart"})
		return
	}
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		refuseBody(w, err)
		return
	}
	dir, file, err := d.projectHome(project)
	if errors.Is(err, errNoProject) {
		writeJSON(w, http.StatusNotFound, wire.Error{Error: err.Error()})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusConflict, wire.Error{Error: err.Error()})
		return
	}
	unlock, ok := d.tryLockProject(project)
	if !ok {
		writeJSON(w, http.StatusConflict, wire.Error{Error: "a deployment of this project is running"})
		return
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(r.Context(), projectActionTimeout)
	defer cancel()
	cc, err := detectCompose(ctx)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, wire.Error{Error: err.Error()})
		return
	}
	mask := d.projectMask(dir)
	var out cappedBuffer
	out.max = 64 << 10
	err = runProc(ctx, procSpec{name: cc.name, args: cc.argv(project, dir, file, action), dir: dir}, &out, &out)
	if err != nil {
		msg := fmt.Sprintf("%s %s failed: %v", cc, action, err)
		if ctx.Err() != nil {
			msg = fmt.Sprintf("%s %s did not finish within %s", cc, action, projectActionTimeout)
		}
		if tail := trimOutput(lastLines(out.Bytes(), 5), 600); tail != "" {
			msg += ": " + tail
		}
		d.log.Warn("project action", "project", project, "action", action, "err", err)
		writeJSON(w, http.StatusInternalServerError, wire.Error{Error: mask.mask(msg)})
		return
	}
	d.log.Info("project action", "project", project, "action", action)
	cs, err := projectContainers(ctx, project)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, wire.Error{Error: "docker did not list the project's containers: " + truncateRunes(err.Error(), 300)})
		return
	}
	writeJSON(w, http.StatusOK, wire.ProjectStatus{Project: project, Services: serviceStatuses(cs)})
}

func (d *Deployer) handleProjectLogs(w http.ResponseWriter, r *http.Request) {
	project, ok := projectFromPath(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	tail := defaultLogTail
	if s := q.Get("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLogTail {
			writeJSON(w, http.StatusBadRequest, wire.Error{Error: fmt.Sprintf("tail must be 1-%d", maxLogTail)})
			return
		}
		tail = n
	}
	service := q.Get("service")
	if service != "" && !serviceRe.MatchString(service) {
		writeJSON(w, http.StatusBadRequest, wire.Error{Error: "service is not a valid service name"})
		return
	}
	dir, file, err := d.projectHome(project)
	if errors.Is(err, errNoProject) {
		writeJSON(w, http.StatusNotFound, wire.Error{Error: err.Error()})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusConflict, wire.Error{Error: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), projectLogsTimeout)
	defer cancel()
	cc, err := detectCompose(ctx)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, wire.Error{Error: err.Error()})
		return
	}
	args := []string{"logs", "--no-color", "--tail=" + strconv.Itoa(tail)}
	if service != "" {
		args = append(args, "--", service)
	}
	out := &tailBuffer{max: maxProjectLogBytes}
	if err := runProc(ctx, procSpec{name: cc.name, args: cc.argv(project, dir, file, args...), dir: dir}, out, out); err != nil {
		mask := d.projectMask(dir)
		msg := fmt.Sprintf("%s logs failed: %v", cc, err)
		if t := trimOutput(lastLines(out.buf, 5), 600); t != "" {
			msg += ": " + t
		}
		writeJSON(w, http.StatusInternalServerError, wire.Error{Error: mask.mask(msg)})
		return
	}
	mask := d.projectMask(dir)
	b, truncated := out.result()
	lines := []string{}
	for line := range strings.Lines(string(b)) {
		line = cutLine(mask.mask(cleanLine(strings.TrimRight(line, "\r\n"))))
		lines = append(lines, line)
	}
	writeJSON(w, http.StatusOK, wire.ProjectLogs{Lines: lines, Truncated: truncated})
}

// projectMask masks the values of the project's .env.
func (d *Deployer) projectMask(dir string) *masker {
	b, err := readEnvFile(dir)
	if err != nil {
		return &masker{}
	}
	return newMasker(envValues(b))
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

// result is the kept output, starting at a whole line when some was cut.
func (t *tailBuffer) result() ([]byte, bool) {
	b, cut := t.buf, t.cut
	if len(b) > t.max {
		b, cut = b[len(b)-t.max:], true
	}
	if cut {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b, cut
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) []byte {
	b = bytes.TrimRight(b, "\n")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}
