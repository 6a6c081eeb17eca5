package deploy

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"upanel/internal/apperr"
	"upanel/internal/auth"
	"upanel/internal/store"
	"upanel/internal/wire"
)

// Running-app controls: the state of an environment's containers, start,
// stop and restart, and a bounded tail of their logs. The agent runs the
// compose commands on the app's server (wire.AgentPathProject); the panel
// records who did what.

// Control actions.
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionRestart = "restart"
)

// Log tails: DefaultLogTail lines unless asked, at most MaxLogTail.
const (
	DefaultLogTail = 200
	MaxLogTail     = 1000
)

// LogTails are the sizes the UI offers.
var LogTails = []int{50, 200, 500, 1000}

// controlTarget is an app environment's compose project on its server.
type controlTarget struct {
	app     *store.App
	env     string
	project string
}

func (s *Service) controlTarget(ctx context.Context, appID, env string) (*controlTarget, error) {
	if env == "" {
		env = Production
	}
	if env != Production && env != Staging {
		return nil, apperr.New(apperr.Invalid, "environment must be production or staging")
	}
	if s.Fleet == nil {
		return nil, apperr.New(apperr.Unavailable, "the panel cannot reach agents")
	}
	app, err := s.DB.GetApp(ctx, appID)
	if err != nil {
		return nil, err
	}
	if app.Slug == "" {
		return nil, apperr.New(apperr.Conflict, "the app %s has not been deployed yet", app.Name)
	}
	return &controlTarget{app: app, env: env, project: "upanel-" + app.Slug + "-" + env}, nil
}

// Status returns the services of an app environment's compose project, as
// its server's agent sees them.
func (s *Service) Status(ctx context.Context, appID, env string) (*wire.ProjectStatus, error) {
	t, err := s.controlTarget(ctx, appID, env)
	if err != nil {
		return nil, err
	}
	return s.projectStatus(ctx, t)
}

func (s *Service) projectStatus(ctx context.Context, t *controlTarget) (*wire.ProjectStatus, error) {
	var st wire.ProjectStatus
	if err := s.Fleet.AgentCall(ctx, t.app.ServerID, http.MethodGet, wire.AgentPathProject+t.project, nil, &st); err != nil {
		return nil, err
	}
	if st.Services == nil {
		st.Services = []wire.ServiceStatus{}
	}
	return &st, nil
}

// Control starts, stops or restarts an app environment's containers, and
// records it in the activity log. For production it also sets the app's
// status (running or stopped). It refuses while a deployment of that
// environment runs, and returns the project's status afterwards (nil if the
// agent could not tell it).
func (s *Service) Control(ctx context.Context, p *auth.Principal, appID, env, action string, m auth.Meta) (*wire.ProjectStatus, error) {
	var status, verb string
	switch action {
	case ActionStart:
		status, verb = store.AppRunning, "started"
	case ActionStop:
		status, verb = store.AppStopped, "stopped"
	case ActionRestart:
		status, verb = store.AppRunning, "restarted"
	default:
		return nil, apperr.New(apperr.Invalid, "action must be start, stop or restart")
	}
	t, err := s.controlTarget(ctx, appID, env)
	if err != nil {
		return nil, err
	}
	busy, err := s.DB.DeploymentRunning(ctx, appID, t.env)
	if err != nil {
		return nil, err
	}
	if busy {
		return nil, apperr.New(apperr.Conflict, "a deployment of %s (%s) is running: wait for it to end, or cancel it", t.app.Name, t.env)
	}
	if err := s.Fleet.AgentCall(ctx, t.app.ServerID, http.MethodPost, wire.AgentPathProject+t.project+"/"+action, nil, nil); err != nil {
		s.Log.Warn("app control failed", "app_id", appID, "environment", t.env, "action", action, "err", err)
		return nil, err
	}
	err = s.DB.InTx(ctx, func(tx *store.Tx) error {
		var changes map[string]store.Change
		if t.env == Production {
			old, changed, err := tx.SetAppRunStatus(ctx, appID, status)
			if err != nil {
				return err
			}
			if changed {
				changes = map[string]store.Change{"status": {Old: old, New: status}}
			}
		}
		return s.record(ctx, tx, p, m, verb, "App", appID, t.app.Name+" ("+t.env+") "+verb, changes)
	})
	if err != nil {
		return nil, err
	}
	st, err := s.projectStatus(ctx, t)
	if err != nil {
		s.Log.Warn("app status after control", "app_id", appID, "environment", t.env, "err", err)
		return nil, nil
	}
	return st, nil
}

