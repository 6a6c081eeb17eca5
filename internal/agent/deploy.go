package agent

// Deployments: the agent fetches a commit of an app into its directory,
// writes its .env, builds and starts it with docker compose, waits for it to
// be up, and keeps the images of its last releases so that a rollback needs
// no build. Every step is a child process with a fixed argv in its own
// process group, its output streamed line by line, masked, into the journal
// that the panel polls.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"upanel/internal/wire"
)

const (
	// maxRunning deployments build at once; the others wait their turn.
	maxRunning = 3
	// maxActive bounds running and waiting deployments together.
	maxActive = 20

	defaultDeployTimeout = 30 * time.Minute
	maxDeployTimeout     = 6 * time.Hour
	defaultKeepReleases  = 5
	maxKeepReleases      = 50
	defaultComposeFile   = "docker-compose.yml"

	// killGrace is how long a cancelled step has between SIGTERM and
	// SIGKILL.
	killGrace = 10 * time.Second
	// maxPollWait bounds a long poll.
	maxPollWait = 10 * time.Second
	// recoverTimeout bounds putting the previous release back.
	recoverTimeout = 5 * time.Minute

	maskText = "••••"
)

// Why a deployment's context ended.
var (
	errCancelled     = errors.New("the deployment was cancelled")
	errAgentStopping = errors.New("the agent stopped during the deployment")
	errTimedOut      = errors.New("the deployment timed out")
)

// Deployer runs deployments and answers for compose projects.
type Deployer struct {
	root     string // the deploy root; apps live under <root>/apps
	stateDir string
	log      *slog.Logger
	journal  *journal

	base context.Context
	stop context.CancelCauseFunc
	wg   sync.WaitGroup

	slots chan struct{} // maxRunning

	mu     sync.Mutex
	active map[string]*deployment
	locks  map[string]chan struct{} // per project, one holder at a time

	// Tests adjust these.
	gitEnv        []string      // added to every git command's environment
	healthTimeout time.Duration // how long services may take to be up
	stableWindow  time.Duration // defaultStableWindow
	pollInterval  time.Duration // between container state checks
}

