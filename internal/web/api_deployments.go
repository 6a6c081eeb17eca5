package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/deploy"
	"upanel/internal/store"
)

// The deployments API: queue, list, show, cancel and roll back deployments,
// and read or follow their stored (masked) logs.

// deployLogPoll is how often a live log reads the database even when this
// process stored nothing: another panel process sharing the database may be
// the one storing the lines.
const deployLogPoll = 500 * time.Millisecond

// deployLogStreamKey is the key live deployment logs are counted under in
// the stream limits, apart from the notification bell's.
func deployLogStreamKey(userID string) string { return userID + "/deployment-logs" }

type deploymentJSON struct {
	ID              string     `json:"id"`
	AppID           string     `json:"app_id"`
	UserID          *string    `json:"user_id"`
	CommitHash      string     `json:"commit_hash"`
	CommitMessage   string     `json:"commit_message"`
	Branch          string     `json:"branch"`
	Environment     string     `json:"environment"`
	Status          string     `json:"status"`
	StartedAt       *time.Time `json:"started_at"`
	FinishedAt      *time.Time `json:"finished_at"`
	DurationSeconds *int       `json:"duration_seconds"`
	ErrorMessage    string     `json:"error_message"`
	IsRollback      bool       `json:"is_rollback"`
	RollbackFromID  *string    `json:"rollback_from_id"`
	TriggeredBy     string     `json:"triggered_by"`
	RequestedCommit string     `json:"requested_commit"`
	CreatedAt       time.Time  `json:"created_at"`
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toDeploymentJSON(d *store.Deployment) deploymentJSON {
	return deploymentJSON{ID: d.ID, AppID: d.AppID, UserID: optString(d.UserID), CommitHash: d.CommitHash, CommitMessage: d.CommitMessage,
		Branch: d.Branch, Environment: d.Environment, Status: d.Status, StartedAt: d.StartedAt, FinishedAt: d.FinishedAt,
		DurationSeconds: d.DurationSeconds, ErrorMessage: d.ErrorMessage, IsRollback: d.IsRollback, RollbackFromID: optString(d.RollbackFromID),
		TriggeredBy: d.TriggeredBy, RequestedCommit: d.RequestedCommit, CreatedAt: d.CreatedAt}
}

// deployTrigger is how a principal's deployments are recorded: api for a
// token, manual for a person in the UI.
func deployTrigger(p *auth.Principal) string {
	if p != nil && p.ViaToken() {
		return deploy.TriggerAPI
	}
	return deploy.TriggerManual
}

// apiDeploymentCreate queues a deployment of an app: 202 with the queued
// deployment. The body is optional.
func (s *Server) apiDeploymentCreate(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.apiError(w, r, s.deployUnavailable())
		return
	}
	var in struct {
		Environment string `json:"environment"`
		Commit      string `json:"commit"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		s.apiError(w, r, apperr.New(apperr.Invalid, "the request body is larger than %d bytes", maxJSONBody))
		return
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			s.apiError(w, r, apperr.New(apperr.Invalid, "the request body is not the JSON this endpoint takes: %s", jsonProblem(err)))
			return
		}
		if dec.More() {
			s.apiError(w, r, apperr.New(apperr.Invalid, "the request body has data after the JSON object"))
			return
		}
	}
	id, err := s.Deploy.Deploy(r.Context(), p, deploy.DeployInput{AppID: r.PathValue("id"), Environment: in.Environment,
		Commit: in.Commit, Trigger: deployTrigger(p)}, s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	s.writeDeployment(w, r, id, http.StatusAccepted)
}

// writeDeployment answers with a deployment as it is now.
func (s *Server) writeDeployment(w http.ResponseWriter, r *http.Request, id string, status int) {
	d, err := s.DB.GetDeployment(r.Context(), id)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, status, toDeploymentJSON(d))
}

// deploymentFilter reads ?environment= and ?limit= of a deployment list.
func deploymentFilter(r *http.Request) (store.DeploymentFilter, error) {
	q := r.URL.Query()
	f := store.DeploymentFilter{Limit: 50}
	switch env := q.Get("environment"); env {
	case "":
	case deploy.Production, deploy.Staging:
		f.Environment = env
	default:
		return f, apperr.New(apperr.Invalid, "environment must be production or staging")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return f, apperr.New(apperr.Invalid, "limit must be 1 to 500")
		}
		f.Limit = n
	}
	return f, nil
}

func (s *Server) apiDeployments(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	f, err := deploymentFilter(r)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if _, err := s.DB.GetApp(r.Context(), id); err != nil {
		s.apiError(w, r, err)
		return
	}
	ds, err := s.DB.ListDeployments(r.Context(), id, f)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := struct {
		Deployments []deploymentJSON `json:"deployments"`
	}{Deployments: make([]deploymentJSON, 0, len(ds))}
	for _, d := range ds {
		out.Deployments = append(out.Deployments, toDeploymentJSON(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiDeployment(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.writeDeployment(w, r, r.PathValue("id"), http.StatusOK)
}

func (s *Server) apiDeploymentCancel(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.apiError(w, r, s.deployUnavailable())
		return
	}
	d, err := s.Deploy.Cancel(r.Context(), p, r.PathValue("id"), s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toDeploymentJSON(d))
}

func (s *Server) apiDeploymentRollback(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.apiError(w, r, s.deployUnavailable())
		return
	}
	id, err := s.Deploy.Rollback(r.Context(), p, r.PathValue("id"), s.meta(r))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	s.writeDeployment(w, r, id, http.StatusAccepted)
}

// lineNumber reads a log line number (?after=, Last-Event-ID): "" is 0.
func lineNumber(name, v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, apperr.New(apperr.Invalid, "%s must be a line number: 0 or more", name)
	}
	return n, nil
}

// apiDeploymentLog answers the stored log lines after ?after=N as plain
// text. With ?follow=1 the answer stays open and carries each line as it is
// stored, and ends when the deployment has ended, the client goes away or
// the panel shuts down.
func (s *Server) apiDeploymentLog(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.apiError(w, r, s.deployUnavailable())
		return
	}
	q := r.URL.Query()
	after, err := lineNumber("after", q.Get("after"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	var follow bool
	switch q.Get("follow") {
	case "", "0", "false":
	case "1", "true":
		follow = true
	default:
		s.apiError(w, r, apperr.New(apperr.Invalid, "follow must be 1 or 0"))
		return
	}
	if follow {
		if !s.streams.acquire(deployLogStreamKey(p.User.ID)) {
			w.Header().Set("Retry-After", "30")
			s.apiError(w, r, apperr.New(apperr.RateLimited, "too many live deployment logs are open: close some"))
			return
		}
		defer s.streams.release(deployLogStreamKey(p.User.ID))
	}
	ctx := r.Context()
	f, lines, d, err := s.Deploy.FollowLog(ctx, r.PathValue("id"), after)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Deployment-Status", d.Status)
	if !follow {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(l.Text)
			b.WriteByte('\n')
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, b.String())
		return
	}
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(ls []deploy.LogLine) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.streams.writeTimeout))
		var b strings.Builder
		for _, l := range ls {
			b.WriteString(l.Text)
			b.WriteByte('\n')
		}
		if b.Len() > 0 {
			if _, err := io.WriteString(w, b.String()); err != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	if !send(lines) || d.Terminal() {
		return
	}
	s.pumpDeploymentLog(r, f, logPump{
		lines: func(ls []deploy.LogLine, _ *store.Deployment) bool {
			if len(ls) == 0 {
				return true
			}
			return send(ls)
		},
	})
}

// logPump is what a live deployment log does with what the follower reads.
type logPump struct {
	// lines receives each batch read (possibly none) with the deployment as
	// it is now; false ends the stream.
	lines func([]deploy.LogLine, *store.Deployment) bool
	// beat, when set, is called every heartbeat of an idle stream.
	beat func() bool
	// life, when set, ends the stream after about that long (the browser
	// reconnects where it was).
	life time.Duration
}

// pumpDeploymentLog reads a deployment's log as it grows until the
// deployment has ended (after its last lines went out), the client goes
// away, the panel shuts down, or the session or token is gone. It wakes when
// this process stores lines, and polls for lines another process stored.
func (s *Server) pumpDeploymentLog(r *http.Request, f *deploy.LogFollower, pump logPump) {
	ctx := r.Context()
	poll := time.NewTicker(deployLogPoll)
	defer poll.Stop()
	recheck := time.NewTicker(s.streams.recheck)
	defer recheck.Stop()
	var beat <-chan time.Time
	if pump.beat != nil {
		t := time.NewTicker(s.streams.heartbeat)
		defer t.Stop()
		beat = t.C
	}
	var end <-chan time.Time
	if pump.life > 0 {
		t := time.NewTimer(pump.life + rand.N(pump.life/10+1))
		defer t.Stop()
		end = t.C
	}
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.Stop:
			return
		case <-end:
			return
		case <-recheck.C:
			if !s.sessionAlive(ctx, r) {
				return
			}
			continue
		case <-beat:
			if !pump.beat() {
				return
			}
			continue
		case <-f.Wake():
		case <-poll.C:
		}
		lines, d, err := f.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || apperr.Is(err, apperr.NotFound) {
				return // gone away, or the deployment was deleted with its app
			}
			if failures++; failures >= 3 {
				s.Log.Warn("deployment log stream", "request_id", RequestID(ctx), "err", err)
				return
			}
			continue
		}
		failures = 0
		if !pump.lines(lines, d) || d.Terminal() {
			return
		}
	}
}

// deploymentEvents is the live log of a deployment page (text/event-stream):
// each stored line after Last-Event-ID (or ?after=) as an event whose id is
// its line number, a "status" event at once and whenever the deployment's
// state changes, and the end of the stream once the deployment has ended.
func (s *Server) deploymentEvents(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if s.Deploy == nil {
		s.fail(w, r, false, s.deployUnavailable())
		return
	}
	after, err := lineNumber("after", r.URL.Query().Get("after"))
	if err == nil && r.Header.Get("Last-Event-ID") != "" {
		after, err = lineNumber("Last-Event-ID", r.Header.Get("Last-Event-ID"))
	}
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	key := deployLogStreamKey(p.User.ID)
	l := s.streams
	if !l.acquire(key) {
		w.Header().Set("Retry-After", "30")
		s.fail(w, r, false, apperr.New(apperr.RateLimited, "too many live deployment logs are open: close some tabs"))
		return
	}
	defer l.release(key)
	ctx := r.Context()
	f, lines, d, err := s.Deploy.FollowLog(ctx, r.PathValue("id"), after)
	if err != nil {
		s.fail(w, r, false, err)
		return
	}
	defer f.Close()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var b strings.Builder
	flush := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(l.writeTimeout))
		_, err := io.WriteString(w, b.String())
		b.Reset()
		return err == nil && rc.Flush() == nil
	}
	addLines := func(ls []deploy.LogLine) {
		for _, x := range ls {
			// A stored line is one line; a stray CR or LF would start a
			// field of its own, so it cannot pass.
			fmt.Fprintf(&b, "id: %d\ndata: %s\n\n", x.Seq, strings.NewReplacer("\r", " ", "\n", " ").Replace(x.Text))
		}
	}
	last := deploymentStatusOf(d)
	fmt.Fprintf(&b, "retry: %d\n", l.retry.Milliseconds())
	addLines(lines)
	b.WriteString(last.event())
	if !flush() || d.Terminal() {
		return
	}
	s.pumpDeploymentLog(r, f, logPump{
		lines: func(ls []deploy.LogLine, d *store.Deployment) bool {
			addLines(ls)
			if st := deploymentStatusOf(d); st != last {
				last = st
				b.WriteString(st.event())
			}
			if b.Len() == 0 {
				return true
			}
			return flush()
		},
		beat: func() bool {
			b.WriteString(": keep-alive\n\n")
			return flush()
		},
		life: l.life,
	})
}

// deploymentStatus is what a deployment page shows of its state, sent as a
// "status" event when it changes.
type deploymentStatus struct {
	Status          string `json:"status"`
	Terminal        bool   `json:"terminal"`
	CancelRequested bool   `json:"cancel_requested"`
	ErrorMessage    string `json:"error_message"`
	CommitHash      string `json:"commit_hash"`
	StartedAt       string `json:"started_at"`
	FinishedAt      string `json:"finished_at"`
	DurationSeconds int    `json:"duration_seconds"`
}

func deploymentStatusOf(d *store.Deployment) deploymentStatus {
	st := deploymentStatus{Status: d.Status, Terminal: d.Terminal(), CancelRequested: d.CancelRequested(), ErrorMessage: d.ErrorMessage,
		CommitHash: d.CommitHash}
	if d.StartedAt != nil {
		st.StartedAt = d.StartedAt.UTC().Format(time.RFC3339)
	}
	if d.FinishedAt != nil {
		st.FinishedAt = d.FinishedAt.UTC().Format(time.RFC3339)
	}
	if d.DurationSeconds != nil {
		st.DurationSeconds = *d.DurationSeconds
	}
	return st
}

func (st deploymentStatus) event() string {
	j, _ := json.Marshal(st)
	return "event: status\ndata: " + string(j) + "\n\n"
}
