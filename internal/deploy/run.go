package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"sync/atomic"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/jobs"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// The deployment job (RunKind) drives one deployment on the app's server:
// it starts it on the agent (idempotent by id), then pulls its log and state
// until it ends, storing each line masked and waking live viewers. It
// resumes after a panel crash or restart from the last stored line
// (log_seq), and it always ends the deployment: a failure to reach the
// agent is retried until the deployment's timeout plus a grace period has
// passed, then the deployment fails with the reason; a last attempt that
// fails for another reason fails the deployment too.

// ReconcileKind is the periodic job that ends deployments whose job ended
// without ending them.
const ReconcileKind = "deploy.reconcile"

// runTiming paces a deployment job's calls; tests shorten it.
type runTiming struct {
	pollWait   time.Duration // how long a state poll may wait on the agent
	retryFirst time.Duration // the first pause after a failed call
	retryMax   time.Duration // the longest pause
	// grace is how long past its timeout a deployment may still be heard
	// from before the panel gives up on the agent.
	grace time.Duration
}

func defaultRunTiming() runTiming {
	return runTiming{pollWait: 5 * time.Second, retryFirst: time.Second, retryMax: 30 * time.Second, grace: 5 * time.Minute}
}

type runPayload struct {
	DeploymentID string `json:"deployment_id"`
}

// endNow ends a deployment with a result the job reached itself.
type endNow struct{ end store.DeploymentEnd }

func (e *endNow) Error() string { return e.end.Status + ": " + e.end.Error }

func failNow(format string, args ...any) *endNow {
	return &endNow{store.DeploymentEnd{Status: store.DeploymentFailed, Error: fmt.Sprintf(format, args...)}}
}

// deployRun is one attempt of a deployment's job.
type deployRun struct {
	s     *Service
	j     *jobs.Job
	id    string
	log   *slog.Logger
	d     *store.Deployment
	app   *store.App
	srv   *store.Server
	mask  *masker
	seq   int // the last line stored
	known bool
	// cancelSent: the agent acknowledged the cancel.
	cancelSent bool
	deadline   time.Time
	backoff    time.Duration
	lastErr    error
}

// RunHandler returns the handler of RunKind jobs.
func (s *Service) RunHandler() jobs.Handler {
	return func(ctx context.Context, j *jobs.Job) error {
		var p runPayload
		if err := j.Decode(&p); err != nil {
			return err
		}
		log := s.Log.With("deployment_id", p.DeploymentID, "attempt", j.Attempts)
		r := &deployRun{s: s, j: j, id: p.DeploymentID, log: log}
		err := r.run(ctx)
		var end *endNow
		switch {
		case err == nil:
			return nil
		case errors.As(err, &end):
			r.finish(end.end)
			log.Info("deployment ended", "status", end.end.Status, "error", end.end.Error)
			return nil
		case ctx.Err() != nil:
			// Shutdown or a lost lease: the job runs again and resumes.
			return err
		case jobs.IsPermanent(err) || j.Attempts >= j.MaxAttempts:
			log.Error("deployment job failed for good", "err", err)
			r.finish(store.DeploymentEnd{Status: store.DeploymentFailed, Error: "the panel could not run the deployment: " + apperr.MessageOf(err)})
			return nil
		}
		log.Warn("deployment job attempt failed; it will be retried", "err", err)
		return err
	}
}

// finish ends the deployment in the transaction that marks the job done, so
// that both happen or neither.
func (r *deployRun) finish(end store.DeploymentEnd) {
	id := r.id
	r.j.Finally(func(ctx context.Context, tx *store.Tx) error {
		_, _, err := r.s.finishDeployment(ctx, tx, id, end)
		return err
	})
}