// NewDeployer opens the deployment journal under stateDir and ends the
// deployments a previous agent process left running; for those that may have
// changed the tree or the containers, it starts putting the previous release
// back (resumeInterrupted), and they end only once that is done.
func NewDeployer(deployRoot, stateDir string, log *slog.Logger) (*Deployer, error) {
	if stateDir == "" {
		return nil, errors.New("deployments: no state dir")
	}
	j, err := openJournal(filepath.Join(stateDir, "deploys"), time.Now().UTC())
	if err != nil {
		return nil, err
	}
	// Credential files of a process that died with the agent.
	tmp := filepath.Join(stateDir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("deployments: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("deployments: %w", err)
	}
	for _, sub := range []string{"releases", "repos"} {
		if err := os.MkdirAll(filepath.Join(stateDir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("deployments: %w", err)
		}
	}
	ctx, stop := context.WithCancelCause(context.Background())
	d := &Deployer{root: deployRoot, stateDir: stateDir, log: log, journal: j, base: ctx, stop: stop,
		slots: make(chan struct{}, maxRunning), active: map[string]*deployment{}, locks: map[string]chan struct{}{},
		healthTimeout: 5 * time.Minute, stableWindow: defaultStableWindow, pollInterval: time.Second}
	d.resumeInterrupted(time.Now().UTC())
	return d, nil
}

// Close stops the running deployments (they end failed, "the agent stopped
// during the deployment") and waits for them.
func (d *Deployer) Close() {
	d.stop(errAgentStopping)
	d.wg.Wait()
}

// --- one deployment ---

// deployment is a deployment this process runs.
type deployment struct {
	req    wire.DeployRequest // secrets included: memory only
	mask   *masker
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu      sync.Mutex
	rec     journalRecord
	logf    *os.File
	size    int64
	offsets []int64 // offsets[i]: where the line with seq i+1 starts
	full    bool
	changed chan struct{} // closed and replaced on every change
	tail    []string      // the last lines of the current step
	path    string        // of the journal's log file

	// restoring: a deployment a previous agent process left in the middle,
	// whose previous release this one puts back (resume.go).
	restoring bool
}

// addLine masks text and appends it to the log.
func (dep *deployment) addLine(text string) {
	text = cutLine(dep.mask.mask(cleanLine(text)))
	if strings.TrimSpace(text) == "" {
		return
	}
	dep.mu.Lock()
	defer dep.mu.Unlock()
	dep.tail = append(dep.tail, text)
	if len(dep.tail) > 8 {
		dep.tail = dep.tail[len(dep.tail)-8:]
	}
	if dep.full {
		return
	}
	if dep.rec.State.LastSeq+1 >= maxJournalLines || dep.size >= maxJournalBytes {
		dep.full = true
		text = "==> the log is over its limit; the rest of the output is not kept"
	}
	dep.writeLine(text)
}

// writeLine appends a line; dep.mu is held.
func (dep *deployment) writeLine(text string) {
	l := wire.LogLine{Seq: dep.rec.State.LastSeq + 1, At: time.Now().UTC(), Text: text}
	b, _ := json.Marshal(l)
	b = append(b, '\n')
	if _, err := dep.logf.Write(b); err != nil {
		return // the disk is full or gone: the state still tells the outcome
	}
	dep.offsets = append(dep.offsets, dep.size)
	dep.size += int64(len(b))
	dep.rec.State.LastSeq = l.Seq
	dep.notify()
}

// notify wakes the pollers; dep.mu is held.
func (dep *deployment) notify() {
	close(dep.changed)
	dep.changed = make(chan struct{})
}

// update changes the state and writes it durably.
func (dep *deployment) update(j *journal, f func(s *wire.DeployState)) {
	dep.mu.Lock()
	defer dep.mu.Unlock()
	f(&dep.rec.State)
	if err := j.write(&dep.rec); err != nil {
		dep.writeLine("==> could not write the deployment journal: " + err.Error())
	}
	dep.notify()
}

// changeRecord changes the record beyond its state and writes it durably.
func (dep *deployment) changeRecord(j *journal, f func(r *journalRecord)) error {
	dep.mu.Lock()
	defer dep.mu.Unlock()
	f(&dep.rec)
	return j.write(&dep.rec)
}

// markUpStarted notes in the journal that the containers may change from
// here on: an agent that dies before the end cannot say that the previous
// release still runs.
func (dep *deployment) markUpStarted(j *journal) {
	dep.mu.Lock()
	defer dep.mu.Unlock()
	dep.rec.UpStarted = true
	if err := j.write(&dep.rec); err != nil {
		dep.writeLine("==> could not write the deployment journal: " + err.Error())
	}
}

func (dep *deployment) state() wire.DeployState {
	dep.mu.Lock()
	defer dep.mu.Unlock()
	return dep.rec.State
}

// startStep forgets the output of the previous step.
func (dep *deployment) startStep() {
	dep.mu.Lock()
	dep.tail = nil
	dep.mu.Unlock()
}

func (dep *deployment) stepTail(n int) []string {
	dep.mu.Lock()
	defer dep.mu.Unlock()
	return slices.Clone(dep.tail[max(0, len(dep.tail)-n):])
}

// --- starting, polling, cancelling ---

// errBusy refuses a deployment when too many are running or waiting.
var errBusy = errors.New("too many deployments are running or waiting on this server; try again later")

// start begins a deployment, or returns the one with the same id.
func (d *Deployer) start(req wire.DeployRequest) (wire.DeployState, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dep, ok := d.active[req.ID]; ok {
		return dep.state(), false, nil
	}
	if rec, err := d.journal.read(req.ID); err == nil {
		return rec.State, false, nil
	}
	mask := newMasker(requestSecrets(req))
	dir, err := d.validate(&req)
	if err != nil {
		return wire.DeployState{}, false, errors.New(mask.mask(err.Error()))
	}
	if len(d.active) >= maxActive {
		return wire.DeployState{}, false, errBusy
	}
	now := time.Now().UTC()
	dep := &deployment{req: req, mask: mask, done: make(chan struct{}), changed: make(chan struct{}),
		rec: journalRecord{State: wire.DeployState{ID: req.ID, Status: wire.DeployRunning, Branch: req.Branch, StartedAt: now},
			Project: req.Project, Dir: dir, ComposeFile: req.ComposeFile, RequestedCommit: req.Commit},
		path: d.journal.logPath(req.ID)}
	f, err := os.OpenFile(dep.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return wire.DeployState{}, false, fmt.Errorf("deploy journal: %w", err)
	}
	dep.logf = f
	if err := d.journal.write(&dep.rec); err != nil {
		f.Close()
		os.Remove(dep.path)
		return wire.DeployState{}, false, fmt.Errorf("deploy journal: %w", err)
	}
	d.journal.add(req.Project, req.ID)
	d.active[req.ID] = dep
	d.journal.prune(req.Project, func(id string) bool { _, ok := d.active[id]; return ok })

	ctx, cancel := context.WithCancelCause(d.base)
	timeout := time.Duration(req.TimeoutSeconds) * time.Second
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, timeout, errTimedOut)
	dep.cancel = cancel
	d.wg.Go(func() {
		defer cancelTimeout()
		defer cancel(nil)
		d.run(ctx, dep)
	})
	return dep.state(), true, nil
}

// run takes the deployment from its start to a terminal state.
func (d *Deployer) run(ctx context.Context, dep *deployment) {
	var err error
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("deployment panicked", "id", dep.req.ID, "panic", r)
			err = fmt.Errorf("internal error: %v", r)
		}
		d.finish(ctx, dep, err)
	}()
	release, err := d.acquire(ctx, dep)
	if err != nil {
		return
	}
	defer release()
	err = d.deploy(ctx, dep)
}