// ParseLogTail reads a tail size: empty is DefaultLogTail, else 1 to
// MaxLogTail.
func ParseLogTail(v string) (int, error) {
	if v == "" {
		return DefaultLogTail, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxLogTail {
		return 0, apperr.New(apperr.Invalid, "tail must be a number of lines from 1 to %d", MaxLogTail)
	}
	return n, nil
}

// validService checks a compose service name (letters, digits, and ._-
// after the first character).
func validService(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')) {
			return false
		}
	}
	return true
}

// Logs returns the last tail lines (1 to MaxLogTail; 0 means
// DefaultLogTail) of an app environment's container logs, of one service or
// of all. The app's environment values are masked in every line, whatever
// the agent did.
func (s *Service) Logs(ctx context.Context, appID, env, service string, tail int) (*wire.ProjectLogs, error) {
	if tail == 0 {
		tail = DefaultLogTail
	}
	if tail < 1 || tail > MaxLogTail {
		return nil, apperr.New(apperr.Invalid, "tail must be a number of lines from 1 to %d", MaxLogTail)
	}
	if service != "" && !validService(service) {
		return nil, apperr.New(apperr.Invalid, "service must be a compose service name")
	}
	t, err := s.controlTarget(ctx, appID, env)
	if err != nil {
		return nil, err
	}
	q := url.Values{"tail": {strconv.Itoa(tail)}}
	if service != "" {
		q.Set("service", service)
	}
	var logs wire.ProjectLogs
	if err := s.Fleet.AgentCall(ctx, t.app.ServerID, http.MethodGet, wire.AgentPathProject+t.project+"/logs?"+q.Encode(), nil, &logs); err != nil {
		return nil, err
	}
	// Bounded whatever the agent sent.
	if len(logs.Lines) > tail {
		logs.Lines, logs.Truncated = logs.Lines[len(logs.Lines)-tail:], true
	}
	secrets, err := s.logSecrets(ctx, appID)
	if err != nil {
		return nil, err
	}
	for i, l := range logs.Lines {
		if len(l) > wire.MaxLineBytes {
			l = strings.ToValidUTF8(l[:wire.MaxLineBytes], "")
		}
		logs.Lines[i] = maskLogSecrets(l, secrets)
	}
	if logs.Lines == nil {
		logs.Lines = []string{}
	}
	return &logs, nil
}

// maskLogSecrets replaces every secret value in a line, longest first so
// that a value containing another is masked whole.
func maskLogSecrets(line string, secrets []string) string {
	for _, v := range secrets {
		if strings.Contains(line, v) {
			line = strings.ReplaceAll(line, v, "[redacted]")
		}
	}
	return line
}

// minMaskLen: shorter values (1, true, 80) are not masked: they would blank
// out every log line, and guessing them needs no log.
const minMaskLen = 4

// logSecrets are the values masked in container logs:
// every secret of the app (its env values, base and overrides, the hook
// secret, its git credential), longest first.
func (s *Service) logSecrets(ctx context.Context, appID string) ([]string, error) {
	m, err := s.DB.AppSecretMaterial(ctx, appID)
	if err != nil {
		return nil, err
	}
	var vals []string
	for _, set := range []map[string]string{m.EnvBase, m.EnvProduction, m.EnvStaging} {
		for _, v := range set {
			vals = append(vals, v)
		}
	}
	vals = append(vals, m.HookSecret)
	if m.Git != nil {
		vals = append(vals, m.Git.Secret, m.Git.PrivateKey)
	}
	out := vals[:0]
	for _, v := range vals {
		if len(v) >= minMaskLen && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}