func (r *deployRun) run(ctx context.Context) error {
	s := r.s
	d, err := s.DB.GetDeployment(ctx, r.id)
	if apperr.Is(err, apperr.NotFound) {
		return nil // deleted with its app
	}
	if err != nil {
		return err
	}
	if d.Terminal() {
		return nil
	}
	// The concurrency key runs one job per app at a time; this also covers a
	// retried job that fell behind a later one while its deployment still
	// runs on the agent.
	if other, busy, err := s.DB.OtherRunningDeployment(ctx, d.AppID, d.ID); err != nil {
		return err
	} else if busy {
		return apperr.New(apperr.Conflict, "deployment %s of this app is still running", other)
	}
	d, ok, err := s.DB.MarkDeploymentRunning(ctx, d.ID)
	if err != nil || !ok {
		return err // !ok: cancelled before it began
	}
	r.d, r.seq, r.known = d, d.LogSeq, d.LogSeq > 0
	r.deadline = d.StartedAt.Add(s.DeployTimeout + s.timing.grace)
	if r.app, err = s.DB.GetApp(ctx, d.AppID); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return nil
		}
		return err
	}
	if r.srv, err = s.DB.GetServer(ctx, r.app.ServerID); err != nil {
		return err
	}
	if s.Fleet == nil {
		return failNow("the panel cannot reach agents")
	}
	req, err := r.request(ctx)
	if err != nil {
		if c := apperr.CodeOf(err); c == apperr.Invalid || c == apperr.NotFound || c == apperr.Conflict {
			return failNow("%s", apperr.MessageOf(err))
		}
		return err
	}
	if err := r.checkProtocol(ctx); err != nil {
		return err
	}
	cur, err := s.DB.GetDeployment(ctx, r.id)
	if err != nil {
		return err
	}
	if !r.known && !cur.CancelRequested() {
		// Idempotent by id: after a crash this finds the deployment the
		// agent is already running.
		var st wire.DeployState
		if err := r.call(ctx, http.MethodPost, wire.AgentPathDeploy, req, &st, 30*time.Second); err != nil {
			switch apperr.CodeOf(err) {
			case apperr.NotFound:
				return failNow("the agent of %s does not deploy (it answers 404): upgrade the agent from the server's page", r.srv.Name)
			case apperr.Invalid:
				return failNow("the agent refused the deployment: %s", r.mask.mask(apperr.MessageOf(err)))
			}
			return err
		}
		r.known = true
	}
	return r.follow(ctx)
}

// request builds what the agent is asked to do, and the masker for what it
// reports.
func (r *deployRun) request(ctx context.Context) (*wire.DeployRequest, error) {
	s, d, app := r.s, r.d, r.app
	if err := ValidSlug(app.Slug); err != nil {
		return nil, apperr.New(apperr.Invalid, "the app has no valid slug: edit it to give it one")
	}
	git, gitSecrets, err := s.AppGitSource(ctx, app)
	if err != nil {
		return nil, err
	}
	env, err := s.EffectiveEnv(ctx, app.ID, d.Environment)
	if err != nil {
		return nil, err
	}
	sec, err := s.DB.AppSecretMaterial(ctx, app.ID)
	if err != nil {
		return nil, err
	}
	secrets := append([]string{}, gitSecrets...)
	for _, set := range []map[string]string{env, sec.EnvBase, sec.EnvProduction, sec.EnvStaging} {
		for _, v := range set {
			secrets = append(secrets, v)
		}
	}
	secrets = append(secrets, sec.HookSecret)
	if sec.Git != nil {
		secrets = append(secrets, sec.Git.Secret, sec.Git.PrivateKey)
	}
	project := "upanel-" + app.Slug + "-" + d.Environment
	dir := path.Join(app.DeployPath, d.Environment)
	r.mask = newMasker(secrets, []string{Production, Staging, app.Slug, project, d.Branch, app.DeployPath, dir, app.DockerComposeFile})
	return &wire.DeployRequest{ID: d.ID, Git: git, Branch: d.Branch, Commit: d.RequestedCommit, Dir: dir,
		ComposeFile: app.DockerComposeFile, Project: project, Env: env, KeepReleases: app.KeepReleases,
		TimeoutSeconds: int(s.DeployTimeout / time.Second)}, nil
}

// checkProtocol makes sure the agent speaks deployments (protocol 2).
func (r *deployRun) checkProtocol(ctx context.Context) error {
	for {
		st, err := r.s.Fleet.AgentStatus(ctx, r.srv)
		if err == nil {
			if st.Protocol < 2 {
				return failNow("the agent of %s speaks protocol %d; deployments need protocol 2 or later: upgrade the agent from the server's page", r.srv.Name, st.Protocol)
			}
			r.backoff = 0
			return nil
		}
		if apperr.Is(err, apperr.Conflict) { // not installed
			return failNow("%s", apperr.MessageOf(err))
		}
		if err := r.retry(ctx, apperr.Wrap(err, apperr.Unavailable, "the agent of %s did not answer", r.srv.Name)); err != nil {
			return err
		}
	}
}