// finish writes the terminal state and lets go of the deployment.
func (d *Deployer) finish(ctx context.Context, dep *deployment, err error) {
	// Every step returns an error when ctx ends, so a nil error is a
	// deployment that got to its end, however late a cancel came.
	status, msg := wire.DeploySuccess, ""
	if err != nil {
		status = wire.DeployFailed
		cause := context.Cause(ctx)
		var own *ownFailure
		switch {
		case errors.As(err, &own):
			msg = own.Error()
		case ctx.Err() != nil && errors.Is(cause, errCancelled):
			status, msg = wire.DeployCancelled, errCancelled.Error()
		case ctx.Err() != nil && errors.Is(cause, errTimedOut):
			msg = fmt.Sprintf("the deployment timed out after %s", time.Duration(dep.req.TimeoutSeconds)*time.Second)
		case ctx.Err() != nil && errors.Is(cause, errAgentStopping):
			msg = errAgentStopping.Error()
		default:
			msg = err.Error()
		}
		if dep.state().RestoreFailed {
			msg += "; " + restoreFailedMessage
		}
		msg = truncateRunes(dep.mask.mask(msg), 2000)
	}
	switch status {
	case wire.DeploySuccess:
		dep.addLine("==> deployed " + wire.ShortCommit(dep.state().Commit))
	case wire.DeployCancelled:
		dep.addLine("==> cancelled")
	default:
		dep.addLine("==> failed: " + msg)
	}
	now := time.Now().UTC()
	dep.update(d.journal, func(s *wire.DeployState) {
		s.Status, s.Error, s.FinishedAt = status, msg, &now
	})
	d.letGo(dep)
	d.log.Info("deployment ended", "id", dep.req.ID, "project", dep.req.Project, "status", status)
}

// letGo forgets a deployment whose terminal state is written, and the copy
// of the previous .env it kept.
func (d *Deployer) letGo(dep *deployment) {
	os.Remove(d.journal.envBackupPath(dep.req.ID))
	d.mu.Lock()
	delete(d.active, dep.req.ID)
	d.mu.Unlock()
	dep.mu.Lock()
	dep.logf.Close()
	dep.mu.Unlock()
	close(dep.done)
}

