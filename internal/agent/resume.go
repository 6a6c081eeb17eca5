package agent

// Deployments a previous agent process left in the middle: it was killed,
// crashed, or was stopped (an upgrade, a restart) before it had put things
// back. Their journal record says what they had changed (restoreInfo,
// UpStarted); the new process puts the previous release back before it ends
// them, so that the panel, which polls the deployment's state, sees it end
// only once the server runs the previous release again, or knows that it
// does not (restore_failed).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"upanel/internal/wire"
)

// resumeInterrupted takes up the deployments the journal found running that
// may have changed the tree or the containers: they are active again (polls
// see their log grow) and, one project at a time under the project's lock,
// their previous release is put back in the background. Close waits for it.
func (d *Deployer) resumeInterrupted(now time.Time) {
	recs := d.journal.resume
	d.journal.resume = nil
	byProject := map[string][]*deployment{}
	var projects []string
	for _, rec := range recs {
		dep, err := d.openInterrupted(rec)
		if err != nil {
			// Ended as the journal ends the others: the next deployment
			// sets things right.
			d.log.Error("a deployment the previous agent process left running cannot be resumed", "id", rec.State.ID, "err", err)
			if err := d.journal.reconcile(&rec, now); err != nil {
				d.log.Error("deploy journal", "id", rec.State.ID, "err", err)
			}
			continue
		}
		if !slices.Contains(projects, rec.Project) {
			projects = append(projects, rec.Project)
		}
		byProject[rec.Project] = append(byProject[rec.Project], dep)
	}
	for _, project := range projects {
		deps := byProject[project]
		lock := d.projectLock(project)
		lock <- struct{}{} // free: nothing runs yet
		d.wg.Go(func() {
			defer func() { <-lock }()
			// Newest first: each puts back what the one before it left.
			for i := len(deps) - 1; i >= 0; i-- {
				d.restoreInterrupted(deps[i])
			}
		})
	}
}

// openInterrupted makes an active deployment of a record left running, its
// log open for appending.
func (d *Deployer) openInterrupted(rec journalRecord) (*deployment, error) {
	id := rec.State.ID
	path := d.journal.logPath(id)
	if _, err := repairLog(path); err != nil {
		return nil, err
	}
	offsets, size, last, err := indexLog(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// The values of both .env files are masked: the request, and its
	// secrets, died with the previous process.
	var secrets []string
	if b, err := readEnvFile(rec.Dir); err == nil {
		secrets = envValues(b)
	}
	if rec.Restore.HadEnv {
		if b, err := os.ReadFile(rec.Restore.EnvBackup); err == nil {
			secrets = append(secrets, envValues(b)...)
		}
	}
	rec.State.LastSeq = last
	dep := &deployment{
		req:       wire.DeployRequest{ID: id, Project: rec.Project, ComposeFile: rec.ComposeFile, Branch: rec.State.Branch, Commit: rec.RequestedCommit},
		mask:      newMasker(secrets),
		cancel:    func(error) {}, // putting the previous release back is not cancelled
		done:      make(chan struct{}),
		changed:   make(chan struct{}),
		rec:       rec,
		logf:      f,
		size:      size,
		offsets:   offsets,
		path:      path,
		restoring: true,
	}
	d.mu.Lock()
	d.active[id] = dep
	d.mu.Unlock()
	return dep, nil
}

// restoreInterrupted puts back the previous release of an interrupted
// deployment and ends it failed, restore_failed when the containers had
// changed and the previous release is not running again.
func (d *Deployer) restoreInterrupted(dep *deployment) {
	ok := false
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("restoring an interrupted deployment panicked", "id", dep.req.ID, "panic", r)
			dep.addLine(fmt.Sprintf("==> internal error: %v", r))
			ok = false
		}
		msg := restartedMessage
		if !ok {
			msg += "; " + restoreFailedMessage
		}
		dep.addLine("==> failed: " + msg)
		now := time.Now().UTC()
		dep.update(d.journal, func(s *wire.DeployState) {
			s.Status, s.Error, s.FinishedAt, s.RestoreFailed = wire.DeployFailed, msg, &now, !ok
		})
		d.letGo(dep)
		d.log.Info("deployment ended after the agent restarted", "id", dep.req.ID, "project", dep.req.Project, "restored", ok)
	}()
	ok = d.putBackInterrupted(dep)
}

// putBackInterrupted gathers what putBack needs from the journal record and
// runs it. Like putBack, it reports false when the containers had changed
// and the previous release (if any) is not running again.
func (d *Deployer) putBackInterrupted(dep *deployment) bool {
	dep.mu.Lock()
	rec := dep.rec
	dep.mu.Unlock()
	info := rec.Restore
	p := progress{prevHead: info.PrevHead, hadEnv: info.HadEnv, prevRelease: info.PrevRelease, checkedOut: true, upStarted: rec.UpStarted}
	if p.upStarted {
		dep.addLine("==> " + restartedMessage + ", while it changed the containers: putting the previous release back")
	} else {
		dep.addLine("==> " + restartedMessage + ", after it changed the checkout: putting the previous checkout and .env back")
	}
	fail := func(err error) bool {
		dep.addLine("==> cannot put the previous release back: " + err.Error())
		return !p.upStarted
	}
	dir, err := resolveAppDir(d.root, rec.Dir)
	if err != nil {
		return fail(err)
	}
	if dir != rec.Dir {
		return fail(fmt.Errorf("%s resolves to %s now", rec.Dir, dir))
	}
	if p.hadEnv {
		b, err := os.ReadFile(info.EnvBackup)
		if err != nil {
			dep.addLine("==> the copy of the previous .env cannot be read: " + err.Error())
			p.envLost = true
		}
		p.prevEnv = b
	}
	if p.upStarted {
		cc, err := detectCompose(context.WithoutCancel(d.base))
		if err != nil {
			return fail(err)
		}
		p.compose = cc
		dep.addLine("==> using " + cc.String())
	}
	// Only commits the repository has are checked out: no fetch, no
	// credential.
	g, cleanup, err := d.newGit(wire.GitSource{}, dep.mask)
	if err != nil {
		return fail(err)
	}
	defer cleanup()
	g.gitDir, g.workTree = d.repoDir(rec.Project), dir
	if fi, err := os.Lstat(g.gitDir); err != nil || !fi.IsDir() {
		return fail(errors.New("the project's repository is gone"))
	}
	return d.putBack(dep, g, &p)
}