// call makes an agent call, retrying while the agent is unreachable or busy,
// until the deadline. A 404 or a refusal of the request comes back at once.
func (r *deployRun) call(ctx context.Context, method, p string, body, out any, timeout time.Duration) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := r.s.Fleet.AgentCall(cctx, r.srv.ID, method, p, body, out)
		cancel()
		if err == nil {
			r.backoff = 0
			return nil
		}
		if c := apperr.CodeOf(err); c == apperr.NotFound || c == apperr.Invalid {
			return err
		}
		if err := r.retry(ctx, err); err != nil {
			return err
		}
	}
}

// retry pauses after a failed call, longer each time, or fails the
// deployment once its deadline has passed.
func (r *deployRun) retry(ctx context.Context, cause error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.lastErr = cause
	r.log.Warn("deployment: agent call failed; retrying", "err", cause)
	if r.pastDeadline() {
		return r.gaveUp()
	}
	b := r.backoff
	switch {
	case b == 0:
		b = r.s.timing.retryFirst
	case b < r.s.timing.retryMax:
		b = min(2*b, r.s.timing.retryMax)
	}
	r.backoff = b
	return sleep(ctx, b)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *deployRun) pastDeadline() bool { return r.s.DB.Now().After(r.deadline) }

// gaveUp fails a deployment the agent did not finish in time.
func (r *deployRun) gaveUp() error {
	limit := r.s.DeployTimeout + r.s.timing.grace
	var e *endNow
	if r.lastErr != nil {
		e = failNow("no answer from the agent of %s within %s of the start (%s): the deployment may not have run", r.srv.Name, limit, r.mask.mask(apperr.MessageOf(r.lastErr)))
	} else {
		e = failNow("the deployment did not end within %s of its start", limit)
	}
	// An agent that had the deployment and went silent (or never ended it)
	// may have left the project half changed: the app is failed, not
	// running its previous release, until a deployment says otherwise.
	e.end.RestoreFailed = r.known
	return e
}

// follow pulls the deployment's log and state from the agent until it ends.
func (r *deployRun) follow(ctx context.Context) error {
	s := r.s
	wake, stop := s.logs.subscribe(cancelKey(r.id))
	defer stop()
	for {
		cur, err := s.DB.GetDeployment(ctx, r.id)
		if apperr.Is(err, apperr.NotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.Terminal() {
			return nil // ended elsewhere (reconciled)
		}
		if cur.CancelRequested() && !r.cancelSent {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := s.Fleet.AgentCall(cctx, r.srv.ID, http.MethodPost, wire.AgentPathDeployState+r.id+wire.AgentPathDeployCancelSuffix, nil, nil)
			cancel()
			switch {
			case err == nil:
				r.cancelSent = true
			case ctx.Err() != nil:
				return ctx.Err()
			case apperr.Is(err, apperr.NotFound):
				// The agent has nothing running under this id: it never got
				// it, or lost it. Either way nothing runs.
				return &endNow{store.DeploymentEnd{Status: store.DeploymentCancelled, Error: cur.ErrorMessage}}
			default:
				r.log.Warn("deployment: the agent did not take the cancel; asking again", "err", err)
			}
		}
		if r.pastDeadline() {
			r.cancelOnAgent(ctx)
			return r.gaveUp()
		}
		var out wire.DeployLog
		q := wire.AgentPathDeployState + r.id + "?after=" + strconv.Itoa(r.seq) + "&wait=" + strconv.FormatInt(s.timing.pollWait.Milliseconds(), 10)
		pctx, cancel := context.WithTimeout(ctx, s.timing.pollWait+20*time.Second)
		// A cancel request cuts the wait short, so that it reaches the
		// agent at once.
		var woken atomic.Bool
		go func() {
			select {
			case <-wake:
				woken.Store(true)
				cancel()
			case <-pctx.Done():
			}
		}()
		started := time.Now()
		err = s.Fleet.AgentCall(pctx, r.srv.ID, http.MethodGet, q, nil, &out)
		cancel()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case woken.Load():
				continue
			case apperr.Is(err, apperr.NotFound):
				return failNow("the agent lost the deployment: the agent of %s no longer knows it (was it reinstalled?)", r.srv.Name)
			}
			if err := r.retry(ctx, err); err != nil {
				return err
			}
			continue
		}
		r.backoff, r.lastErr = 0, nil
		if err := r.store(ctx, out.Lines); err != nil {
			return err
		}
		st := out.State
		if store.DeploymentTerminal(st.Status) && st.LastSeq <= r.seq {
			return &endNow{r.endOf(st, cur)}
		}
		if len(out.Lines) == 0 && time.Since(started) < s.timing.pollWait/10 {
			// An agent that answers at once with nothing new: do not spin.
			if err := sleep(ctx, s.timing.pollWait/10); err != nil {
				return err
			}
		}
	}
}