// acquire waits for the project to be free and for a slot.
func (d *Deployer) acquire(ctx context.Context, dep *deployment) (func(), error) {
	lock := d.projectLock(dep.req.Project)
	select {
	case lock <- struct{}{}:
	default:
		dep.addLine("==> waiting for the deployment running in this project to end")
		select {
		case lock <- struct{}{}:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	select {
	case d.slots <- struct{}{}:
	default:
		dep.addLine(fmt.Sprintf("==> waiting: %d deployments are running on this server", maxRunning))
		select {
		case d.slots <- struct{}{}:
		case <-ctx.Done():
			<-lock
			return nil, context.Cause(ctx)
		}
	}
	return func() { <-d.slots; <-lock }, nil
}

func (d *Deployer) projectLock(project string) chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.locks[project]
	if !ok {
		l = make(chan struct{}, 1)
		d.locks[project] = l
	}
	return l
}

// poll returns the lines after seq after and the state, waiting up to wait
// for something new. ok is false when the id is unknown.
func (d *Deployer) poll(ctx context.Context, id string, after int, wait time.Duration) (wire.DeployLog, bool, error) {
	d.mu.Lock()
	dep := d.active[id]
	d.mu.Unlock()
	if dep == nil {
		rec, err := d.journal.read(id)
		if err != nil {
			return wire.DeployLog{}, false, nil
		}
		lines, err := readLines(d.journal.logPath(id), after, 0, -1, wire.MaxLogLines)
		return wire.DeployLog{State: rec.State, Lines: nonNil(lines)}, true, err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		dep.mu.Lock()
		st, changed := dep.rec.State, dep.changed
		var offset, end int64
		if after < len(dep.offsets) {
			offset, end = dep.offsets[max(after, 0)], dep.size
		}
		dep.mu.Unlock()
		if st.LastSeq > after || st.Status != wire.DeployRunning || wait <= 0 {
			var lines []wire.LogLine
			var err error
			if st.LastSeq > after {
				lines, err = readLines(dep.path, after, offset, end, wire.MaxLogLines)
			}
			return wire.DeployLog{State: st, Lines: nonNil(lines)}, true, err
		}
		select {
		case <-changed:
		case <-timer.C:
			wait = 0
		case <-ctx.Done():
			wait = 0
		}
	}
}

func nonNil(l []wire.LogLine) []wire.LogLine {
	if l == nil {
		return []wire.LogLine{}
	}
	return l
}

// cancelDeployment cancels a running deployment; ok is false when the id is
// unknown.
func (d *Deployer) cancelDeployment(id string) (wire.DeployState, bool) {
	d.mu.Lock()
	dep := d.active[id]
	d.mu.Unlock()
	if dep != nil {
		switch {
		case dep.restoring:
			dep.addLine("==> cancel requested: the previous release is being put back, which is not cancelled")
		case dep.state().Status == wire.DeployRunning:
			dep.addLine("==> cancel requested")
		}
		dep.cancel(errCancelled)
		return dep.state(), true
	}
	rec, err := d.journal.read(id)
	if err != nil {
		return wire.DeployState{}, false
	}
	return rec.State, true
}

// --- validation ---

var (
	projectRe     = regexp.MustCompile(`^upanel-[a-z0-9-]{1,50}-(production|staging)$`)
	composeFileRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$`)
	commitRe      = regexp.MustCompile(`^[0-9a-f]{40}$`)
	envKeyRe      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// validate checks a request again (the panel did too), fills in defaults,
// and returns the resolved directory.
func (d *Deployer) validate(req *wire.DeployRequest) (string, error) {
	var errs []error
	if !ulidRe.MatchString(req.ID) {
		errs = append(errs, errors.New("id must be a ULID"))
	}
	if !projectRe.MatchString(req.Project) {
		errs = append(errs, errors.New("project must be upanel-<app>-production or upanel-<app>-staging"))
	}
	if req.ComposeFile == "" {
		req.ComposeFile = defaultComposeFile
	}
	if !composeFileRe.MatchString(req.ComposeFile) {
		errs = append(errs, errors.New("compose_file must be a plain file name"))
	}
	if err := checkBranch(req.Branch); err != nil {
		errs = append(errs, err)
	}
	req.Commit = strings.ToLower(req.Commit)
	if req.Commit != "" && !wire.IsCommitID(req.Commit) {
		errs = append(errs, errors.New("commit must be a whole commit id: 40 hexadecimal digits"))
	}
	if err := checkGitSource(req.Git); err != nil {
		errs = append(errs, err)
	}
	if err := checkEnv(req.Env); err != nil {
		errs = append(errs, err)
	}
	switch {
	case req.KeepReleases == 0:
		req.KeepReleases = defaultKeepReleases
	case req.KeepReleases < 1 || req.KeepReleases > maxKeepReleases:
		errs = append(errs, fmt.Errorf("keep_releases must be 1-%d", maxKeepReleases))
	}
	switch {
	case req.TimeoutSeconds == 0:
		req.TimeoutSeconds = int(defaultDeployTimeout / time.Second)
	case req.TimeoutSeconds < 1 || req.TimeoutSeconds > int(maxDeployTimeout/time.Second):
		errs = append(errs, fmt.Errorf("timeout_seconds must be 1-%d", int(maxDeployTimeout/time.Second)))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return resolveAppDir(d.root, req.Dir)
}

// checkBranch accepts the branch names the panel accepts
// (wire.BranchProblem): what git check-ref-format --branch accepts, less a
// leading '-', "@", and shell metacharacters.
func checkBranch(b string) error {
	if msg := wire.BranchProblem(b); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// checkEnv: keys are shell-style names; values are written raw to .env, one
// KEY=value line each, and must be ones docker compose reads back unchanged
// (wire.EnvValueProblem, as the panel checks).
func checkEnv(env map[string]string) error {
	var errs []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if !envKeyRe.MatchString(k) || len(k) > 200 {
			return fmt.Errorf("env: %q is not a valid variable name (letters, digits and _, not starting with a digit)", truncateRunes(k, 40))
		}
		if msg := wire.EnvValueProblem(env[k]); msg != "" {
			errs = append(errs, "the value of "+k+" "+msg)
		}
	}
	if len(errs) > 0 {
		return errors.New("env: " + strings.Join(errs, "; "))
	}
	return nil
}

// requestSecrets are the values masked in the deployment's log.
func requestSecrets(req wire.DeployRequest) []string {
	s := gitSecrets(req.Git)
	for _, v := range req.Env {
		s = append(s, v)
	}
	return s
}

// --- the steps ---

// progress is how far a deployment got, for putting things back.
type progress struct {
	prevHead    string // the checkout before the deployment, if any
	prevEnv     []byte // its .env, if any
	hadEnv      bool
	envLost     bool     // hadEnv, but its backup could not be read
	prevRelease *release // the newest kept release before the deployment
	checkedOut  bool     // the working tree may have changed
	upStarted   bool     // containers may have changed
	compose     composeCLI
}

func (d *Deployer) deploy(ctx context.Context, dep *deployment) error {
	req := dep.req
	dir := dep.rec.Dir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if real, err := filepath.EvalSymlinks(dir); err != nil || real != dir {
		return fmt.Errorf("%s changed while it was being checked", dir)
	}
	g, cleanup, err := d.newGit(req.Git, dep.mask)
	if err != nil {
		return err
	}
	defer cleanup()
	g.gitDir, g.workTree = d.repoDir(req.Project), dir

	var p progress
	p.prevHead = d.currentHead(ctx, g, dir)
	if b, err := readEnvFile(dir); err == nil {
		p.prevEnv, p.hadEnv = b, true
	}
	p.prevRelease = d.newestRelease(req.Project)
	if err := d.saveRestoreInfo(dep, &p); err != nil {
		return err
	}
	err = d.deploySteps(ctx, dep, g, &p)
	if err == nil {
		return nil
	}
	// A step that failed by itself, before any cancel or stop: one that
	// comes while the previous release is put back does not hide it.
	if ctx.Err() == nil {
		err = &ownFailure{err}
	}
	if p.checkedOut && !d.putBack(dep, g, &p) {
		dep.update(d.journal, func(s *wire.DeployState) { s.RestoreFailed = true })
	}
	return err
}

// saveRestoreInfo writes to the journal, before the deployment changes
// anything, what putting the previous release back needs: a copy of the
// previous .env (0600, in the journal's directory, removed when the
// deployment ends) and the previous checkout and release.
func (d *Deployer) saveRestoreInfo(dep *deployment, p *progress) error {
	info := &restoreInfo{PrevHead: p.prevHead, HadEnv: p.hadEnv, PrevRelease: p.prevRelease}
	if p.hadEnv {
		info.EnvBackup = d.journal.envBackupPath(dep.req.ID)
		if err := writeFileAtomic(info.EnvBackup, p.prevEnv, 0o600); err != nil {
			return fmt.Errorf("keep a copy of the previous .env: %w", err)
		}
	}
	if err := dep.changeRecord(d.journal, func(r *journalRecord) { r.Restore = info }); err != nil {
		return fmt.Errorf("deploy journal: %w", err)
	}
	return nil
}

// ownFailure is a deployment that failed by itself, not by a cancel, a
// timeout or the agent stopping.
type ownFailure struct{ err error }

func (e *ownFailure) Error() string { return e.err.Error() }
func (e *ownFailure) Unwrap() error { return e.err }

func (d *Deployer) deploySteps(ctx context.Context, dep *deployment, g *gitRunner, p *progress) error {
	req := dep.req
	dir := dep.rec.Dir

	// 1. The code.
	commit, message, err := d.checkout(ctx, dep, g, dir, req.Branch, req.Commit, p)
	if err != nil {
		return err
	}
	dep.update(d.journal, func(s *wire.DeployState) { s.Commit, s.CommitMessage = commit, message })
	dep.addLine(fmt.Sprintf("==> commit %s: %s", wire.ShortCommit(commit), message))

	// 2. The environment.
	if err := writeEnvFile(dir, req.Env); err != nil {
		return fmt.Errorf("write .env: %w", err)
	}
	dep.addLine(fmt.Sprintf("==> wrote .env (%d variables)", len(req.Env)))
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}

	// 3. Compose: check the file, build or reuse, start, wait.
	cc, err := detectCompose(ctx)
	if err != nil {
		return err
	}
	p.compose = cc
	dep.addLine("==> using " + cc.String())
	services, err := d.composeCapture(ctx, dep, cc, req.Project, dir, req.ComposeFile, "config", "--services")
	if err != nil {
		return err
	}
	dep.addLine("==> services: " + strings.Join(strings.Fields(services), ", "))
	// Only a deployment of a named commit (a rollback) reuses the kept
	// images of that release; a deployment of the branch head always builds,
	// so that it picks up new base images and build arguments.
	var reuse *release
	if req.Commit != "" {
		reuse = d.findRelease(ctx, req.Project, commit)
	}
	if reuse != nil {
		dep.addLine("==> reusing images of release " + commit)
		err := d.retag(ctx, dep, req.Project, reuse)
		switch {
		case errors.Is(err, errImageMoved):
			dep.addLine("==> the kept images cannot be used as they are: building instead")
			reuse = nil
		case err != nil:
			return err
		default:
			dep.update(d.journal, func(s *wire.DeployState) { s.Rebuilt = false })
		}
	}
	if reuse == nil {
		dep.update(d.journal, func(s *wire.DeployState) { s.Rebuilt = true })
		if err := d.compose(ctx, dep, cc, req.Project, dir, req.ComposeFile, "build"); err != nil {
			return err
		}
	}
	p.upStarted = true
	dep.markUpStarted(d.journal)
	if err := d.compose(ctx, dep, cc, req.Project, dir, req.ComposeFile, "up", "-d", "--remove-orphans", "--no-build"); err != nil {
		return err
	}
	if err := d.waitHealthy(ctx, dep, req.Project); err != nil {
		return err
	}

	// 4. Keep this release's images for a rollback.
	if err := d.recordRelease(ctx, dep, req.Project, commit, req.KeepReleases); err != nil {
		dep.addLine("==> warning: could not keep this release's images: " + err.Error())
	}
	return nil
}

// putBack undoes what a failed or cancelled deployment changed: before the
// containers were touched, the checkout and .env; after, the whole previous
// release when its images are still there. It reports false when the
// containers were changed and the previous release (if there was one) is not
// running again.
//
// It runs whatever ended the deployment, the agent stopping included: its
// context is the agent's without the cancel, bounded by recoverTimeout, and
// Close waits for it (it runs in the deployment's goroutine). An agent that
// dies before it is done runs it again when it starts, from what the journal
// record holds (resume.go): every step is safe to repeat.
func (d *Deployer) putBack(dep *deployment, g *gitRunner, p *progress) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.base), recoverTimeout)
	defer cancel()
	req := dep.req
	dir := dep.rec.Dir
	restoreTree := func(commit string) bool {
		if commit == "" {
			return false
		}
		if err := d.runStep(ctx, dep, procSpec{name: "git", args: g.args("checkout", "-q", "--force", "--detach", commit, "--"),
			show: []string{"git", "checkout", "--force", "--detach", commit}, dir: dir, env: g.env}); err != nil {
			dep.addLine("==> could not restore the previous checkout: " + err.Error())
			return false
		}
		var err error
		switch {
		case p.envLost:
			err = errors.New("its copy could not be read")
		case p.hadEnv:
			err = writeFileAtomic(filepath.Join(dir, ".env"), p.prevEnv, 0o600)
		default:
			err = os.Remove(filepath.Join(dir, ".env"))
			if errors.Is(err, os.ErrNotExist) {
				err = nil
			}
		}
		if err != nil {
			dep.addLine("==> could not restore the previous .env: " + err.Error())
			return false
		}
		return true
	}
	if !p.upStarted {
		if restoreTree(p.prevHead) {
			dep.addLine("==> the previous release keeps running; restored its checkout (" + wire.ShortCommit(p.prevHead) + ") and .env")
		} else {
			dep.addLine("==> the previous release keeps running")
		}
		return true
	}
	prev := p.prevRelease
	if prev == nil {
		if p.prevHead == "" {
			dep.addLine("==> there is no earlier release to return to")
			return true
		}
		dep.addLine("==> the previous release " + wire.ShortCommit(p.prevHead) + " kept no images; the project is left as it is")
		return false
	}
	if !d.releasePresent(ctx, prev) {
		dep.addLine("==> the images of the previous release " + wire.ShortCommit(prev.Commit) + " are gone; the project is left as it is")
		return false
	}
	dep.addLine("==> returning to the previous release " + prev.Commit)
	dep.startStep()
	if !restoreTree(prev.Commit) {
		return false
	}
	if err := d.retag(ctx, dep, req.Project, prev); err != nil {
		dep.addLine("==> could not return to the previous release: " + err.Error())
		return false
	}
	if err := d.compose(ctx, dep, p.compose, req.Project, dir, req.ComposeFile, "up", "-d", "--remove-orphans", "--no-build"); err != nil {
		dep.addLine("==> could not return to the previous release: " + err.Error())
		return false
	}
	dep.addLine("==> the previous release " + wire.ShortCommit(prev.Commit) + " is running again")
	return true
}

// --- .env ---

// writeEnvFile writes dir/.env, 0600, atomically: KEY=value lines, sorted.
func writeEnvFile(dir string, env map[string]string) error {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + env[k] + "\n")
	}
	return writeFileAtomic(filepath.Join(dir, ".env"), []byte(b.String()), 0o600)
}

// readEnvFile reads dir/.env, which must be a regular file.
func readEnvFile(dir string) ([]byte, error) {
	p := filepath.Join(dir, ".env")
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return os.ReadFile(p)
}

// envValues are the values of a .env file.
func envValues(b []byte) []string {
	var vals []string
	for line := range strings.Lines(string(b)) {
		if _, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), "="); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// --- running commands ---

// procSpec is a command to run: a bare name looked up in commandDirs, a
// fixed argv, a working directory and the environment beyond commandEnv.
type procSpec struct {
	name  string
	args  []string
	show  []string // what the log shows of the command; name+args if nil
	label string   // names the step in its error; the first two of show if ""
	dir   string
	env   []string
}

// runProc runs a command in its own process group. When ctx ends, the group
// gets SIGTERM, and SIGKILL killGrace later if the command is still there.
func runProc(ctx context.Context, p procSpec, stdout, stderr io.Writer) error {
	path, err := findCommand(p.name)
	if err != nil {
		return err
	}
	c := exec.CommandContext(ctx, path, p.args...)
	c.Dir = p.dir
	if c.Dir == "" {
		c.Dir = "/"
	}
	c.Env = append(slices.Clone(commandEnv), p.env...)
	c.Stdout, c.Stderr = stdout, stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGTERM) }
	// A child that keeps the output open must not hold Wait for ever.
	c.WaitDelay = killGrace + 5*time.Second
	if err := c.Start(); err != nil {
		return err
	}
	pid := c.Process.Pid
	// The agent's unit lowers its OOM score (OOMScoreAdjust); its children
	// (git, compose) go back to 0, so that when the unit's memory runs out
	// the OOM killer takes them rather than the agent. Best effort.
	os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte("0\n"), 0)
	exited := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-exited:
			return
		}
		t := time.NewTimer(killGrace)
		defer t.Stop()
		select {
		case <-t.C:
			syscall.Kill(-pid, syscall.SIGKILL)
		case <-exited:
		}
	}()
	err = c.Wait()
	close(exited)
	if ctx.Err() != nil {
		// Whatever of the group outlived its leader.
		syscall.Kill(-pid, syscall.SIGKILL)
		return context.Cause(ctx)
	}
	return err
}

// stepError is a failed step: the command and the end of its output.
type stepError struct {
	what string
	err  error
	tail []string
}

func (e *stepError) Error() string {
	if len(e.tail) == 0 {
		return fmt.Sprintf("%s failed: %v", e.what, e.err)
	}
	return fmt.Sprintf("%s failed (%v): %s", e.what, e.err, strings.Join(e.tail, " | "))
}

func (e *stepError) Unwrap() error { return e.err }

// runStep runs a step with its output in the deployment's log. stdout, if
// not nil, takes the command's standard output instead of the log.
func (d *Deployer) runStep(ctx context.Context, dep *deployment, p procSpec, stdout ...io.Writer) error {
	show := p.show
	if show == nil {
		show = append([]string{p.name}, p.args...)
	}
	dep.addLine("$ " + strings.Join(show, " "))
	dep.startStep()
	lw := &lineWriter{emit: dep.addLine}
	var out io.Writer = lw
	if len(stdout) > 0 {
		out = stdout[0]
	}
	err := runProc(ctx, p, out, lw)
	lw.Close()
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		what := p.label
		if what == "" {
			what = strings.Join(show[:min(len(show), 2)], " ")
		}
		return &stepError{what: what, err: err, tail: dep.stepTail(5)}
	}
	return nil
}

// lineWriter splits output into lines (at LF or CR) for emit.
type lineWriter struct {
	emit       func(string)
	buf        []byte
	discarding bool // the current line went over the limit
}

// maxLineBuffer bounds a line being collected; the rest of a longer line is
// dropped (the log keeps wire.MaxLineBytes of it anyway).
const maxLineBuffer = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := strings.IndexAny(string(p), "\r\n")
		if i < 0 {
			if !w.discarding {
				w.buf = append(w.buf, p...)
				if len(w.buf) > maxLineBuffer {
					w.emit(string(w.buf))
					w.buf, w.discarding = w.buf[:0], true
				}
			}
			break
		}
		if !w.discarding {
			w.buf = append(w.buf, p[:i]...)
			if len(w.buf) > 0 {
				w.emit(string(w.buf))
			}
		}
		w.buf, w.discarding = w.buf[:0], false
		p = p[i+1:]
	}
	return n, nil
}

// Close emits what is left of an unterminated last line.
func (w *lineWriter) Close() {
	if len(w.buf) > 0 && !w.discarding {
		w.emit(string(w.buf))
	}
	w.buf = nil
}

var ansiRe = regexp.MustCompile(`\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]`)

// cleanLine drops terminal escapes and control characters but tabs.
func cleanLine(s string) string {
	s = ansiRe.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r == '\t' || r >= ' ' && r != 0x7f {
			return r
		}
		return -1
	}, s)
}

// --- masking ---

// masker replaces secrets with maskText.
type masker struct{ r *strings.Replacer }

// newMasker masks every value of at least 3 bytes, longest first, so that a
// secret containing another is masked whole.
func newMasker(secrets []string) *masker {
	seen := map[string]bool{}
	var vals []string
	for _, s := range secrets {
		if len(s) >= 3 && !seen[s] {
			seen[s] = true
			vals = append(vals, s)
		}
	}
	if len(vals) == 0 {
		return &masker{}
	}
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	pairs := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		pairs = append(pairs, v, maskText)
	}
	return &masker{r: strings.NewReplacer(pairs...)}
}

func (m *masker) mask(s string) string {
	if m == nil || m.r == nil {
		return s
	}
	return m.r.Replace(s)
}

// --- HTTP ---

// register adds the deployment, project and git routes to mux.
func (d *Deployer) register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+wire.AgentPathDeploy, d.handleDeploy)
	mux.HandleFunc("GET "+wire.AgentPathDeployState+"{id}", d.handlePoll)
	mux.HandleFunc("POST "+wire.AgentPathDeployState+"{id}"+wire.AgentPathDeployCancelSuffix, d.handleCancel)
	mux.HandleFunc("GET "+wire.AgentPathProject+"{project}", d.handleProjectStatus)
	mux.HandleFunc("POST "+wire.AgentPathProject+"{project}/{action}", d.handleProjectAction)
	mux.HandleFunc("GET "+wire.AgentPathProject+"{project}/logs", d.handleProjectLogs)
	mux.HandleFunc("POST "+wire.AgentPathGitCheck, d.handleGitCheck)
}

// readJSON decodes a request body, answering the error itself.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		refuseBody(w, err)
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeJSON(w, http.StatusBadRequest, wire.Error{Error: "the request body is not valid JSON for this call"})
		return false
	}
	return true
}

func (d *Deployer) handleDeploy(w http.ResponseWriter, r *http.Request) {
	var req wire.DeployRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !ulidRe.MatchString(req.ID) {
		writeJSON(w, http.StatusBadRequest, wire.Error{Error: "id must be a ULID"})
		return
	}
	st, started, err := d.start(req)
	switch {
	case errors.Is(err, errBusy):
		writeJSON(w, http.StatusServiceUnavailable, wire.Error{Error: err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusBadRequest, wire.Error{Error: err.Error()})
		return
	}
	if started {
		d.log.Info("deployment started", "id", req.ID, "project", req.Project)
	}
	writeJSON(w, http.StatusAccepted, st)
}

func (d *Deployer) handlePoll(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !ulidRe.MatchString(id) {
		writeJSON(w, http.StatusNotFound, wire.Error{Error: "no such deployment"})
		return
	}
	after, wait := 0, 0
	q := r.URL.Query()
	var err error
	if s := q.Get("after"); s != "" {
		if after, err = strconv.Atoi(s); err != nil || after < 0 {
			writeJSON(w, http.StatusBadRequest, wire.Error{Error: "after must be a sequence number"})
			return
		}
	}
	if s := q.Get("wait"); s != "" {
		if wait, err = strconv.Atoi(s); err != nil || wait < 0 {
			writeJSON(w, http.StatusBadRequest, wire.Error{Error: "wait must be milliseconds"})
			return
		}
	}
	waitD := min(time.Duration(wait)*time.Millisecond, maxPollWait)
	out, ok, err := d.poll(r.Context(), id, after, waitD)
	switch {
	case !ok:
		writeJSON(w, http.StatusNotFound, wire.Error{Error: "no such deployment"})
	case err != nil:
		d.log.Error("read deployment log", "id", id, "err", err)
		writeJSON(w, http.StatusInternalServerError, wire.Error{Error: "the deployment's log could not be read"})
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

func (d *Deployer) handleCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		refuseBody(w, err)
		return
	}
	if !ulidRe.MatchString(id) {
		writeJSON(w, http.StatusNotFound, wire.Error{Error: "no such deployment"})
		return
	}
	st, ok := d.cancelDeployment(id)
	if !ok {
		writeJSON(w, http.StatusNotFound, wire.Error{Error: "no such deployment"})
		return
	}
	writeJSON(w, http.StatusAccepted, st)
}