// cancelOnAgent asks the agent to stop, once, without waiting on it.
func (r *deployRun) cancelOnAgent(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = r.s.Fleet.AgentCall(cctx, r.srv.ID, http.MethodPost, wire.AgentPathDeployState+r.id+wire.AgentPathDeployCancelSuffix, nil, nil)
}

// store masks and stores new lines, one per sequence number: a line the
// agent skipped is stored as "…", so that numbers and lines stay aligned.
func (r *deployRun) store(ctx context.Context, lines []wire.LogLine) error {
	var texts []string
	last := r.seq
	for _, l := range lines {
		if l.Seq <= last {
			continue // sent before
		}
		for last+1 < l.Seq {
			texts = append(texts, "…")
			last++
		}
		texts = append(texts, r.mask.mask(cleanLine(l.Text)))
		last = l.Seq
	}
	if last == r.seq {
		return nil
	}
	ok, err := r.s.DB.AppendDeploymentLog(ctx, r.id, r.seq, texts, last)
	if err != nil {
		return err
	}
	if !ok {
		// Someone else stored lines (a worker that still believed it owned
		// the job): carry on from what is stored.
		cur, err := r.s.DB.GetDeployment(ctx, r.id)
		if err != nil {
			return err
		}
		r.seq = cur.LogSeq
		return nil
	}
	r.seq = last
	r.s.logs.notify(r.id)
	return nil
}

// endOf turns the agent's final state into the deployment's end.
func (r *deployRun) endOf(st wire.DeployState, cur *store.Deployment) store.DeploymentEnd {
	end := store.DeploymentEnd{Status: st.Status, CommitMessage: r.mask.mask(st.CommitMessage), RestoreFailed: st.RestoreFailed}
	if c := st.Commit; commitRe.MatchString(c) {
		end.Commit = c
	}
	switch st.Status {
	case store.DeploymentFailed:
		end.Error = r.mask.mask(cleanLine(st.Error))
		if end.Error == "" {
			end.Error = "the deployment failed on the server"
		}
	case store.DeploymentCancelled:
		end.Error = cur.ErrorMessage
		if end.Error == "" {
			end.Error = r.mask.mask(cleanLine(st.Error))
		}
		if end.Error == "" {
			end.Error = "cancelled on the server"
		}
	}
	return end
}

// ReconcileHandler returns the handler of ReconcileKind jobs.
func (s *Service) ReconcileHandler() jobs.Handler {
	return func(ctx context.Context, j *jobs.Job) error {
		_, err := s.Reconcile(ctx)
		return err
	}
}

// Reconcile ends deployments left queued or running by a job that ended
// without ending them (its last attempt was lost to a crash, or its handler
// panicked): they fail, and the agent is asked to stop whatever may still
// run. It returns how many it ended. The panel runs it at start and every
// few minutes; with several panels each deployment is ended once.
func (s *Service) Reconcile(ctx context.Context) (int, error) {
	list, err := s.DB.StrandedDeployments(ctx, 200)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sd := range list {
		why := "the panel lost track of this deployment: its job ended (" + sd.JobStatus + ") without a result"
		if sd.JobStatus == "" {
			why = "the panel lost track of this deployment: its job is gone"
		}
		if sd.Status == store.DeploymentRunning {
			why += "; the server may not run the release it was deploying"
		}
		s.Log.Warn("deployment stranded by its job; failing it", "deployment_id", sd.ID, "job_status", sd.JobStatus, "job_error", sd.JobError)
		var ended bool
		err := s.DB.InTx(ctx, func(tx *store.Tx) error {
			var err error
			_, ended, err = s.finishDeployment(ctx, tx, sd.ID, store.DeploymentEnd{Status: store.DeploymentFailed, Error: why})
			return err
		})
		if err != nil {
			return n, err
		}
		if !ended {
			continue
		}
		n++
		s.logs.notify(sd.ID)
		if sd.Status == store.DeploymentRunning && s.Fleet != nil {
			if app, err := s.DB.GetApp(ctx, sd.AppID); err == nil {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_ = s.Fleet.AgentCall(cctx, app.ServerID, http.MethodPost, wire.AgentPathDeployState+sd.ID+wire.AgentPathDeployCancelSuffix, nil, nil)
				cancel()
			}
		}
	}
	return n, nil
}
